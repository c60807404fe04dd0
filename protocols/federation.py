"""This node's part in a federation, as a pure machine: inputs in, effects out.

A PBFT replica (protocols/pbft) when the committee names us, a follower otherwise, and every rule
that decides around it:

- which peer messages reach the replica: members only, our configuration (epoch) only, nested
  signatures checked, requests only from their own client or forwarded by a member;
- the committee change: every replica halts at the checkpoint whose state asks for a new committee
  (Replica.halt_at) and, once it is stable, activates it in the ledger and starts the next
  configuration, an *epoch* named by that sequence number;
- checkpoint sync (protocols/fedsync.py): serving offers, states and log slices (rate-limited per
  peer), asking while we follow or were left behind, and installing a state f+1 trusted members
  vouch for once its proof holds up;
- the timer rules: a view-change timer found due long ago (the process was paused) is postponed
  once so that peers can bring us up to date before we blame the primary; a replica halted for a
  committee change whose checkpoint it never saw become stable goes looking for the newer epoch.

Time (`now`) comes in with every input; the machine reads no clock, draws no randomness and does
no I/O. It signs and verifies through the functions it is given (pure: keys in memory).
Persistence: `dump()` at each stable checkpoint (the driver asks for it on StableCheckpoint and
Installed effects) plus the journal of the inputs fed to the replica since (Journal effects), which
`recover` replays.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Union

from protocols import effects as fx
from protocols.codec import decode, encode
from protocols.committee import Committee
from protocols.errors import ProtocolError
from protocols.fedsync import (
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
from protocols.ledger import Genesis, Ledger
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
from protocols.pbft.bundle import DOMAIN, MAX_BUNDLE, MAX_BUNDLE_BYTES, decode_bundle, encode_bundle
from protocols.pbft.signing import Signer, Verifier, check_signatures
from protocols.pbft.view_checks import checkpoint_proof_error

DUMP_FORMAT = 1
OFFER_EVERY = 0.1  # seconds: at most this often per asking peer (offers, log slices)
STATE_EVERY = 1.0  # a snapshot to one peer at most this often
MAX_SERVED = 4096  # rate-limit entries kept
STALLED_TICKS = 4  # sync rounds of waiting without progress before we look for a newer state


def client_peer(client_id: str) -> str:
    """PBFT client ids are "<peer id>/<lane>": one outstanding request per lane."""
    return client_id.split("/", 1)[0]


# ---------------------------------------------------------------------- the wire


def bundle_channel(epoch: int) -> str:
    """PBFT messages travel on channel "bundle/<epoch>": messages of different configurations
    never mix. Sync messages travel on their own names (fedsync.message_type)."""
    return f"bundle/{epoch}"


def epoch_of(channel: str) -> int | None:
    prefix, _, number = channel.partition("/")
    if prefix != "bundle" or not number.isdigit() or len(number) > 19:
        return None
    return int(number)


class FederationWire:
    """The federation's wire (protocols/machine.py's Wire): PBFT bundles and sync messages on one
    stream protocol, every payload bound to the genesis (protocols/pbft/binding.py)."""

    protocol = "/" + DOMAIN
    domain = DOMAIN
    topics: tuple[str, ...] = ()
    max_frame = MAX_BUNDLE_BYTES + 4096

    def __init__(self, binding: ChainBinding) -> None:
        self.binding = binding

    def encode(self, channel: str, messages: Sequence[Any]) -> list[bytes]:
        if epoch_of(channel) is not None:
            return [self.binding.seal(encode_bundle(messages[i : i + MAX_BUNDLE])) for i in range(0, len(messages), MAX_BUNDLE)]
        return [self.binding.seal(encode_sync(m)) for m in messages]

    def decode(self, channel: str, payload: bytes) -> Sequence[Any]:
        inner = self.binding.open(payload)
        if epoch_of(channel) is not None:
            return decode_bundle(inner)
        return (decode_sync(channel, inner),)

    def encode_gossip(self, topic: str, message: Any) -> bytes:
        raise ProtocolError("unknown-topic", topic[:64])

    def decode_gossip(self, topic: str, payload: bytes) -> Any:
        raise ProtocolError("unknown-topic", topic[:64])


def send_sync(to: str, message: SyncMessage) -> fx.Send:
    return fx.Send(to, message_type(message), message)


# ---------------------------------------------------------------------- effects (besides the shared ones)


@dataclass(frozen=True)
class Tick:
    """The periodic sync round (a call from the driver): `gap` is the first run of batches the
    node's store lacks below its position (the store is the driver's), or None."""

    gap: tuple[int, int] | None


@dataclass(frozen=True)
class ServeLog:
    """Answer a peer's LogRequest with our committed batches since `since` (the driver reads them)."""

    to: str
    since: int
    limit: int


@dataclass(frozen=True)
class FilledLog:
    """Batches f+1 trusted members sent identically, for a gap in our log: store them."""

    entries: tuple[tuple[int, int, bytes, bytes], ...]  # (seq, view, ops, results)


@dataclass(frozen=True)
class LocalReply:
    """A reply for this node's own client."""

    reply: Reply


@dataclass(frozen=True)
class Installed:
    """A synced state replaced ours: what this turn did before it belonged to the old state."""

    seq: int
    epoch: int
    role: str


@dataclass(frozen=True)
class Reconfigured:
    epoch: int
    members: tuple[str, ...]
    role: str


FedEffect = Union[
    fx.Send, fx.Journal, fx.Refused, fx.Note, SetTimer, CancelTimer,
    ServeLog, FilledLog, LocalReply, Installed, Reconfigured, Executed, StableCheckpoint, ViewInstalled, StateRestored,
]


@dataclass(frozen=True)
class Certified:
    """The certified checkpoint a follower's ledger state stands at: the evidence that makes its
    dump checkable at start (node/home.py)."""

    seq: int
    digest: bytes
    snapshot: bytes  # the ledger as certified (before a committee change it triggered was activated)
    client_table: bytes
    proof: tuple[bytes, ...]  # encoded CHECKPOINTs (empty for the checkpoint that ended an epoch)
    members: tuple[str, ...]  # the committee that signed them
    epoch: int  # the configuration they were signed in

    def to_obj(self) -> dict[str, Any]:
        return {"seq": self.seq, "digest": self.digest, "snapshot": self.snapshot, "table": self.client_table,
                "proof": list(self.proof), "members": list(self.members), "epoch": self.epoch}

    @classmethod
    def from_obj(cls, o: dict[str, Any]) -> Certified:
        return cls(o["seq"], o["digest"], o["snapshot"], o["table"], tuple(o["proof"]), tuple(o["members"]), o["epoch"])


# ---------------------------------------------------------------------- what persists

# Every attribute of a FederationNode is declared once, here (a test fails on one that is not):
# given at construction, persisted by dump() (each a key of the dump), or volatile with why
# losing it at a crash is safe.
GIVEN = frozenset({"me", "genesis", "request_timeout", "sign", "verify"})
PERSISTENT: dict[str, str] = {
    "epoch": "the configuration we run in",
    "members": "its committee",
    "replica": "the PBFT replica's own declaration (protocols/pbft/persist.py); None for a follower",
    "ledger": "a follower's state (a replica's ledger is its application, restored by the replica)",
    "synced": "the stable checkpoint a follower installed",
    "certified": "the evidence behind a follower's state (checked at start, node/home.py)",
}
VOLATILE: dict[str, str] = {
    "sync_wanted": "recomputed by the next sync rounds (a stalled or halted replica asks again)",
    "halted_since": "restarts the halted clock: at worst one more wait before asking for a newer epoch",
    "stalled": "counts sync rounds since start",
    "stalled_at": "as stalled",
    "postponed": "a restarted process postpones an overdue timer once more: harmless",
    "served": "rate limits of our answers: after a restart a peer may get one answer early",
    "syncer": "offers are asked for again every round",
    "log_fill": "log slices are asked for again every round",
    "gap": "recomputed from the store every round",
    "evidence": "a counter for status since start",
    "voted": "log lines only",
    "asked": "log lines only",
}


# ---------------------------------------------------------------------- the machine


class FederationNode:
    def __init__(
        self, me: str, genesis: Genesis, *, request_timeout: float, sign: Signer | None, verify: Verifier
    ) -> None:
        self.me = me
        self.genesis = genesis
        self.request_timeout = request_timeout
        self.sign = sign
        self.verify = verify
        self.ledger = Ledger(genesis)
        self.epoch = 0  # the sequence number where our configuration began
        self.members: tuple[str, ...] = genesis.committee
        self.synced = 0  # a follower: the stable checkpoint it last installed
        self.certified: Certified | None = None
        self.replica: Replica | None = Replica(me, self.config(self.members), self.ledger, signer=sign) \
            if me in genesis.committee else None
        self.sync_wanted = False
        self.halted_since: float | None = None
        self.stalled = 0  # sync rounds in a row in which we waited and executed nothing
        self.stalled_at = -1
        self.postponed: set[str] = set()  # overdue timers given one more timeout
        self.served: dict[tuple[str, str], float] = {}  # (peer, what) -> when we last answered
        self.syncer = Syncer(self.ledger.committee, self.epoch, self.position)
        self.log_fill = LogFill(self.ledger.committee)
        self.gap: tuple[int, int] | None = None  # the part of our log we are asking peers for
        self.evidence = 0
        self.voted = -1  # the last view we said we vote for (a log line each, not each repeat)
        self.asked = -1  # the last view we said we ask for

    # ------------------------------------------------------------------ configuration

    def config(self, members: tuple[str, ...], base_seq: int | None = None) -> PbftConfig:
        k = self.genesis.checkpoint_interval
        return PbftConfig(
            members=members,
            checkpoint_interval=k,
            window=max(256, 2 * k),
            max_batch=128,
            # One batch in flight, as Castro and Liskov's library: measured here (bench_federation)
            # it halves p50 latency at 1,000 tx/s offered against 2 and 4, and saturation
            # throughput stays the same (batches just grow).
            max_in_flight=1,
            request_timeout=self.request_timeout,
            base_seq=self.epoch if base_seq is None else base_seq,
        )

    @property
    def role(self) -> str:
        return "replica" if self.replica is not None else "follower"

    @property
    def position(self) -> int:
        """The sequence number our ledger state stands at."""
        return self.replica.last_executed if self.replica is not None else self.synced

    @property
    def committee(self) -> Committee:
        return Committee(self.members)

    # ------------------------------------------------------------------ inputs

    # The Machine interface (protocols/machine.py): what the runtime and the simulator call.

    def on_message(self, peer: str, channel: str, messages: Sequence[Any], now: float) -> list[FedEffect]:
        epoch = epoch_of(channel)
        if epoch is not None:
            return self.on_bundle(peer, epoch, messages, now)
        out: list[FedEffect] = []
        for m in messages:
            out += self.on_sync(peer, m, now)
        return out

    def on_gossip(self, topic: str, origin: str, message: Any, now: float) -> list[FedEffect]:
        return []  # the federation gossips nothing: every message has one addressee

    def on_call(self, token: int, request: Any, now: float) -> list[FedEffect]:
        """This node's own client's request (fire and forget: replies come as LocalReply and from
        the other replicas), or the periodic sync Tick."""
        if isinstance(request, Tick):
            return self.on_tick(now, request.gap)
        if isinstance(request, Request):
            return self.on_local_request(request, now) or []
        raise TypeError(f"a federation node takes no {type(request).__name__} call")

    def on_bundle(self, peer: str, epoch: int, messages: Sequence[Message], now: float) -> list[FedEffect]:
        """PBFT messages from a verified envelope of `peer`, for configuration `epoch`. Replies are
        the client's business (the driver hands them over before this)."""
        out: list[FedEffect] = []
        members = self.members
        for m in messages:
            if isinstance(m, Reply):
                continue
            if isinstance(m, Request):
                if self.replica is None:
                    continue  # a client that thinks we replicate; it retransmits to the others
                if client_peer(m.client_id) == peer:
                    # From the client itself (its signature covers the envelope), even when that
                    # client is a member: a forward would not arm our view-change timer.
                    out += self._feed("request", "", m, now)
                elif peer in members:
                    out += self._feed("message", peer, m, now)  # forwarded by a replica
                else:
                    out.append(fx.Refused(peer, "not-the-client", f"request for {m.client_id}"))
            elif epoch != self.epoch:
                if epoch > self.epoch and peer in self.ledger.committee:
                    self.sync_wanted = True  # the committee moved on without us
                return out
            elif peer in members and self.replica is not None:
                seq = getattr(m, "seq", None)
                if type(seq) is int and 0 < seq <= self.replica.low_watermark and not isinstance(m, FetchState):
                    continue  # below our stable checkpoint: the core drops it; skip its signatures
                reason = check_signatures(m, self.verify)
                if reason is not None:
                    # The envelope is the member's own: it signed a bundle holding a forgery.
                    out.append(fx.Refused(peer, reason, type(m).__name__))
                    return out
                out += self._feed("message", peer, m, now)
            elif peer not in members:
                out.append(fx.Refused(peer, "not-a-member", f"{type(m).__name__} from a non-member"))
                return out
        return out

    def on_local_request(self, request: Request, now: float) -> list[FedEffect] | None:
        """A request from this node's own client; None when we run no replica to take it."""
        if self.replica is None:
            return None
        return self._feed("request", "", request, now)

    def on_timer(self, key: str, due: float, now: float) -> list[FedEffect]:
        """Timer `key`, set for `due`, fires at `now`."""
        if self.replica is None:
            return []
        late = now - due
        if key == T_VIEW_CHANGE and late > self.request_timeout and key not in self.postponed:
            # Due long ago: this process was not running (SIGSTOP, a VM or GC pause, an
            # overloaded host). What it knows is stale; give its peers one timeout to bring it up
            # to date before it blames the primary for its own absence.
            self.postponed.add(key)
            return [
                fx.Note("info", f"timers ran {late:.1f} s late (was this process paused?); catching up first"),
                SetTimer(key, now + self.request_timeout),
            ]
        self.postponed.discard(key)
        return self._feed("timer", "", key, now)

    def on_tick(self, now: float, gap: tuple[int, int] | None) -> list[FedEffect]:
        """The periodic sync round: ask for the batches in `gap` (what our store lacks below our
        position), and while we follow, or a newer epoch left us behind, ask the trusted
        committee for its stable checkpoint and fetch the newest state f+1 of them vouch for."""
        out: list[FedEffect] = []
        self.gap = gap
        if gap is not None:
            lo, hi = gap
            self.log_fill.trusted = self.ledger.committee
            for peer in self.ledger.committee:
                if peer != self.me:
                    out.append(send_sync(peer, LogRequest(lo - 1, hi - lo + 1)))
        r = self.replica
        if r is not None and r.halted:
            # Halted for a committee change whose checkpoint we never saw become stable.
            self.halted_since = self.halted_since if self.halted_since is not None else now
            if now - self.halted_since > 3 * self.request_timeout:
                self.sync_wanted = True
        else:
            self.halted_since = None
        if r is not None:
            # Waiting without executing anything for STALLED_TICKS rounds: the committee may have
            # moved to an epoch without us (we lagged through the switch, and nobody sends a
            # replica of a finished configuration anything), or past a checkpoint we cannot reach
            # by retransmission. Ask: a newer state f+1 trusted members vouch for is installed,
            # anything else changes nothing.
            waiting = bool(r.pending) or not r.active or r.max_seen > r.last_executed
            self.stalled = self.stalled + 1 if waiting and r.last_executed == self.stalled_at else 0
            self.stalled_at = r.last_executed
            if self.stalled >= STALLED_TICKS:
                self.sync_wanted = True
            elif self.stalled == 0 and not r.halted and r.last_executed > self.syncer.seq:
                self.sync_wanted = False  # executing again: no need to look elsewhere
        if r is not None and not self.sync_wanted:
            return out
        self.syncer.reset(self.ledger.committee, self.epoch, self.position)
        for peer in self.ledger.committee:
            if peer != self.me:
                out.append(send_sync(peer, SyncRequest(self.position)))
        fetch = self.syncer.next_fetch()
        if fetch is not None:
            out.append(send_sync(fetch.peer, SyncFetch(fetch.seq)))
        return out

    def on_sync(self, peer: str, msg: SyncMessage, now: float) -> list[FedEffect]:
        r = self.replica
        if isinstance(msg, SyncRequest):
            if r is not None and self._answer(peer, "offer", OFFER_EVERY, now):
                seq, digest = r.stable_checkpoint
                return [send_sync(peer, SyncOffer(self.epoch, self.members, r.view, seq, digest))]
        elif isinstance(msg, SyncFetch):
            if r is not None and msg.seq in (0, r.stable_checkpoint[0]) and self._answer(peer, "state", STATE_EVERY, now):
                seq, digest = r.stable_checkpoint
                proof = tuple(encode_message(c) for c in r.stable_proof)
                state = SyncState(self.epoch, self.members, r.view, seq, digest, r.stable_snapshot, r.stable_table, proof)
                return [send_sync(peer, state)]
        elif isinstance(msg, LogRequest):
            if self._answer(peer, "log", OFFER_EVERY, now):
                return [ServeLog(peer, msg.since, msg.limit)]
        elif isinstance(msg, LogBatches):
            if self.gap is not None:
                agreed = self.log_fill.on_batches(peer, msg, *self.gap)
                if agreed:
                    return [FilledLog(tuple(agreed))]
        elif isinstance(msg, SyncOffer):
            self.syncer.on_offer(peer, msg)
        else:
            verdict = self.syncer.on_state(peer, msg, self._proven)
            if isinstance(verdict, Install):
                return self._install(verdict, now)
            if verdict != "unsolicited":
                return [fx.Refused(peer, verdict, "sync-state")]
        return []

    # ------------------------------------------------------------------ the replica

    def _feed(self, kind: str, sender: str, item: Any, now: float) -> list[FedEffect]:
        r = self.replica
        assert r is not None
        payload = item.encode() if kind == "timer" else encode_message(item)
        out: list[FedEffect] = [fx.Journal(kind, sender, payload)]
        out += self._route(_run(r, kind, sender, item, now), now)
        return out

    def _route(self, effects: list[Effect], now: float) -> list[FedEffect]:
        """The replica's effects as ours: messages addressed per peer in this epoch, our client's
        replies kept local, evidence counted, and the committee switched at its checkpoint."""
        out: list[FedEffect] = []
        channel = bundle_channel(self.epoch)
        others = [m for m in self.members if m != self.me]
        switch_at: int | None = None
        for e in effects:
            if isinstance(e, Send):
                out.append(fx.Send(e.to, channel, e.message))
            elif isinstance(e, Broadcast):
                out += self._says(e.message)
                out += [fx.Send(peer, channel, e.message) for peer in others]
            elif isinstance(e, SendReply):
                peer = client_peer(e.client_id)
                out.append(LocalReply(e.reply) if peer == self.me else fx.Send(peer, channel, e.reply))
            elif isinstance(e, Evidence):
                self.evidence += 1
                out.append(fx.Refused(e.sender, e.reason, "pbft"))
            else:
                if isinstance(e, (SetTimer, CancelTimer)):
                    self.postponed.discard(e.key)  # a fresh timer may be postponed once again
                elif isinstance(e, StableCheckpoint) and self.replica is not None and self.replica.halt_at == e.seq:
                    switch_at = e.seq
                out.append(e)
        if switch_at is not None:
            out += self._switch_epoch(switch_at, now)
        return out

    def _says(self, m: Message) -> list[FedEffect]:
        """A log line for our own votes and VIEW-CHANGEs, once per view (they are repeated)."""
        if isinstance(m, StartViewChange) and m.sender == self.me and m.new_view > self.voted:
            self.voted = m.new_view
            return [fx.Note("info", f"voting for view {m.new_view} (a view change starts once a quorum votes for it)")]
        if isinstance(m, ViewChange) and m.sender == self.me and m.new_view != self.asked:
            self.asked = m.new_view
            r = self.replica
            return [fx.Note("info", f"asking for view {m.new_view} (executed through {r.last_executed if r else -1}, "
                                    f"{len(r.pending) if r else 0} requests waiting)")]
        return []

    def _switch_epoch(self, seq: int, now: float) -> list[FedEffect]:
        """Our replica halted at `seq`, now stable: activate the new committee and go on in it."""
        old = self.replica
        assert old is not None
        members = self.ledger.activate_pending()
        if members is None:  # cannot happen: the ledger asked for the halt
            return [fx.Note("error", f"halted at {seq} without a pending committee; staying in epoch {self.epoch}")]
        pending = list(old.pending.values())
        self.certified = Certified(
            seq, old.stable_checkpoint[1], old.stable_snapshot, old.stable_table,
            tuple(encode_message(c) for c in old.stable_proof), old.config.members, self.epoch,
        )
        self.epoch, self.members, self.synced = seq, members, seq
        self.postponed.clear()
        out: list[FedEffect] = []
        if self.me in members:
            self.replica = Replica.from_checkpoint(
                self.me, self.config(members), self.ledger, seq, old.stable_table, view=old.view, signer=self.sign
            )
            self.replica.resume()
            self.certified = None
            for q in pending:
                # Their clients would retransmit anyway; this saves a round trip.
                out += self._feed("request", "", q, now)
        else:
            self.replica = None
        return [Reconfigured(seq, members, self.role), *out]

    # ------------------------------------------------------------------ sync

    def _answer(self, peer: str, what: str, every: float, now: float) -> bool:
        last = self.served.get((peer, what))
        if last is not None and now - last < every:
            return False
        if len(self.served) > MAX_SERVED:
            self.served.clear()
        self.served[(peer, what)] = now
        return True

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
            if cp.sender in trusted and check_signatures(cp, self.verify) is None:
                signers.add(cp.sender)
        return len(signers) >= Committee(trusted).weak

    def _install(self, inst: Install, now: float) -> list[FedEffect]:
        st = inst.state
        if (st.epoch, st.seq) <= (self.epoch, self.position):
            return []  # overtaken meanwhile
        try:
            proof = tuple(decode_message(p) for p in st.proof)
        except ProtocolError as exc:
            return [fx.Note("warning", f"sync: the vouched state's proof does not decode ({exc.reason}); ignoring it")]
        if not all(isinstance(c, Checkpoint) for c in proof):
            return []
        checkpoints: tuple[Checkpoint, ...] = tuple(c for c in proof if isinstance(c, Checkpoint))
        if proof:
            # f+1 vouched for this state; its proof must hold up too, or our VIEW-CHANGEs (which
            # carry it) would be refused by everyone.
            bad = checkpoint_proof_error(self.config(st.members, base_seq=st.epoch), st.seq, checkpoints) or next(
                (r for c in checkpoints if (r := check_signatures(c, self.verify))), None
            )
            if bad or any(c.state_digest != st.digest for c in checkpoints):
                return [fx.Note("warning", f"sync: the vouched state at {st.seq} comes with a bad proof ({bad}); ignoring it")]
        try:
            self.ledger.restore(st.snapshot)
        except ValueError as exc:
            return [fx.Note("error", f"sync: f+1 members vouched for a state our ledger refuses: {exc}")]
        certified = Certified(st.seq, st.digest, st.snapshot, st.client_table, st.proof, st.members, st.epoch)
        epoch, members = st.epoch, st.members
        if self.ledger.reconfiguring():
            # The last checkpoint of its configuration: switch here, as every replica does.
            activated = self.ledger.activate_pending()
            assert activated is not None
            epoch, members, checkpoints = st.seq, activated, ()
        self.epoch, self.members = epoch, members
        self.postponed.clear()
        out: list[FedEffect] = []
        if self.me in members:
            self.replica = Replica.from_checkpoint(
                self.me, self.config(members), self.ledger, st.seq, st.client_table, view=inst.view,
                signer=self.sign, proof=checkpoints,
            )
            self.sync_wanted = False
            self.replica.resume()
        else:
            self.replica = None
        self.synced = st.seq
        self.certified = certified if self.replica is None else None
        out.append(Installed(st.seq, epoch, self.role))
        if self.replica is not None:
            out += self._route(self.replica.on_timer("resume", now), now)
        return out

    # ------------------------------------------------------------------ persistence

    def dump(self) -> bytes:
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

    def recover(self, state: bytes | None, inputs: Sequence[tuple[str, str, bytes, float]]) -> str | None:
        """Rebuild from our last dump plus the journal since (our own store: a decoding error is
        corruption, and raises). Returns what to log, or None for a node that never had state."""
        if state is None and self.me not in self.members:
            return None  # a follower that never synced anything
        if state is None:
            # No stable checkpoint yet: the genesis state, plus whatever was logged since.
            d: dict[str, Any] = {"replica": b"", "epoch": 0, "members": list(self.members), "synced": 0}
        else:
            d = decode(state, max_size=1 << 31, max_depth=4, max_items=1 << 20)
            if d.get("v") != DUMP_FORMAT:
                raise ValueError(f"unknown federation state format {d.get('v')!r}")
        self.epoch, self.members, self.synced = d["epoch"], tuple(d["members"]), d["synced"]
        if d.get("certified") is not None:
            self.certified = Certified.from_obj(d["certified"])
        if d["replica"] is None:
            self.replica = None
            self.ledger.restore(d["ledger"])
            self._reset_sync()
            return f"follower recovered: epoch {self.epoch}, state at {self.synced}"
        config = self.config(self.members)
        if d["replica"]:
            replica = Replica.recover(self.me, config, self.ledger, d["replica"], signer=self.sign)
        else:
            replica = Replica(self.me, config, self.ledger, signer=self.sign)
        for kind, sender, payload, at in inputs:
            # Effects were performed before the crash (or lost with it): replay for state only.
            _run(replica, kind, sender, decode_journal(kind, payload), at)
        replica.resume()
        self.replica = replica
        self._reset_sync()
        if state is None and not inputs:
            return None
        return (
            f"pbft recovered: epoch {self.epoch}, view {replica.view}, executed through {replica.last_executed}, "
            f"stable checkpoint {replica.low_watermark} ({len(inputs)} inputs replayed)"
        )

    def _reset_sync(self) -> None:
        self.syncer = Syncer(self.ledger.committee, self.epoch, self.position)
        self.log_fill = LogFill(self.ledger.committee)


def decode_journal(kind: str, payload: bytes) -> Any:
    """An input of the journal (Journal effects, as the driver stored them): a timer key, a
    request or a replica message. ValueError or ProtocolError if it is not one."""
    if kind == "timer":
        return payload.decode()
    if kind not in ("message", "request"):
        raise ValueError(f"unknown journal kind {kind!r}")
    m = decode_message(payload)
    if kind == "request" and not isinstance(m, Request):
        raise ProtocolError("malformed", f"a journalled request holds a {type(m).__name__}")
    return m


def _run(replica: Replica, kind: str, sender: str, item: Any, now: float) -> list[Effect]:
    if kind == "message":
        return replica.on_message(sender, item, now)
    if kind == "request":
        return replica.on_request(item, now)
    return replica.on_timer(item, now)


__all__ = [
    "Certified", "FederationNode", "FederationWire", "FedEffect", "FilledLog", "Installed", "LocalReply",
    "Reconfigured", "ServeLog", "Tick", "bundle_channel", "client_peer", "decode_journal", "epoch_of", "send_sync",
]
