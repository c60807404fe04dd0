"""Signed envelopes: every application message travels in one.

Wire: a msgpack map {"v": 1, "sender", "type", "seq", "ts", "payload", "sig"}. The signature covers
a domain tag (the protocol, e.g. "sovereign/cards/1") so a message signed for one protocol is never
valid in another, and the sender's key is read out of the sender's peer id, so no key directory is
needed. `open_envelope` checks everything before any state machine sees the payload.
"""

from __future__ import annotations

import heapq
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import msgpack

from keys.identity import Identity, verify_signature
from keys.peerid import PeerIdError, public_key_from_peer_id
from keys.wire import WireError, unpack

VERSION = 1
MAX_TYPE_LEN = 64
MAX_SEQ = 2**63  # exclusive; also the bound on ts, so both fit a signed 64-bit column
REPLAY_WINDOW_MS = 300_000  # CONCEPTS.md: replay window 300 s age
FUTURE_SKEW_MS = 30_000  # CONCEPTS.md: 30 s future skew
_SIG_PREFIX = b"sovereign-envelope-v1\x00"
_KEYS = frozenset({"v", "sender", "type", "seq", "ts", "payload", "sig"})


class EnvelopeError(ValueError):
    """An envelope was refused; `reason` is short and machine-readable (for metrics and peer scoring)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Envelope:
    sender: str
    type: str
    seq: int
    ts: int
    payload: bytes


def _signed_bytes(domain: str, sender: str, type: str, seq: int, ts: int, payload: bytes) -> bytes:
    return (
        _SIG_PREFIX
        + domain.encode()
        + b"\x00"
        + msgpack.packb([sender, type, seq, ts, payload], use_bin_type=True)
    )


def _check_domain(domain: str) -> None:
    # A NUL inside the domain would make the tag boundary ambiguous. Domains are our own constants,
    # so a bad one is a programming error, not a peer's fault.
    if not isinstance(domain, str) or not domain or "\x00" in domain:
        raise ValueError(f"invalid envelope domain {domain!r}")


def _is_int(x: object) -> bool:
    return type(x) is int  # bool is an int subclass and never a valid seq/ts


def seal(identity: Identity, *, domain: str, type: str, seq: int, ts: int, payload: bytes) -> bytes:
    _check_domain(domain)
    if not isinstance(type, str) or not 0 < len(type) <= MAX_TYPE_LEN:
        raise ValueError(f"envelope type must be 1..{MAX_TYPE_LEN} characters")
    if not _is_int(seq) or not 0 <= seq < MAX_SEQ:
        raise ValueError("seq must be an int in [0, 2**63)")
    if not _is_int(ts) or not 0 <= ts < MAX_SEQ:
        raise ValueError("ts must be an int in [0, 2**63) (milliseconds since the epoch)")
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise ValueError("payload must be bytes (encode it with protocols.codec first)")
    payload = bytes(payload)
    sender = identity.peer_id
    sig = identity.sign(_signed_bytes(domain, sender, type, seq, ts, payload))
    wire = {"v": VERSION, "sender": sender, "type": type, "seq": seq, "ts": ts, "payload": payload, "sig": sig}
    return msgpack.packb(wire, use_bin_type=True)


def open_envelope(
    data: bytes,
    *,
    domain: str,
    now_ms: int,
    guard: ReplayGuard | None,
    max_size: int = 256 * 1024,
    expected_sender: str | None = None,
) -> Envelope:
    """Decode and verify an envelope, or raise EnvelopeError; nothing else escapes.

    `guard=None` skips freshness and replay checks altogether: for re-verifying archived messages
    (e.g. a PBFT log fetched during catch-up), which are legitimately old.
    """
    _check_domain(domain)
    try:
        m = unpack(data, max_size=max_size, max_depth=1, max_items=len(_KEYS), int_keys=False)
    except WireError as e:
        raise EnvelopeError("oversize" if e.reason == "oversize" else "malformed", e.detail) from None
    if type(m) is not dict or m.keys() != _KEYS:
        raise EnvelopeError("malformed", "expected a map with exactly the envelope fields")
    if m["v"] != VERSION or not _is_int(m["v"]):
        raise EnvelopeError("unsupported-version", repr(m["v"]))
    sender, typ, seq, ts, payload, sig = (m[k] for k in ("sender", "type", "seq", "ts", "payload", "sig"))
    if not isinstance(typ, str) or not 0 < len(typ) <= MAX_TYPE_LEN:
        raise EnvelopeError("malformed", "type")
    if not _is_int(seq) or not 0 <= seq < MAX_SEQ:
        raise EnvelopeError("malformed", "seq")
    if not _is_int(ts) or not 0 <= ts < MAX_SEQ:
        raise EnvelopeError("malformed", "ts")
    if type(payload) is not bytes or type(sig) is not bytes:
        raise EnvelopeError("malformed", "payload and sig must be bytes")
    try:
        public_key = public_key_from_peer_id(sender)
    except PeerIdError as e:
        raise EnvelopeError("bad-sender", str(e)) from None
    # Before the signature: cheaper, and the outcome is the same refusal either way.
    if expected_sender is not None and sender != expected_sender:
        raise EnvelopeError("wrong-sender", f"{sender} is not {expected_sender}")
    if not verify_signature(public_key, sig, _signed_bytes(domain, sender, typ, seq, ts, payload)):
        raise EnvelopeError("bad-signature")
    # Only now: a forgery must never occupy a (sender, seq) slot and lock out the real message.
    if guard is not None:
        guard.check_and_record(sender, seq, ts, now_ms)
    return Envelope(sender=sender, type=typ, seq=seq, ts=ts, payload=payload)


@dataclass
class _SenderLog:
    seen: dict[int, int] = field(default_factory=dict)  # seq -> ts
    by_age: list[tuple[int, int]] = field(default_factory=list)  # heap of (ts, seq)
    # Entries evicted early (over max_per_sender) were still inside the window; anything at or
    # below the newest evicted ts can no longer be told apart from a replay, so it is refused.
    floor: int = -1

    def prune(self, cutoff: int) -> None:
        while self.by_age and self.by_age[0][0] < cutoff:
            _, seq = heapq.heappop(self.by_age)
            del self.seen[seq]


class ReplayGuard:
    """Refuses stale, future-dated and repeated (sender, seq) envelopes in bounded memory.

    Invariant: whatever is forgotten is refused anyway. Entries pruned by age are older than the
    window (refused as stale); entries dropped early to bound memory raise a floor below which
    messages are refused, so a flood of fake senders cannot evict an honest sender's history and
    reopen it to replay.
    """

    def __init__(
        self,
        window_ms: int = REPLAY_WINDOW_MS,
        future_skew_ms: int = FUTURE_SKEW_MS,
        max_senders: int = 10_000,
        max_per_sender: int = 100_000,
    ) -> None:
        if window_ms <= 0 or future_skew_ms < 0 or max_senders < 1 or max_per_sender < 1:
            raise ValueError("replay guard bounds must be positive")
        self.window_ms = window_ms
        self.future_skew_ms = future_skew_ms
        self.max_senders = max_senders
        self.max_per_sender = max_per_sender
        self._senders: OrderedDict[str, _SenderLog] = OrderedDict()  # least recently seen first
        self._horizon = -1  # highest age cutoff ever pruned with; never moves back with the clock
        self._untracked_floor = -1  # newest ts among senders evicted while still inside the window
        self._next_sweep = -1

    def __len__(self) -> int:
        return sum(len(log.seen) for log in self._senders.values())

    @property
    def sender_count(self) -> int:
        return len(self._senders)

    def check_and_record(self, sender: str, seq: int, ts: int, now_ms: int) -> None:
        cutoff = max(now_ms - self.window_ms, self._horizon)
        if ts < cutoff:
            raise EnvelopeError("stale", f"ts {ts} is older than the {self.window_ms} ms window")
        if ts > now_ms + self.future_skew_ms:
            raise EnvelopeError("future", f"ts {ts} is more than {self.future_skew_ms} ms ahead")
        self._horizon = cutoff
        self._sweep(now_ms, cutoff)

        log = self._senders.get(sender)
        floor = self._untracked_floor if log is None else log.floor
        if ts <= floor:
            raise EnvelopeError("stale", "older than the replay history still held for this sender")
        if log is not None:
            log.prune(cutoff)
            if seq in log.seen:
                raise EnvelopeError("replay", f"seq {seq} already seen from {sender}")
            self._senders.move_to_end(sender)
        else:
            log = self._admit(sender)
        log.seen[seq] = ts
        heapq.heappush(log.by_age, (ts, seq))
        if len(log.seen) > self.max_per_sender:
            old_ts, old_seq = heapq.heappop(log.by_age)
            del log.seen[old_seq]
            log.floor = max(log.floor, old_ts)

    def _admit(self, sender: str) -> _SenderLog:
        while len(self._senders) >= self.max_senders:
            _, evicted = self._senders.popitem(last=False)
            newest = max((ts for ts, _ in evicted.by_age), default=-1)
            self._untracked_floor = max(self._untracked_floor, newest, evicted.floor)
        # A sender returning after eviction inherits the global floor, since its own history is gone.
        log = _SenderLog(floor=self._untracked_floor)
        self._senders[sender] = log
        return log

    def _sweep(self, now_ms: int, cutoff: int) -> None:
        # Senders that went quiet are pruned a few times per window, so memory tracks live traffic.
        if now_ms < self._next_sweep:
            return
        self._next_sweep = now_ms + max(1, self.window_ms // 4)
        for name in list(self._senders):
            log = self._senders[name]
            log.prune(cutoff)
            if not log.seen and log.floor < cutoff:
                del self._senders[name]


class SeqCounter:
    """Envelope sequence numbers that never repeat across restarts.

    Started at the wall-clock microseconds at process start: a restarted node begins above anything
    it sent before (it cannot have sent a million messages per second), so no persisted counter is needed.
    """

    def __init__(self, start: int | None = None) -> None:
        self._next = time.time_ns() // 1000 if start is None else start
        if not _is_int(self._next) or not 0 <= self._next < MAX_SEQ:
            raise ValueError("seq start must be an int in [0, 2**63)")

    def next(self) -> int:
        value = self._next
        if value >= MAX_SEQ:
            raise OverflowError("sequence numbers exhausted")
        self._next = value + 1
        return value
