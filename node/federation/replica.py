"""Drives one PBFT replica (protocols/pbft) in the daemon: inputs in, effects out, on one task.

Every input (a peer's message, a client request, a timer expiry) goes through one trio channel to
one task, which feeds the replica whatever has queued up, then, before anything leaves the node,
commits the inputs, the executed batches and their receipts to SQLite in one transaction, and only
then sends the replica's messages (one signed bundle per peer) and delivers replies.

Persistence is a write-ahead log of inputs: the replica is deterministic, so its last full dump
(taken at each stable checkpoint) plus the inputs fed since rebuild exactly the state that stood
behind every message it sent. After `kill -9` the daemon replays them and carries on; what it
missed while down it learns from its peers (STATUS retransmission or state transfer).

Time is CLOCK_BOOTTIME: monotonic and shared by every process on the host, so the times recorded
in the log before a crash still compare correctly with the clock after the restart.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Union

import msgpack
import trio

from keys.envelope import EnvelopeError, ReplayGuard, SeqCounter, open_envelope, seal
from keys.identity import Identity
from node.federation.links import Links
from node.store import Store
from protocols.errors import ProtocolError
from protocols.ledger import Genesis, Ledger, decode_receipt
from protocols.pbft import (
    Broadcast,
    CancelTimer,
    Effect,
    Evidence,
    Executed,
    Message,
    PbftConfig,
    Replica,
    Reply,
    Request,
    Send,
    SendReply,
    SetTimer,
    StableCheckpoint,
    StateRestored,
    ViewInstalled,
    decode_message,
    encode_message,
)
from protocols.pbft.bundle import DOMAIN, MAX_BUNDLE, MAX_BUNDLE_BYTES, decode_bundle, encode_bundle

log = logging.getLogger("sovereign.federation")

INBOX = 16_384  # queued inputs; beyond that peers' messages are dropped (they retransmit)
TURN = 1024  # inputs fed per turn before effects are flushed
MAX_FRAME = MAX_BUNDLE_BYTES + 4096


def clock() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def client_peer(client_id: str) -> str:
    """PBFT client ids are "<peer id>/<lane>": one outstanding request per lane."""
    return client_id.split("/", 1)[0]


@dataclass(frozen=True)
class _Msg:
    sender: str
    message: Message


@dataclass(frozen=True)
class _Req:
    request: Request


@dataclass(frozen=True)
class _Timer:
    key: str


_Input = Union[_Msg, _Req, _Timer]


@dataclass(frozen=True)
class Committed:
    """What a committed batch means to the rest of the daemon."""

    seq: int
    view: int
    requests: tuple[Request, ...]
    results: tuple[bytes, ...]


def sign_bundle(identity: Identity, seqs: SeqCounter, messages: list[Message]) -> list[bytes]:
    frames = []
    for i in range(0, len(messages), MAX_BUNDLE):
        payload = encode_bundle(messages[i : i + MAX_BUNDLE])
        frames.append(
            seal(identity, domain=DOMAIN, type="bundle", seq=seqs.next(), ts=time.time_ns() // 1_000_000, payload=payload)
        )
    return frames


def open_bundle(data: bytes, peer_id: str, guard: ReplayGuard | None) -> list[Message]:
    """Verify a peer's frame and decode its messages; raises EnvelopeError or ProtocolError."""
    env = open_envelope(
        data, domain=DOMAIN, now_ms=time.time_ns() // 1_000_000, guard=guard, max_size=MAX_FRAME, expected_sender=peer_id
    )
    return decode_bundle(env.payload)


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
        self.config = PbftConfig(
            members=genesis.committee,
            checkpoint_interval=genesis.checkpoint_interval,
            window=max(256, 2 * genesis.checkpoint_interval),
            max_batch=128,
            request_timeout=request_timeout,
        )
        self.ledger = Ledger(genesis)
        self._on_reply = on_reply
        self._on_committed = on_committed
        self._publish = publish
        self._on_refused = on_refused
        self._seqs = SeqCounter()
        self._send_in, self._inbox = trio.open_memory_channel[_Input](INBOX)
        self._timers: dict[str, float] = {}
        self.links: Links | None = None
        self.replica = self._recover()
        self.dropped_inputs = 0
        self.evidence = 0
        self.view_changes: list[dict[str, Any]] = []  # recent installed views, newest last
        self._guard = ReplayGuard()

    # ------------------------------------------------------------------ recovery

    def _recover(self) -> Replica:
        state, inputs = self.store.pbft_load()
        if state is None:
            replica = Replica(self.me, self.config, self.ledger)
        else:
            replica = Replica.recover(self.me, self.config, self.ledger, state)
        for kind, sender, payload, at in inputs:
            item = self._decode_input(kind, sender, payload)
            self._feed(replica, item, at)  # effects were performed before the crash (or lost)
        replica.resume()
        if state is not None or inputs:
            log.info(
                "pbft recovered: view %d, executed through %d, stable checkpoint %d (%d inputs replayed)",
                replica.view, replica.last_executed, replica.low_watermark, len(inputs),
            )
        return replica

    @staticmethod
    def _decode_input(kind: str, sender: str, payload: bytes) -> _Input:
        # Our own log: decoding errors mean a corrupt store, which must stop the daemon loudly.
        if kind == "timer":
            return _Timer(payload.decode())
        msg = decode_message(payload)
        if kind == "request":
            assert isinstance(msg, Request)
            return _Req(msg)
        return _Msg(sender, msg)

    @staticmethod
    def _encode_input(item: _Input, now: float) -> tuple[str, str, bytes, float]:
        if isinstance(item, _Timer):
            return ("timer", "", item.key.encode(), now)
        if isinstance(item, _Req):
            return ("request", "", encode_message(item.request), now)
        return ("message", item.sender, encode_message(item.message), now)

    @staticmethod
    def _feed(replica: Replica, item: _Input, now: float) -> list[Effect]:
        if isinstance(item, _Msg):
            return replica.on_message(item.sender, item.message, now)
        if isinstance(item, _Req):
            return replica.on_request(item.request, now)
        return replica.on_timer(item.key, now)

    # ------------------------------------------------------------------ inputs

    def submit(self, request: Request) -> None:
        """A request from this node's own client."""
        self._put(_Req(request))

    def on_frame(self, peer_id: str, data: bytes) -> None:
        """A frame from a peer's stream: verify, decode, queue. Called on the network's task."""
        try:
            messages = open_bundle(data, peer_id, self._guard)
        except (EnvelopeError, ProtocolError) as exc:
            self._on_refused(peer_id, exc)
            return
        members = self.config.members
        for m in messages:
            if isinstance(m, Reply):
                if peer_id in members and m.sender == peer_id:
                    self._on_reply(peer_id, m)
            elif isinstance(m, Request):
                if peer_id in members:
                    self._put(_Msg(peer_id, m))  # forwarded by a replica
                elif client_peer(m.client_id) == peer_id:
                    self._put(_Req(m))  # from the client itself: its signature covers the envelope
                else:
                    self._on_refused(peer_id, ProtocolError("not-the-client", f"request for {m.client_id}"))
            elif peer_id in members:
                self._put(_Msg(peer_id, m))
            else:
                self._on_refused(peer_id, ProtocolError("not-a-member", f"{type(m).__name__} from a non-member"))
                return

    def _put(self, item: _Input) -> None:
        try:
            self._send_in.send_nowait(item)
        except trio.WouldBlock:
            self.dropped_inputs += 1

    # ------------------------------------------------------------------ the loop

    async def run(self, links: Links) -> None:
        self.links = links
        self._put(_Timer("resume"))  # re-arms the timers that died with the previous process
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
                del self._timers[key]
                items.append(_Timer(key))
            self._turn(items, now)
            await trio.sleep(0)  # let the network tasks run between turns

    def _turn(self, items: list[_Input], now: float) -> None:
        logged = []
        effects: list[Effect] = []
        for item in items:
            logged.append(self._encode_input(item, now))
            effects += self._feed(self.replica, item, now)
        outbox: dict[str, list[Message]] = defaultdict(list)
        local_replies: list[Reply] = []
        batches: list[tuple[int, int, int, bytes, bytes]] = []
        txs: list[tuple[str, int, int, str, str, str]] = []
        committed: list[Committed] = []
        dump = None
        others = [m for m in self.config.members if m != self.me]
        for e in effects:
            if isinstance(e, Send):
                outbox[e.to].append(e.message)
            elif isinstance(e, Broadcast):
                for peer in others:
                    outbox[peer].append(e.message)
            elif isinstance(e, SendReply):
                peer = client_peer(e.client_id)
                if peer == self.me:
                    local_replies.append(e.reply)
                else:
                    outbox[peer].append(e.reply)
            elif isinstance(e, SetTimer):
                self._timers[e.key] = e.at
            elif isinstance(e, CancelTimer):
                self._timers.pop(e.key, None)
            elif isinstance(e, Executed):
                self._record(e, batches, txs)
                committed.append(Committed(e.seq, e.view, e.batch, e.results))
            elif isinstance(e, StableCheckpoint):
                dump = e.seq
                self._publish("federation.checkpoint", {"seq": e.seq, "digest": e.state_digest.hex()})
            elif isinstance(e, ViewInstalled):
                log.info("view %d installed, primary %s", e.view, e.primary)
                entry = {"view": e.view, "primary": e.primary, "at_ms": time.time_ns() // 1_000_000}
                self.view_changes = [*self.view_changes[-31:], entry]
                self._publish("federation.view", entry)
            elif isinstance(e, StateRestored):
                log.info("state transfer installed the checkpoint at %d", e.seq)
                self._publish("federation.state_restored", {"seq": e.seq, "digest": e.state_digest.hex()})
            elif isinstance(e, Evidence):
                self.evidence += 1
                log.warning("pbft: refused a message from %s: %s", e.sender, e.reason)
                self._on_refused(e.sender, ProtocolError(e.reason, "pbft"))
        self.store.pbft_commit(
            logged, batches, txs, (dump, self.replica.persistent_state()) if dump is not None else None
        )
        # Only now, with the promises behind them on disk, may messages leave.
        assert self.links is not None
        for peer, messages in outbox.items():
            for data in sign_bundle(self.identity, self._seqs, messages):
                self.links.send(peer, data)
        for reply in local_replies:
            self._on_reply(self.me, reply)
        for c in committed:
            self._on_committed(c)

    def _record(
        self, e: Executed, batches: list[tuple[int, int, int, bytes, bytes]], txs: list[tuple[str, int, int, str, str, str]]
    ) -> None:
        ops = msgpack.packb([[r.client_id, r.timestamp, r.op] for r in e.batch], use_bin_type=True)
        results = msgpack.packb(list(e.results), use_bin_type=True)
        batches.append((e.seq, e.view, time.time_ns() // 1_000_000, ops, results))
        for i, (req, result) in enumerate(zip(e.batch, e.results)):
            if not result:
                continue  # a duplicate ordering: the first execution holds the receipt
            try:
                r = decode_receipt(result)
            except ProtocolError:
                continue
            if r.tx_id:
                txs.append((r.tx_id, e.seq, i, client_peer(req.client_id), r.status, r.reason))

    # ------------------------------------------------------------------ introspection

    def status(self) -> dict[str, Any]:
        r = self.replica
        seq, digest = r.stable_checkpoint
        return {
            "members": list(self.config.members),
            "f": self.config.f,
            "view": r.view,
            "view_active": r.active,
            "primary": r.primary,
            "last_executed": r.last_executed,
            "stable_checkpoint": {"seq": seq, "digest": digest.hex()},
            "state_digest": self.ledger.digest().hex(),
            "lag": max(0, r.max_seen - r.last_executed),
            "log_size": r.log_size(),
            "dropped_inputs": self.dropped_inputs,
            "evidence": self.evidence,
        }
