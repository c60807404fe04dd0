"""Guarded msgpack decoding shared by envelopes, cards and protocols/codec.

Everything a peer sends is untrusted, so decoding is bounded before, during and after msgpack
runs: the size before unpacking, msgpack's own length limits while unpacking (so a declared
4 GiB string is refused without allocating it), an item budget enforced from msgpack hooks (so a
flood of tiny containers is cut off early; only for payloads longer than the budget, since every
entry takes a byte), and a final walk checking depth and types. Every
failure becomes a `WireError` with a short machine-readable reason; nothing else escapes.
"""

from __future__ import annotations

from typing import Any, NoReturn

import msgpack

# The value types a decoded message may contain. Exact types: bool is checked separately from int
# because msgpack never produces subclasses, and Timestamp/ExtType are deliberately absent.
PLAIN_TYPES: frozenset[type] = frozenset({type(None), bool, int, float, str, bytes, list, dict})


_KEYS_INT: frozenset[type] = frozenset({str, int})
_KEYS_STR: frozenset[type] = frozenset({str})
# The depth check recurses once per nesting level it allows: far below Python's recursion limit.
MAX_DEPTH_LIMIT = 64


class WireError(ValueError):
    """A msgpack payload that was refused; `reason` is short and machine-readable."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class _Refused(Exception):
    """Raised from inside msgpack hooks; msgpack propagates hook exceptions unchanged."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _refuse_ext(code: int, data: bytes) -> NoReturn:
    raise _Refused("bad-type")


def unpack(
    data: bytes | bytearray | memoryview,
    *,
    max_size: int,
    max_depth: int = 16,
    max_items: int = 10_000,
    allow_types: frozenset[type] = PLAIN_TYPES,
    int_keys: bool = True,
) -> Any:
    """Decode one msgpack value from untrusted `data` within the given bounds.

    Map keys must be str (or int when `int_keys`); `max_items` bounds the total number of
    container entries, which bounds the number of objects built; `max_depth` is at most
    MAX_DEPTH_LIMIT (ValueError otherwise: a bound in the caller's code, not in the data).
    """
    if not 0 <= max_depth <= MAX_DEPTH_LIMIT:
        raise ValueError(f"max_depth must be in [0, {MAX_DEPTH_LIMIT}]")  # a caller's bug, not peer input
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise WireError("malformed", f"expected bytes, got {type(data).__name__}")
    if len(data) > max_size:
        raise WireError("oversize", f"{len(data)} bytes > {max_size}")
    if len(data) == 0:
        raise WireError("malformed", "empty")

    limits: dict[str, Any] = {}
    if len(data) > max_items:
        # Every container entry is at least one byte of its own (a map entry two), so a payload
        # of at most max_items bytes cannot exceed the budget: only longer ones pay for the hooks
        # (a Python call per container).
        budget = [max_items]

        def spend(container: Any) -> Any:
            budget[0] -= len(container)
            if budget[0] < 0:
                raise _Refused("too-many-items")
            return container

        limits = {"list_hook": spend, "object_hook": spend}
    try:
        value = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=not int_keys,
            timestamp=0,
            ext_hook=_refuse_ext,
            max_str_len=max_size,
            max_bin_len=max_size,
            max_array_len=max_items,
            max_map_len=max_items,
            max_ext_len=0,
            **limits,
        )
    except _Refused as e:
        raise WireError(e.reason) from None
    except msgpack.ExtraData:
        raise WireError("trailing-bytes") from None
    except msgpack.StackError:
        raise WireError("too-deep") from None
    except RecursionError:
        raise WireError("too-deep") from None
    except msgpack.FormatError:
        raise WireError("malformed", "invalid msgpack") from None
    except UnicodeDecodeError:
        raise WireError("malformed", "invalid utf-8") from None
    except TypeError as e:
        # Unhashable map keys (a list or map used as a key) surface as TypeError.
        raise WireError("bad-type", str(e)) from None
    except ValueError as e:
        # msgpack reports declared lengths over its limits only through the message text.
        msg = str(e)
        if "max_array_len" in msg or "max_map_len" in msg:
            raise WireError("too-many-items", msg) from None
        if "max_ext_len" in msg:
            raise WireError("bad-type", "ext types are not accepted") from None
        if "exceeds max_" in msg:
            raise WireError("oversize", msg) from None
        if "map key" in msg:
            raise WireError("bad-type", msg) from None
        raise WireError("malformed", msg) from None
    except msgpack.UnpackException as e:
        raise WireError("malformed", type(e).__name__) from None
    _check_tree(value, max_depth=max_depth, allow_types=allow_types, int_keys=int_keys)
    return value


def _check_tree(value: Any, *, max_depth: int, allow_types: frozenset[type], int_keys: bool) -> None:
    """Depth and types of a decoded value. Recursive, one call per container: a loop over a
    container's entries is the cheapest walk for the small maps most messages are (a work-list of
    (value, depth) pairs cost a tuple and two list operations per value)."""
    t = type(value)
    if t not in allow_types:
        raise WireError("bad-type", t.__name__)
    if t is dict or t is list:
        _walk(value, max_depth, allow_types, _KEYS_INT if int_keys else _KEYS_STR)


def _walk(container: Any, room: int, allow_types: frozenset[type], key_types: frozenset[type]) -> None:
    """`container` (type already allowed) and everything in it, with `room` levels of nesting
    left for it and below."""
    if room < 1:
        raise WireError("too-deep", "nested deeper than the limit")
    if type(container) is dict:
        for k in container:
            kt = type(k)
            if kt not in key_types or kt not in allow_types:
                raise WireError("bad-type", f"map key of type {kt.__name__}")
        values = container.values()
    else:
        values = container
    for v in values:
        t = type(v)
        if t not in allow_types:
            raise WireError("bad-type", t.__name__)
        if t is dict or t is list:
            _walk(v, room - 1, allow_types, key_types)
