import hashlib
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.errors import ProtocolError
from protocols.ledger import (
    MAX_TX,
    TX_DOMAIN,
    Receipt,
    Tx,
    decode_receipt,
    decode_tx,
    encode_receipt,
    encode_tx,
    sign_tx,
    signed_tx,
    verify_tx,
)
from tests.protocols.ledger.helpers import CHAIN, GENESIS, IDS, PIDS, transfer

GENESIS_HASH = GENESIS.hash
GENESIS_RAW = bytes.fromhex(GENESIS_HASH)

PROPS = settings(max_examples=300, deadline=None, derandomize=True)


def test_sign_decode_verify_round_trip() -> None:
    data = transfer(0, 7, 1, 25, lane=3)
    t = decode_tx(data)
    assert (t.chain, t.sender, t.lane, t.nonce, t.op) == (CHAIN, PIDS[0], 3, 7, "transfer")
    assert t.genesis == GENESIS_RAW
    assert dict(t.args) == {"to": PIDS[1], "amount": 25}
    assert len(t.sig) == 64
    assert verify_tx(t)
    assert t.body().startswith(TX_DOMAIN)
    assert t.id == hashlib.sha256(t.body()).hexdigest()
    assert encode_tx(t) == data
    assert decode_tx(encode_tx(t)) == t
    assert hash(t) == hash(decode_tx(data))


def test_the_wire_carries_the_raw_genesis_hash() -> None:
    """v3: 32 raw bytes, not v2's 64 hex characters (they made every signed transfer a quarter
    longer than v1's, and every replica decodes, journals and stores each one)."""
    data = transfer(0, 7, 1, 25, lane=3)
    m = msgpack.unpackb(data)
    assert m["v"] == 3 and m["genesis"] == GENESIS_RAW
    assert len(data) <= 290  # v2's signed transfer was 315 bytes, v1's 241


def test_signed_tx_is_what_decode_gives() -> None:
    t, data = signed_tx(IDS[0], chain=CHAIN, genesis=GENESIS_HASH, lane=3, nonce=7, op="transfer", args={"to": PIDS[1], "amount": 25})
    assert data == transfer(0, 7, 1, 25, lane=3) == encode_tx(t)
    assert decode_tx(data) == t and decode_tx(data).id == t.id and verify_tx(t)


def test_args_are_canonical_and_read_only() -> None:
    one = {"b": 1, "a": {"d": [1, {"z": 0, "y": 1}], "c": None}}
    two = {"a": {"c": None, "d": [1, {"y": 1, "z": 0}]}, "b": 1}
    a = sign_tx(IDS[0], chain=CHAIN, genesis=GENESIS_HASH, lane=0, nonce=1, op="x", args=one)
    b = sign_tx(IDS[0], chain=CHAIN, genesis=GENESIS_HASH, lane=0, nonce=1, op="x", args=two)
    assert a == b
    t = decode_tx(a)
    assert list(t.args) == ["a", "b"]
    with pytest.raises(TypeError):
        t.args["b"] = 2  # type: ignore[index]


def test_wire_key_order_does_not_change_id_or_signature() -> None:
    data = transfer(0, 1, 1, 5)
    m = msgpack.unpackb(data)
    m["args"] = dict(reversed(list(m["args"].items())))
    reordered = msgpack.packb(dict(reversed(list(m.items()))))
    assert reordered != data
    t = decode_tx(reordered)
    assert t.id == decode_tx(data).id and verify_tx(t)


def test_signature_covers_every_field() -> None:
    t = decode_tx(transfer(0, 1, 1, 5))
    for change in ({"chain": "other"}, {"genesis": bytes(32)}, {"lane": 1}, {"nonce": 2}, {"op": "transfer2"}, {"sender": PIDS[1]},
                   {"args": {"to": PIDS[1], "amount": 6}}):
        f = {**t.__dict__, **change}
        forged = Tx(f["chain"], f["genesis"], f["sender"], f["lane"], f["nonce"], f["op"], f["args"], t.sig)
        assert not verify_tx(forged), change


def test_verify_bad_peer_id_is_false_not_an_error() -> None:
    t = decode_tx(transfer(0, 1, 1, 5))
    for sender in ("", "not-a-peer-id", "1" * 128, PIDS[0] + "x", PIDS[0][:-1]):
        assert verify_tx(Tx(t.chain, t.genesis, sender, t.lane, t.nonce, t.op, t.args, t.sig)) is False


def test_verify_uses_the_injected_verifier_and_survives_its_exceptions() -> None:
    t = decode_tx(transfer(0, 1, 1, 5))
    assert verify_tx(t, lambda k, s, d: True)
    assert not verify_tx(t, lambda k, s, d: False)

    def boom(k: bytes, s: bytes, d: bytes) -> bool:
        raise RuntimeError("broken verifier")

    assert not verify_tx(t, boom)


def test_every_flipped_byte_fails_decode_or_verify() -> None:
    data = transfer(2, 3, 4, 99, lane=5)
    for i in range(len(data)):
        for bit in (0x01, 0x80):
            corrupt = bytearray(data)
            corrupt[i] ^= bit
            try:
                t = decode_tx(bytes(corrupt))
            except ProtocolError:
                continue
            assert not verify_tx(t), (i, bit)


def _wire(**over: Any) -> bytes:
    m: dict[Any, Any] = msgpack.unpackb(transfer(0, 1, 1, 5))
    for k, v in over.items():
        if v is KeyError:
            del m[k]
        else:
            m[k] = v
    return msgpack.packb(m, use_bin_type=True)


@pytest.mark.parametrize(
    "over",
    [
        {"v": 1}, {"v": 2}, {"v": 4}, {"v": "3"}, {"v": KeyError}, {"chain": "c" * 65}, {"genesis": KeyError},
        {"genesis": bytes(31)}, {"genesis": bytes(33)}, {"genesis": GENESIS_HASH}, {"genesis": b""}, {"chain": b"x"}, {"from": "p" * 129}, {"from": 1},
        {"lane": -1}, {"lane": 256}, {"lane": True}, {"nonce": 0}, {"nonce": 2**63}, {"nonce": 1.0},
        {"op": "o" * 65}, {"op": None}, {"args": []}, {"args": {"a": 1.5}}, {"args": {"a": {1: 2}}},
        {"sig": b"\x00" * 63}, {"sig": b"\x00" * 65}, {"sig": "x" * 64}, {"sig": KeyError}, {"extra": 1},
    ],
)
def test_decode_refuses_bad_fields(over: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_tx(_wire(**over))
    assert info.value.reason


def test_decode_refuses_oversize_and_non_maps() -> None:
    big = msgpack.packb({"pad": b"\x00" * MAX_TX})
    with pytest.raises(ProtocolError, match="oversize"):
        decode_tx(big)
    objs: list[Any] = [None, 1, [], "x", b""]
    for obj in objs:
        with pytest.raises(ProtocolError):
            decode_tx(msgpack.packb(obj, use_bin_type=True))
    with pytest.raises(ProtocolError):
        decode_tx(b"")
    with pytest.raises(ProtocolError):
        decode_tx("not bytes")  # type: ignore[arg-type]


def test_sign_tx_refuses_what_decode_would_refuse() -> None:
    for kw in ({"lane": 256}, {"nonce": 0}, {"chain": "c" * 65}, {"genesis": "ab"}, {"genesis": "g" * 65},
               {"genesis": "g" * 64}, {"genesis": " " * 64}, {"genesis": GENESIS_RAW}, {"op": "o" * 65}, {"args": {"f": 1.5}},
               {"args": {1: 2}}, {"args": {"big": b"\x00" * MAX_TX}}):
        base: dict[str, Any] = {"chain": CHAIN, "genesis": GENESIS_HASH, "lane": 0, "nonce": 1, "op": "x", "args": {}}
        with pytest.raises(ValueError):
            sign_tx(IDS[0], **{**base, **kw})


json_like = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**64), 2**65) | st.floats(allow_nan=True) | st.text(max_size=8)
    | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=4) | st.integers(0, 3), inner, max_size=4),
    max_leaves=20,
)


def _tx_shaped() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "v": st.sampled_from([3, 3, 2, "3"]),
            "chain": st.sampled_from([CHAIN, "", "c" * 65, 5]),
            "genesis": st.sampled_from([GENESIS_RAW, GENESIS_RAW, b"", bytes(31), bytes(33), GENESIS_HASH, None]),
            "from": st.sampled_from([PIDS[0], "x", "", None]),
            "lane": st.integers(-2, 300),
            "nonce": st.integers(-2, 2**64 - 1),
            "op": st.sampled_from(["transfer", "", "o" * 65]),
            "args": json_like,
            "sig": st.binary(min_size=62, max_size=66),
        },
        optional={"extra": json_like},
    )


def _decode_or_protocol_error(data: bytes) -> None:
    try:
        t = decode_tx(data)
    except ProtocolError as e:
        assert e.reason
        return
    assert isinstance(t, Tx)
    assert verify_tx(t) is False


@PROPS
@given(st.binary(max_size=200))
def test_decode_arbitrary_bytes_raises_only_protocol_error(data: bytes) -> None:
    _decode_or_protocol_error(data)


@PROPS
@given(json_like | _tx_shaped())
def test_decode_arbitrary_msgpack_raises_only_protocol_error(obj: Any) -> None:
    try:
        data = msgpack.packb(obj, use_bin_type=True)
    except (OverflowError, ValueError):
        return
    _decode_or_protocol_error(data)


def test_receipt_round_trip_and_guards() -> None:
    tid = "ab" * 32
    for r in (Receipt(tid, "applied", ""), Receipt(tid, "refused", "bad-nonce"), Receipt("", "refused", "malformed")):
        assert decode_receipt(encode_receipt(r)) == r
    for bad in (
        {"tx_id": tid, "status": "applied", "reason": "x"},
        {"tx_id": "", "status": "applied", "reason": ""},
        {"tx_id": tid, "status": "refused", "reason": ""},
        {"tx_id": tid, "status": "maybe", "reason": ""},
        {"tx_id": "zz", "status": "refused", "reason": "x"},
        {"tx_id": tid, "status": "applied"},
        [tid, "applied", ""],
    ):
        with pytest.raises(ProtocolError):
            decode_receipt(msgpack.packb(bad))


@PROPS
@given(st.binary(max_size=100) | json_like.map(lambda o: msgpack.packb(o, use_bin_type=True) if _packable(o) else b""))
def test_decode_receipt_raises_only_protocol_error(data: bytes) -> None:
    try:
        decode_receipt(data)
    except ProtocolError:
        pass


def _packable(o: Any) -> bool:
    try:
        msgpack.packb(o, use_bin_type=True)
    except (OverflowError, ValueError):
        return False
    return True
