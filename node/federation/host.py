"""The federation's host on the protocol runtime (node/runtime): what the federation machine
(protocols/federation.py) needs of the daemon besides what the runtime does for every machine.

The runtime feeds the machine and sends, verifies and seals its messages; this module handles the
federation's own effects and its persistence:

- the store: the journal of replica inputs, the executed batches and their receipts, and at a
  stable checkpoint or an installed state a new dump, in one SQLite transaction per turn, before
  anything of that turn leaves the node (node/runtime/driver.py's order);
- recovery at start: the last dump plus the journal since, replayed by the machine;
- the log-fill answers (our committed batches, read from the store) and the batches filled in;
- our own ledger client's requests, bundled per replica in one envelope each, and the replies,
  handed to the client as they arrive, before they queue behind the machine's inputs;
- the periodic sync round, the events (federation.view, .reconfigured, .synced, ...) and the
  log lines for them.

Persistence is a write-ahead log of inputs: the replica is deterministic, so its last full dump plus
the journal since rebuild exactly the state that stood behind every message it sent. After `kill -9`
the daemon replays them and carries on; what it missed while down it learns from its peers.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack
import trio

from keys.identity import Identity
from node.runtime import Call, Runtime, Timer, Turn, now_ms
from node.runtime.links import Links
from node.store import Store
from protocols.committee import Committee
from protocols.errors import ProtocolError
from protocols.federation import (
    DUMP_FORMAT,
    FederationNode,
    FederationWire,
    FilledLog,
    Installed,
    LocalReply,
    Reconfigured,
    ServeLog,
    Tick,
    bundle_channel,
    client_peer,
    epoch_of,
    send_sync,
)
from protocols.fedsync import MAX_LOG_BATCHES, MAX_LOG_BYTES, LogBatches
from protocols.ledger import Genesis, Ledger, decode_receipt
from protocols.pbft import Executed, Reply, Request, StableCheckpoint, StateRestored, ViewInstalled
from protocols.pbft.binding import ChainBinding
from protocols.pbft.signing import CachingVerifier, default_verifier

log = logging.getLogger("sovereign.federation")

__all__ = ["DUMP_FORMAT", "Committed", "FederationHost"]

SYNC_INTERVAL = 0.5  # seconds between sync rounds

Batch = tuple[int, int, int, bytes, bytes]  # (seq, view, executed_ms, ops, results)
TxRow = tuple[str, int, int, str, str, str]  # (tx_id, seq, idx, sender, status, reason)


@dataclass(frozen=True)
class Committed:
    """What a committed batch means to the rest of the daemon."""

    seq: int
    view: int
    requests: tuple[Request, ...]
    results: tuple[bytes, ...]


@dataclass
class _Rows:
    """The federation's part of one turn: what it writes to the store and tells the daemon."""

    batches: list[Batch]
    txs: list[TxRow]
    committed: list[Committed]
    replies: list[Reply]
    dump: bool = False


class FederationHost:
    def __init__(
        self,
        identity: Identity,
        genesis: Genesis,
        store: Store,
        *,
        request_timeout: float,
        on_reply: Callable[[str, Reply], None],
        on_committed: Callable[[Committed], None],
        publish: Callable[[str, dict[str, Any]], None],
        on_refused: Callable[[str, Exception], None],
    ) -> None:
        self.identity = identity
        self.me = identity.peer_id
        self.genesis = genesis
        self.store = store
        self.request_timeout = request_timeout
        self._on_reply = on_reply
        self._on_committed = on_committed
        self._publish = publish
        self._on_refused = on_refused
        self._random = random.Random()
        self.binding = ChainBinding.of(genesis.hash)
        self.wire = FederationWire(self.binding)
        # Nested signatures are checked by the machine with this verifier; accepted ones are
        # remembered, so a VIEW-CHANGE re-checks only what we have not seen.
        self.machine = FederationNode(
            self.me, genesis, request_timeout=request_timeout,
            sign=self.binding.signer(identity.sign), verify=CachingVerifier(self.binding.verifier(default_verifier)),
        )
        self.runtime = Runtime(
            self.machine, self.wire, identity, host=self, emit=publish,
            on_refused=lambda peer, where, exc: on_refused(peer, exc), prefilter=self._take_replies,
        )
        self._handlers: dict[type, Callable[[Any, Turn], None]] = {
            LocalReply: self._local_reply, ServeLog: self._serve_log, Executed: self._executed,
            FilledLog: self._filled, StableCheckpoint: self._stable, Installed: self._installed,
            Reconfigured: self._reconfigured, ViewInstalled: self._view, StateRestored: self._restored,
        }
        self._requests_out: dict[str, list[Request]] = {}
        self._requests_ready = trio.Event()
        self.links: Links | None = None
        self.view_changes: list[dict[str, Any]] = []  # recent installed views, newest last
        self.reconfigurations: list[dict[str, Any]] = []
        self._log_complete = 0  # every batch up to here is in our store
        state, inputs = store.pbft_load()
        recovered = self.machine.recover(state, inputs)
        if recovered:
            log.info("%s", recovered)

    # ------------------------------------------------------------------ what others read

    @property
    def ledger(self) -> Ledger:
        return self.machine.ledger

    @property
    def replica(self) -> Any:
        return self.machine.replica

    @property
    def epoch(self) -> int:
        return self.machine.epoch

    @property
    def members(self) -> tuple[str, ...]:
        return self.machine.members

    @property
    def role(self) -> str:
        return self.machine.role

    @property
    def position(self) -> int:
        return self.machine.position

    @property
    def dropped_inputs(self) -> int:
        return self.runtime.dropped_inputs

    def primary(self) -> str:
        r = self.machine.replica
        return r.primary if r is not None else self.members[0]

    # ------------------------------------------------------------------ inputs

    def on_frame(self, peer_id: str, data: bytes) -> None:
        self.runtime.on_frame(peer_id, data)

    def submit(self, request: Request) -> bool:
        """A request from this node's own client; False when we run no replica to take it."""
        if self.machine.replica is None:
            return False
        self.runtime.call_nowait(request)
        return True

    def send_request(self, peer_id: str, request: Request) -> None:
        """Our client's request to a replica: queued, and sent with the others of this moment in
        one envelope (one signature here, one verification there, instead of one per request)."""
        self._requests_out.setdefault(peer_id, []).append(request)
        self._requests_ready.set()

    def _take_replies(self, peer: str, channel: str, messages: Sequence[Any]) -> Sequence[Any]:
        """Replies go to our client at once (a member's own only); the rest queue for the machine."""
        if epoch_of(channel) is None or not any(isinstance(m, Reply) for m in messages):
            return messages
        member = peer in self.members
        others = []
        for m in messages:
            if isinstance(m, Reply):
                if member and m.sender == peer:
                    self._on_reply(peer, m)
            else:
                others.append(m)
        return others

    async def _send_requests(self) -> None:
        while True:
            await self._requests_ready.wait()
            self._requests_ready = trio.Event()
            await trio.sleep(0)  # let the submissions of this scheduling round join
            out, self._requests_out = self._requests_out, {}
            if self.links is None:
                continue
            channel = bundle_channel(self.epoch)
            for peer_id, requests in out.items():
                # Sealed by the runtime: one sequence counter for every envelope of this domain.
                for payload in self.wire.encode(channel, requests):
                    self.links.send(peer_id, self.runtime.seal(channel, payload))

    def _gap(self) -> tuple[int, int] | None:
        """The first run of batches our store lacks below our position (state transfer and sync
        jump over them), at most MAX_LOG_BATCHES long."""
        gap = self.store.ledger_gap(self.position, self._log_complete)
        if gap is None:
            self._log_complete = self.position
            return None
        lo, hi = gap
        self._log_complete = lo - 1
        return lo, min(hi, lo + MAX_LOG_BATCHES - 1)

    # ------------------------------------------------------------------ the loop

    async def _await_quorum(self, connected: Callable[[str], bool], timeout: float) -> None:
        """At start, give discovery a moment to connect us to a quorum: a replica that starts its
        timers while it cannot reach anyone would only vote for view changes nobody joins."""
        others = [m for m in self.members if m != self.me]
        need = Committee(self.members).quorum - 1  # a quorum, counting ourselves
        with trio.move_on_after(timeout):
            while sum(1 for m in others if connected(m)) < need:
                await trio.sleep(0.05)

    async def _tick(self) -> None:
        while True:
            await trio.sleep(SYNC_INTERVAL * self._random.uniform(0.8, 1.2))
            self.runtime.put(Call(0, Tick(self._gap())))

    async def run(self, links: Links, connected: Callable[[str], bool] = lambda peer: True) -> None:
        self.links = links
        if self.machine.replica is not None:
            await self._await_quorum(connected, 10.0)
        self.runtime.put(Timer("resume"))  # re-arms the timers that died with the previous process
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._tick)
            nursery.start_soon(self._send_requests)
            await self.runtime.run(links.send)

    def turn(self, items: Sequence[Any], now: float) -> None:
        """One runtime turn (tests drive the machine this way, without the loop)."""
        if self.runtime.sink is None and self.links is not None:
            self.runtime.sink = self.links.send
        self.runtime.turn(items, now)

    # ------------------------------------------------------------------ the runtime's host

    def _rows(self, turn: Turn) -> _Rows:
        rows = turn.host.get("federation")
        if rows is None:
            rows = turn.host["federation"] = _Rows([], [], [], [])
        assert isinstance(rows, _Rows)
        return rows

    def handle(self, effect: Any, turn: Turn) -> None:
        self._handlers[type(effect)](effect, turn)

    def commit(self, turn: Turn) -> None:
        rows = turn.host.get("federation")
        if rows is None:
            if turn.journal:
                self.store.pbft_commit(turn.journal, [], [], None)
            return
        dump = (self.position, self.machine.dump()) if rows.dump else None
        self.store.pbft_commit(turn.journal, rows.batches, rows.txs, dump)

    def after(self, turn: Turn) -> None:
        rows = turn.host.get("federation")
        if rows is None:
            return
        for reply in rows.replies:
            self._on_reply(self.me, reply)
        for c in rows.committed:
            self._on_committed(c)

    def _local_reply(self, e: LocalReply, turn: Turn) -> None:
        self._rows(turn).replies.append(e.reply)

    def _serve_log(self, e: ServeLog, turn: Turn) -> None:
        s = send_sync(e.to, LogBatches(self._log_slice(e.since, e.limit)))
        turn.send(s.to, s.channel, s.message)

    def _executed(self, e: Executed, turn: Turn) -> None:
        rows = self._rows(turn)
        self._record(e, rows.batches, rows.txs)
        rows.committed.append(Committed(e.seq, e.view, e.batch, e.results))

    def _filled(self, e: FilledLog, turn: Turn) -> None:
        rows = self._rows(turn)
        for seq, view, ops, results in e.entries:
            self._record_rows(seq, view, ops, results, rows.batches, rows.txs)
        log.info("log: filled %d batches from %d to %d", len(e.entries), e.entries[0][0], e.entries[-1][0])

    def _stable(self, e: StableCheckpoint, turn: Turn) -> None:
        self._rows(turn).dump = True
        self._publish("federation.checkpoint", {"seq": e.seq, "digest": e.state_digest.hex()})

    def _installed(self, e: Installed, turn: Turn) -> None:
        # A synced state replaced ours: what this turn did before it belonged to the old state (its
        # inputs are superseded by the dump, its PBFT messages are moot; sync answers still go).
        rows = self._rows(turn)
        turn.journal.clear()
        for key in [k for k in turn.sends if epoch_of(k[1]) is not None]:
            del turn.sends[key]
        rows.replies.clear()
        rows.dump = True
        self.runtime.timers.clear()
        log.info("sync: installed the state at %d (epoch %d); this node is a %s", e.seq, e.epoch, e.role)
        self._publish("federation.synced", {"seq": e.seq, "epoch": e.epoch, "role": e.role})

    def _reconfigured(self, e: Reconfigured, turn: Turn) -> None:
        self.runtime.timers.clear()
        entry = {"epoch": e.epoch, "members": list(e.members), "at_ms": now_ms(), "role": e.role}
        self.reconfigurations = [*self.reconfigurations[-15:], entry]
        log.info("committee changed at %d: %d members; this node is a %s", e.epoch, len(e.members), e.role)
        self._publish("federation.reconfigured", entry)

    def _view(self, e: ViewInstalled, turn: Turn) -> None:
        log.info("view %d installed, primary %s", e.view, e.primary)
        entry = {"view": e.view, "primary": e.primary, "at_ms": now_ms()}
        self.view_changes = [*self.view_changes[-31:], entry]
        self._publish("federation.view", entry)

    def _restored(self, e: StateRestored, turn: Turn) -> None:
        log.info("state transfer installed the checkpoint at %d", e.seq)
        self._publish("federation.state_restored", {"seq": e.seq, "digest": e.state_digest.hex()})

    # ------------------------------------------------------------------ the store

    def _log_slice(self, since: int, limit: int) -> tuple[tuple[int, int, bytes, bytes], ...]:
        out: list[tuple[int, int, bytes, bytes]] = []
        size = 0
        for seq, view, _ms, ops, results in self.store.ledger_batches(since, min(limit, MAX_LOG_BATCHES)):
            size += len(ops) + len(results)
            if out and size > MAX_LOG_BYTES:
                break
            out.append((seq, view, ops, results))
        return tuple(out)

    def _record(
        self, e: Executed, batches: list[Batch], txs: list[TxRow]
    ) -> None:
        ops = msgpack.packb([[r.client_id, r.timestamp, r.op] for r in e.batch], use_bin_type=True)
        results = msgpack.packb(list(e.results), use_bin_type=True)
        batches.append((e.seq, e.view, now_ms(), ops, results))
        self._tx_rows(e.seq, [r.client_id for r in e.batch], list(e.results), txs)

    def _record_rows(
        self, seq: int, view: int, ops: bytes, results: bytes,
        batches: list[Batch], txs: list[TxRow],
    ) -> None:
        """A batch fetched from peers (f+1 sent these exact bytes): store it and index its receipts."""
        try:
            reqs = msgpack.unpackb(ops, raw=False)
            res = msgpack.unpackb(results, raw=False)
            clients = [str(r[0]) for r in reqs]
        except Exception:  # noqa: BLE001 - f+1 members agree on bytes we cannot read: keep them, index nothing
            log.error("log: the agreed batch at %d does not decode", seq)
            clients, res = [], []
        batches.append((seq, view, now_ms(), ops, results))
        if isinstance(res, list) and all(isinstance(x, bytes) for x in res):
            self._tx_rows(seq, clients, res, txs)

    @staticmethod
    def _tx_rows(seq: int, clients: list[str], results: list[bytes], txs: list[TxRow]) -> None:
        for i, (client, result) in enumerate(zip(clients, results)):
            if not result:
                continue  # a duplicate ordering: the first execution holds the receipt
            try:
                r = decode_receipt(result)
            except ProtocolError:
                continue
            if r.tx_id:
                txs.append((r.tx_id, seq, i, client_peer(client), r.status, r.reason))

    # ------------------------------------------------------------------ introspection

    def status(self) -> dict[str, Any]:
        m = self.machine
        base: dict[str, Any] = {
            "epoch": m.epoch,
            "members": list(m.members),
            "f": m.committee.f,
            "pending_members": list(m.ledger.pending_committee) if m.ledger.pending_committee else None,
            "state_digest": m.ledger.digest().hex(),
            "dropped_inputs": self.dropped_inputs,
            "evidence": m.evidence,
            "reconfigurations": self.reconfigurations,
            "view_changes": list(self.view_changes),
        }
        r = m.replica
        if r is None:
            # A follower takes no part in views; its state is the last stable checkpoint it synced.
            base.update(
                {
                    "last_executed": m.synced, "view": None, "view_active": None, "view_vote": None, "primary": None,
                    "stable_checkpoint": None, "halted_for_reconfiguration": False, "lag": None, "log_size": 0,
                    "sync": {
                        "offers": {p[-8:]: [o.epoch, o.seq] for p, o in m.syncer.offers.items()},
                        "attempts": m.syncer.attempts,
                    },
                }
            )
            return base
        seq, digest = r.stable_checkpoint
        base.update(
            {
                "view": r.view,
                "view_active": r.active,
                # The view we voted to move to, while no quorum has joined us (else null).
                "view_vote": r.vote if r.vote > r.view else None,
                "primary": r.primary,
                "last_executed": r.last_executed,
                "stable_checkpoint": {"seq": seq, "digest": digest.hex()},
                "halted_for_reconfiguration": r.halted,
                "lag": max(0, r.max_seen - r.last_executed),
                "log_size": r.log_size(),
            }
        )
        return base

