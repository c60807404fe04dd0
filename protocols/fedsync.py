"""Checkpoint sync: how a node outside the committee (or a replica left behind by a committee
change) gets the federation's state without taking part in consensus.

A syncing node trusts the committee its own ledger names (the genesis committee, to begin with).
It asks those members for their latest stable checkpoint (SyncRequest); each answers with a
SyncOffer: the configuration it runs (epoch = the sequence number where that committee took
over, its members, its view) and its stable checkpoint (seq, digest). Offers from f+1 trusted
members that agree on (epoch, members, seq, digest) include one from a correct replica, so that
state is the committee's. The node then fetches the state from one of them (SyncFetch ->
SyncState), checks it against the agreed digest, and installs it. If the installed ledger names
a new committee, that becomes the trusted one, so a node catches up across committee changes
one configuration at a time, as long as f+1 members of the committee it knows still answer.

Sans-I/O: `Syncer` takes offers and states and returns what to fetch and what to install.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from collections.abc import Callable
from typing import Any, Union

from protocols.codec import as_map, bytes_max, decode, encode, int_in, list_max
from protocols.committee import Committee
from protocols.errors import ProtocolError
from protocols.pbft.messages import DIGEST_LEN, MAX_BLOB, MAX_ID, MAX_INT, MAX_MEMBERS
from protocols.pbft.view_checks import state_digest

MAX_PROOF = MAX_MEMBERS
MAX_PROOF_ITEM = 4096


@dataclass(frozen=True)
class SyncRequest:
    have_seq: int  # the stable seq the asker already holds


@dataclass(frozen=True)
class SyncOffer:
    epoch: int
    members: tuple[str, ...]
    view: int
    seq: int
    digest: bytes


@dataclass(frozen=True)
class SyncFetch:
    seq: int  # 0: whatever stable checkpoint you hold (it comes with its proof)


@dataclass(frozen=True)
class SyncState:
    epoch: int
    members: tuple[str, ...]
    view: int
    seq: int
    digest: bytes
    snapshot: bytes
    client_table: bytes
    proof: tuple[bytes, ...]  # the encoded (signed) CHECKPOINT messages that made it stable


@dataclass(frozen=True)
class LogRequest:
    """Committed batches (since, since + limit]: a node that jumped over them by a state transfer
    still wants their receipts (ledger.tx, federation.log)."""

    since: int
    limit: int


@dataclass(frozen=True)
class LogBatches:
    entries: tuple[tuple[int, int, bytes, bytes], ...]  # (seq, view, ops, results) as stored


MAX_LOG_BATCHES = 64
MAX_LOG_BYTES = 16 * 1024 * 1024

SyncMessage = Union[SyncRequest, SyncOffer, SyncFetch, SyncState, LogRequest, LogBatches]
TYPES = {
    "sync-request": SyncRequest, "sync-offer": SyncOffer, "sync-fetch": SyncFetch, "sync-state": SyncState,
    "log-request": LogRequest, "log-batches": LogBatches,
}
_NAMES = {v: k for k, v in TYPES.items()}


def message_type(msg: SyncMessage) -> str:
    return _NAMES[type(msg)]


def encode_sync(msg: SyncMessage) -> bytes:
    if isinstance(msg, SyncRequest):
        return encode({"have": msg.have_seq})
    if isinstance(msg, SyncFetch):
        return encode({"seq": msg.seq})
    if isinstance(msg, LogRequest):
        return encode({"since": msg.since, "limit": msg.limit})
    if isinstance(msg, LogBatches):
        return encode({"entries": [list(e) for e in msg.entries]})
    base: dict[str, Any] = {
        "epoch": msg.epoch, "members": list(msg.members), "view": msg.view, "seq": msg.seq, "digest": msg.digest,
    }
    if isinstance(msg, SyncState):
        base.update({"snapshot": msg.snapshot, "table": msg.client_table, "proof": list(msg.proof)})
    return encode(base)


def _members(m: dict[Any, Any]) -> tuple[str, ...]:
    members = list_max(m, "members", MAX_MEMBERS)
    if not members or any(type(x) is not str or not 0 < len(x) <= MAX_ID for x in members) or len(set(members)) != len(members):
        raise ProtocolError("bad-members", "members must be 1.. distinct peer ids")
    return tuple(members)


def decode_sync(kind: str, data: bytes) -> SyncMessage:
    """Decode untrusted bytes of envelope type `kind`; raises only ProtocolError."""
    if kind not in TYPES:
        raise ProtocolError("unknown-type", kind[:64])
    big = kind == "sync-state"
    size = 2 * MAX_BLOB + (1 << 20) if big else MAX_LOG_BYTES + (1 << 16) if kind == "log-batches" else 1 << 20
    obj = decode(data, max_size=size, max_depth=3, max_items=MAX_MEMBERS * 2 + MAX_LOG_BATCHES * 5 + 16)
    if kind == "log-request":
        m = as_map(obj, required=("since", "limit"))
        return LogRequest(int_in(m, "since", 0, MAX_INT), int_in(m, "limit", 1, MAX_LOG_BATCHES))
    if kind == "log-batches":
        m = as_map(obj, required=("entries",))
        entries = []
        for e in list_max(m, "entries", MAX_LOG_BATCHES):
            if not (
                type(e) is list and len(e) == 4 and type(e[0]) is int and 0 < e[0] <= MAX_INT
                and type(e[1]) is int and 0 <= e[1] <= MAX_INT and type(e[2]) is bytes and type(e[3]) is bytes
            ):
                raise ProtocolError("malformed", "log entries are [seq, view, ops, results]")
            entries.append((e[0], e[1], e[2], e[3]))
        return LogBatches(tuple(entries))
    if kind == "sync-request":
        m = as_map(obj, required=("have",))
        return SyncRequest(int_in(m, "have", 0, MAX_INT))
    if kind == "sync-fetch":
        m = as_map(obj, required=("seq",))
        return SyncFetch(int_in(m, "seq", 0, MAX_INT))
    keys = ("epoch", "members", "view", "seq", "digest")
    m = as_map(obj, required=keys + (("snapshot", "table", "proof") if big else ()))
    epoch, members, view = int_in(m, "epoch", 0, MAX_INT), _members(m), int_in(m, "view", 0, MAX_INT)
    seq = int_in(m, "seq", 0, MAX_INT)
    digest = bytes_max(m, "digest", DIGEST_LEN, min_len=DIGEST_LEN)
    if not big:
        return SyncOffer(epoch, members, view, seq, digest)
    proof = list_max(m, "proof", MAX_PROOF)
    if any(type(p) is not bytes or len(p) > MAX_PROOF_ITEM for p in proof):
        raise ProtocolError("bad-proof", "proof items are encoded checkpoints")
    return SyncState(
        epoch, members, view, seq, digest, bytes_max(m, "snapshot", MAX_BLOB), bytes_max(m, "table", MAX_BLOB), tuple(proof)
    )


@dataclass(frozen=True)
class Fetch:
    """Ask `peer` for the state at `seq`."""

    peer: str
    seq: int


@dataclass(frozen=True)
class Install:
    """A verified state to install: f+1 trusted members vouched for exactly this."""

    state: SyncState
    view: int  # the lowest view among the vouchers: safe to start from (higher ones are learnt)


@dataclass
class LogFill:
    """Collects batches for a gap in our log; a batch counts once f+1 trusted members sent it
    identically (its view aside: replicas may execute one batch in different views)."""

    trusted: tuple[str, ...]
    votes: dict[int, dict[tuple[bytes, bytes], set[str]]] = field(default_factory=dict)
    agreed: set[int] = field(default_factory=set)  # seqs already returned (within the current gap)

    def on_batches(self, sender: str, msg: LogBatches, lo: int, hi: int) -> list[tuple[int, int, bytes, bytes]]:
        if sender not in self.trusted:
            return []
        weak = Committee(self.trusted).weak
        agreed = []
        for seq, view, ops, results in msg.entries:
            if not lo <= seq <= hi or seq in self.agreed:
                continue
            voters = self.votes.setdefault(seq, {}).setdefault((ops, results), set())
            voters.add(sender)
            if len(voters) >= weak:
                agreed.append((seq, view, ops, results))
                self.agreed.add(seq)  # once: later senders of the same entry change nothing
                del self.votes[seq]
        self.agreed = {s for s in self.agreed if s >= lo}
        if len(self.votes) > 4 * MAX_LOG_BATCHES:
            self.votes.clear()  # a flood of unmatched entries: start over (they are re-asked)
        return agreed


@dataclass
class Syncer:
    """Collects offers from the trusted committee; say which state to fetch and when one verifies."""

    trusted: tuple[str, ...]
    epoch: int
    seq: int
    offers: dict[str, SyncOffer] = field(default_factory=dict)
    attempts: int = 0

    @property
    def f(self) -> int:
        return Committee(self.trusted).f

    def reset(self, trusted: tuple[str, ...], epoch: int, seq: int) -> None:
        self.trusted, self.epoch, self.seq = trusted, epoch, seq
        self.offers = {p: o for p, o in self.offers.items() if p in trusted}

    def _key(self, o: SyncOffer) -> tuple[int, tuple[str, ...], int, bytes]:
        return (o.epoch, o.members, o.seq, o.digest)

    def _newer(self, o: SyncOffer) -> bool:
        return (o.epoch, o.seq) > (self.epoch, self.seq)

    def vouched(self) -> tuple[tuple[int, tuple[str, ...], int, bytes], list[str]] | None:
        """The newest offer f+1 trusted members agree on, with its vouchers."""
        groups: dict[tuple[int, tuple[str, ...], int, bytes], list[str]] = {}
        for peer, o in self.offers.items():
            if peer in self.trusted and self._newer(o):
                groups.setdefault(self._key(o), []).append(peer)
        good = [(k, v) for k, v in groups.items() if len(v) >= self.f + 1]
        if not good:
            return None
        return max(good, key=lambda kv: (kv[0][0], kv[0][2]))

    def configuration(self) -> tuple[tuple[int, tuple[str, ...]], list[str]] | None:
        """The newest configuration (epoch, members) f+1 trusted members agree on, among offers
        newer than what we hold, with its vouchers. Under load their stable checkpoints move
        every few batches, so their exact offers rarely agree; the configuration does."""
        groups: dict[tuple[int, tuple[str, ...]], list[str]] = {}
        for peer, o in self.offers.items():
            if peer in self.trusted and self._newer(o):
                groups.setdefault((o.epoch, o.members), []).append(peer)
        good = [(k, v) for k, v in groups.items() if len(v) >= self.f + 1]
        if not good:
            return None
        return max(good, key=lambda kv: kv[0][0])

    def on_offer(self, sender: str, offer: SyncOffer) -> None:
        if sender in self.trusted:
            self.offers[sender] = offer

    def next_fetch(self) -> Fetch | None:
        """Whom to ask next (rotating among the vouchers on every call, i.e. every retry), always
        for whatever stable state it holds now (seq 0): the committee moves on while we ask, so a
        request for one particular checkpoint would mostly reach replicas that have dropped it.
        The answer installs if it is exactly what f+1 offered, or if its proof holds (on_state)."""
        best = self.vouched()
        conf = self.configuration()
        if best is not None:
            peers = best[1]
        elif conf is not None:
            peers = conf[1]
        else:
            return None
        peers = sorted(peers)
        self.attempts += 1
        return Fetch(peers[self.attempts % len(peers)], 0)

    def on_state(
        self, sender: str, st: SyncState, proven: Callable[[SyncState, tuple[str, ...]], bool] | None = None
    ) -> Install | str:
        """An Install if `st` is exactly what f+1 trusted members offered; or, given `proven`, if
        it belongs to the configuration f+1 of them agree on and `proven(st, trusted)` accepts
        its checkpoint proof (the caller checks the signatures). Else a refusal reason."""
        best = self.vouched()
        if best is not None and sender in best[1]:
            if (st.epoch, st.members, st.seq, st.digest) == best[0]:
                if state_digest(st.snapshot, st.client_table) != st.digest:
                    return "bad-state"
                return Install(st, min(self.offers[p].view for p in best[1]))
            if proven is None:
                return "not-the-vouched-state"
        elif proven is None:
            return "unsolicited"
        conf = self.configuration()
        if conf is None or sender not in conf[1]:
            return "unsolicited" if best is None or sender not in best[1] else "not-the-vouched-state"
        if (st.epoch, st.members) != conf[0] or (st.epoch, st.seq) <= (self.epoch, self.seq):
            return "not-the-vouched-state"
        if state_digest(st.snapshot, st.client_table) != st.digest:
            return "bad-state"
        if not proven(st, self.trusted):
            return "unproven-state"
        return Install(st, min(self.offers[p].view for p in conf[1]))
