"""Drives this node's part in the federation: a PBFT replica (protocols/pbft) when the committee
names us, a follower otherwise; inputs in, effects out, on one task.

Every input (a peer's message, a client request, a timer expiry, a synced state) goes through one
trio channel to one task, which feeds the replica whatever has queued up, then, before anything
leaves the node, commits the inputs, the executed batches and their receipts to SQLite in one
transaction, and only then sends the replica's messages (one signed bundle per peer) and delivers
replies.

Persistence is a write-ahead log of inputs: the replica is deterministic, so its last full dump
(taken at each stable checkpoint) plus the inputs fed since rebuild exactly the state that stood
behind every message it sent. After `kill -9` the daemon replays them and carries on; what it
missed while down it learns from its peers (STATUS retransmission or state transfer).

Committee changes (protocols/ledger federation.join/leave) take effect at a checkpoint: every
replica halts there (Replica.halt_at), and once it is stable, activates the new committee in its
ledger and starts a new configuration, an *epoch* named by that sequence number. Bundles carry
their epoch in the envelope type ("bundle/<epoch>"), so messages of different configurations never
mix. A node that is not in the committee, or a replica that sees a newer epoch than its own,
catches up by checkpoint sync (protocols/fedsync.py) from the committee its ledger trusts.

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
from protocols.codec import decode, encode
from protocols.committee import Committee
from protocols.errors import ProtocolError
from protocols.fedsync import (
    MAX_LOG_BATCHES,
    MAX_LOG_BYTES,
    Install,
    LogBatches,
    LogFill,
    LogRequest,
    SyncFetch,
    SyncMessage,
    SyncOffer,
    SyncRequest,
    SyncState,
    Syncer,
    decode_sync,
    encode_sync,
    message_type,
)
from protocols.ledger import Genesis, Ledger, decode_receipt
from protocols.pbft import (
    Broadcast,
    CancelTimer,
    Checkpoint,
    Effect,
    Evidence,
    Executed,
    FetchState,
    Message,
    PbftConfig,
    Replica,
    Reply,
    Request,
    Send,
    SendReply,
    SetTimer,
    StableCheckpoint,
    StartViewChange,
    StateRestored,
    ViewChange,
    ViewInstalled,
    decode_message,
    encode_message,
)
from protocols.pbft.base import T_VIEW_CHANGE
from protocols.pbft.binding import ChainBinding
from protocols.pbft.signing import CachingVerifier, check_signatures, default_verifier
from protocols.pbft.viewchange import checkpoint_proof_error
from protocols.pbft.bundle import DOMAIN, MAX_BUNDLE, MAX_BUNDLE_BYTES, decode_bundle, encode_bundle

log = logging.getLogger("sovereign.federation")

INBOX = 16_384  # queued inputs; beyond that peers' messages are dropped (they retransmit)
TURN = 1024  # inputs fed per turn before effects are flushed
MAX_FRAME = MAX_BUNDLE_BYTES + 4096
DUMP_FORMAT = 1
SYNC_INTERVAL = 0.5  # seconds between sync rounds while following
OFFER_EVERY = 0.1  # at most this often per asking peer
STATE_EVERY = 1.0  # a snapshot to one peer at most this often


def clock() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


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


@dataclass(frozen=True)
class _Install:
    install: Install


_Input = Union[_Msg, _Req, _Timer, _Install]


@dataclass(frozen=True)
class Committed:
    """What a committed batch means to the rest of the daemon."""

    seq: int
    view: int
    requests: tuple[Request, ...]
    results: tuple[bytes, ...]


@dataclass(frozen=True)
class Certified:
    """The certified checkpoint a follower's ledger state stands at (see ReplicaDriver.certified)."""

    seq: int
    digest: bytes
    snapshot: bytes  # the ledger as certified (before a committee change it triggered was activated)
    client_table: bytes
    proof: tuple[bytes, ...]  # encoded CHECKPOINTs (empty for the checkpoint that ended an epoch)
    members: tuple[str, ...]  # the committee that signed them
    epoch: int  # the configuration they were signed in

    def to_obj(self) -> dict[str, Any]:
        return {"seq": self.seq, "digest": self.digest, "snapshot": self.snapshot, "table": self.client_table,
                "proof": list(self.proof),
                "members": list(self.members), "epoch": self.epoch}

    @classmethod
    def from_obj(cls, o: dict[str, Any]) -> Certified:
        return cls(o["seq"], o["digest"], o["snapshot"], o["table"], tuple(o["proof"]), tuple(o["members"]), o["epoch"])


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
        self.ledger = Ledger(genesis)
        self._on_reply = on_reply
        self._on_committed = on_committed
        self._publish = publish
        self._on_refused = on_refused
        self._seqs = SeqCounter()
        self._guard = ReplayGuard()
        # Messages that end up nested in certificates carry their own signatures: checked here,
        # before the core sees them (it trusts its inputs); accepted ones are remembered, so a
        # VIEW-CHANGE re-checks only what we have not seen.
        # Every signature we make or check is bound to our genesis (protocols/pbft/binding.py).
        self.binding = ChainBinding.of(genesis.hash)
        self._verifier = CachingVerifier(self.binding.verifier(default_verifier))
        self._sign = self.binding.signer(identity.sign)
        self._requests_out: dict[str, list[Request]] = {}
        self._requests_ready = trio.Event()
        self._send_in, self._inbox = trio.open_memory_channel[_Input](INBOX)
        self._timers: dict[str, float] = {}
        self._postponed: set[str] = set()  # overdue timers given one more timeout (see run)
        self.links: Links | None = None
        self.dropped_inputs = 0
        self.evidence = 0
        self.view_changes: list[dict[str, Any]] = []  # recent installed views, newest last
        self.reconfigurations: list[dict[str, Any]] = []
        # The configuration: the epoch (seq where it began) and its members; a follower's `synced`
        # is the stable checkpoint it last installed.
        self.epoch = 0
        self.members: tuple[str, ...] = genesis.committee
        self.synced = 0
        # A follower's evidence for the state it holds (what makes its dump checkable at start,
        # node/home.py): the checkpoint it stands at, its client table and the CHECKPOINTs that
        # certified it, with the committee and epoch they were signed in.
        self.certified: Certified | None = None
        self.replica: Replica | None = None
        self.sync_wanted = False
        self._halted_since: float | None = None
        self._asked = -1  # the last view we logged asking for
        self._voted = -1  # the last view we logged voting for
        self._served: dict[tuple[str, str], float] = {}  # (peer, what) -> when we last answered
        self._recover()
        self.syncer = Syncer(self.ledger.committee, self.epoch, self.position)
        self.log_fill = LogFill(self.ledger.committee)
        self._log_complete = 0  # every batch up to here is in our store
        self._gap: tuple[int, int] | None = None

    # ------------------------------------------------------------------ configuration

    def _config(self, members: tuple[str, ...]) -> PbftConfig:
        return PbftConfig(
            members=members,
            checkpoint_interval=self.genesis.checkpoint_interval,
            window=max(256, 2 * self.genesis.checkpoint_interval),
            max_batch=128,
            # One batch in flight, as Castro and Liskov's library: measured here (bench_federation)
            # it halves p50 latency at 1,000 tx/s offered against 2 and 4, and saturation
            # throughput stays the same (batches just grow).
            max_in_flight=1,
            request_timeout=self.request_timeout,
            base_seq=self.epoch,
        )

    @property
    def role(self) -> str:
        return "replica" if self.replica is not None else "follower"

    @property
    def position(self) -> int:
        """The sequence number our ledger state stands at."""
        return self.replica.last_executed if self.replica is not None else self.synced

    def primary(self) -> str:
        if self.replica is not None:
            return self.replica.primary
        return self.members[0]

    # ------------------------------------------------------------------ recovery

    def _dump(self) -> bytes:
        r = self.replica
        return encode(
            {
                "v": DUMP_FORMAT,
                "epoch": self.epoch,
                "members": list(self.members),
                "replica": r.persistent_state() if r is not None else None,
                "ledger": self.ledger.snapshot() if r is None else None,
                "synced": self.synced,
                "certified": self.certified.to_obj() if r is None and self.certified is not None else None,
            }
        )

    def _recover(self) -> None:
        state, inputs = self.store.pbft_load()
        if state is None and self.me not in self.members:
            return  # a follower that never synced anything
        if state is None:
            # No stable checkpoint yet: the genesis state, plus whatever was logged since.
            d: dict[str, Any] = {"replica": b"", "epoch": 0, "members": list(self.members), "synced": 0}
        else:
            # Our own store: a decoding error is corruption, and must stop the daemon loudly.
            d = decode(state, max_size=1 << 31, max_depth=4, max_items=1 << 20)
            if d.get("v") != DUMP_FORMAT:
                raise ValueError(f"unknown federation state format {d.get('v')!r}")
        self.epoch, self.members, self.synced = d["epoch"], tuple(d["members"]), d["synced"]
        if d.get("certified") is not None:
            self.certified = Certified.from_obj(d["certified"])
        if d["replica"] is not None:
            config = self._config(self.members)
            if d["replica"]:
                replica = Replica.recover(self.me, config, self.ledger, d["replica"], signer=self._sign)
            else:
                replica = Replica(self.me, config, self.ledger, signer=self._sign)
            for kind, sender, payload, at in inputs:
                item = self._decode_input(kind, sender, payload)
                self._feed(replica, item, at)  # effects were performed before the crash (or lost)
            replica.resume()
            self.replica = replica
            if state is None and not inputs:
                return
            log.info(
                "pbft recovered: epoch %d, view %d, executed through %d, stable checkpoint %d (%d inputs replayed)",
                self.epoch, replica.view, replica.last_executed, replica.low_watermark, len(inputs),
            )
        else:
            self.ledger.restore(d["ledger"])
            log.info("follower recovered: epoch %d, state at %d", self.epoch, self.synced)

    @staticmethod
    def _decode_input(kind: str, sender: str, payload: bytes) -> _Input:
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
        assert isinstance(item, _Msg)
        return ("message", item.sender, encode_message(item.message), now)

    @staticmethod
    def _feed(replica: Replica, item: _Input, now: float) -> list[Effect]:
        if isinstance(item, _Msg):
            return replica.on_message(item.sender, item.message, now)
        if isinstance(item, _Req):
            return replica.on_request(item.request, now)
        assert isinstance(item, _Timer)
        return replica.on_timer(item.key, now)

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
        if self.replica is None:
            return False
        self._put(_Req(request))
        return True

    def on_frame(self, peer_id: str, data: bytes) -> None:
        """A frame from a peer's stream: verify, decode, queue. Called on the network's task."""
        try:
            env = open_envelope(
                data, domain=DOMAIN, now_ms=now_ms(), guard=self._guard, max_size=MAX_FRAME, expected_sender=peer_id
            )
            payload = self.binding.open(env.payload)
            epoch = _epoch_of(env.type)
            if epoch is None:
                self._on_sync(peer_id, decode_sync(env.type, payload))
                return
            messages = decode_bundle(payload)
        except (EnvelopeError, ProtocolError) as exc:
            self._on_refused(peer_id, exc)
            return
        members = self.members
        for m in messages:
            if isinstance(m, Reply):
                if peer_id in members and m.sender == peer_id:
                    self._on_reply(peer_id, m)
            elif isinstance(m, Request):
                if self.replica is None:
                    continue  # a client that thinks we replicate; it retransmits to the others
                if client_peer(m.client_id) == peer_id:
                    # From the client itself (its signature covers the envelope), even when that
                    # client is a member: a forward would not arm our view-change timer.
                    self._put(_Req(m))
                elif peer_id in members:
                    self._put(_Msg(peer_id, m))  # forwarded by a replica
                else:
                    self._on_refused(peer_id, ProtocolError("not-the-client", f"request for {m.client_id}"))
            elif epoch != self.epoch:
                if epoch > self.epoch and peer_id in self.ledger.committee:
                    self.sync_wanted = True  # the committee moved on without us
                return
            elif peer_id in members and self.replica is not None:
                seq = getattr(m, "seq", None)
                if type(seq) is int and 0 < seq <= self.replica.low_watermark and not isinstance(m, FetchState):
                    continue  # below our stable checkpoint: the core drops it; skip its signatures
                reason = check_signatures(m, self._verifier)
                if reason is not None:
                    # The envelope is the member's own: it signed a bundle holding a forgery.
                    self._on_refused(peer_id, ProtocolError(reason, type(m).__name__))
                    return
                self._put(_Msg(peer_id, m))
            elif peer_id not in members:
                self._on_refused(peer_id, ProtocolError("not-a-member", f"{type(m).__name__} from a non-member"))
                return

    def _put(self, item: _Input) -> None:
        try:
            self._send_in.send_nowait(item)
        except trio.WouldBlock:
            self.dropped_inputs += 1

    # ------------------------------------------------------------------ checkpoint sync

    def _answer(self, peer_id: str, what: str, every: float) -> bool:
        now = clock()
        last = self._served.get((peer_id, what))
        if last is not None and now - last < every:
            return False
        if len(self._served) > 4096:
            self._served.clear()
        self._served[(peer_id, what)] = now
        return True

    def _send_sync(self, peer_id: str, msg: SyncMessage) -> None:
        if self.links is not None:
            self.links.send(peer_id, sign_sync(self.identity, self._seqs, msg, self.binding))

    def _on_sync(self, peer_id: str, msg: SyncMessage) -> None:
        r = self.replica
        if isinstance(msg, SyncRequest):
            if r is not None and self._answer(peer_id, "offer", OFFER_EVERY):
                seq, digest = r.stable_checkpoint
                self._send_sync(peer_id, SyncOffer(self.epoch, self.members, r.view, seq, digest))
        elif isinstance(msg, SyncFetch):
            if r is not None and msg.seq in (0, r.stable_checkpoint[0]) and self._answer(peer_id, "state", STATE_EVERY):
                seq, digest = r.stable_checkpoint
                proof = tuple(encode_message(c) for c in r.stable_proof)
                self._send_sync(
                    peer_id,
                    SyncState(self.epoch, self.members, r.view, seq, digest, r.stable_snapshot, r.stable_table, proof),
                )
        elif isinstance(msg, LogRequest):
            if self._answer(peer_id, "log", OFFER_EVERY):
                self._send_sync(peer_id, LogBatches(self._log_slice(msg.since, msg.limit)))
        elif isinstance(msg, LogBatches):
            if self._gap is not None:
                agreed = self.log_fill.on_batches(peer_id, msg, *self._gap)
                if agreed:
                    batches: list[tuple[int, int, int, bytes, bytes]] = []
                    txs: list[tuple[str, int, int, str, str, str]] = []
                    for seq, view, ops, results in agreed:
                        self._record_rows(seq, view, ops, results, batches, txs)
                    self.store.pbft_commit([], batches, txs)
                    log.info("log: filled %d batches from %d to %d", len(agreed), agreed[0][0], agreed[-1][0])
        elif isinstance(msg, SyncOffer):
            self.syncer.on_offer(peer_id, msg)
        else:
            verdict = self.syncer.on_state(peer_id, msg, self._proven)
            if isinstance(verdict, Install):
                self._put(_Install(verdict))
            elif verdict != "unsolicited":
                self._on_refused(peer_id, ProtocolError(verdict, "sync-state"))

    def _log_slice(self, since: int, limit: int) -> tuple[tuple[int, int, bytes, bytes], ...]:
        out: list[tuple[int, int, bytes, bytes]] = []
        size = 0
        for seq, view, _ms, ops, results in self.store.ledger_batches(since, min(limit, MAX_LOG_BATCHES)):
            size += len(ops) + len(results)
            if out and size > MAX_LOG_BYTES:
                break
            out.append((seq, view, ops, results))
        return tuple(out)

    def _fill_log(self) -> None:
        """Ask the committee for batches we jumped over (state transfer, sync): their receipts."""
        self._gap = self.store.ledger_gap(self.position, self._log_complete)
        if self._gap is None:
            self._log_complete = self.position
            return
        lo, hi = self._gap
        self._log_complete = lo - 1
        self._gap = (lo, min(hi, lo + MAX_LOG_BATCHES - 1))
        self.log_fill.trusted = self.ledger.committee
        for peer in self.ledger.committee:
            if peer != self.me:
                self._send_sync(peer, LogRequest(lo - 1, self._gap[1] - lo + 1))

    def _proven(self, st: SyncState, trusted: tuple[str, ...]) -> bool:
        """f+1 members we trust signed CHECKPOINTs for exactly this state: one of them is correct."""
        signers = set()
        for raw in st.proof:
            try:
                cp = decode_message(raw)
            except ProtocolError:
                return False
            if not isinstance(cp, Checkpoint) or cp.seq != st.seq or cp.state_digest != st.digest:
                return False
            if cp.sender in trusted and check_signatures(cp, self._verifier) is None:
                signers.add(cp.sender)
        return len(signers) >= Committee(trusted).weak

    async def _sync_loop(self) -> None:
        """While we follow (or a newer epoch left us behind): ask the trusted committee for its
        stable checkpoint, and fetch the newest state f+1 of them vouch for. Always: fill gaps
        in our copy of the committed log."""
        while True:
            await trio.sleep(SYNC_INTERVAL * random.uniform(0.8, 1.2))
            self._fill_log()
            r = self.replica
            if r is not None and r.halted:
                # Halted for a committee change whose checkpoint we never saw become stable.
                self._halted_since = self._halted_since or clock()
                if clock() - self._halted_since > 3 * self.request_timeout:
                    self.sync_wanted = True
            else:
                self._halted_since = None
            if r is not None and not self.sync_wanted:
                continue
            self.syncer.reset(self.ledger.committee, self.epoch, self.position)
            have = self.position
            for peer in self.ledger.committee:
                if peer != self.me:
                    self._send_sync(peer, SyncRequest(have))
            fetch = self.syncer.next_fetch()
            if fetch is not None:
                self._send_sync(fetch.peer, SyncFetch(fetch.seq))

    def _install(self, inst: Install, now: float) -> bool:
        st = inst.state
        if (st.epoch, st.seq) <= (self.epoch, self.position):
            return False  # overtaken meanwhile
        try:
            proof = tuple(decode_message(p) for p in st.proof)
        except ProtocolError as exc:
            log.warning("sync: the vouched state's proof does not decode (%s); ignoring it", exc.reason)
            return False
        if not all(isinstance(c, Checkpoint) for c in proof):
            return False
        checkpoints: tuple[Checkpoint, ...] = tuple(c for c in proof if isinstance(c, Checkpoint))
        if proof:
            # f+1 vouched for this state; its proof must hold up too, or our VIEW-CHANGEs
            # (which carry it) would be refused by everyone.
            cfg = PbftConfig(st.members, checkpoint_interval=self.genesis.checkpoint_interval, base_seq=st.epoch,
                             window=max(256, 2 * self.genesis.checkpoint_interval))
            bad = checkpoint_proof_error(cfg, st.seq, checkpoints) or next(
                (r for c in checkpoints if (r := check_signatures(c, self._verifier))), None
            )
            if bad or any(c.state_digest != st.digest for c in checkpoints):
                log.warning("sync: the vouched state at %d comes with a bad proof (%s); ignoring it", st.seq, bad)
                return False
        try:
            self.ledger.restore(st.snapshot)
        except ValueError as exc:
            log.error("sync: f+1 members vouched for a state our ledger refuses: %s", exc)
            return False
        certified = Certified(st.seq, st.digest, st.snapshot, st.client_table, st.proof, st.members, st.epoch)
        epoch, members = st.epoch, st.members
        if self.ledger.reconfiguring():
            # The last checkpoint of its configuration: switch here, as every replica does.
            activated = self.ledger.activate_pending()
            assert activated is not None
            epoch, members, checkpoints = st.seq, activated, ()
        self.epoch, self.members = epoch, members
        self._timers.clear()
        if self.me in members:
            self.replica = Replica.from_checkpoint(
                self.me, self._config(members), self.ledger, st.seq, st.client_table, view=inst.view,
                signer=self._sign, proof=checkpoints,
            )
            self.sync_wanted = False
            self.replica.resume()
        else:
            self.replica = None
        self.synced = st.seq
        self.certified = certified if self.replica is None else None
        log.info("sync: installed the state at %d (epoch %d, %d members); this node is a %s", st.seq, epoch, len(members), self.role)
        self._publish("federation.synced", {"seq": st.seq, "epoch": epoch, "role": self.role})
        return True

    def _switch_epoch(self, seq: int) -> None:
        """Our replica halted at `seq`, now stable: activate the new committee and go on in it."""
        old = self.replica
        assert old is not None
        members = self.ledger.activate_pending()
        if members is None:  # cannot happen: the ledger asked for the halt
            log.error("halted at %d without a pending committee; staying in epoch %d", seq, self.epoch)
            return
        pending = list(old.pending.values())
        self.certified = Certified(
            seq, old.stable_checkpoint[1], old.stable_snapshot, old.stable_table,
            tuple(encode_message(c) for c in old.stable_proof),
            old.config.members, self.epoch,
        )
        self.epoch, self.members, self.synced = seq, members, seq
        self._timers.clear()
        if self.me in members:
            self.replica = Replica.from_checkpoint(
                self.me, self._config(members), self.ledger, seq, old.stable_table, view=old.view, signer=self._sign
            )
            self.replica.resume()
            for q in pending:
                self._put(_Req(q))  # their clients would retransmit anyway; this saves a round trip
        else:
            self.replica = None
        entry = {"epoch": seq, "members": list(members), "at_ms": now_ms(), "role": self.role}
        self.reconfigurations = [*self.reconfigurations[-15:], entry]
        log.info("committee changed at %d: %d members; this node is a %s", seq, len(members), self.role)
        self._publish("federation.reconfigured", entry)

    # ------------------------------------------------------------------ the loop

    async def _await_quorum(self, connected: Callable[[str], bool], timeout: float) -> None:
        """At start, give discovery a moment to connect us to a quorum: a replica that starts its
        timers while it cannot reach anyone would time its own isolation out as the primary's
        fault and wander off into a view change of its own."""
        others = [m for m in self.members if m != self.me]
        need = Committee(self.members).quorum - 1  # a quorum, counting ourselves
        with trio.move_on_after(timeout):
            while sum(1 for m in others if connected(m)) < need:
                await trio.sleep(0.05)

    async def run(self, links: Links, connected: Callable[[str], bool] = lambda peer: True) -> None:
        self.links = links
        if self.replica is not None:
            await self._await_quorum(connected, 10.0)
        self._put(_Timer("resume"))  # re-arms the timers that died with the previous process
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._sync_loop)
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
                    late = now - self._timers[key]
                    if key == T_VIEW_CHANGE and late > self.request_timeout and key not in self._postponed:
                        # Due long ago: this process was not running (SIGSTOP, a VM or GC pause,
                        # an overloaded host). What it knows is stale; give its peers one timeout
                        # to bring it up to date before it blames the primary for its own absence.
                        log.info("timers ran %.1f s late (was this process paused?); catching up first", late)
                        self._timers[key] = now + self.request_timeout
                        self._postponed.add(key)
                        continue
                    self._postponed.discard(key)
                    del self._timers[key]
                    items.append(_Timer(key))
                self._turn(items, now)
                await trio.sleep(0)  # let the network tasks run between turns

    def _turn(self, items: list[_Input], now: float) -> None:
        logged: list[tuple[str, str, bytes, float]] = []
        effects: list[Effect] = []
        installed = False
        epoch = self.epoch  # what this turn's messages belong to, even if we switch at its end
        for item in items:
            if isinstance(item, _Install):
                if self._install(item.install, now):
                    installed, logged, effects, epoch = True, [], [], self.epoch
                    if self.replica is not None:
                        effects += self.replica.on_timer("resume", now)
                continue
            if self.replica is None:
                continue
            logged.append(self._encode_input(item, now))
            effects += self._feed(self.replica, item, now)
        outbox: dict[str, list[Message]] = defaultdict(list)
        local_replies: list[Reply] = []
        batches: list[tuple[int, int, int, bytes, bytes]] = []
        txs: list[tuple[str, int, int, str, str, str]] = []
        committed: list[Committed] = []
        dump = installed
        switch_at: int | None = None
        others = [m for m in self.members if m != self.me]
        for e in effects:
            if isinstance(e, Send):
                outbox[e.to].append(e.message)
            elif isinstance(e, Broadcast):
                for peer in others:
                    outbox[peer].append(e.message)
                if isinstance(e.message, StartViewChange) and e.message.new_view > self._voted:
                    self._voted = e.message.new_view
                    log.info(
                        "voting for view %d (a view change starts once 2f+1 members vote for it)", e.message.new_view
                    )
                if isinstance(e.message, ViewChange) and e.message.sender == self.me and e.message.new_view != self._asked:
                    self._asked = e.message.new_view  # the status timer resends it: log it once
                    r = self.replica
                    log.info(
                        "asking for view %d (executed through %d, %d requests waiting)",
                        e.message.new_view, r.last_executed if r else -1, len(r.pending) if r else 0,
                    )
            elif isinstance(e, SendReply):
                peer = client_peer(e.client_id)
                if peer == self.me:
                    local_replies.append(e.reply)
                else:
                    outbox[peer].append(e.reply)
            elif isinstance(e, SetTimer):
                self._timers[e.key] = e.at
                self._postponed.discard(e.key)  # a fresh timer may be postponed once again
            elif isinstance(e, CancelTimer):
                self._timers.pop(e.key, None)
                self._postponed.discard(e.key)
            elif isinstance(e, Executed):
                self._record(e, batches, txs)
                committed.append(Committed(e.seq, e.view, e.batch, e.results))
            elif isinstance(e, StableCheckpoint):
                dump = True
                self._publish("federation.checkpoint", {"seq": e.seq, "digest": e.state_digest.hex()})
                if self.replica is not None and self.replica.halt_at == e.seq:
                    switch_at = e.seq
            elif isinstance(e, ViewInstalled):
                log.info("view %d installed, primary %s", e.view, e.primary)
                entry = {"view": e.view, "primary": e.primary, "at_ms": now_ms()}
                self.view_changes = [*self.view_changes[-31:], entry]
                self._publish("federation.view", entry)
            elif isinstance(e, StateRestored):
                log.info("state transfer installed the checkpoint at %d", e.seq)
                self._publish("federation.state_restored", {"seq": e.seq, "digest": e.state_digest.hex()})
            elif isinstance(e, Evidence):
                self.evidence += 1
                log.warning("pbft: refused a message from %s: %s", e.sender, e.reason)
                self._on_refused(e.sender, ProtocolError(e.reason, "pbft"))
        if switch_at is not None:
            self._switch_epoch(switch_at)
        self.store.pbft_commit(logged, batches, txs, (self.position, self._dump()) if dump else None)
        # Only now, with the promises behind them on disk, may messages leave.
        assert self.links is not None
        for peer, messages in outbox.items():
            for data in sign_bundle(self.identity, self._seqs, messages, epoch, self.binding):
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
        base: dict[str, Any] = {
            "epoch": self.epoch,
            "members": list(self.members),
            "f": Committee(self.members).f,
            "pending_members": list(self.ledger.pending_committee) if self.ledger.pending_committee else None,
            "state_digest": self.ledger.digest().hex(),
            "dropped_inputs": self.dropped_inputs,
            "evidence": self.evidence,
            "reconfigurations": self.reconfigurations,
            "view_changes": list(self.view_changes),
        }
        r = self.replica
        if r is None:
            # A follower takes no part in views; its state is the last stable checkpoint it synced.
            base.update(
                {
                    "last_executed": self.synced, "view": None, "view_active": None, "view_vote": None, "primary": None,
                    "stable_checkpoint": None, "halted_for_reconfiguration": False, "lag": None, "log_size": 0,
                    "sync": {
                        "offers": {p[-8:]: [o.epoch, o.seq] for p, o in self.syncer.offers.items()},
                        "attempts": self.syncer.attempts,
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
