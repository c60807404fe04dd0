"""The simulator for whole federation nodes (protocols/federation.py) with the real Ledger.

Where tests/sim/runner.py drives bare PBFT replicas over a toy key-value store, this drives
FederationNode machines, the same code the daemon runs, through their own effects: signed bundles
per (peer, epoch), checkpoint sync, log fill, committee changes voted by real signed transactions,
crashes with recovery from the dump and journal, followers. The network is tests/sim/network.py's
(seeded loss, duplication, reordering, partitions, cuts); the clock is virtual.

Checks: agreement (one batch per sequence number across every node that executed it, one state
digest per stable checkpoint), validity (only submitted transactions apply, none twice: the
ledger's nonces), supply conserved, liveness (every client transfer gets its f+1 receipt after the
heal), and at the end every live node at one position and one ledger digest, in one epoch.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Callable

from keys.identity import Identity
from protocols.committee import Committee
from protocols.effects import Journal, Refused, Send
from protocols.federation import (
    FederationNode,
    FilledLog,
    Installed,
    LocalReply,
    Reconfigured,
    ServeLog,
    epoch_of,
)
from protocols.fedsync import LogBatches, decode_sync, encode_sync, message_type
from protocols.ledger import Genesis, decode_receipt, make_genesis, sign_tx
from protocols.pbft import (
    CancelTimer,
    Executed,
    Reply,
    Request,
    SetTimer,
    StableCheckpoint,
    batch_digest,
)
from protocols.pbft.binding import ChainBinding
from protocols.pbft.bundle import decode_bundle, encode_bundle
from protocols.pbft.signing import CachingVerifier, default_verifier
from tests.sim.clock import VirtualClock
from tests.sim.network import LinkProfile, Network

DELIVER, TIMER, TICK, CALL, CRASH, RESTART = range(6)
TICK_EVERY = 0.5
RETRANSMIT = 0.4


@dataclass
class Node:
    name: str
    identity: Identity
    machine: FederationNode | None
    dump: bytes | None = None
    journal: list[tuple[str, str, bytes, float]] = field(default_factory=list)
    batches: dict[int, tuple[int, bytes, bytes]] = field(default_factory=dict)  # seq -> (view, ops, results)
    timers: dict[str, tuple[int, float]] = field(default_factory=dict)  # key -> (generation, due)
    incarnation: int = 0

    @property
    def pid(self) -> str:
        return self.identity.peer_id


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
        self.rng = random.Random(f"{seed}/fed")
        self.clock = VirtualClock()
        self.network = Network(random.Random(f"{seed}/net"), default=link or LinkProfile())
        ids = [Identity.from_seed(seed.to_bytes(4, "big") + bytes([i]) * 28) for i in range(members + extra + 2)]
        self.ids = ids
        committee = tuple(i.peer_id for i in ids[:members])
        balances = {i.peer_id: 10**6 for i in ids}
        self.genesis: Genesis = make_genesis("fedsim", committee, balances, checkpoint_interval)
        self.binding = ChainBinding.of(self.genesis.hash)
        self.request_timeout = request_timeout
        self.nodes: dict[str, Node] = {}
        for i, ident in enumerate(ids[: members + extra]):
            name = f"n{i}"
            self.nodes[name] = Node(name, ident, self._machine(ident))
        self.by_pid = {n.pid: n for n in self.nodes.values()}
        self.clients = [ids[members + extra], ids[members + extra + 1]]
        self.client_nonce = {c.peer_id: 0 for c in self.clients}
        self.transfers: list[Transfer] = []
        self.queued: dict[str, list[tuple[Identity, str, dict[str, Any], int]]] = {}
        self.horizon = horizon
        self.heal_at = 0.0
        self.safety: list[str] = []
        self.executed: dict[int, bytes] = {}  # seq -> batch digest (agreement)
        self.stable: dict[int, bytes] = {}  # seq -> state digest
        self.refused: dict[str, int] = {}
        self.events = 0
        self.reconfigured: list[tuple[str, int]] = []
        self.notes: list[str] = []
        self.stats: dict[str, Any] = {}
        self._gen = 0
        for node in self.nodes.values():
            self.clock.schedule(self.rng.uniform(0, TICK_EVERY), (TICK, node.name, node.incarnation))
            self._feed(node, lambda m: m.on_timer("resume", 0.0, 0.0))

    def _machine(self, ident: Identity) -> FederationNode:
        return FederationNode(
            ident.peer_id, self.genesis, request_timeout=self.request_timeout,
            sign=self.binding.signer(ident.sign), verify=CachingVerifier(self.binding.verifier(default_verifier)),
        )

    # ------------------------------------------------------------------ what scenarios call

    def at(self, t: float, fn: Callable[[FedSim], None]) -> None:
        self.clock.schedule(t, (CALL, fn))

    def crash(self, name: str, at: float, restart_at: float | None) -> None:
        self.clock.schedule(at, (CRASH, name))
        if restart_at is not None:
            self.clock.schedule(restart_at, (RESTART, name))
        self.notes.append(f"{name} crashes at {at:.3f}" + (f", restarts at {restart_at:.3f}" if restart_at else ""))

    def vote(self, voter: str, op: str, peer: str) -> None:
        """A member's signed federation.join / federation.leave, submitted as its own client."""
        node = self.nodes[voter]
        self._submit(node.identity, op, {"peer": peer}, lane=1)

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
        for node in self.nodes.values():
            if node.pid == sender:
                if node.machine is not None:
                    self._feed(node, lambda m: m.on_local_request(req, self.clock.now) or [])
            else:  # to every node, as a client that does not know the committee would (followers drop it)
                self._transmit(sender, node.name, ("bundle", 0, encode_bundle([req])))
        self.clock.after(RETRANSMIT, (CALL, lambda s: s._send_request(t)))

    def _current_members(self) -> tuple[str, ...]:
        live = [n.machine for n in self.nodes.values() if n.machine is not None]
        best = max(live, key=lambda m: (m.epoch, m.position), default=None)
        return best.members if best is not None else self.genesis.committee

    # ------------------------------------------------------------------ transport

    def _transmit(self, src_pid: str, dst: str, payload: Any) -> None:
        src = self.by_pid[src_pid].name if src_pid in self.by_pid else src_pid
        for d in self.network.transmit(src, dst, self.clock.now):
            self.clock.after(d, (DELIVER, dst, src_pid, payload))

    def _deliver(self, dst: str, src_pid: str, payload: Any) -> None:
        if dst.startswith("client:"):
            self._client_reply(src_pid, payload)
            return
        node = self.nodes[dst]
        if node.machine is None:
            return
        kind = payload[0]
        now = self.clock.now
        if kind == "bundle":
            _, epoch, data = payload
            msgs = decode_bundle(data)
            others = [m for m in msgs if not isinstance(m, Reply)]
            if others:
                self._feed(node, lambda m: m.on_bundle(src_pid, epoch, others, now))
        else:
            _, typ, data = payload
            msg = decode_sync(typ, data)
            self._feed(node, lambda m: m.on_sync(src_pid, msg, now))

    def _client_reply(self, src_pid: str, reply: Reply) -> None:
        for t in self.transfers:
            if t.client == reply.client_id and t.ts == reply.timestamp and t.done_at is None:
                t.replies[src_pid] = reply.result
                same = [p for p, r in t.replies.items() if r == reply.result]
                if len(same) >= Committee(self._current_members()).weak:
                    t.done_at, t.receipt = self.clock.now, decode_receipt(reply.result)
                    self._next(t.client)

    # ------------------------------------------------------------------ driving a node

    def _feed(self, node: Node, call: Callable[[FederationNode], list[Any]]) -> None:
        assert node.machine is not None
        now = self.clock.now
        effects = call(node.machine)
        dump = False
        for e in effects:
            if isinstance(e, Journal):
                node.journal.append((e.kind, e.sender, e.payload, now))
            elif isinstance(e, Send) and (epoch := epoch_of(e.channel)) is not None:
                if isinstance(e.message, Reply):
                    self._transmit(node.pid, "client:" + e.to, e.message)  # a member's own lane too
                elif e.to in self.by_pid:
                    self._transmit(node.pid, self.by_pid[e.to].name, ("bundle", epoch, encode_bundle([e.message])))
            elif isinstance(e, Send):
                if e.to in self.by_pid:
                    self._transmit(node.pid, self.by_pid[e.to].name, ("sync", e.channel, encode_sync(e.message)))
            elif isinstance(e, ServeLog):
                entries = tuple((s, v, o, r) for s, (v, o, r) in sorted(node.batches.items()) if s > e.since)[: e.limit]
                msg = LogBatches(entries[:64])
                self._transmit(node.pid, self.by_pid[e.to].name, ("sync", message_type(msg), encode_sync(msg)))
            elif isinstance(e, FilledLog):
                for seq, view, ops, results in e.entries:
                    node.batches[seq] = (view, ops, results)
            elif isinstance(e, LocalReply):
                self._client_reply(node.pid, e.reply)
            elif isinstance(e, SetTimer):
                self._gen += 1
                node.timers[e.key] = (self._gen, e.at)
                self.clock.schedule(e.at, (TIMER, node.name, node.incarnation, e.key, self._gen))
            elif isinstance(e, CancelTimer):
                node.timers.pop(e.key, None)
            elif isinstance(e, Executed):
                self._executed(node, e)
            elif isinstance(e, StableCheckpoint):
                dump = True
                cur = self.stable.setdefault(e.seq, e.state_digest)
                if cur != e.state_digest:
                    self.safety.append(f"checkpoint: {node.name} made {e.seq} stable at another digest")
            elif isinstance(e, Installed):
                node.journal.clear()
                node.timers.clear()
                dump = True
            elif isinstance(e, Reconfigured):
                node.timers.clear()
                self.reconfigured.append((node.name, e.epoch))
            elif isinstance(e, Refused):
                self.refused[e.reason] = self.refused.get(e.reason, 0) + 1
        if dump:
            node.dump, node.journal = node.machine.dump(), []

    def _executed(self, node: Node, e: Executed) -> None:
        import msgpack

        digest = batch_digest(e.batch)
        cur = self.executed.setdefault(e.seq, digest)
        if cur != digest:
            self.safety.append(f"agreement: {node.name} executed another batch at {e.seq}")
        ops = msgpack.packb([[r.client_id, r.timestamp, r.op] for r in e.batch], use_bin_type=True)
        node.batches[e.seq] = (e.view, ops, msgpack.packb(list(e.results), use_bin_type=True))

    def _gap(self, node: Node) -> tuple[int, int] | None:
        m = node.machine
        assert m is not None
        missing = [s for s in range(1, m.position + 1) if s not in node.batches]
        if not missing:
            return None
        lo = missing[0]
        hi = lo
        while hi + 1 in missing and hi - lo < 63:
            hi += 1
        return lo, hi

    # ------------------------------------------------------------------ the loop

    def run(self) -> FedSim:
        while True:
            ev = self.clock.pop()
            if ev is None or self.clock.now > self.horizon:
                break
            self.events += 1
            kind = ev[0]
            if kind == DELIVER:
                self._deliver(ev[1], ev[2], ev[3])
            elif kind == TIMER:
                node = self.nodes[ev[1]]
                t = node.timers.get(ev[3])
                if node.machine is not None and node.incarnation == ev[2] and t is not None and t[0] == ev[4]:
                    del node.timers[ev[3]]
                    self._feed(node, lambda m: m.on_timer(ev[3], t[1], self.clock.now))
            elif kind == TICK:
                node = self.nodes[ev[1]]
                if node.machine is not None and node.incarnation == ev[2]:
                    gap = self._gap(node)
                    self._feed(node, lambda m: m.on_tick(self.clock.now, gap))
                    self.clock.after(TICK_EVERY * self.rng.uniform(0.8, 1.2), (TICK, node.name, node.incarnation))
            elif kind == CALL:
                ev[1](self)
            elif kind == CRASH:
                node = self.nodes[ev[1]]
                node.machine, node.incarnation = None, node.incarnation + 1
                node.timers.clear()
            elif kind == RESTART:
                self._restart(self.nodes[ev[1]])
            if self.safety:
                break
            if self.clock.now > self.heal_at and self._settled():
                break
        return self

    def _restart(self, node: Node) -> None:
        m = self._machine(node.identity)
        m.recover(node.dump, node.journal)
        node.machine = m
        self.clock.after(self.rng.uniform(0, TICK_EVERY), (TICK, node.name, node.incarnation))
        self._feed(node, lambda x: x.on_timer("resume", self.clock.now, self.clock.now))

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
