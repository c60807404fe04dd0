from hypothesis import given, settings
from hypothesis import strategies as st

import pytest

from protocols.errors import ProtocolError
from protocols.pbft.messages import (
    Checkpoint,
    Commit,
    FetchState,
    NewView,
    PrePrepare,
    Prepare,
    PreparedCert,
    Reply,
    Request,
    StateTransfer,
    Status,
    ViewChange,
    batch_digest,
    decode_message,
    encode_message,
)
from protocols.codec import encode

PROPS = settings(max_examples=300, deadline=None, derandomize=True)

R = Request("client", 1, b"op")
PP = PrePrepare(0, 1, batch_digest((R,)), (R,), "a")
VC = ViewChange(1, 0, (Checkpoint(0, b"d" * 32, "a"),), (PreparedCert(PP, (Prepare(0, 1, PP.digest, "b"),)),), "a")
SAMPLES = [
    R,
    PP,
    Prepare(0, 1, PP.digest, "b"),
    Commit(3, 9, PP.digest, "c"),
    Reply(0, 1, "client", "a", b"res"),
    Checkpoint(128, b"s" * 32, "d"),
    VC,
    NewView(1, (VC,), (PP, PrePrepare(1, 2, batch_digest(()), (), "b")), "b"),
    FetchState(128, "a"),
    StateTransfer(128, b"s" * 32, b"snap", b"table", "c"),
    Status(3, False, 17, 16, "b"),
]


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
def test_round_trip(msg: object) -> None:
    assert decode_message(encode_message(msg)) == msg  # type: ignore[arg-type]


def test_null_batch_digest_is_stable_and_distinct() -> None:
    assert batch_digest(()) == batch_digest(())
    assert batch_digest(()) != batch_digest((R,))
    assert batch_digest((R, R)) != batch_digest((R,))


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        ({"t": "prepare", "view": 0, "seq": 1, "digest": b"x", "sender": "a"}, "out-of-range"),
        ({"t": "prepare", "view": -1, "seq": 1, "digest": b"x" * 32, "sender": "a"}, "out-of-range"),
        ({"t": "prepare", "view": 0, "seq": 1, "digest": b"x" * 32, "sender": ""}, "out-of-range"),
        ({"t": "prepare", "view": True, "seq": 1, "digest": b"x" * 32, "sender": "a"}, "bad-field"),
        ({"t": "prepare", "view": 0, "seq": 1, "digest": b"x" * 32}, "missing-field"),
        ({"t": "prepare", "view": 0, "seq": 1, "digest": b"x" * 32, "sender": "a", "x": 1}, "unknown-field"),
        ({"t": "nope"}, "bad-type"),
        ([1, 2], "malformed"),
        ({"t": "pre_prepare", "view": 0, "seq": 1, "digest": b"x" * 32, "batch": [{"t": "commit"}], "sender": "a"}, "bad-type"),
    ],
)
def test_schema_refusals(obj: object, reason: str) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_message(encode(obj))
    assert info.value.reason == reason


@PROPS
@given(st.binary(max_size=512))
def test_random_bytes_only_protocol_error(data: bytes) -> None:
    try:
        decode_message(data)
    except ProtocolError:
        pass


@PROPS
@given(st.sampled_from(SAMPLES), st.data())
def test_mutated_messages_only_protocol_error(msg: object, data: st.DataObject) -> None:
    raw = bytearray(encode_message(msg))  # type: ignore[arg-type]
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    try:
        decode_message(bytes(raw))
    except ProtocolError:
        pass
