"""protocols/fedsync.py: the sync wire schema (decode raises only ProtocolError), the Syncer state
machine (f+1 agreeing trusted offers, fetch rotation, state verification) and LogFill."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.codec import decode, encode
from protocols.errors import ProtocolError
from protocols.fedsync import (
    MAX_LOG_BATCHES,
    MAX_PROOF,
    MAX_PROOF_ITEM,
    TYPES,
    Fetch,
    Install,
    LogBatches,
    LogFill,
    LogRequest,
    SyncFetch,
    SyncOffer,
    SyncRequest,
    SyncState,
    Syncer,
    decode_sync,
    encode_sync,
    message_type,
)
from protocols.pbft.messages import MAX_ID, MAX_INT, MAX_MEMBERS
from protocols.pbft.view_checks import state_digest

PROPS = settings(max_examples=200, deadline=None, derandomize=True)
KINDS = sorted(TYPES)

# ---------------------------------------------------------------- wire: samples and strategies

D = b"d" * 32
SNAP, TABLE = b"snapshot", b"table"
GOOD = state_digest(SNAP, TABLE)
SAMPLES: list[Any] = [
    SyncRequest(0),
    SyncRequest(MAX_INT),
    SyncOffer(0, ("a",), 0, 0, D),
    SyncOffer(7, ("a", "b", "c", "d"), 3, 128, D),
    SyncFetch(1),
    SyncFetch(MAX_INT),
    SyncState(7, ("a", "b", "c", "d"), 3, 128, GOOD, SNAP, TABLE, (b"cp1", b"cp2")),
    SyncState(0, ("a",), 0, 0, D, b"", b"", ()),
    LogRequest(0, 1),
    LogRequest(MAX_INT, MAX_LOG_BATCHES),
    LogBatches(()),
    LogBatches(((1, 0, b"ops", b"res"), (MAX_INT, MAX_INT, b"", b""))),
]

ints = st.integers(0, MAX_INT)
ids = st.text(min_size=1, max_size=MAX_ID)
members = st.lists(ids, min_size=1, max_size=12, unique=True).map(tuple)
digests = st.binary(min_size=32, max_size=32)
small_bytes = st.binary(max_size=64)

sync_messages = st.one_of(
    st.builds(SyncRequest, ints),
    st.builds(SyncOffer, ints, members, ints, ints, digests),
    st.builds(SyncFetch, st.integers(1, MAX_INT)),
    st.builds(
        SyncState, ints, members, ints, ints, digests, small_bytes, small_bytes,
        st.lists(st.binary(max_size=MAX_PROOF_ITEM), max_size=5).map(tuple),
    ),
    st.builds(LogRequest, ints, st.integers(1, MAX_LOG_BATCHES)),
    st.builds(
        LogBatches,
        st.lists(st.tuples(st.integers(1, MAX_INT), ints, small_bytes, small_bytes), max_size=MAX_LOG_BATCHES).map(tuple),
    ),
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False),
    st.binary(max_size=40),
    st.text(max_size=20),
)
keys = st.one_of(st.sampled_from(["have", "seq", "since", "limit", "entries", "epoch", "members", "view",
                                  "digest", "snapshot", "table", "proof"]), st.text(max_size=8), st.integers(-5, 5))
msgpack_objects = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=6), st.dictionaries(keys, children, max_size=8)),
    max_leaves=40,
)


def wire(msg: Any) -> dict[Any, Any]:
    return decode(encode_sync(msg))  # type: ignore[no-any-return]


def refused(kind: str, obj: Any) -> str:
    with pytest.raises(ProtocolError) as info:
        decode_sync(kind, encode(obj))
    return info.value.reason


def only_protocol_error(kind: str, data: bytes) -> None:
    try:
        msg = decode_sync(kind, data)
    except ProtocolError:
        return
    assert type(msg) is TYPES[kind]
    assert decode_sync(kind, encode_sync(msg)) == msg  # what decodes is canonical enough to round-trip


# ---------------------------------------------------------------- wire: round trips

@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
def test_round_trip_samples(msg: Any) -> None:
    kind = message_type(msg)
    assert decode_sync(kind, encode_sync(msg)) == msg
    assert TYPES[kind] is type(msg)


@PROPS
@given(sync_messages)
def test_round_trip_random(msg: Any) -> None:
    assert decode_sync(message_type(msg), encode_sync(msg)) == msg


def test_every_type_has_a_sample() -> None:
    assert {type(m) for m in SAMPLES} == set(TYPES.values())


def test_max_sized_lists_round_trip() -> None:
    many = tuple(f"p{i}" for i in range(MAX_MEMBERS))
    offer = SyncOffer(1, many, 0, 1, D)
    assert decode_sync("sync-offer", encode_sync(offer)) == offer
    state = SyncState(1, many, 0, 1, D, b"s", b"t", tuple(b"c" * 200 for _ in range(MAX_PROOF)))
    assert decode_sync("sync-state", encode_sync(state)) == state
    batches = LogBatches(tuple((i + 1, 0, b"o", b"r") for i in range(MAX_LOG_BATCHES)))
    assert decode_sync("log-batches", encode_sync(batches)) == batches


def test_kind_must_match_the_payload() -> None:
    # The envelope type picks the schema: a payload of another kind is refused.
    with pytest.raises(ProtocolError):
        decode_sync("sync-state", encode_sync(SyncOffer(0, ("a",), 0, 0, D)))
    with pytest.raises(ProtocolError):
        decode_sync("sync-fetch", encode_sync(SyncRequest(3)))
    with pytest.raises(ProtocolError):
        decode_sync("log-request", encode_sync(SyncFetch(3)))


# ---------------------------------------------------------------- wire: untrusted input

@pytest.mark.parametrize("kind", ["", "sync", "SYNC-OFFER", "x" * 1000, "pre_prepare", "sync-offer "])
def test_unknown_kind(kind: str) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_sync(kind, encode_sync(SyncFetch(1)))
    assert info.value.reason == "unknown-type"
    assert len(info.value.detail) <= 64


@PROPS
@given(st.text(max_size=30).filter(lambda k: k not in TYPES), st.binary(max_size=64))
def test_unknown_kind_random(kind: str, data: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_sync(kind, data)


@PROPS
@given(st.sampled_from(KINDS), st.binary(max_size=256))
def test_random_bytes_only_protocol_error(kind: str, data: bytes) -> None:
    only_protocol_error(kind, data)


@PROPS
@given(st.sampled_from(KINDS), msgpack_objects)
def test_random_objects_only_protocol_error(kind: str, obj: Any) -> None:
    only_protocol_error(kind, encode(obj))


@PROPS
@given(st.sampled_from(SAMPLES), st.data())
def test_mutated_fields_only_protocol_error(msg: Any, data: st.DataObject) -> None:
    """A valid map with one field replaced, deleted or added: still only ProtocolError."""
    obj = wire(msg)
    action = data.draw(st.sampled_from(["replace", "delete", "add"]))
    if action == "replace":
        obj[data.draw(st.sampled_from(sorted(obj)))] = data.draw(msgpack_objects)
    elif action == "delete":
        del obj[data.draw(st.sampled_from(sorted(obj)))]
    else:
        obj[data.draw(keys)] = data.draw(msgpack_objects)
    kind = data.draw(st.sampled_from([message_type(msg)] + KINDS))
    only_protocol_error(kind, encode(obj))


@PROPS
@given(st.sampled_from(SAMPLES), st.data())
def test_mutated_bytes_only_protocol_error(msg: Any, data: st.DataObject) -> None:
    raw = bytearray(encode_sync(msg))
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    only_protocol_error(message_type(msg), bytes(raw))


# ---------------------------------------------------------------- wire: field validation

OFFER = SyncOffer(1, ("a", "b", "c", "d"), 0, 128, D)
STATE = SyncState(1, ("a", "b", "c", "d"), 0, 128, GOOD, SNAP, TABLE, (b"cp",))


@pytest.mark.parametrize("kind", ["sync-offer", "sync-state"])
@pytest.mark.parametrize("digest", [b"", b"d" * 31, b"d" * 33, b"d" * 64, "d" * 32, None, 0])
def test_digest_is_exactly_32_bytes(kind: str, digest: Any) -> None:
    obj = wire(OFFER if kind == "sync-offer" else STATE)
    obj["digest"] = digest
    refused(kind, obj)


@pytest.mark.parametrize("kind", ["sync-offer", "sync-state"])
@pytest.mark.parametrize(
    "value",
    [
        [],
        ["a", "a"],
        ["a", "b", "a"],
        [""],
        ["a", ""],
        ["x" * (MAX_ID + 1)],
        [1],
        ["a", b"b"],
        [None],
        [["a"]],
        "abcd",
        b"abcd",
        None,
        [f"p{i}" for i in range(MAX_MEMBERS + 1)],
    ],
    ids=lambda v: repr(v)[:24],
)
def test_members_are_distinct_non_empty_ids(kind: str, value: Any) -> None:
    obj = wire(OFFER if kind == "sync-offer" else STATE)
    obj["members"] = value
    reason = refused(kind, obj)
    if type(value) is list and len(value) <= MAX_MEMBERS and all(type(x) in (str, bytes, int) or x is None for x in value):
        assert reason == "bad-members"


def test_member_at_max_id_length_is_accepted() -> None:
    obj = wire(OFFER)
    obj["members"] = ["x" * MAX_ID, "y"]
    assert decode_sync("sync-offer", encode(obj)).members == ("x" * MAX_ID, "y")  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("kind", "obj"),
    [
        ("sync-request", {"have": -1}),
        ("sync-request", {"have": MAX_INT + 1}),
        ("sync-request", {"have": True}),
        ("sync-request", {"have": 1.0}),
        ("sync-request", {}),
        ("sync-request", {"have": 1, "extra": 2}),
        ("sync-fetch", {"seq": -1}),
        ("sync-fetch", {"seq": -3}),
        ("sync-fetch", {"seq": "1"}),
        ("log-request", {"since": 0, "limit": 0}),
        ("log-request", {"since": 0, "limit": MAX_LOG_BATCHES + 1}),
        ("log-request", {"since": -1, "limit": 1}),
        ("log-request", {"since": 0}),
        ("log-request", {"since": 0, "limit": False}),
        ("log-batches", {"entries": [[0, 0, b"", b""]]}),
        ("log-batches", {"entries": [[-1, 0, b"", b""]]}),
        ("log-batches", {"entries": [[1, -1, b"", b""]]}),
        ("log-batches", {"entries": [[MAX_INT + 1, 0, b"", b""]]}),
        ("log-batches", {"entries": [[True, 0, b"", b""]]}),
        ("log-batches", {"entries": [[1, False, b"", b""]]}),
        ("log-batches", {"entries": [[1, 0, "ops", b""]]}),
        ("log-batches", {"entries": [[1, 0, b"", None]]}),
        ("log-batches", {"entries": [[1, 0, b""]]}),
        ("log-batches", {"entries": [[1, 0, b"", b"", b""]]}),
        ("log-batches", {"entries": [{"seq": 1}]}),
        ("log-batches", {"entries": [[i + 1, 0, b"", b""] for i in range(MAX_LOG_BATCHES + 1)]}),
        ("log-batches", {"entries": {}}),
        ("log-batches", {}),
        ("sync-offer", {**wire(OFFER), "seq": -1}),
        ("sync-offer", {**wire(OFFER), "epoch": MAX_INT + 1}),
        ("sync-offer", {**wire(OFFER), "view": True}),
        ("sync-offer", {**wire(OFFER), "snapshot": b""}),  # a state's fields are not an offer's
        ("sync-state", {**wire(STATE), "proof": [b"x" * (MAX_PROOF_ITEM + 1)]}),
        ("sync-state", {**wire(STATE), "proof": [b"x"] * (MAX_PROOF + 1)}),
        ("sync-state", {**wire(STATE), "proof": ["cp"]}),
        ("sync-state", {**wire(STATE), "proof": b"cp"}),
        ("sync-state", {**wire(STATE), "snapshot": "s"}),
        ("sync-state", {**wire(STATE), "table": None}),
        ("sync-state", {k: v for k, v in wire(STATE).items() if k != "proof"}),
    ],
    ids=lambda v: v if isinstance(v, str) else repr(v)[:40],
)
def test_field_validation(kind: str, obj: Any) -> None:
    refused(kind, obj)


def test_proof_item_at_limit_is_accepted() -> None:
    obj = wire(STATE)
    obj["proof"] = [b"x" * MAX_PROOF_ITEM]
    assert decode_sync("sync-state", encode(obj)).proof == (b"x" * MAX_PROOF_ITEM,)  # type: ignore[union-attr]


def test_trailing_and_truncated_bytes_refused() -> None:
    raw = encode_sync(OFFER)
    with pytest.raises(ProtocolError):
        decode_sync("sync-offer", raw + b"\x00")
    with pytest.raises(ProtocolError):
        decode_sync("sync-offer", raw[:-1])
    with pytest.raises(ProtocolError):
        decode_sync("sync-offer", b"")


# ---------------------------------------------------------------- Syncer

T4 = ("a", "b", "c", "d")  # n = 4, f = 1
T7 = ("a", "b", "c", "d", "e", "f", "g")  # n = 7, f = 2
M = ("a", "b", "c", "d")


def offer(seq: int = 128, *, epoch: int = 0, view: int = 0, digest: bytes = GOOD, members: tuple[str, ...] = M) -> SyncOffer:
    return SyncOffer(epoch, members, view, seq, digest)


def state(o: SyncOffer, snapshot: bytes = SNAP, table: bytes = TABLE) -> SyncState:
    return SyncState(o.epoch, o.members, o.view, o.seq, o.digest, snapshot, table, ())


def test_f_from_trusted() -> None:
    assert Syncer(T4, 0, 0).f == 1
    assert Syncer(T7, 0, 0).f == 2
    assert Syncer(("a",), 0, 0).f == 0


def test_offers_from_untrusted_peers_are_ignored() -> None:
    s = Syncer(T4, 0, 0)
    for p in ("x", "y", "z", "w"):
        s.on_offer(p, offer())
    assert s.offers == {}
    assert s.vouched() is None and s.next_fetch() is None
    s.on_offer("a", offer())
    assert s.next_fetch() is None  # one trusted offer is not f+1
    s.on_offer("x", offer())
    assert s.next_fetch() is None


def test_f_plus_one_agreeing_offers_give_a_fetch() -> None:
    s = Syncer(T7, 0, 0)
    o = offer()
    s.on_offer("a", o)
    s.on_offer("b", o)
    assert s.next_fetch() is None  # f = 2: two are not enough
    s.on_offer("c", o)
    f = s.next_fetch()
    assert f is not None and f.peer in {"a", "b", "c"} and f.seq == 0  # "what you hold now"


@pytest.mark.parametrize(
    "other",
    [
        offer(digest=b"x" * 32),
        offer(seq=256),
        offer(epoch=1),
        offer(members=("a", "b", "c", "e")),
    ],
    ids=["digest", "seq", "epoch", "members"],
)
def test_offers_must_agree_on_epoch_members_seq_digest(other: SyncOffer) -> None:
    s = Syncer(T4, 0, 0)
    s.on_offer("a", offer())
    s.on_offer("b", other)
    f0 = s.next_fetch()
    if (other.epoch, other.members) == (0, M):
        # Same configuration, other checkpoint: ask for whatever state, which must prove itself.
        assert f0 is not None and f0.seq == 0
    else:
        assert f0 is None
    s.on_offer("c", other)
    f = s.next_fetch()
    assert f is not None and f.peer in {"b", "c"} and f.seq == 0


def test_views_need_not_agree() -> None:
    s = Syncer(T4, 0, 0)
    s.on_offer("a", offer(view=5))
    s.on_offer("b", offer(view=2))
    assert s.next_fetch() is not None


def test_fetch_rotates_among_vouchers() -> None:
    s = Syncer(T7, 0, 0)
    for p in ("e", "b", "g"):
        s.on_offer(p, offer())
    s.on_offer("a", offer(digest=b"x" * 32))  # not a voucher
    asked = [s.next_fetch() for _ in range(9)]
    assert all(isinstance(f, Fetch) and f.seq == 0 for f in asked)
    peers = [f.peer for f in asked]  # type: ignore[union-attr]
    assert set(peers) == {"b", "e", "g"}
    assert all(peers[i] != peers[i + 1] for i in range(8))  # every retry asks someone else
    assert peers[:3] == peers[3:6] == peers[6:9]  # round robin


def test_stale_offers_are_ignored() -> None:
    s = Syncer(T4, 2, 128)
    for p in T4:
        s.on_offer(p, offer(seq=128, epoch=2))  # what we already have
    assert s.next_fetch() is None
    for p in T4:
        s.on_offer(p, offer(seq=64, epoch=3 - 1))
    assert s.next_fetch() is None
    for p in T4:
        s.on_offer(p, offer(seq=999, epoch=1))  # an older configuration, however high its seq
    assert s.next_fetch() is None
    s.on_offer("a", offer(seq=0, epoch=3))
    s.on_offer("b", offer(seq=0, epoch=3))  # a newer epoch at a lower seq is newer
    f = s.next_fetch()
    assert f is not None and f.peer in {"a", "b"} and f.seq == 0


def test_newest_vouched_wins() -> None:
    s = Syncer(T7, 0, 0)
    old, new, newer_epoch = offer(seq=128), offer(seq=256, digest=b"n" * 32), offer(seq=64, epoch=1, digest=b"e" * 32)
    for p in ("a", "b", "c"):
        s.on_offer(p, old)
    for p in ("d", "e", "f"):
        s.on_offer(p, new)
    assert s.vouched() == ((0, M, 256, b"n" * 32), ["d", "e", "f"])
    assert s.next_fetch().peer in {"d", "e", "f"}  # type: ignore[union-attr]
    s.on_offer("g", newer_epoch)  # only one voucher: not yet
    assert s.next_fetch().peer in {"d", "e", "f"}  # type: ignore[union-attr]
    s.on_offer("a", newer_epoch)
    s.on_offer("b", newer_epoch)
    best = s.vouched()
    assert best is not None and best[0] == (1, M, 64, b"e" * 32) and sorted(best[1]) == ["a", "b", "g"]


def test_a_later_offer_replaces_the_senders_earlier_one() -> None:
    s = Syncer(T4, 0, 0)
    s.on_offer("a", offer())
    s.on_offer("b", offer())
    assert s.next_fetch() is not None
    s.on_offer("b", offer(digest=b"z" * 32))
    f = s.next_fetch()
    assert f is not None and f.seq == 0  # no exact agreement left: only the configuration


def _vouched_syncer() -> tuple[Syncer, SyncOffer]:
    s = Syncer(T4, 0, 0)
    o = offer(view=4)
    s.on_offer("a", o)
    s.on_offer("b", offer(view=2))
    s.on_offer("c", offer(digest=b"x" * 32, view=0))
    return s, o


def test_on_state_installs_the_vouched_state() -> None:
    s, o = _vouched_syncer()
    st_ = state(o)
    for sender in ("a", "b"):
        got = s.on_state(sender, st_)
        assert isinstance(got, Install)
        assert got.state == st_
        assert got.view == 2  # the lowest view among the vouchers ("c" is not one)


def test_on_state_refusals() -> None:
    s, o = _vouched_syncer()
    assert s.on_state("c", state(o)) == "unsolicited"  # trusted but not a voucher
    assert s.on_state("d", state(o)) == "unsolicited"  # trusted, sent no offer
    assert s.on_state("x", state(o)) == "unsolicited"  # not trusted
    assert s.on_state("a", state(offer(digest=b"x" * 32))) == "not-the-vouched-state"
    assert s.on_state("a", state(offer(seq=256))) == "not-the-vouched-state"
    assert s.on_state("a", state(offer(epoch=1))) == "not-the-vouched-state"
    assert s.on_state("a", state(offer(members=("a", "b", "c")))) == "not-the-vouched-state"
    assert s.on_state("a", state(o, snapshot=b"tampered")) == "bad-state"
    assert s.on_state("a", state(o, table=b"tampered")) == "bad-state"
    # Vouched offers naming a digest that no snapshot matches: any state is a bad one.
    s2 = Syncer(T4, 0, 0)
    bogus = offer(digest=b"q" * 32)
    s2.on_offer("a", bogus)
    s2.on_offer("b", bogus)
    assert s2.on_state("a", state(bogus)) == "bad-state"


def test_on_state_without_vouched_offer_is_unsolicited() -> None:
    s = Syncer(T4, 0, 0)
    assert s.on_state("a", state(offer())) == "unsolicited"
    s.on_offer("a", offer())
    assert s.on_state("a", state(offer())) == "unsolicited"


def test_reset_keeps_only_trusted_offers() -> None:
    s = Syncer(T4, 0, 0)
    for p in T4:
        s.on_offer(p, offer(seq=256, epoch=1))
    s.reset(("c", "d", "e", "f"), 1, 128)
    assert set(s.offers) == {"c", "d"}
    assert (s.trusted, s.epoch, s.seq) == (("c", "d", "e", "f"), 1, 128)
    best = s.vouched()
    assert best is not None and sorted(best[1]) == ["c", "d"]
    s.reset(("c", "d", "e", "f"), 1, 256)  # now what they offer is not newer
    assert s.next_fetch() is None
    s.on_offer("a", offer(seq=512, epoch=1))  # no longer trusted
    assert "a" not in s.offers


@PROPS
@given(
    st.lists(
        st.tuples(
            st.sampled_from(T7 + ("x", "y")),
            st.integers(0, 2),  # epoch
            st.sampled_from([64, 128, 256]),  # seq
            st.sampled_from([GOOD, b"b" * 32]),  # digest
            st.integers(0, 5),  # view
        ),
        max_size=20,
    ),
    st.integers(0, 1),
    st.sampled_from([0, 64, 128]),
)
def test_syncer_model(events: list[tuple[str, int, int, bytes, int]], epoch: int, seq: int) -> None:
    """Against a brute-force model: what is fetched is the newest (epoch, seq) that f+1 trusted
    peers' latest offers agree on, from one of them, and only its exact state installs."""
    s = Syncer(T7, epoch, seq)
    latest: dict[str, SyncOffer] = {}
    for sender, e, n, d, v in events:
        o = SyncOffer(e, M, v, n, d)
        s.on_offer(sender, o)
        if sender in T7:
            latest[sender] = o
    groups: dict[tuple[Any, ...], list[str]] = {}
    for p, o in latest.items():
        if (o.epoch, o.seq) > (epoch, seq):
            groups.setdefault((o.epoch, o.members, o.seq, o.digest), []).append(p)
    good = {k: v for k, v in groups.items() if len(v) >= 3}
    f = s.next_fetch()
    if not good:
        confs: dict[tuple[Any, ...], list[str]] = {}
        for p, o in latest.items():
            if (o.epoch, o.seq) > (epoch, seq):
                confs.setdefault((o.epoch, o.members), []).append(p)
        agreed = {k: v for k, v in confs.items() if len(v) >= 3}
        if agreed:
            newest = max(agreed)
            assert f is not None and f.seq == 0 and f.peer in agreed[newest]
        else:
            assert f is None
        assert all(s.on_state(p, state(o)) == "unsolicited" for p, o in latest.items())
        return
    top = max((k[0], k[2]) for k in good)
    assert f is not None and f.seq == 0 and (latest[f.peer].epoch, latest[f.peer].seq) == top
    key = (latest[f.peer].epoch, M, latest[f.peer].seq, latest[f.peer].digest)
    assert key in good and f.peer in good[key]
    vouchers = good[key]
    got = s.on_state(f.peer, state(latest[f.peer]))
    if key[3] == GOOD:
        assert isinstance(got, Install) and got.view == min(latest[p].view for p in vouchers)
    else:
        assert got == "bad-state"
    for p in set(T7) - set(vouchers):
        assert s.on_state(p, state(latest[f.peer])) == "unsolicited"


# ---------------------------------------------------------------- LogFill

def entry(seq: int, view: int = 0, ops: bytes = b"ops", results: bytes = b"res") -> tuple[int, int, bytes, bytes]:
    return (seq, view, ops, results)


def test_logfill_ignores_untrusted_senders() -> None:
    fill = LogFill(T4)
    for p in ("x", "y", "z"):
        assert fill.on_batches(p, LogBatches((entry(5),)), 1, 10) == []
    assert fill.votes == {}
    assert fill.on_batches("a", LogBatches((entry(5),)), 1, 10) == []  # x, y, z did not count


def test_logfill_ignores_entries_outside_range() -> None:
    fill = LogFill(T4)
    msg = LogBatches((entry(4), entry(11), entry(5), entry(10)))
    assert fill.on_batches("a", msg, 5, 10) == []
    assert set(fill.votes) == {5, 10}
    got = fill.on_batches("b", msg, 5, 10)
    assert sorted(got) == [entry(5), entry(10)]


def test_logfill_f_plus_one_identical_regardless_of_view() -> None:
    fill = LogFill(T7)  # f = 2
    assert fill.on_batches("a", LogBatches((entry(3, view=0),)), 1, 9) == []
    assert fill.on_batches("b", LogBatches((entry(3, view=1),)), 1, 9) == []
    got = fill.on_batches("c", LogBatches((entry(3, view=7),)), 1, 9)
    assert got == [entry(3, view=7)]
    assert 3 not in fill.votes


def test_logfill_same_sender_twice_counts_once() -> None:
    fill = LogFill(T4)
    assert fill.on_batches("a", LogBatches((entry(3),)), 1, 9) == []
    assert fill.on_batches("a", LogBatches((entry(3),)), 1, 9) == []
    assert fill.on_batches("b", LogBatches((entry(3),)), 1, 9) == [entry(3)]


def test_logfill_conflicting_contents_from_f_senders_never_agree() -> None:
    fill = LogFill(T7)  # f = 2
    # Two faulty senders push different contents (several versions each); correct ones are silent.
    for p in ("a", "b"):
        msg = LogBatches(tuple(entry(4, ops=bytes([i])) for i in range(5)) + (entry(5, results=p.encode()),))
        assert fill.on_batches(p, msg, 1, 9) == []
    # A third trusted sender with the true contents does not make any of theirs agree.
    assert fill.on_batches("c", LogBatches((entry(4, ops=b"true"), entry(5, results=b"true"))), 1, 9) == []


def test_logfill_entry_returned_once_across_all_senders() -> None:
    fill = LogFill(T4)
    returned = []
    for p in T4:
        returned += fill.on_batches(p, LogBatches((entry(3),)), 1, 9)
    assert returned == [entry(3)]


def test_logfill_duplicate_entry_in_one_message_returned_once() -> None:
    fill = LogFill(T4)
    assert fill.on_batches("a", LogBatches((entry(3),)), 1, 9) == []
    assert fill.on_batches("b", LogBatches((entry(3), entry(3))), 1, 9) == [entry(3)]


def test_logfill_flood_is_bounded() -> None:
    fill = LogFill(T4)
    bound = 4 * MAX_LOG_BATCHES
    seq = 1
    for _ in range(50):
        msg = LogBatches(tuple(entry(seq + i, ops=b"junk") for i in range(MAX_LOG_BATCHES)))
        seq += MAX_LOG_BATCHES
        fill.on_batches("a", msg, 1, MAX_INT)
        assert len(fill.votes) <= bound
        assert sum(len(v) for v in fill.votes.values()) <= bound


@PROPS
@given(
    st.lists(
        st.tuples(
            st.sampled_from(T7 + ("x",)),
            st.lists(
                st.tuples(st.integers(0, 12), st.integers(0, 3), st.sampled_from([b"o1", b"o2"]), st.sampled_from([b"r1", b"r2"])),
                max_size=6,
                unique_by=lambda e: e[0],  # one version per seq per message (repeats: the tests above)
            ),
        ),
        max_size=25,
    )
)
def test_logfill_properties(events: list[tuple[str, list[tuple[int, int, bytes, bytes]]]]) -> None:
    """Every returned entry is in range and was sent, with those exact (ops, results), by at least
    f+1 distinct trusted senders (as the model counts them since the seq last agreed)."""
    fill = LogFill(T7)
    lo, hi = 2, 10
    senders_of: dict[tuple[int, bytes, bytes], set[str]] = {}
    for sender, entries in events:
        got = fill.on_batches(sender, LogBatches(tuple(entries)), lo, hi)
        if sender in T7:
            for s_, _, o, r in entries:
                if lo <= s_ <= hi:
                    senders_of.setdefault((s_, o, r), set()).add(sender)
        else:
            assert got == []
        for s_, v, o, r in got:
            assert lo <= s_ <= hi
            assert (s_, v, o, r) in entries
            assert len(senders_of[(s_, o, r)]) >= 3
        assert len({e[0] for e in got}) == len(got)  # one version per seq in one answer
        assert len(fill.votes) <= 4 * MAX_LOG_BATCHES


def test_a_proven_state_of_the_agreed_configuration_installs_without_exact_agreement() -> None:
    # Under load the members' stable checkpoints differ at every moment: the configuration is
    # what f+1 agree on, and the state must carry a proof the caller accepts.
    s = Syncer(T4, 0, 0)
    s.on_offer("a", offer(seq=128, view=3))
    s.on_offer("b", offer(seq=136, digest=b"y" * 32, view=1))
    f = s.next_fetch()
    assert f is not None and f.seq == 0 and f.peer in {"a", "b"}
    good = state(offer(seq=128))
    assert s.on_state("a", good) == "unsolicited"  # without a proof checker: exact agreement only
    assert s.on_state("a", good, lambda st, trusted: False) == "unproven-state"
    got = s.on_state("a", good, lambda st, trusted: trusted == T4 and st.seq == 128)
    assert isinstance(got, Install) and got.view == 1
    assert s.on_state("c", good, lambda st, trusted: True) == "unsolicited"  # not a voucher
    assert s.on_state("a", state(offer(seq=128, epoch=8)), lambda st, trusted: True) == "not-the-vouched-state"
    assert s.on_state("a", state(offer(seq=128), snapshot=b"x"), lambda st, trusted: True) == "bad-state"
