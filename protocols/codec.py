"""msgpack encoding for protocol payloads, guarded decoding, and typed accessors for schema checks.

Decoding reuses `keys.wire` (the same bounded decoder that opens envelopes) and turns its refusals
into ProtocolError. The accessors let a protocol decoder validate a map in a few lines, each
failure naming the field.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from functools import lru_cache
from typing import Any, Literal, overload

import msgpack

from keys.wire import PLAIN_TYPES, WireError, unpack
from protocols.errors import ProtocolError

_MISSING: Any = object()


def encode(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def decode(
    data: bytes,
    *,
    max_size: int = 1 << 20,
    max_depth: int = 16,
    max_items: int = 10_000,
    allow_types: frozenset[type] = PLAIN_TYPES,
) -> Any:
    """Decode untrusted msgpack. Only nil/bool/int/float/str/bytes/list/dict (narrowed by
    `allow_types`), map keys str or int. Raises ProtocolError with reasons "oversize", "malformed",
    "too-deep", "too-many-items", "bad-type", "trailing-bytes"."""
    try:
        return unpack(data, max_size=max_size, max_depth=max_depth, max_items=max_items, allow_types=allow_types)
    except WireError as e:
        raise ProtocolError(e.reason, e.detail) from None


def _type_ok(value: Any, typ: type | tuple[type, ...]) -> bool:
    types = typ if isinstance(typ, tuple) else (typ,)
    # bool is an int subclass; a schema asking for int must not accept True.
    if type(value) is bool:
        return bool in types
    return isinstance(value, types)


@lru_cache(maxsize=256)
def _key_sets(required: tuple[str, ...], optional: tuple[str, ...]) -> tuple[frozenset[str], frozenset[str]]:
    return frozenset(required), frozenset(required) | frozenset(optional)


def as_map(obj: Any, *, required: Iterable[str] = (), optional: Iterable[str] = ()) -> dict[Any, Any]:
    """`obj` as a map holding every `required` key and nothing outside required + optional."""
    if type(obj) is not dict:
        raise ProtocolError("malformed", f"expected a map, got {type(obj).__name__}")
    if type(required) is tuple and type(optional) is tuple:
        # Every schema passes constant tuples: their sets are built once, and a map that fits is
        # let through with two set comparisons.
        need, allowed = _key_sets(required, optional)
        keys = obj.keys()
        if keys >= need and keys <= allowed:
            return obj
    req = set(required)
    missing = req - obj.keys()
    if missing:
        raise ProtocolError("missing-field", ", ".join(sorted(map(str, missing))))
    unknown = obj.keys() - req - set(optional)
    if unknown:
        raise ProtocolError("unknown-field", ", ".join(sorted(map(str, unknown))))
    return obj


def field(
    m: dict[Any, Any],
    name: str,
    typ: type | tuple[type, ...],
    *,
    optional: bool = False,
    default: Any = None,
) -> Any:
    """m[name], which must be of `typ`; an absent optional field gives `default`."""
    value = m.get(name, _MISSING)
    if type(value) is typ and value is not _MISSING:
        return value  # what _type_ok accepts, without building a tuple
    if value is _MISSING:
        if optional:
            return default
        raise ProtocolError("missing-field", name)
    if not _type_ok(value, typ):
        raise ProtocolError("bad-field", f"{name}: {type(value).__name__}")
    return value


def int_in(m: dict[Any, Any], name: str, lo: int, hi: int, *, optional: bool = False, default: int | None = None) -> Any:
    """An int field within [lo, hi] (inclusive)."""
    value = m.get(name)
    if type(value) is int and lo <= value <= hi:
        return value  # the common case, without the general accessor (bool is not an int here)
    value = field(m, name, int, optional=optional, default=_MISSING)
    if value is _MISSING:
        return default
    if not lo <= value <= hi:
        raise ProtocolError("out-of-range", f"{name}: {value} not in [{lo}, {hi}]")
    return value


def float_in(
    m: dict[Any, Any], name: str, lo: float, hi: float, *, optional: bool = False, default: float | None = None
) -> Any:
    """A finite number within [lo, hi], returned as float (an int on the wire is accepted)."""
    value = field(m, name, (int, float), optional=optional, default=_MISSING)
    if value is _MISSING:
        return default
    value = float(value)
    if not math.isfinite(value) or not lo <= value <= hi:
        raise ProtocolError("out-of-range", f"{name}: {value} not in [{lo}, {hi}]")
    return value


# Overloads: the result is None only for an absent optional field without a default.
@overload
def str_max(
    m: dict[Any, Any], name: str, max_len: int, *, min_len: int = 0, optional: Literal[False] = False, default: None = None
) -> str: ...
@overload
def str_max(m: dict[Any, Any], name: str, max_len: int, *, min_len: int = 0, optional: bool, default: str) -> str: ...
@overload
def str_max(
    m: dict[Any, Any], name: str, max_len: int, *, min_len: int = 0, optional: bool = False, default: str | None = None
) -> str | None: ...
def str_max(
    m: dict[Any, Any], name: str, max_len: int, *, min_len: int = 0, optional: bool = False, default: str | None = None
) -> Any:
    value = m.get(name)
    if type(value) is str and min_len <= len(value) <= max_len:
        return value  # the common case, without the general accessor
    value = field(m, name, str, optional=optional, default=_MISSING)
    if value is _MISSING:
        return default
    if not min_len <= len(value) <= max_len:
        raise ProtocolError("out-of-range", f"{name}: length {len(value)} not in [{min_len}, {max_len}]")
    return value


@overload
def bytes_max(
    m: dict[Any, Any],
    name: str,
    max_len: int,
    *,
    min_len: int = 0,
    optional: Literal[False] = False,
    default: None = None,
) -> bytes: ...
@overload
def bytes_max(
    m: dict[Any, Any], name: str, max_len: int, *, min_len: int = 0, optional: bool, default: bytes
) -> bytes: ...
@overload
def bytes_max(
    m: dict[Any, Any],
    name: str,
    max_len: int,
    *,
    min_len: int = 0,
    optional: bool = False,
    default: bytes | None = None,
) -> bytes | None: ...
def bytes_max(
    m: dict[Any, Any],
    name: str,
    max_len: int,
    *,
    min_len: int = 0,
    optional: bool = False,
    default: bytes | None = None,
) -> Any:
    """A bytes field; set min_len == max_len for fixed sizes such as digests and signatures."""
    value = m.get(name)
    if type(value) is bytes and min_len <= len(value) <= max_len:
        return value  # the common case, without the general accessor
    value = field(m, name, bytes, optional=optional, default=_MISSING)
    if value is _MISSING:
        return default
    if not min_len <= len(value) <= max_len:
        raise ProtocolError("out-of-range", f"{name}: length {len(value)} not in [{min_len}, {max_len}]")
    return value


def list_max(
    m: dict[Any, Any], name: str, max_len: int, *, optional: bool = False, default: list[Any] | None = None
) -> Any:
    value = field(m, name, list, optional=optional, default=_MISSING)
    if value is _MISSING:
        return default
    if len(value) > max_len:
        raise ProtocolError("out-of-range", f"{name}: {len(value)} items > {max_len}")
    return value
