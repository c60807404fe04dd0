import json
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import keys.card as card_mod
from keys.card import CapabilityCard, CardError, issue_card, verify_card
from keys.identity import Identity

PROPS = settings(max_examples=300, deadline=None, derandomize=True)
ALICE = Identity.from_seed(b"\x0a" * 32)
BOB = Identity.from_seed(b"\x0b" * 32)
NOW = 1_700_000_000_000
ADDRS = ["/ip4/127.0.0.1/tcp/4001", "/ip6/::1/tcp/4001"]
CAPS = {"inference": {"model": "small", "max_tokens": 2048, "gpu": False, "price": 0.5, "langs": ["en", "fr"]}, "storage": {}}


def card(ident: Identity = ALICE, **kw: Any) -> CapabilityCard:
    args = {"addrs": ADDRS, "capabilities": CAPS, "version": "0.1.0", "now_ms": NOW}
    args.update(kw)
    return issue_card(ident, **args)


def wire(c: CapabilityCard, **changes: Any) -> bytes:
    m = msgpack.unpackb(c.to_bytes())
    m.update(changes)
    return msgpack.packb(m, use_bin_type=True)


def signed_wire(ident: Identity, **fields: Any) -> bytes:
    """A correctly signed card with arbitrary (possibly invalid) field values, bypassing issue_card's checks."""
    f = {"peer_id": ident.peer_id, "addrs": ADDRS, "capabilities": CAPS, "version": "0.1.0", "issued_at_ms": NOW, "expires_at_ms": NOW + 30_000}
    f.update(fields)
    body = card_mod._signed_bytes(f["peer_id"], tuple(f["addrs"]), f["capabilities"], f["version"], f["issued_at_ms"], f["expires_at_ms"])
    m = {"v": 1, **f, "sig": ident.sign(body)}
    return msgpack.packb(m, use_bin_type=True)


def reason(data: bytes, now_ms: int = NOW + 1, **kw: Any) -> str:
    with pytest.raises(CardError) as info:
        verify_card(data, now_ms=now_ms, **kw)
    return info.value.reason


def test_round_trip() -> None:
    c = card()
    assert verify_card(c.to_bytes(), now_ms=NOW) == c
    assert c.peer_id == ALICE.peer_id and c.addrs == tuple(ADDRS)
    assert c.expires_at_ms == NOW + 30_000
    assert c.capabilities["inference"]["langs"] == ("en", "fr")


def test_card_is_frozen_and_hashable() -> None:
    c = card()
    assert hash(c) == hash(verify_card(c.to_bytes(), now_ms=NOW))
    with pytest.raises(TypeError):
        c.capabilities["inference"]["model"] = "big"  # type: ignore[index]
    with pytest.raises(AttributeError):
        c.version = "2"  # type: ignore[misc]


def test_to_dict_is_json_friendly() -> None:
    d = card().to_dict()
    assert set(d) == {"peer_id", "addrs", "capabilities", "version", "issued_at_ms", "expires_at_ms"}
    assert json.loads(json.dumps(d)) == d
    assert d["capabilities"]["inference"]["langs"] == ["en", "fr"]


def test_packing_is_canonical() -> None:
    reordered = {"storage": {}, "inference": dict(reversed(list(CAPS["inference"].items())))}
    assert card(capabilities=reordered).to_bytes() == card().to_bytes()


def test_verbatim_forwarding_verifies() -> None:
    c = verify_card(card().to_bytes(), now_ms=NOW)
    assert verify_card(c.to_bytes(), now_ms=NOW + 5) == c


def test_expiry_boundaries() -> None:
    data = card().to_bytes()
    verify_card(data, now_ms=NOW + 29_999)
    assert reason(data, now_ms=NOW + 30_000) == "expired"


def test_not_yet_valid() -> None:
    verify_card(card(now_ms=NOW + 30_000).to_bytes(), now_ms=NOW)
    assert reason(card(now_ms=NOW + 30_001).to_bytes(), now_ms=NOW) == "not-yet-valid"


def test_unsigned() -> None:
    assert reason(wire(card(), sig=b"")) == "unsigned"


def test_mis_signed() -> None:
    sig = bytearray(card().signature)
    sig[10] ^= 0x40
    assert reason(wire(card(), sig=bytes(sig))) == "bad-signature"
    assert reason(wire(card(), sig=b"\x00" * 63)) == "bad-signature"
    assert reason(wire(card(), addrs=["/ip4/6.6.6.6/tcp/1"])) == "bad-signature"
    assert reason(wire(card(), version="0.1.1")) == "bad-signature"
    assert reason(wire(card(), capabilities={"inference": {"model": "huge"}})) == "bad-signature"
    assert reason(wire(card(), expires_at_ms=NOW + 40_000)) == "bad-signature"


def test_foreign_peer_id() -> None:
    # Alice's signature on a card claiming Bob's id: checked against Bob's key, so it fails.
    assert reason(wire(card(ALICE), peer_id=BOB.peer_id)) == "bad-signature"
    assert reason(signed_wire(ALICE, peer_id=BOB.peer_id)) == "bad-signature"
    assert reason(wire(card(), peer_id="QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N")) == "bad-peer-id"


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"expires_at_ms": NOW - 1}, "bad-validity"),
        ({"expires_at_ms": NOW}, "bad-validity"),
        ({"expires_at_ms": NOW + 24 * 3600 * 1000 + 1}, "ttl-too-long"),
        ({"addrs": ["/ip4/1.2.3.4/tcp/1"] * 17}, "limits"),
        ({"addrs": ["/" + "a" * 256]}, "limits"),
        ({"addrs": [""]}, "limits"),
        ({"capabilities": {f"c{i}": {} for i in range(65)}}, "limits"),
        ({"capabilities": {"c": {f"p{i}": 1 for i in range(33)}}}, "limits"),
        ({"capabilities": {"c": {"p": b"bytes"}}}, "bad-param"),
        ({"capabilities": {"c": {"p": {"nested": 1}}}}, "bad-param"),
        ({"capabilities": {"c": {"p": [[["deep"]]]}}}, "bad-param"),
        ({"capabilities": {"c": {"p": float("nan")}}}, "bad-param"),
        ({"capabilities": {"c": {"p": float("inf")}}}, "bad-param"),
        ({"capabilities": {"": {}}}, "limits"),
        ({"capabilities": {"c" * 65: {}}}, "limits"),
        ({"version": ""}, "limits"),
        ({"issued_at_ms": -1}, "malformed"),
        ({"issued_at_ms": True}, "malformed"),
    ],
)
def test_refused_even_when_correctly_signed(fields: dict, expected: str) -> None:
    assert reason(signed_wire(ALICE, **fields)) == expected


def test_limits_at_the_edge_are_accepted() -> None:
    data = signed_wire(
        ALICE,
        addrs=["/" + "a" * 255] * 16,
        capabilities={"c": {"p": [["x"] * 3, [1.5, None, True]], **{f"q{i}": i for i in range(31)}}},
        expires_at_ms=NOW + 24 * 3600 * 1000,
    )
    assert len(verify_card(data, now_ms=NOW).addrs) == 16


def test_issue_card_applies_the_same_limits() -> None:
    with pytest.raises(CardError):
        card(addrs=["/ip4/1.2.3.4/tcp/1"] * 17)
    with pytest.raises(CardError):
        card(capabilities={"c": {"p": object()}})
    with pytest.raises(CardError):
        card(ttl_ms=0)
    with pytest.raises(CardError):
        card(ttl_ms=24 * 3600 * 1000 + 1)


def test_oversize() -> None:
    data = card().to_bytes()
    assert reason(data + b"\x00" * (16 * 1024)) == "oversize"
    assert reason(data, max_size=len(data) - 1) == "oversize"


@pytest.mark.parametrize("data", [b"", b"\xc1", msgpack.packb([1, 2, 3]), msgpack.packb({"v": 1})])
def test_malformed(data: bytes) -> None:
    assert reason(data) == "malformed"


def test_extra_field_and_version() -> None:
    assert reason(wire(card(), extra=1)) == "malformed"
    assert reason(wire(card(), v=2)) == "unsupported-version"
    assert reason(card().to_bytes() + b"\x00") == "malformed"  # trailing bytes


# -- properties: nothing but CardError ever escapes -----------------------------------------------

VALID = card().to_bytes()
EXPECTED = verify_card(VALID, now_ms=NOW)


def check_mutant(data: bytes) -> None:
    try:
        c = verify_card(data, now_ms=NOW + 1)
    except CardError:
        return
    assert c == EXPECTED


@PROPS
@given(st.binary(max_size=600))
def test_random_bytes_only_raise_card_error(data: bytes) -> None:
    with pytest.raises(CardError):
        verify_card(data, now_ms=NOW)


@PROPS
@given(st.integers(0, len(VALID) * 8 - 1))
def test_bit_flips(bit: int) -> None:
    data = bytearray(VALID)
    data[bit // 8] ^= 1 << (bit % 8)
    check_mutant(bytes(data))


@PROPS
@given(st.integers(0, len(VALID)), st.binary(max_size=4), st.integers(0, 3))
def test_truncations_and_insertions(pos: int, insert: bytes, cut: int) -> None:
    check_mutant(VALID[:pos])
    check_mutant(VALID[:pos] + insert + VALID[pos + cut :])


FIELDS = ["v", "peer_id", "addrs", "capabilities", "version", "issued_at_ms", "expires_at_ms", "sig"]
LEAVES = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=20) | st.binary(max_size=20)
JUNK = st.recursive(LEAVES, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=12)


@PROPS
@given(st.sampled_from(FIELDS), st.sampled_from(FIELDS), st.sampled_from(FIELDS), JUNK)
def test_field_swaps_and_replacements(a: str, b: str, c: str, junk: Any) -> None:
    m = msgpack.unpackb(VALID)
    m[a], m[b] = m[b], m[a]
    check_mutant(msgpack.packb(m, use_bin_type=True))
    m[c] = junk
    check_mutant(msgpack.packb(m, use_bin_type=True))
