import time

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keys.envelope import Envelope, EnvelopeError, ReplayGuard, SeqCounter, open_envelope, seal
from keys.identity import Identity

PROPS = settings(max_examples=300, deadline=None, derandomize=True)
ALICE = Identity.from_seed(b"\x01" * 32)
BOB = Identity.from_seed(b"\x02" * 32)
DOMAIN = "sovereign/test/1"
NOW = 1_700_000_000_000


def sealed(ident: Identity = ALICE, *, seq: int = 7, ts: int = NOW, payload: bytes = b"hello", type: str = "ping") -> bytes:
    return seal(ident, domain=DOMAIN, type=type, seq=seq, ts=ts, payload=payload)


def opened(data: bytes, guard: ReplayGuard | None = None, **kw) -> Envelope:
    kw.setdefault("domain", DOMAIN)
    kw.setdefault("now_ms", NOW)
    return open_envelope(data, guard=guard, **kw)


def reason(data: bytes, guard: ReplayGuard | None = None, **kw) -> str:
    with pytest.raises(EnvelopeError) as info:
        opened(data, guard, **kw)
    return info.value.reason


def rewrite(data: bytes, **changes) -> bytes:
    m = msgpack.unpackb(data)
    m.update(changes)
    return msgpack.packb(m, use_bin_type=True)


def test_round_trip() -> None:
    env = opened(sealed(), ReplayGuard())
    assert env == Envelope(sender=ALICE.peer_id, type="ping", seq=7, ts=NOW, payload=b"hello")


def test_wire_format() -> None:
    m = msgpack.unpackb(sealed())
    assert m.keys() == {"v", "sender", "type", "seq", "ts", "payload", "sig"}
    assert m["v"] == 1 and m["sender"] == ALICE.peer_id and len(m["sig"]) == 64


@pytest.mark.parametrize(
    "change",
    [
        {"type": "pong"},
        {"seq": 8},
        {"ts": NOW - 1},
        {"payload": b"hellp"},
        {"payload": b""},
        {"sender": BOB.peer_id},  # the key inside BOB's id does not verify ALICE's signature
    ],
)
def test_tampered_fields_fail_the_signature(change: dict) -> None:
    assert reason(rewrite(sealed(), **change)) == "bad-signature"


def test_tampered_signature() -> None:
    sig = bytearray(msgpack.unpackb(sealed())["sig"])
    sig[0] ^= 1
    assert reason(rewrite(sealed(), sig=bytes(sig))) == "bad-signature"
    assert reason(rewrite(sealed(), sig=b"")) == "bad-signature"


def test_wrong_domain() -> None:
    assert reason(sealed(), domain="sovereign/other/1") == "bad-signature"


def test_expected_sender() -> None:
    assert opened(sealed(), expected_sender=ALICE.peer_id).sender == ALICE.peer_id
    assert reason(sealed(), expected_sender=BOB.peer_id) == "wrong-sender"


def test_invalid_sender_id() -> None:
    assert reason(rewrite(sealed(), sender="QmNotAnEd25519Id")) == "bad-sender"
    assert reason(rewrite(sealed(), sender=7)) == "bad-sender"


def test_oversize_is_refused_before_decoding() -> None:
    big = sealed(payload=b"x" * (256 * 1024))
    assert reason(big) == "oversize"
    assert reason(sealed(payload=b"x" * 100), max_size=64) == "oversize"
    assert opened(sealed(payload=b"x" * 100), max_size=1024).payload == b"x" * 100


@pytest.mark.parametrize(
    "change",
    [
        {"extra": 1},
        {"v": 1, "type": ""},
        {"type": "t" * 65},
        {"type": b"ping"},
        {"seq": -1},
        {"seq": 2**63},
        {"seq": True},
        {"seq": 1.0},
        {"ts": -5},
        {"ts": 2**64 - 1},
        {"payload": "text"},
        {"payload": [1]},
        {"sig": "sig"},
    ],
)
def test_malformed_fields(change: dict) -> None:
    assert reason(rewrite(sealed(), **change)) == "malformed"


def test_missing_field_and_wrong_version() -> None:
    m = msgpack.unpackb(sealed())
    del m["ts"]
    assert reason(msgpack.packb(m)) == "malformed"
    assert reason(rewrite(sealed(), v=2)) == "unsupported-version"
    assert reason(rewrite(sealed(), v=True)) == "unsupported-version"


@pytest.mark.parametrize("data", [b"", b"\xc1", b"\x90", msgpack.packb([1, 2]), msgpack.packb("x"), b"\x81\x01\x02"])
def test_not_an_envelope(data: bytes) -> None:
    assert reason(data) == "malformed"


def test_non_bytes_input() -> None:
    assert reason("text") == "malformed"  # type: ignore[arg-type]


def test_seal_validates_its_arguments() -> None:
    for kwargs in [{"type": ""}, {"type": "x" * 65}, {"seq": -1}, {"seq": 2**63}, {"ts": -1}, {"seq": True}, {"payload": 5}, {"payload": "s"}]:
        with pytest.raises(ValueError):
            seal(ALICE, **{"domain": DOMAIN, "type": "t", "seq": 1, "ts": NOW, "payload": b"", **kwargs})
    for domain in ["", "a\x00b"]:
        with pytest.raises(ValueError):
            seal(ALICE, domain=domain, type="t", seq=1, ts=NOW, payload=b"")


# -- replay guard ---------------------------------------------------------------------------


def test_replay_is_refused() -> None:
    guard = ReplayGuard()
    opened(sealed(seq=1), guard)
    assert reason(sealed(seq=1), guard) == "replay"
    opened(sealed(seq=2), guard)
    opened(sealed(BOB, seq=1), guard)  # sequence numbers are per sender


def test_stale_and_future_boundaries() -> None:
    guard = ReplayGuard()
    assert reason(sealed(ts=NOW - 300_001), guard) == "stale"
    opened(sealed(seq=1, ts=NOW - 300_000), guard)
    assert reason(sealed(ts=NOW + 30_001), guard) == "future"
    opened(sealed(seq=2, ts=NOW + 30_000), guard)


def test_no_guard_skips_freshness() -> None:
    assert opened(sealed(ts=0), None).ts == 0
    opened(sealed(ts=0), None)  # and replays: the caller opted out


def test_forgery_does_not_poison_the_guard() -> None:
    guard = ReplayGuard()
    forged = rewrite(sealed(seq=5), payload=b"evil")
    assert reason(forged, guard) == "bad-signature"
    assert opened(sealed(seq=5), guard).payload == b"hello"


def test_guard_prunes_by_age() -> None:
    guard = ReplayGuard(window_ms=1000, future_skew_ms=0)
    for i in range(50):
        guard.check_and_record(f"s{i}", 1, 10, now_ms=10)
    assert guard.sender_count == 50 and len(guard) == 50
    guard.check_and_record("late", 1, 5000, now_ms=5000)
    assert guard.sender_count == 1 and len(guard) == 1
    with pytest.raises(EnvelopeError) as info:
        guard.check_and_record("s0", 1, 10, now_ms=5000)
    assert info.value.reason == "stale"


def test_clock_stepping_back_does_not_reopen_pruned_history() -> None:
    guard = ReplayGuard(window_ms=1000, future_skew_ms=100)
    guard.check_and_record("a", 1, 1000, now_ms=1000)
    guard.check_and_record("b", 1, 5000, now_ms=5000)  # prunes a's entry
    with pytest.raises(EnvelopeError) as info:
        guard.check_and_record("a", 1, 1000, now_ms=1500)  # wall clock stepped back
    assert info.value.reason == "stale"


def test_sender_flood_cannot_evict_history_into_replayability() -> None:
    guard = ReplayGuard(window_ms=10_000, max_senders=3)
    guard.check_and_record("honest", 1, 1000, now_ms=1000)
    for i in range(5):
        guard.check_and_record(f"sybil{i}", 1, 1001 + i, now_ms=1001 + i)
    assert guard.sender_count <= 3
    with pytest.raises(EnvelopeError) as info:
        guard.check_and_record("honest", 1, 1000, now_ms=1010)
    assert info.value.reason in ("stale", "replay")
    guard.check_and_record("newcomer", 1, 1010, now_ms=1010)  # fresh traffic still flows


def test_per_sender_bound() -> None:
    guard = ReplayGuard(window_ms=10_000, max_per_sender=3)
    for seq in range(10):
        guard.check_and_record("a", seq, 1000 + seq, now_ms=1000 + seq)
    assert len(guard) == 3
    for seq in range(10):
        with pytest.raises(EnvelopeError):
            guard.check_and_record("a", seq, 1000 + seq, now_ms=1010)
    guard.check_and_record("a", 10, 1010, now_ms=1010)


def test_out_of_order_delivery_inside_the_window_is_accepted() -> None:
    guard = ReplayGuard()
    for seq, ts in [(3, NOW - 10), (1, NOW - 30), (2, NOW - 20)]:
        guard.check_and_record("a", seq, ts, now_ms=NOW)
    with pytest.raises(EnvelopeError):
        guard.check_and_record("a", 1, NOW - 30, now_ms=NOW)


@PROPS
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 3), st.integers(0, 4000), st.integers(0, 500)), max_size=60))
def test_guard_never_accepts_a_repeat_inside_the_window(events: list) -> None:
    guard = ReplayGuard(window_ms=1000, future_skew_ms=100, max_senders=3, max_per_sender=2)
    now = 0
    accepted: dict[tuple[int, int], int] = {}
    for sender, seq, ts, advance in events:
        now += advance
        try:
            guard.check_and_record(f"p{sender}", seq, ts, now_ms=now)
        except EnvelopeError as e:
            assert e.reason in ("stale", "future", "replay")
            continue
        assert now - 1000 <= ts <= now + 100
        previous = accepted.get((sender, seq))
        assert previous is None or previous < now - 1000, "accepted a replay inside the window"
        accepted[(sender, seq)] = ts
        assert guard.sender_count <= 3 and len(guard) <= 6


def test_seq_counter() -> None:
    counter = SeqCounter(start=41)
    assert [counter.next(), counter.next()] == [41, 42]
    before = time.time_ns() // 1000
    default = SeqCounter().next()
    assert before <= default <= time.time_ns() // 1000
    with pytest.raises(ValueError):
        SeqCounter(start=-1)
    last = SeqCounter(start=2**63 - 1)
    assert last.next() == 2**63 - 1
    with pytest.raises(OverflowError):
        last.next()


# -- properties: nothing but EnvelopeError ever escapes ---------------------------------------


@PROPS
@given(st.binary(max_size=400))
def test_random_bytes_only_raise_envelope_error(data: bytes) -> None:
    with pytest.raises(EnvelopeError):
        opened(data, ReplayGuard())


VALID = sealed(seq=99, payload=b"payload bytes")
EXPECTED = opened(VALID)


def check_mutant(data: bytes) -> None:
    try:
        env = opened(data, ReplayGuard())
    except EnvelopeError:
        return
    assert env == EXPECTED  # a mutant that opens at all must say exactly what the original said


@PROPS
@given(st.integers(0, len(VALID) * 8 - 1))
def test_bit_flips(bit: int) -> None:
    data = bytearray(VALID)
    data[bit // 8] ^= 1 << (bit % 8)
    check_mutant(bytes(data))


@PROPS
@given(st.integers(0, len(VALID) - 1), st.binary(min_size=0, max_size=4), st.integers(0, 3))
def test_truncations_and_insertions(pos: int, insert: bytes, cut: int) -> None:
    check_mutant(VALID[:pos])
    check_mutant(VALID[:pos] + insert + VALID[pos + cut :])


FIELDS = ["v", "sender", "type", "seq", "ts", "payload", "sig"]


@PROPS
@given(st.sampled_from(FIELDS), st.sampled_from(FIELDS))
def test_field_swaps(a: str, b: str) -> None:
    m = msgpack.unpackb(VALID)
    m[a], m[b] = m[b], m[a]
    check_mutant(msgpack.packb(m, use_bin_type=True))


VALUES = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=70) | st.binary(max_size=70)


@PROPS
@given(st.dictionaries(st.sampled_from(FIELDS + ["x"]), VALUES | st.lists(VALUES, max_size=3), max_size=8))
def test_structured_garbage(m: dict) -> None:
    with pytest.raises(EnvelopeError):
        opened(msgpack.packb(m, use_bin_type=True), ReplayGuard())
