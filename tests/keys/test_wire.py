"""keys/wire.py against the decoder it replaced (kept here as the reference): the item budget's
hooks run only for payloads longer than the budget, and depth and types are checked by a
recursive walk instead of a work-list. Both must accept exactly what the reference accepts, with
the same value, and refuse with a reason the reference gives."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keys.wire import MAX_DEPTH_LIMIT, PLAIN_TYPES, WireError, unpack

PROPS = settings(max_examples=500, deadline=None, derandomize=True)


class _RefRefused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _ref_refuse_ext(code: int, data: bytes) -> Any:
    raise _RefRefused("bad-type")


def _ref_check_tree(value: Any, *, max_depth: int, allow_types: frozenset[type], int_keys: bool) -> None:
    key_types = (str, int) if int_keys else (str,)
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        obj, depth = stack.pop()
        t = type(obj)
        if t not in allow_types:
            raise WireError("bad-type", t.__name__)
        if t is list or t is dict:
            if depth + 1 > max_depth:
                raise WireError("too-deep", f"deeper than {max_depth}")
            if t is dict:
                for k in obj:
                    if type(k) not in key_types or type(k) not in allow_types:
                        raise WireError("bad-type", f"map key of type {type(k).__name__}")
                stack.extend((v, depth + 1) for v in obj.values())
            else:
                stack.extend((v, depth + 1) for v in obj)


def _ref_unpack(
    data: bytes, *, max_size: int, max_depth: int, max_items: int, allow_types: frozenset[type], int_keys: bool
) -> Any:
    """keys/wire.unpack as it was (hooks on every payload, work-list walk): the reference."""
    if len(data) > max_size:
        raise WireError("oversize")
    if len(data) == 0:
        raise WireError("malformed", "empty")
    budget = [max_items]

    def spend(container: Any) -> Any:
        budget[0] -= len(container)
        if budget[0] < 0:
            raise _RefRefused("too-many-items")
        return container

    try:
        value = msgpack.unpackb(
            data, raw=False, use_list=True, strict_map_key=not int_keys, timestamp=0, ext_hook=_ref_refuse_ext,
            list_hook=spend, object_hook=spend, max_str_len=max_size, max_bin_len=max_size,
            max_array_len=max_items, max_map_len=max_items, max_ext_len=0,
        )
    except _RefRefused as e:
        raise WireError(e.reason) from None
    except msgpack.ExtraData:
        raise WireError("trailing-bytes") from None
    except (msgpack.StackError, RecursionError):
        raise WireError("too-deep") from None
    except msgpack.FormatError:
        raise WireError("malformed") from None
    except UnicodeDecodeError:
        raise WireError("malformed") from None
    except TypeError:
        raise WireError("bad-type") from None
    except ValueError as e:
        msg = str(e)
        if "max_array_len" in msg or "max_map_len" in msg:
            raise WireError("too-many-items") from None
        if "max_ext_len" in msg:
            raise WireError("bad-type") from None
        if "exceeds max_" in msg:
            raise WireError("oversize") from None
        if "map key" in msg:
            raise WireError("bad-type") from None
        raise WireError("malformed") from None
    except msgpack.UnpackException:
        raise WireError("malformed") from None
    _ref_check_tree(value, max_depth=max_depth, allow_types=allow_types, int_keys=int_keys)
    return value


def _outcome(fn: Any, data: bytes, **kw: Any) -> tuple[str, Any]:
    try:
        return "ok", fn(data, **kw)
    except WireError as e:
        return "refused", e.reason


def _reference_reasons(data: bytes, kw: dict[str, Any]) -> set[str]:
    """Every reason the reference gives for `data` with each bound alone relaxed: a payload that
    breaks two bounds may be refused for either, depending on which part a walk meets first."""
    reasons = set()
    for relaxed in ({}, {"max_depth": MAX_DEPTH_LIMIT}, {"allow_types": PLAIN_TYPES}, {"int_keys": True}):
        state, got = _outcome(_ref_unpack, data, **{**kw, **relaxed})
        if state == "refused":
            reasons.add(got)
    return reasons


def assert_same_as_reference(data: bytes, **kw: Any) -> None:
    new = _outcome(unpack, data, **kw)
    ref = _outcome(_ref_unpack, data, **kw)
    assert new[0] == ref[0], (data, kw, new, ref)
    if new[0] == "ok":
        assert new[1] == ref[1] and type(new[1]) is type(ref[1])
    else:
        assert new[1] == ref[1] or new[1] in _reference_reasons(data, kw), (data, kw, new, ref)


LEAVES = (
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False) | st.text(max_size=6)
    | st.binary(max_size=6)
)
KEYS = st.text(max_size=4) | st.integers(-3, 3) | st.booleans() | st.none() | st.binary(max_size=2) | st.floats(allow_nan=False)
VALUES = st.recursive(
    LEAVES, lambda inner: st.lists(inner, max_size=6) | st.dictionaries(KEYS, inner, max_size=5), max_leaves=60
)
NARROWED = st.sampled_from(
    [
        PLAIN_TYPES,
        PLAIN_TYPES - {float},
        PLAIN_TYPES - {int},
        PLAIN_TYPES - {bytes, float},
        PLAIN_TYPES - {list},
        PLAIN_TYPES - {dict},
        frozenset({dict, str}),
    ]
)
BOUNDS = st.fixed_dictionaries(
    {
        "max_size": st.integers(1, 600),
        "max_depth": st.integers(0, 7),
        "max_items": st.integers(0, 80),
        "allow_types": NARROWED,
        "int_keys": st.booleans(),
    }
)


def _packed(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


@PROPS
@given(VALUES, BOUNDS)
def test_decodes_exactly_as_the_reference(value: Any, bounds: dict[str, Any]) -> None:
    assert_same_as_reference(_packed(value), **bounds)


@PROPS
@given(VALUES, BOUNDS, st.data())
def test_mutated_payloads_as_the_reference(value: Any, bounds: dict[str, Any], data: st.DataObject) -> None:
    encoded = bytearray(_packed(value))
    pos = data.draw(st.integers(0, len(encoded) - 1))
    kind = data.draw(st.sampled_from(["flip", "truncate", "insert"]))
    if kind == "flip":
        encoded[pos] ^= 1 << data.draw(st.integers(0, 7))
    elif kind == "truncate":
        del encoded[pos:]
    else:
        encoded[pos:pos] = data.draw(st.binary(min_size=1, max_size=6))
    if encoded:
        assert_same_as_reference(bytes(encoded), **bounds)


@PROPS
@given(st.binary(min_size=1, max_size=200), BOUNDS)
def test_random_bytes_as_the_reference(data: bytes, bounds: dict[str, Any]) -> None:
    assert_same_as_reference(data, **bounds)


@pytest.mark.parametrize("items", [0, 1, 2, 3, 9, 10, 11, 40])
def test_budget_at_the_edge_where_the_hooks_start(items: int) -> None:
    # Tiny containers packed densely: payload length and entry count close to the budget, on
    # both sides of the switch from "no hooks" (len <= max_items) to "hooks".
    for value in ([[]] * items, [0] * items, {str(i): [] for i in range(items)}, [[0, [0]]] * (items // 3)):
        data = _packed(value)
        for budget in range(max(0, len(data) - 3), len(data) + 3):
            assert_same_as_reference(
                data, max_size=1 << 20, max_depth=4, max_items=budget, allow_types=PLAIN_TYPES, int_keys=True
            )


def test_depth_bound_is_checked_even_for_empty_containers() -> None:
    data = _packed([[[]]])
    kw: dict[str, Any] = {"max_size": 100, "max_items": 10, "allow_types": PLAIN_TYPES, "int_keys": True}
    assert unpack(data, max_depth=3, **kw) == [[[]]]
    with pytest.raises(WireError, match="too-deep"):
        unpack(data, max_depth=2, **kw)
    assert unpack(_packed(5), max_depth=0, **kw) == 5
    with pytest.raises(WireError, match="too-deep"):
        unpack(_packed({}), max_depth=0, **kw)


def test_a_caller_cannot_ask_for_an_unbounded_walk() -> None:
    with pytest.raises(ValueError):
        unpack(_packed(1), max_size=10, max_depth=MAX_DEPTH_LIMIT + 1)
    with pytest.raises(ValueError):
        unpack(_packed(1), max_size=10, max_depth=-1)
    assert unpack(_packed([1]), max_size=10, max_depth=MAX_DEPTH_LIMIT) == [1]


def test_map_keys_obey_the_narrowed_types_too() -> None:
    kw: dict[str, Any] = {"max_size": 100, "max_depth": 4, "max_items": 10, "int_keys": True}
    for value in ({1: "a"}, ["x", {2: "b"}], {"k": {3: None}}):
        data = _packed(value)
        assert unpack(data, allow_types=PLAIN_TYPES, **kw) == value
        with pytest.raises(WireError, match="bad-type"):
            unpack(data, allow_types=PLAIN_TYPES - {int}, **kw)
        assert_same_as_reference(data, allow_types=PLAIN_TYPES - {int}, **kw)
