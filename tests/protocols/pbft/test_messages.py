import dataclasses

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
# The same with (dummy) signatures on the signed types, nested ones included: they round-trip too.
S = bytes(range(64))
PP_S = dataclasses.replace(PP, sig=S)
VC_S = ViewChange(
    1, 0, (Checkpoint(0, b"d" * 32, "a", S),), (PreparedCert(PP_S, (Prepare(0, 1, PP.digest, "b", S),)),), "a", S
)
SIGNED = [
    PP_S,
    Prepare(0, 1, PP.digest, "b", S),
    Checkpoint(128, b"s" * 32, "d", S),
    VC_S,
    NewView(1, (VC_S, VC), (PP_S, PrePrepare(1, 2, batch_digest(()), (), "b", S)), "b"),
]
SAMPLES += SIGNED


def _sigs(msg: object) -> list[bytes]:
    """Every signature in `msg`, nested ones included, in encoding order."""
    out: list[bytes] = []
    if dataclasses.is_dataclass(msg):
        for f in dataclasses.fields(msg):
            v = getattr(msg, f.name)
            if f.name == "sig":
                out.append(v)
            for x in v if isinstance(v, tuple) else (v,):
                out += _sigs(x)
    return out


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
def test_round_trip(msg: object) -> None:
    got = decode_message(encode_message(msg))  # type: ignore[arg-type]
    assert got == msg
    assert _sigs(got) == _sigs(msg)  # equality ignores signatures: compare them explicitly


def test_sig_is_on_the_wire_only_when_present() -> None:
    from protocols.codec import decode

    assert "sig" not in decode(encode_message(PP))
    assert decode(encode_message(PP_S))["sig"] == S
    assert list(decode(encode_message(PP_S)))[-1] == "sig"  # last: dropping it gives the unsigned map
    assert PP_S == PP and hash(PP_S) == hash(PP)  # compare=False


@pytest.mark.parametrize("sig", [b"", b"x" * 63, b"x" * 65, "x" * 64, None])
@pytest.mark.parametrize("tag", ["prepare", "checkpoint"])
def test_bad_signature_fields_are_refused(tag: str, sig: object) -> None:
    from protocols.codec import decode

    obj = decode(encode_message(Prepare(0, 1, PP.digest, "b") if tag == "prepare" else Checkpoint(4, b"s" * 32, "d")))
    obj["sig"] = sig
    with pytest.raises(ProtocolError):
        decode_message(encode(obj))


def test_unsigned_types_take_no_sig() -> None:
    from protocols.codec import decode

    obj = decode(encode_message(Commit(3, 9, PP.digest, "c")))
    obj["sig"] = S
    with pytest.raises(ProtocolError) as info:
        decode_message(encode(obj))
    assert info.value.reason == "unknown-field"


@PROPS
@given(st.sampled_from(SIGNED), st.binary(min_size=64, max_size=64), st.booleans())
def test_random_signatures_round_trip(msg: object, sig: bytes, strip: bool) -> None:
    s = b"" if strip else sig
    if isinstance(msg, NewView):  # no signature of its own: its VIEW-CHANGEs' then
        m: object = dataclasses.replace(msg, view_changes=tuple(dataclasses.replace(v, sig=s) for v in msg.view_changes))
    else:
        m = dataclasses.replace(msg, sig=s)  # type: ignore[type-var]
    got = decode_message(encode_message(m))  # type: ignore[arg-type]
    assert got == m and _sigs(got) == _sigs(m)


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
