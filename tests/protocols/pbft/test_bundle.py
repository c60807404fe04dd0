"""protocols/pbft/bundle.py: several PBFT messages in one encoding; decode raises only ProtocolError
and refuses a bundle as a whole when any message in it is malformed."""

from __future__ import annotations

import copy
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.codec import decode, encode
from protocols.errors import ProtocolError
from protocols.pbft.bundle import MAX_BUNDLE, decode_bundle, encode_bundle
from protocols.pbft.messages import Commit, Message, Prepare, message_to_obj
from tests.protocols.pbft.test_messages import PP, _sigs
from tests.protocols.pbft.test_messages import SAMPLES as _SAMPLES

SAMPLES = cast("list[Message]", _SAMPLES)

PROPS = settings(max_examples=200, deadline=None, derandomize=True)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False),
    st.binary(max_size=40),
    st.text(max_size=20),
)
TAGS = ["request", "pre_prepare", "prepare", "commit", "reply", "checkpoint", "view_change", "new_view",
        "fetch_state", "state_transfer", "status", "prepared_cert"]
keys = st.one_of(st.just("t"), st.sampled_from(["view", "seq", "digest", "sender", "sig", "batch"]), st.text(max_size=6))
msgpack_objects = st.recursive(
    scalars | st.sampled_from(TAGS),
    lambda children: st.one_of(st.lists(children, max_size=5), st.dictionaries(keys, children, max_size=6)),
    max_leaves=40,
)


def bundle_sig_list(msgs: list[Any]) -> list[list[bytes]]:
    return [_sigs(m) for m in msgs]


def only_protocol_error(data: bytes) -> None:
    try:
        msgs = decode_bundle(data)
    except ProtocolError:
        return
    assert 0 < len(msgs) <= MAX_BUNDLE
    assert decode_bundle(encode_bundle(msgs)) == msgs


# ---------------------------------------------------------------- round trips

@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
def test_single_message_round_trip(msg: Any) -> None:
    got = decode_bundle(encode_bundle([msg]))
    assert got == [msg]
    assert bundle_sig_list(got) == bundle_sig_list([msg])


def test_all_samples_in_one_bundle() -> None:
    got = decode_bundle(encode_bundle(SAMPLES))
    assert got == SAMPLES
    assert bundle_sig_list(got) == bundle_sig_list(SAMPLES)  # equality ignores signatures


@PROPS
@given(st.lists(st.sampled_from(SAMPLES), min_size=1, max_size=30))
def test_random_bundles_round_trip(msgs: list[Any]) -> None:
    got = decode_bundle(encode_bundle(msgs))
    assert got == msgs  # order and duplicates kept
    assert bundle_sig_list(got) == bundle_sig_list(msgs)


def test_bundle_is_a_list_of_message_maps() -> None:
    assert decode(encode_bundle(SAMPLES)) == [message_to_obj(m) for m in SAMPLES]


def test_accepts_tuples_and_max_bundle() -> None:
    msgs = [Commit(0, i, PP.digest, "a") for i in range(MAX_BUNDLE)]
    assert decode_bundle(encode_bundle(tuple(msgs))) == msgs


# ---------------------------------------------------------------- size limits

def test_empty_bundle_refused() -> None:
    with pytest.raises(ValueError):
        encode_bundle([])
    with pytest.raises(ProtocolError) as info:
        decode_bundle(encode([]))
    assert info.value.reason == "malformed"


def test_oversize_bundle_refused() -> None:
    msgs = [Commit(0, i, PP.digest, "a") for i in range(MAX_BUNDLE + 1)]
    with pytest.raises(ValueError):
        encode_bundle(msgs)
    with pytest.raises(ProtocolError):
        decode_bundle(encode([message_to_obj(m) for m in msgs]))


def test_max_size_argument() -> None:
    data = encode_bundle(SAMPLES)
    assert decode_bundle(data, max_size=len(data)) == SAMPLES
    with pytest.raises(ProtocolError) as info:
        decode_bundle(data, max_size=len(data) - 1)
    assert info.value.reason == "oversize"


# ---------------------------------------------------------------- untrusted input

@pytest.mark.parametrize(
    "obj",
    [None, 0, b"", "", {}, message_to_obj(PP), {"t": "bundle", "messages": [message_to_obj(PP)]}, [None], [[]]],
    ids=repr,
)
def test_not_a_list_of_messages(obj: Any) -> None:
    with pytest.raises(ProtocolError):
        decode_bundle(encode(obj))


@pytest.mark.parametrize("position", [0, 5, -1])
@pytest.mark.parametrize(
    "bad",
    [
        {"t": "commit", "view": 0, "seq": 1, "digest": b"x", "sender": "a"},  # short digest
        {"t": "commit", "view": 0, "seq": 1, "digest": b"x" * 32},  # missing sender
        {"t": "commit", "view": 0, "seq": 1, "digest": b"x" * 32, "sender": "a", "sig": b"s" * 64},  # unsigned type
        {"t": "prepare", "view": 0, "seq": 1, "digest": b"x" * 32, "sender": "a", "sig": b"s" * 63},
        {"t": "nope"},
        {"t": "prepared_cert", "pre_prepare": message_to_obj(PP), "prepares": []},  # not a top-level message
        [1, 2],
        "commit",
    ],
    ids=lambda b: repr(b)[:30],
)
def test_one_malformed_message_refuses_the_bundle(position: int, bad: Any) -> None:
    objs = [message_to_obj(m) for m in SAMPLES]
    objs.insert(position if position >= 0 else len(objs), bad)
    with pytest.raises(ProtocolError):
        decode_bundle(encode(objs))


def test_too_deep_nesting_refused() -> None:
    # A valid bundle uses depth <= 11; a message nested deeper than any schema allows is refused.
    deep: Any = 0
    for _ in range(12):
        deep = [deep]
    with pytest.raises(ProtocolError) as info:
        decode_bundle(encode([{"t": "commit", "x": deep}]))
    assert info.value.reason == "too-deep"


@PROPS
@given(st.binary(max_size=512))
def test_random_bytes_only_protocol_error(data: bytes) -> None:
    only_protocol_error(data)


@PROPS
@given(msgpack_objects)
def test_random_objects_only_protocol_error(obj: Any) -> None:
    only_protocol_error(encode(obj))
    only_protocol_error(encode([obj]))


def _paths(obj: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if type(obj) is dict:
        for k, v in obj.items():
            out += _paths(v, path + (k,))
    elif type(obj) is list:
        for i, v in enumerate(obj):
            out += _paths(v, path + (i,))
    return out


@PROPS
@given(st.lists(st.sampled_from(SAMPLES), min_size=1, max_size=4), st.data())
def test_mutated_subtrees_only_protocol_error(msgs: list[Any], data: st.DataObject) -> None:
    """Replace (or delete) one node anywhere in a valid bundle's tree: only ProtocolError, and if it
    still decodes, it is a valid bundle."""
    obj = copy.deepcopy([message_to_obj(m) for m in msgs])
    path = data.draw(st.sampled_from(_paths(obj)[1:]))
    parent: Any = obj
    for k in path[:-1]:
        parent = parent[k]
    if data.draw(st.booleans()):
        parent[path[-1]] = data.draw(msgpack_objects)
    else:
        del parent[path[-1]]
    only_protocol_error(encode(obj))


@PROPS
@given(st.lists(st.sampled_from(SAMPLES), min_size=1, max_size=4), st.data())
def test_mutated_bytes_only_protocol_error(msgs: list[Any], data: st.DataObject) -> None:
    raw = bytearray(encode_bundle(msgs))
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    only_protocol_error(bytes(raw))


def test_trailing_and_truncated_bytes_refused() -> None:
    raw = encode_bundle([Prepare(0, 1, PP.digest, "b")])
    for data in (raw + b"\xc0", raw[:-1], b""):
        with pytest.raises(ProtocolError):
            decode_bundle(data)
