import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.codec import as_map, bytes_max, decode, encode, field, float_in, int_in, list_max, str_max
from protocols.errors import ProtocolError

PROPS = settings(max_examples=300, deadline=None, derandomize=True)
ALLOWED = (type(None), bool, int, float, str, bytes, list, dict)


def reason(data: Any, **kw: Any) -> str:
    with pytest.raises(ProtocolError) as info:
        decode(data, **kw)
    return info.value.reason


def nested_list(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


def test_round_trip_plain_values() -> None:
    value = {"a": [1, -1, 2**64 - 1, -(2**63), 1.5, None, True, b"\x00\xff", "ü"], 7: {"k": []}}
    assert decode(encode(value)) == value


def test_depth_limit() -> None:
    assert decode(encode(nested_list(16))) == nested_list(16)
    assert reason(encode(nested_list(17))) == "too-deep"
    assert reason(encode(nested_list(3)), max_depth=2) == "too-deep"
    assert decode(encode(7), max_depth=0) == 7


def test_nesting_beyond_msgpack_stack_is_refused() -> None:
    assert reason(b"\x91" * 5000 + b"\x00") == "too-deep"
    assert reason(b"\x91" * 1000 + b"\x00") == "too-deep"


def test_item_limit() -> None:
    assert decode(encode(list(range(10_000)))) == list(range(10_000))
    assert reason(encode(list(range(10_001)))) == "too-many-items"
    # the budget is total, not per container
    assert reason(encode([[0] * 60] * 60), max_items=3000) == "too-many-items"
    assert reason(encode({str(i): i for i in range(11)}), max_items=10) == "too-many-items"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"\xdd\xff\xff\xff\xff", "too-many-items"),  # array32 declaring 4 G items
        (b"\xdf\xff\xff\xff\xff", "too-many-items"),  # map32
        (b"\xdb\xff\xff\xff\xff" + b"a" * 16, None),  # str32 declaring 4 GiB
        (b"\xc6\xff\xff\xff\xff" + b"a" * 16, None),  # bin32
        (b"\xc9\xff\xff\xff\xff\x01" + b"a" * 16, "bad-type"),  # ext32
    ],
)
def test_huge_declared_lengths(data: bytes, expected: str | None) -> None:
    got = reason(data)
    assert got == expected if expected else got in ("oversize", "malformed")


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", "malformed"),
        (b"\xc1", "malformed"),  # never-used format byte
        (b"\x92\x01", "malformed"),  # truncated
        (b"\xa2\xff\xfe", "malformed"),  # invalid utf-8
        (b"\x01\x02", "trailing-bytes"),
        (b"\xd4\x05\x00", "bad-type"),  # ext type
        (b"\xd6\xff\x00\x00\x00\x01", "bad-type"),  # timestamp
        (b"\x81\xc4\x01k\x01", "bad-type"),  # bytes key
        (b"\x81\x91\x01\x01", "bad-type"),  # list key
        (b"\x81\x80\x01", "bad-type"),  # map key
        (b"\x81\xc3\x01", "bad-type"),  # bool key
        (b"\x81\xc0\x01", "bad-type"),  # nil key
        (b"\x81\xcb\x00\x00\x00\x00\x00\x00\x00\x00\x01", "bad-type"),  # float key
    ],
)
def test_refusals(data: bytes, expected: str) -> None:
    assert reason(data) == expected


def test_size_limit_before_decoding() -> None:
    assert reason(encode(b"x" * 100), max_size=50) == "oversize"
    assert reason(b"\x00" * ((1 << 20) + 1)) == "oversize"


def test_non_bytes_input() -> None:
    assert reason("text") == "malformed"
    assert decode(bytearray(encode([1]))) == [1]
    assert decode(memoryview(encode([1]))) == [1]


def test_allow_types_narrows() -> None:
    no_floats = frozenset(ALLOWED) - {float}
    assert decode(encode([1, "a"]), allow_types=no_floats) == [1, "a"]
    assert reason(encode([1, 2.5]), allow_types=no_floats) == "bad-type"
    no_int = frozenset(ALLOWED) - {int}
    assert reason(encode({1: "a"}), allow_types=no_int) == "bad-type"


# -- accessors ------------------------------------------------------------------------------


def perr(fn: Any, *args: Any, **kw: Any) -> str:
    with pytest.raises(ProtocolError) as info:
        fn(*args, **kw)
    return info.value.reason


def test_as_map() -> None:
    m = {"a": 1, "b": 2}
    assert as_map(m, required=["a"], optional=["b"]) is m
    assert perr(as_map, m, required=["a", "c"], optional=["b"]) == "missing-field"
    assert perr(as_map, m, required=["a"]) == "unknown-field"
    assert perr(as_map, [1], required=[]) == "malformed"


def test_field() -> None:
    m = {"n": 3, "flag": True, "s": "x"}
    assert field(m, "n", int) == 3
    assert perr(field, m, "flag", int) == "bad-field"  # bool is not an int here
    assert field(m, "flag", (int, bool)) is True
    assert perr(field, m, "s", (int, bytes)) == "bad-field"
    assert perr(field, m, "absent", int) == "missing-field"
    assert field(m, "absent", int, optional=True, default=9) == 9


def test_int_in() -> None:
    m = {"n": 5, "f": 5.0}
    assert int_in(m, "n", 0, 5) == 5
    assert perr(int_in, m, "n", 6, 10) == "out-of-range"
    assert perr(int_in, m, "f", 0, 10) == "bad-field"
    assert int_in(m, "absent", 0, 1, optional=True, default=0) == 0


def test_float_in() -> None:
    m = {"x": 0.5, "i": 1, "nan": math.nan, "inf": math.inf}
    assert float_in(m, "x", 0, 1) == 0.5
    assert float_in(m, "i", 0, 1) == 1.0 and isinstance(float_in(m, "i", 0, 1), float)
    assert perr(float_in, m, "x", 0.6, 1) == "out-of-range"
    assert perr(float_in, m, "nan", -math.inf, math.inf) == "out-of-range"
    assert perr(float_in, m, "inf", -math.inf, math.inf) == "out-of-range"


def test_str_bytes_list() -> None:
    m = {"s": "abc", "b": b"\x00" * 32, "l": [1, 2, 3]}
    assert str_max(m, "s", 3) == "abc"
    assert perr(str_max, m, "s", 2) == "out-of-range"
    assert perr(str_max, m, "s", 10, min_len=4) == "out-of-range"
    assert bytes_max(m, "b", 32, min_len=32) == m["b"]
    assert perr(bytes_max, m, "b", 64, min_len=64) == "out-of-range"
    assert perr(bytes_max, m, "s", 64) == "bad-field"
    assert list_max(m, "l", 3) == [1, 2, 3]
    assert perr(list_max, m, "l", 2) == "out-of-range"
    assert str_max(m, "absent", 1, optional=True) is None


# -- properties -----------------------------------------------------------------------------

LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=20)
)
VALUES = st.recursive(
    LEAVES,
    lambda inner: st.lists(inner, max_size=5)
    | st.dictionaries(st.text(max_size=8) | st.integers(-1000, 1000), inner, max_size=5),
    max_leaves=40,
)


def well_formed(value: Any, depth: int = 0) -> bool:
    if type(value) not in ALLOWED:
        return False
    if type(value) is list:
        return depth < 16 and all(well_formed(v, depth + 1) for v in value)
    if type(value) is dict:
        return depth < 16 and all(type(k) in (str, int) and well_formed(v, depth + 1) for k, v in value.items())
    return True


@PROPS
@given(VALUES)
def test_round_trip(value: Any) -> None:
    assert decode(encode(value)) == value


@PROPS
@given(st.binary(max_size=300))
def test_random_bytes_only_raise_protocol_error(data: bytes) -> None:
    try:
        value = decode(data)
    except ProtocolError:
        return
    assert well_formed(value)


@PROPS
@given(VALUES, st.data())
def test_mutations_only_raise_protocol_error(value: Any, data: st.DataObject) -> None:
    encoded = bytearray(encode(value))
    kind = data.draw(st.sampled_from(["flip", "truncate", "insert"]))
    pos = data.draw(st.integers(0, len(encoded) - 1))
    if kind == "flip":
        encoded[pos] ^= 1 << data.draw(st.integers(0, 7))
    elif kind == "truncate":
        del encoded[pos:]
    else:
        encoded[pos:pos] = data.draw(st.binary(min_size=1, max_size=6))
    try:
        decoded = decode(bytes(encoded), max_items=500)
    except ProtocolError:
        return
    assert well_formed(decoded)


@PROPS
@given(st.integers(1, 6), st.integers(0, 2**32 - 1))
def test_declared_lengths_only_raise_protocol_error(width: int, length: int) -> None:
    # array16/32, map16/32, str8/16/32, bin8/16/32 headers with arbitrary declared lengths and no body
    headers = [b"\xdc", b"\xdd", b"\xde", b"\xdf", b"\xd9", b"\xda", b"\xdb", b"\xc4", b"\xc5", b"\xc6"]
    for h in headers:
        size = {b"\xd9": 1, b"\xc4": 1, b"\xdc": 2, b"\xde": 2, b"\xda": 2, b"\xc5": 2}.get(h, 4)
        data = h + (length % (1 << (8 * size))).to_bytes(size, "big") + b"\x00" * width
        try:
            decode(data, max_items=100)
        except ProtocolError:
            continue


# -- the accessors' fast paths against the general ones they short-cut ------------------------
# (as they were before the fast paths: a result, or the same ProtocolError reason and message)


def _ref_type_ok(value: Any, typ: Any) -> bool:
    types = typ if isinstance(typ, tuple) else (typ,)
    if type(value) is bool:
        return bool in types
    return isinstance(value, types)


_ABSENT = object()


def _ref_field(m: dict[Any, Any], name: str, typ: Any, *, optional: bool = False, default: Any = None) -> Any:
    value = m.get(name, _ABSENT)
    if value is _ABSENT:
        if optional:
            return default
        raise ProtocolError("missing-field", name)
    if not _ref_type_ok(value, typ):
        raise ProtocolError("bad-field", f"{name}: {type(value).__name__}")
    return value


def _ref_sized(kind: type, m: dict[Any, Any], name: str, max_len: int, *, min_len: int = 0, optional: bool = False,
               default: Any = None) -> Any:
    value = _ref_field(m, name, kind, optional=optional, default=_ABSENT)
    if value is _ABSENT:
        return default
    if not min_len <= len(value) <= max_len:
        raise ProtocolError("out-of-range", f"{name}: length {len(value)} not in [{min_len}, {max_len}]")
    return value


def _ref_int_in(m: dict[Any, Any], name: str, lo: int, hi: int, *, optional: bool = False, default: Any = None) -> Any:
    value = _ref_field(m, name, int, optional=optional, default=_ABSENT)
    if value is _ABSENT:
        return default
    if not lo <= value <= hi:
        raise ProtocolError("out-of-range", f"{name}: {value} not in [{lo}, {hi}]")
    return value


def _ref_as_map(obj: Any, *, required: Any = (), optional: Any = ()) -> Any:
    if type(obj) is not dict:
        raise ProtocolError("malformed", f"expected a map, got {type(obj).__name__}")
    req = set(required)
    missing = req - obj.keys()
    if missing:
        raise ProtocolError("missing-field", ", ".join(sorted(map(str, missing))))
    unknown = obj.keys() - req - set(optional)
    if unknown:
        raise ProtocolError("unknown-field", ", ".join(sorted(map(str, unknown))))
    return obj


def _same(new: Any, ref: Any) -> None:
    def run(fn: Any) -> tuple[str, Any]:
        try:
            return "ok", fn()
        except ProtocolError as e:
            return "error", (e.reason, str(e))

    a, b = run(new), run(ref)
    assert a == b and type(a[1]) is type(b[1]), (a, b)


FIELD_VALUES = (
    st.none() | st.booleans() | st.integers(-5, 70) | st.floats(allow_nan=False) | st.text(max_size=6)
    | st.binary(max_size=6) | st.lists(st.integers(), max_size=3) | st.dictionaries(st.text(max_size=2), st.integers(), max_size=2)
)
NAMES = st.sampled_from(["a", "b", "c"])
MAPS = st.dictionaries(NAMES | st.integers(0, 2), FIELD_VALUES, max_size=4)
TYPES = st.sampled_from([int, str, bytes, bool, dict, list, float, (int, float), (int, bool), (str, bytes), (bool,)])


@PROPS
@given(MAPS, NAMES, TYPES, st.booleans(), FIELD_VALUES)
def test_field_fast_path_is_the_general_one(m: dict[Any, Any], name: str, typ: Any, optional: bool, default: Any) -> None:
    _same(lambda: field(m, name, typ, optional=optional, default=default),
          lambda: _ref_field(m, name, typ, optional=optional, default=default))


@PROPS
@given(MAPS, NAMES, st.integers(-3, 8), st.integers(0, 8), st.booleans(), st.sampled_from([None, "d", b"d"]))
def test_sized_fast_paths_are_the_general_ones(
    m: dict[Any, Any], name: str, min_len: int, max_len: int, optional: bool, default: Any
) -> None:
    _same(lambda: str_max(m, name, max_len, min_len=min_len, optional=optional, default=default),
          lambda: _ref_sized(str, m, name, max_len, min_len=min_len, optional=optional, default=default))
    _same(lambda: bytes_max(m, name, max_len, min_len=min_len, optional=optional, default=default),
          lambda: _ref_sized(bytes, m, name, max_len, min_len=min_len, optional=optional, default=default))


@PROPS
@given(MAPS, NAMES, st.integers(-5, 70), st.integers(-5, 70), st.booleans(), st.sampled_from([None, 0, 7]))
def test_int_in_fast_path_is_the_general_one(
    m: dict[Any, Any], name: str, lo: int, hi: int, optional: bool, default: Any
) -> None:
    _same(lambda: int_in(m, name, lo, hi, optional=optional, default=default),
          lambda: _ref_int_in(m, name, lo, hi, optional=optional, default=default))


KEY_TUPLES = st.lists(NAMES, max_size=3, unique=True).map(tuple)


@PROPS
@given(MAPS | FIELD_VALUES, KEY_TUPLES, KEY_TUPLES, st.booleans())
def test_as_map_fast_path_is_the_general_one(obj: Any, required: tuple[str, ...], optional: tuple[str, ...], as_list: bool) -> None:
    # Tuples take the cached fast path; any other iterable the general one: both as before.
    req: Any = list(required) if as_list else required
    _same(lambda: as_map(obj, required=req, optional=optional), lambda: _ref_as_map(obj, required=req, optional=optional))
