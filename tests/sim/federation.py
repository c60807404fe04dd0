"""The simulator for whole federation nodes (protocols/federation.py) with the real Ledger.

Where tests/sim/runner.py drives bare PBFT replicas over a toy key-value store, this runs
FederationNode machines, the same code the daemon runs, on the generic core (tests/sim/world.py):
the core's clock, network, faults, timers and per-node driver, the real FederationWire on every
frame, and here only what the daemon's federation host (node/federation/host.py) adds: the
federation's own effects (executed batches and log fill kept on each node's disk, a dump at each
stable checkpoint or installed state, what an installed state makes moot), the replies our own
client takes before they queue, the periodic sync round, and the clients. Committee changes are
voted by real signed transactions; crashed nodes recover from their dump and journal.

Checks: agreement (one batch per sequence number across every node that executed it, one state
digest per stable checkpoint), validity (only submitted transactions apply, none twice: the
ledger's nonces), supply conserved, liveness (every client transfer gets its f+1 receipt after the
heal), and at the end every live node at one position and one ledger digest, in one epoch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import msgpack

from keys.identity import Identity
from node.runtime.driver import Turn
from protocols.committee import Committee
from protocols.errors import ProtocolError
from protocols.federation import (
    FederationNode,
    FederationWire,
    FilledLog,
    Installed,
    LocalReply,
    Reconfigured,
    ServeLog,
    Tick,
    bundle_channel,
    epoch_of,
    send_sync,
)
from protocols.fedsync import MAX_LOG_BATCHES, MAX_LOG_BYTES, LogBatches
from protocols.ledger import Genesis, decode_receipt, make_genesis, sign_tx
from protocols.pbft import Executed, Reply, Request, StableCheckpoint, StateRestored, ViewInstalled, batch_digest
from protocols.pbft.binding import ChainBinding
from protocols.pbft.signing import CachingVerifier, default_verifier
from tests.sim.network import LinkProfile
from tests.sim.world import SimNode, World

TICK_EVERY = 0.5  # the host's sync round (node/federation/host.py: SYNC_INTERVAL)
RETRANSMIT = 0.4


@dataclass
class Transfer:
    """One client transfer: retransmitted to every member until f+1 members reply alike."""

    client: str
    ts: int
    tx: bytes
    sent_at: float
    replies: dict[str, bytes] = field(default_factory=dict)
    done_at: float | None = None
    receipt: Any = None


class FedSim:
    def __init__(
        self, seed: int, *, members: int = 4, extra: int = 1, checkpoint_interval: int = 4,
        request_timeout: float = 0.25, link: LinkProfile | None = None, horizon: float = 40.0,
    ) -> None:
        self.seed = seed
        self.world = World(seed, link=link or LinkProfile())
        self.rng, self.clock, self.network = self.world.rng, self.world.clock, self.world.network
        ids = [Identity.from_seed(seed.to_bytes(4, "big") + bytes([i]) * 28) for i in range(members + extra + 2)]
        self.ids = ids
        committee = tuple(i.peer_id for i in ids[:members])
        balances = {i.peer_id: 10**6 for i in ids}
        self.genesis: Genesis = make_genesis("fedsim", committee, balances, checkpoint_interval)
        self.binding = ChainBinding.of(self.genesis.hash)
        self.wire = FederationWire(self.binding)  # the clients'
        self.request_timeout = request_timeout
        self.identities = {f"n{i}": ident for i, ident in enumerate(ids[: members + extra])}
        for name, ident in self.identities.items():
            self.world.add(
                name, ident.peer_id, self._make(ident), start="resume", host=self._handle, commit=self._commit,
                after=self._after, prefilter=self._take_replies, on_boot=self._start_ticks,
            )
        self.nodes: dict[str, SimNode] = self.world.nodes
        self.clients = [ids[members + extra], ids[members + extra + 1]]
        for i, c in enumerate(self.clients):
            self.world.endpoint(f"c{i}", c.peer_id, self._client_frame)
        self.client_nonce = {c.peer_id: 0 for c in self.clients}
        self.transfers: list[Transfer] = []
        self.queued: dict[str, list[tuple[Identity, str, dict[str, Any], int]]] = {}
        self.horizon = horizon
        self.heal_at = 0.0
        self.safety: list[str] = []
        self.executed: dict[int, bytes] = {}  # seq -> batch digest (agreement)
        self.stable: dict[int, bytes] = {}  # seq -> state digest
        self.reconfigured: list[tuple[str, int]] = []
        self.notes = self.world.faults
        self.stats: dict[str, Any] = {}

    def _make(self, ident: Identity) -> Callable[[SimNode], tuple[FederationNode, FederationWire]]:
        def make(node: SimNode) -> tuple[FederationNode, FederationWire]:
            node.disk.setdefault("batches", {})  # seq -> (view, ops, results): the store's ledger_batches
            machine = FederationNode(
                ident.peer_id, self.genesis, request_timeout=self.request_timeout,
                sign=self.binding.signer(ident.sign), verify=CachingVerifier(self.binding.verifier(default_verifier)),
            )
            return machine, FederationWire(self.binding)

        return make

    @property
    def events(self) -> int:
        return self.world.events

    @property
    def refused(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for node in self.nodes.values():
            for reason, count in node.refused.items():
                out[reason] = out.get(reason, 0) + count
        return out

    # ------------------------------------------------------------------ what scenarios call

    def at(self, t: float, fn: Callable[[FedSim], None]) -> None:
        self.world.at(t, lambda: fn(self))

    def crash(self, name: str, at: float, restart_at: float | None) -> None:
        self.world.crash(name, at, restart_at)

    def vote(self, voter: str, op: str, peer: str) -> None:
        """A member's signed federation.join / federation.leave, submitted as its own client."""
        self._submit(self.identities[voter], op, {"peer": peer}, lane=1)

    def transfer(self, client: int, to: str, amount: int = 1) -> None:
        self._submit(self.clients[client], "transfer", {"to": to, "amount": amount}, lane=0)

    def _submit(self, ident: Identity, op: str, args: dict[str, Any], lane: int) -> None:
        """Queue a transaction on (ident, lane); a lane carries one at a time (closed loop), as
        the daemon's client does: its nonce and PBFT timestamp must arrive in order."""
        key = f"{ident.peer_id}/{lane}"
        self.queued.setdefault(key, []).append((ident, op, args, lane))
        if not any(t.client == key and t.done_at is None for t in self.transfers):
            self._next(key)

    def _next(self, key: str) -> None:
        queue = self.queued.get(key)
        if not queue:
            return
        ident, op, args, lane = queue.pop(0)
        nonce = self.client_nonce.get(key, 0) + 1
        self.client_nonce[key] = nonce
        tx = sign_tx(ident, chain="fedsim", genesis=self.genesis.hash, lane=lane, nonce=nonce, op=op, args=args)
        t = Transfer(key, nonce, tx, self.clock.now)
        self.transfers.append(t)
        self._send_request(t)

    def _send_request(self, t: Transfer) -> None:
        if t.done_at is not None:
            return
        sender = t.client.split("/")[0]
        req = Request(t.client, t.ts, t.tx)
        channel = bundle_channel(0)
        for node in self.nodes.values():
            if node.pid == sender:
                if node.up:
                    self.world.call_nowait(node.name, req)  # our own client: FederationHost.submit
            else:  # to every node, as a client that does not know the committee would (followers drop it)
                for payload in self.wire.encode(channel, [req]):
                    self.world.send(sender, node.pid, channel, payload)
        self.world.after(RETRANSMIT, lambda: self._send_request(t))

    def _current_members(self) -> tuple[str, ...]:
        live = [n.machine for n in self.nodes.values() if n.machine is not None]
        best = max(live, key=lambda m: (m.epoch, m.position), default=None)
        return best.members if best is not None else self.genesis.committee

    # ------------------------------------------------------------------ the clients

    def _client_frame(self, src_pid: str, channel: str, payload: bytes) -> None:
        try:
            messages = self.wire.decode(channel, payload)
        except ProtocolError:
            return
        for m in messages:
            if isinstance(m, Reply):
                self._client_reply(src_pid, m)

    def _take_replies(self, node: SimNode, peer: str, channel: str, messages: Sequence[Any]) -> Sequence[Any]:
        """FederationHost._take_replies: replies go to our own client at once (a member's own
        only); the rest queue for the machine."""
        if epoch_of(channel) is None or not any(isinstance(m, Reply) for m in messages):
            return messages
        member = peer in node.machine.members
        others = []
        for m in messages:
            if isinstance(m, Reply):
                if member and m.sender == peer:
                    self._client_reply(peer, m)
            else:
                others.append(m)
        return others

    def _client_reply(self, src_pid: str, reply: Reply) -> None:
        for t in self.transfers:
            if t.client == reply.client_id and t.ts == reply.timestamp and t.done_at is None:
                t.replies[src_pid] = reply.result
                same = [p for p, r in t.replies.items() if r == reply.result]
                if len(same) >= Committee(self._current_members()).weak:
                    t.done_at, t.receipt = self.clock.now, decode_receipt(reply.result)
                    self._next(t.client)

    # ------------------------------------------------------------------ the host (node/federation/host.py)

    def _start_ticks(self, node: SimNode) -> None:
        incarnation = node.incarnation
        self.world.after(self.rng.uniform(0, TICK_EVERY), lambda: self._tick(node, incarnation))

    def _tick(self, node: SimNode, incarnation: int) -> None:
        if not node.up or node.incarnation != incarnation:
            return  # the loop died with the process
        self.world.call_nowait(node.name, Tick(self._gap(node)))
        self.world.after(TICK_EVERY * self.rng.uniform(0.8, 1.2), lambda: self._tick(node, incarnation))

    def _handle(self, node: SimNode, e: Any, turn: Turn) -> None:
        t = type(e)
        batches = node.disk["batches"]
        if t is Executed:
            digest = batch_digest(e.batch)
            if self.executed.setdefault(e.seq, digest) != digest:
                self.safety.append(f"agreement: {node.name} executed another batch at {e.seq}")
            ops = msgpack.packb([[r.client_id, r.timestamp, r.op] for r in e.batch], use_bin_type=True)
            batches[e.seq] = (e.view, ops, msgpack.packb(list(e.results), use_bin_type=True))
        elif t is StableCheckpoint:
            turn.host["dump"] = True
            if self.stable.setdefault(e.seq, e.state_digest) != e.state_digest:
                self.safety.append(f"checkpoint: {node.name} made {e.seq} stable at another digest")
        elif t is ServeLog:
            s = send_sync(e.to, LogBatches(self._log_slice(batches, e.since, e.limit)))
            turn.send(s.to, s.channel, s.message)
        elif t is FilledLog:
            for seq, view, ops, results in e.entries:
                batches[seq] = (view, ops, results)
        elif t is LocalReply:
            turn.host.setdefault("replies", []).append(e.reply)
        elif t is Installed:
            # A synced state replaced ours: this turn's inputs are superseded by the dump, its PBFT
            # messages and replies are moot (sync answers still go), its timers are the old state's.
            turn.journal.clear()
            for key in [k for k in turn.sends if epoch_of(k[1]) is not None]:
                del turn.sends[key]
            turn.host.pop("replies", None)
            turn.host["dump"] = True
            node.timers.clear()
        elif t is Reconfigured:
            node.timers.clear()
            self.reconfigured.append((node.name, e.epoch))
        elif t not in (ViewInstalled, StateRestored):  # the daemon logs these and tells subscribers
            raise TypeError(f"the federation host handles no {t.__name__}")

    def _commit(self, node: SimNode, turn: Turn) -> None:
        if turn.host.get("dump"):  # supersedes every input journalled so far, this turn's included
            node.state, node.journal = node.machine.dump(), []

    def _after(self, node: SimNode, turn: Turn) -> None:
        for reply in turn.host.get("replies", ()):
            self._client_reply(node.pid, reply)

    @staticmethod
    def _log_slice(batches: dict[int, tuple[int, bytes, bytes]], since: int, limit: int) -> tuple[tuple[int, int, bytes, bytes], ...]:
        """FederationHost._log_slice over this node's batches."""
        out: list[tuple[int, int, bytes, bytes]] = []
        size = 0
        for seq in sorted(s for s in batches if s > since)[: min(limit, MAX_LOG_BATCHES)]:
            view, ops, results = batches[seq]
            size += len(ops) + len(results)
            if out and size > MAX_LOG_BYTES:
                break
            out.append((seq, view, ops, results))
        return tuple(out)

    def _gap(self, node: SimNode) -> tuple[int, int] | None:
        m = node.machine
        batches = node.disk["batches"]
        missing = [s for s in range(1, m.position + 1) if s not in batches]
        if not missing:
            return None
        lo = missing[0]
        hi = lo
        while hi + 1 in missing and hi - lo < MAX_LOG_BATCHES - 1:
            hi += 1
        return lo, hi

    # ------------------------------------------------------------------ the loop

    def run(self) -> FedSim:
        self.world.run(self.horizon, stop=self._done)
        return self

    def _done(self) -> bool:
        return bool(self.safety) or (self.clock.now > self.heal_at and self._settled())

    def _settled(self) -> bool:
        if any(t.done_at is None for t in self.transfers) or any(self.queued.values()):
            return False
        return not self._apart()

    def _apart(self) -> str | None:
        """Why the live nodes do not (yet) agree: replicas at one (epoch, position, ledger digest),
        followers in that epoch at the replicas' stable checkpoint."""
        live = {n.name: n.machine for n in self.nodes.values() if n.machine is not None}
        replicas = {k: m for k, m in live.items() if m.replica is not None}
        points = {k: (m.epoch, m.position, m.ledger.digest().hex()[:8]) for k, m in replicas.items()}
        if len(set(points.values())) != 1:
            return f"replicas end apart: {points}"
        any_replica = next(iter(replicas.values()))
        stable = max(m.replica.low_watermark for m in replicas.values() if m.replica is not None)
        for k, m in live.items():
            if m.replica is None and (m.epoch, m.synced) != (any_replica.epoch, stable):
                return f"follower {k} at epoch {m.epoch}, synced {m.synced}; the replicas: epoch {any_replica.epoch}, stable {stable}"
        return None

    # ------------------------------------------------------------------ the verdict

    def verdict(self) -> tuple[list[str], list[str]]:
        safety = list(self.safety)
        liveness: list[str] = []
        live = {n.name: n.machine for n in self.nodes.values() if n.machine is not None}
        for name, m in live.items():
            if m.ledger.total_supply() != self.genesis.total_supply:
                safety.append(f"supply: {name} holds {m.ledger.total_supply()}")
        for t in self.transfers:
            if t.done_at is None:
                liveness.append(f"liveness: {t.client}#{t.ts} never got f+1 matching receipts")
            elif t.receipt.status != "applied":
                safety.append(f"validity: {t.client}#{t.ts} refused ({t.receipt.reason})")
        apart = self._apart()
        if apart:
            liveness.append(f"convergence: {apart}")
        return safety, liveness


# ---------------------------------------------------------------------- scenarios


def _load(sim: FedSim, start: float, end: float, every: float) -> None:
    t = start
    while t < end:
        sim.at(t, lambda s: s.transfer(s.rng.randrange(2), s.nodes["n0"].pid))
        t += every


def join_and_leave(seed: int, n: int = 4) -> tuple[FedSim, Callable[[FedSim], list[str]]]:
    """A fifth node is voted in (f+1 votes) and one original member leaves, under 10% message loss
    until the heal, while the primary of view 0 crashes (and later restarts from its dump and
    journal). The guard: the committee changed twice, and the crash forced a view change."""
    sim = FedSim(seed, members=n, link=LinkProfile(loss=0.1, duplicate=0.05, reorder=0.1))
    newcomer = sim.nodes[f"n{n}"].pid
    voters = [f"n{i}" for i in range(1, 1 + Committee(sim.genesis.committee).weak)]
    leaver = f"n{n - 1}"
    _load(sim, 0.05, 6.0, 0.15)
    sim.at(0.3, lambda s: [s.vote(v, "federation.join", newcomer) for v in voters])
    sim.at(3.0, lambda s: s.vote(leaver, "federation.leave", s.nodes[leaver].pid))
    sim.crash("n0", 1.2, 2.4)
    sim.heal_at = sim.network.heal_at = 6.5

    def guard(s: FedSim) -> list[str]:
        epochs = sorted({e for _, e in s.reconfigured})
        views = [n.machine.replica.view for n in s.nodes.values() if n.machine and n.machine.replica]
        out = []
        if len(epochs) < 2:
            out.append(f"not exercised: two committee changes (saw epochs {epochs})")
        if not views or max(views) < 1:
            out.append("not exercised: a view change after the primary's crash")
        return out

    return sim, guard


def follower_syncs_across_a_change(seed: int, n: int = 4) -> tuple[FedSim, Callable[[FedSim], list[str]]]:
    """A follower is cut off from everyone while the committee votes a member out and moves to
    the next epoch; healed, it must sync the new configuration's state from the committee its
    ledger trusts. The guard: the change happened while it was cut off."""
    sim = FedSim(seed, members=n, link=LinkProfile(loss=0.05))
    follower = f"n{n}"
    leaver = f"n{n - 1}"
    cut_from, cut_to = 0.2, 4.0
    for other in sim.nodes:
        if other != follower:
            sim.network.cut(follower, other, cut_from, cut_to)
    _load(sim, 0.05, 5.0, 0.1)
    sim.at(0.5, lambda s: s.vote(leaver, "federation.leave", s.nodes[leaver].pid))
    sim.heal_at = sim.network.heal_at = cut_to
    seen: dict[str, Any] = {}
    sim.at(cut_to - 1e-6, lambda s: seen.update(epochs=sorted({e for _, e in s.reconfigured})))

    def guard(s: FedSim) -> list[str]:
        return [] if seen.get("epochs") else ["not exercised: a committee change while the follower was cut off"]

    return sim, guard


def cut_off_across_an_epoch_switch(seed: int, n: int = 4) -> tuple[FedSim, Callable[[FedSim], list[str]]]:
    """A member stays in the committee but is cut off while the others vote a newcomer in and
    switch epochs; healed, it must find the newer epoch and take part as a replica of it."""
    sim = FedSim(seed, members=n)
    victim = f"n{1 + seed % (n - 1)}"
    newcomer = sim.nodes[f"n{n}"].pid
    cut_from, cut_to = 0.2, 4.0
    for other in sim.nodes:
        if other != victim:
            sim.network.cut(victim, other, cut_from, cut_to)
    _load(sim, 0.05, 5.0, 0.1)
    voters = [f"n{i}" for i in range(n) if f"n{i}" != victim][: Committee(sim.genesis.committee).weak]
    sim.at(0.5, lambda s: [s.vote(v, "federation.join", newcomer) for v in voters])
    sim.heal_at = sim.network.heal_at = cut_to
    seen: dict[str, Any] = {}

    def before_heal(s: FedSim) -> None:
        m = s.nodes[victim].machine
        seen.update(epochs=sorted({e for _, e in s.reconfigured}), victim_epoch=m.epoch if m else None)

    sim.at(cut_to - 1e-6, before_heal)

    def guard(s: FedSim) -> list[str]:
        if not seen.get("epochs") or seen.get("victim_epoch") != 0:
            return [f"not exercised: an epoch switch the victim missed ({seen})"]
        m = s.nodes[victim].machine
        if m is None or m.replica is None or m.epoch == 0:
            return [f"{victim} did not rejoin the new epoch as a replica"]
        return []

    return sim, guard


FED_SCENARIOS: dict[str, Callable[[int, int], tuple[FedSim, Callable[[FedSim], list[str]]]]] = {
    "join_and_leave": join_and_leave,
    "follower_syncs_across_a_change": follower_syncs_across_a_change,
    "cut_off_across_an_epoch_switch": cut_off_across_an_epoch_switch,
}


def run_one(name: str, seed: int, n: int = 4) -> tuple[list[str], list[str], list[str], FedSim]:
    """(safety violations, liveness failures, guard failures, the sim) of one seeded run."""
    sim, guard = FED_SCENARIOS[name](seed, n)
    sim.run()
    safety, liveness = sim.verdict()
    return safety, liveness, ([] if safety or liveness else guard(sim)), sim


def main(argv: list[str] | None = None) -> int:
    """`python -m tests.sim.federation --replicas N --seeds S [--first-seed F] [--scenario NAME]`."""
    import argparse
    import time

    ap = argparse.ArgumentParser(prog="python -m tests.sim.federation")
    ap.add_argument("--replicas", type=int, default=4)
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--scenario", default="all", choices=["all", *FED_SCENARIOS])
    args = ap.parse_args(argv)
    failed = 0
    for name in FED_SCENARIOS if args.scenario == "all" else [args.scenario]:
        t0, counts = time.process_time(), [0, 0, 0]
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            safety, liveness, guard, sim = run_one(name, seed, args.replicas)
            for i, bad in enumerate((safety, liveness, guard)):
                counts[i] += bool(bad)
            if safety or liveness or guard:
                print(f"FAILED {name} n={args.replicas} seed={seed}: {(safety + liveness + guard)[:3]} "
                      f"faults: {sim.notes}")
        failed += sum(counts)
        print(f"{name:32} n={args.replicas} seeds={args.seeds} safety_violations={counts[0]} "
              f"liveness_failures={counts[1]} not_exercised={counts[2]} cpu={time.process_time() - t0:.1f}s")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
