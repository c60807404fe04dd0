"""Drives this node's federation machine (protocols/federation.py) on trio: inputs in, effects out,
on one task. Everything that decides lives in the machine; this module does the I/O around it.

Every input (a peer's bundle or sync message, a client request, a timer expiry, a sync tick) goes
through one trio channel to one task, which feeds the machine whatever has queued up, then, before
anything leaves the node, commits the journal of replica inputs, the executed batches and their
receipts (and, at a stable checkpoint or an installed state, a new dump) to SQLite in one
transaction, and only then sends the machine's messages (one signed bundle per peer and epoch) and
delivers replies.

Persistence is a write-ahead log of inputs: the replica is deterministic, so its last full dump plus
the journal since rebuild exactly the state that stood behind every message it sent. After `kill -9`
the daemon replays them and carries on; what it missed while down it learns from its peers.

Every envelope's payload and every nested signature is bound to the genesis (protocols/pbft/binding.py).
Bundles carry their epoch in the envelope type ("bundle/<epoch>"), so messages of different
configurations never mix.

Time is CLOCK_BOOTTIME: monotonic and shared by every process on the host, so the times recorded
in the log before a crash still compare correctly with the clock after the restart.
"""

from __future__ import annotations

import logging
import random
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Union

import msgpack
import trio

from keys.envelope import EnvelopeError, ReplayGuard, SeqCounter, open_envelope, seal
from keys.identity import Identity
from node.federation.links import Links
from node.store import Store
from protocols.committee import Committee
from protocols.errors import ProtocolError
from protocols.federation import (
    DUMP_FORMAT,
    FedEffect,
    FederationNode,
    FilledLog,
    Installed,
    Journal,
    LocalReply,
    Note,
    Outgoing,
    Reconfigured,
    Refused,
    SendSync,
    ServeLog,
    client_peer,
)
from protocols.fedsync import MAX_LOG_BATCHES, MAX_LOG_BYTES, LogBatches, SyncMessage, decode_sync, encode_sync, message_type
from protocols.ledger import Genesis, Ledger, decode_receipt
from protocols.pbft import (
    CancelTimer,
    Executed,
    Message,
    Reply,
    Request,
    SetTimer,
    StableCheckpoint,
    StartViewChange,
    StateRestored,
    ViewChange,
    ViewInstalled,
)
from protocols.pbft.binding import ChainBinding
from protocols.pbft.bundle import DOMAIN, MAX_BUNDLE, MAX_BUNDLE_BYTES, decode_bundle, encode_bundle
from protocols.pbft.signing import CachingVerifier, default_verifier

log = logging.getLogger("sovereign.federation")

__all__ = ["DUMP_FORMAT", "Committed", "ReplicaDriver", "clock", "sign_bundle", "sign_sync"]

INBOX = 16_384  # queued inputs; beyond that peers' messages are dropped (they retransmit)
TURN = 1024  # inputs fed per turn before effects are flushed
MAX_FRAME = MAX_BUNDLE_BYTES + 4096
SYNC_INTERVAL = 0.5  # seconds between sync rounds


def clock() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# ---------------------------------------------------------------------- the inbox


@dataclass(frozen=True)
class _Bundle:
    sender: str
    epoch: int
    messages: tuple[Message, ...]


@dataclass(frozen=True)
class _Sync:
    sender: str
    message: SyncMessage


@dataclass(frozen=True)
class _Req:
    request: Request


@dataclass(frozen=True)
class _Timer:
    key: str
    due: float | None = None  # when it was set to fire (None: now)


@dataclass(frozen=True)
class _Tick:
    pass


_Input = Union[_Bundle, _Sync, _Req, _Timer, _Tick]


@dataclass(frozen=True)
class Committed:
    """What a committed batch means to the rest of the daemon."""

    seq: int
    view: int
    requests: tuple[Request, ...]
    results: tuple[bytes, ...]


# ---------------------------------------------------------------------- the wire


def bundle_type(epoch: int) -> str:
    return f"bundle/{epoch}"


def sign_bundle(
    identity: Identity, seqs: SeqCounter, messages: Sequence[Message], epoch: int, binding: ChainBinding
) -> list[bytes]:
    frames = []
    for i in range(0, len(messages), MAX_BUNDLE):
        payload = binding.seal(encode_bundle(messages[i : i + MAX_BUNDLE]))
        frames.append(seal(identity, domain=DOMAIN, type=bundle_type(epoch), seq=seqs.next(), ts=now_ms(), payload=payload))
    return frames


def sign_sync(identity: Identity, seqs: SeqCounter, msg: SyncMessage, binding: ChainBinding) -> bytes:
    payload = binding.seal(encode_sync(msg))
    return seal(identity, domain=DOMAIN, type=message_type(msg), seq=seqs.next(), ts=now_ms(), payload=payload)


def _epoch_of(kind: str) -> int | None:
    prefix, _, number = kind.partition("/")
    if prefix != "bundle" or not number.isdigit() or len(number) > 19:
        return None
    return int(number)


# ---------------------------------------------------------------------- the driver


class ReplicaDriver:
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
        self._seqs = SeqCounter()
        self._guard = ReplayGuard()
        self.binding = ChainBinding.of(genesis.hash)
        # Nested signatures are checked by the machine with this verifier; accepted ones are
        # remembered, so a VIEW-CHANGE re-checks only what we have not seen.
        self.machine = FederationNode(
            self.me, genesis, request_timeout=request_timeout,
            sign=self.binding.signer(identity.sign), verify=CachingVerifier(self.binding.verifier(default_verifier)),
        )
        self._requests_out: dict[str, list[Request]] = {}
        self._requests_ready = trio.Event()
        self._send_in, self._inbox = trio.open_memory_channel[_Input](INBOX)
        self._timers: dict[str, float] = {}
        self.links: Links | None = None
        self.dropped_inputs = 0
        self.view_changes: list[dict[str, Any]] = []  # recent installed views, newest last
        self.reconfigurations: list[dict[str, Any]] = []
        self._asked = -1  # the last view we logged asking for
        self._voted = -1  # the last view we logged voting for
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

    def primary(self) -> str:
        r = self.machine.replica
        return r.primary if r is not None else self.members[0]

    def _dump(self) -> bytes:
        return self.machine.dump()

    # ------------------------------------------------------------------ inputs

    def send_request(self, peer_id: str, request: Request) -> None:
        """Our client's request to a replica: queued, and sent with the others of this moment in
        one envelope (one signature here, one verification there, instead of one per request)."""
        self._requests_out.setdefault(peer_id, []).append(request)
        self._requests_ready.set()

    async def _send_requests(self) -> None:
        while True:
            await self._requests_ready.wait()
            self._requests_ready = trio.Event()
            await trio.sleep(0)  # let the submissions of this scheduling round join
            out, self._requests_out = self._requests_out, {}
            if self.links is None:
                continue
            for peer_id, requests in out.items():
                # The same sequence counter as every other envelope of ours: two counters of one
                # identity would collide in the receivers' replay guards.
                for data in sign_bundle(self.identity, self._seqs, requests, self.epoch, self.binding):
                    self.links.send(peer_id, data)

    def submit(self, request: Request) -> bool:
        """A request from this node's own client; False when we run no replica to take it."""
        if self.machine.replica is None:
            return False
        self._put(_Req(request))
        return True

    def on_frame(self, peer_id: str, data: bytes) -> None:
        """A frame from a peer's stream: verify, decode, queue. Called on the network's task.
        Replies go to our client at once; everything else goes to the machine, in order."""
        try:
            env = open_envelope(
                data, domain=DOMAIN, now_ms=now_ms(), guard=self._guard, max_size=MAX_FRAME, expected_sender=peer_id
            )
            payload = self.binding.open(env.payload)
            epoch = _epoch_of(env.type)
            if epoch is None:
                self._put(_Sync(peer_id, decode_sync(env.type, payload)))
                return
            messages = decode_bundle(payload)
        except (EnvelopeError, ProtocolError) as exc:
            self._on_refused(peer_id, exc)
            return
        others: list[Message] = []
        for m in messages:
            if isinstance(m, Reply):
                if peer_id in self.members and m.sender == peer_id:
                    self._on_reply(peer_id, m)
            else:
                others.append(m)
        if others:
            self._put(_Bundle(peer_id, epoch, tuple(others)))

    def _put(self, item: _Input) -> None:
        try:
            self._send_in.send_nowait(item)
        except trio.WouldBlock:
            self.dropped_inputs += 1

    def _feed(self, item: _Input, now: float) -> list[FedEffect]:
        m = self.machine
        if isinstance(item, _Bundle):
            return m.on_bundle(item.sender, item.epoch, item.messages, now)
        if isinstance(item, _Sync):
            return m.on_sync(item.sender, item.message, now)
        if isinstance(item, _Req):
            return m.on_local_request(item.request, now) or []
        if isinstance(item, _Timer):
            return m.on_timer(item.key, now if item.due is None else item.due, now)
        return m.on_tick(now, self._gap())

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
            await trio.sleep(SYNC_INTERVAL * random.uniform(0.8, 1.2))
            self._put(_Tick())

    async def run(self, links: Links, connected: Callable[[str], bool] = lambda peer: True) -> None:
        self.links = links
        if self.machine.replica is not None:
            await self._await_quorum(connected, 10.0)
        self._put(_Timer("resume"))  # re-arms the timers that died with the previous process
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._tick)
            nursery.start_soon(self._send_requests)
            while True:
                items: list[_Input] = []
                deadline = min(self._timers.values(), default=None)
                if deadline is None:
                    items.append(await self._inbox.receive())
                else:
                    with trio.move_on_after(max(0.0, deadline - clock())):
                        items.append(await self._inbox.receive())
                while len(items) < TURN:
                    try:
                        items.append(self._inbox.receive_nowait())
                    except trio.WouldBlock:
                        break
                now = clock()
                for key in [k for k, at in self._timers.items() if at <= now]:
                    items.append(_Timer(key, self._timers.pop(key)))
                self._turn(items, now)
                await trio.sleep(0)  # let the network tasks run between turns

    def _turn(self, items: list[_Input], now: float) -> None:
        """Feed the machine, then persist, then let the effects out: nothing leaves the node before
        the inputs behind it are durable."""
        journal: list[tuple[str, str, bytes, float]] = []
        outbox: dict[tuple[str, int], list[Message]] = defaultdict(list)
        sync_out: list[SendSync] = []
        local_replies: list[Reply] = []
        batches: list[tuple[int, int, int, bytes, bytes]] = []
        txs: list[tuple[str, int, int, str, str, str]] = []
        committed: list[Committed] = []
        dump = False
        for item in items:
            for e in self._feed(item, now):
                if isinstance(e, Journal):
                    journal.append((e.kind, e.sender, e.payload, now))
                elif isinstance(e, Outgoing):
                    outbox[(e.to, e.epoch)].append(e.message)
                    self._log_view_change(e.message)
                elif isinstance(e, SendSync):
                    sync_out.append(e)
                elif isinstance(e, ServeLog):
                    sync_out.append(SendSync(e.to, LogBatches(self._log_slice(e.since, e.limit))))
                elif isinstance(e, LocalReply):
                    local_replies.append(e.reply)
                elif isinstance(e, SetTimer):
                    self._timers[e.key] = e.at
                elif isinstance(e, CancelTimer):
                    self._timers.pop(e.key, None)
                elif isinstance(e, Executed):
                    self._record(e, batches, txs)
                    committed.append(Committed(e.seq, e.view, e.batch, e.results))
                elif isinstance(e, StableCheckpoint):
                    dump = True
                    self._publish("federation.checkpoint", {"seq": e.seq, "digest": e.state_digest.hex()})
                elif isinstance(e, Installed):
                    # A synced state replaced ours: what this turn did before it belonged to the
                    # old state (its inputs are superseded by the dump, its messages are moot).
                    journal, outbox, local_replies, dump = [], defaultdict(list), [], True
                    self._timers.clear()
                    log.info("sync: installed the state at %d (epoch %d); this node is a %s", e.seq, e.epoch, e.role)
                    self._publish("federation.synced", {"seq": e.seq, "epoch": e.epoch, "role": e.role})
                elif isinstance(e, Reconfigured):
                    self._timers.clear()
                    entry = {"epoch": e.epoch, "members": list(e.members), "at_ms": now_ms(), "role": e.role}
                    self.reconfigurations = [*self.reconfigurations[-15:], entry]
                    log.info("committee changed at %d: %d members; this node is a %s", e.epoch, len(e.members), e.role)
                    self._publish("federation.reconfigured", entry)
                elif isinstance(e, ViewInstalled):
                    log.info("view %d installed, primary %s", e.view, e.primary)
                    entry = {"view": e.view, "primary": e.primary, "at_ms": now_ms()}
                    self.view_changes = [*self.view_changes[-31:], entry]
                    self._publish("federation.view", entry)
                elif isinstance(e, StateRestored):
                    log.info("state transfer installed the checkpoint at %d", e.seq)
                    self._publish("federation.state_restored", {"seq": e.seq, "digest": e.state_digest.hex()})
                elif isinstance(e, FilledLog):
                    for seq, view, ops, results in e.entries:
                        self._record_rows(seq, view, ops, results, batches, txs)
                    log.info("log: filled %d batches from %d to %d", len(e.entries), e.entries[0][0], e.entries[-1][0])
                elif isinstance(e, Refused):
                    if e.what == "pbft":
                        log.warning("pbft: refused a message from %s: %s", e.peer, e.reason)
                    self._on_refused(e.peer, ProtocolError(e.reason, e.what))
                elif isinstance(e, Note):
                    getattr(log, e.level)("%s", e.text)
        self.store.pbft_commit(journal, batches, txs, (self.position, self.machine.dump()) if dump else None)
        # Only now, with the promises behind them on disk, may messages leave.
        assert self.links is not None
        for (peer, epoch), messages in outbox.items():
            for data in sign_bundle(self.identity, self._seqs, messages, epoch, self.binding):
                self.links.send(peer, data)
        for s in sync_out:
            self.links.send(s.to, sign_sync(self.identity, self._seqs, s.message, self.binding))
        for reply in local_replies:
            self._on_reply(self.me, reply)
        for c in committed:
            self._on_committed(c)

    def _log_view_change(self, m: Message) -> None:
        """Our own votes and VIEW-CHANGEs, once per view (they are repeated to every peer)."""
        if isinstance(m, StartViewChange) and m.sender == self.me and m.new_view > self._voted:
            self._voted = m.new_view
            log.info("voting for view %d (a view change starts once 2f+1 members vote for it)", m.new_view)
        elif isinstance(m, ViewChange) and m.sender == self.me and m.new_view != self._asked:
            self._asked = m.new_view
            r = self.machine.replica
            log.info(
                "asking for view %d (executed through %d, %d requests waiting)",
                m.new_view, r.last_executed if r else -1, len(r.pending) if r else 0,
            )

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
        self, e: Executed, batches: list[tuple[int, int, int, bytes, bytes]], txs: list[tuple[str, int, int, str, str, str]]
    ) -> None:
        ops = msgpack.packb([[r.client_id, r.timestamp, r.op] for r in e.batch], use_bin_type=True)
        results = msgpack.packb(list(e.results), use_bin_type=True)
        batches.append((e.seq, e.view, now_ms(), ops, results))
        self._tx_rows(e.seq, [r.client_id for r in e.batch], list(e.results), txs)

    def _record_rows(
        self, seq: int, view: int, ops: bytes, results: bytes,
        batches: list[tuple[int, int, int, bytes, bytes]], txs: list[tuple[str, int, int, str, str, str]],
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
    def _tx_rows(seq: int, clients: list[str], results: list[bytes], txs: list[tuple[str, int, int, str, str, str]]) -> None:
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

