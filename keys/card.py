"""Capability cards: a node's signed statement of where it listens and what it can do.

A card is signed by itself (not only by the envelope carrying it), so any node can hand a peer's
card on verbatim and the receiver still verifies it against the key inside the card's peer id.
Cards are short-lived (30 s by default) and re-issued; a stale card says nothing about now.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import msgpack

from keys.identity import Identity, verify_signature
from keys.peerid import PeerIdError, public_key_from_peer_id
from keys.wire import WireError, unpack

VERSION = 1
DEFAULT_TTL_MS = 30_000
MAX_TTL_MS = 24 * 3600 * 1000
MAX_FUTURE_SKEW_MS = 30_000
MAX_ADDRS = 16
MAX_ADDR_LEN = 256
MAX_CAPABILITIES = 64
MAX_PARAMS = 32
MAX_NAME_LEN = 64  # capability names, parameter names, the version string
MAX_STR_LEN = 1024  # string parameter values
MAX_LIST_LEN = 64
MAX_LIST_DEPTH = 2  # a parameter may be a list, or a list of lists, of scalars
_SIG_PREFIX = b"sovereign-card-v1\x00"
_KEYS = frozenset({"v", "peer_id", "addrs", "capabilities", "version", "issued_at_ms", "expires_at_ms", "sig"})
_SCALARS = (str, int, float, bool, type(None))


class CardError(ValueError):
    """A card was refused; `reason` is short and machine-readable."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class FrozenMap(Mapping[str, Any]):
    """A read-only, hashable mapping, so a card (a frozen dataclass) can be hashed and shared safely."""

    __slots__ = ("_items", "_hash")

    def __init__(self, items: Iterable[tuple[str, Any]] = ()) -> None:
        self._items = dict(items)
        self._hash: int | None = None

    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(frozenset(self._items.items()))
        return self._hash

    def __repr__(self) -> str:
        return f"FrozenMap({self._items!r})"


@dataclass(frozen=True)
class CapabilityCard:
    """`capabilities` maps a capability name to its parameters, both FrozenMaps; list values are tuples."""

    peer_id: str
    addrs: tuple[str, ...]
    capabilities: Mapping[str, Mapping[str, Any]]
    version: str
    issued_at_ms: int
    expires_at_ms: int
    signature: bytes

    def to_bytes(self) -> bytes:
        wire = {
            "v": VERSION,
            "peer_id": self.peer_id,
            "addrs": list(self.addrs),
            "capabilities": {name: params for name, params in _canonical_caps(self.capabilities)},
            "version": self.version,
            "issued_at_ms": self.issued_at_ms,
            "expires_at_ms": self.expires_at_ms,
            "sig": self.signature,
        }
        return msgpack.packb(wire, use_bin_type=True)

    def to_dict(self) -> dict[str, Any]:
        return {
            "peer_id": self.peer_id,
            "addrs": list(self.addrs),
            "capabilities": {name: params for name, params in _canonical_caps(self.capabilities)},
            "version": self.version,
            "issued_at_ms": self.issued_at_ms,
            "expires_at_ms": self.expires_at_ms,
        }


def _thaw(value: Any) -> Any:
    return [_thaw(v) for v in value] if isinstance(value, (list, tuple)) else value


def _canonical_caps(capabilities: Mapping[str, Mapping[str, Any]]) -> list[list[Any]]:
    # Sorted at every level, because msgpack packs maps in insertion order and the issuer and
    # every verifier must derive byte-identical signed bytes from the same content.
    return [
        [name, {k: _thaw(capabilities[name][k]) for k in sorted(capabilities[name])}]
        for name in sorted(capabilities)
    ]


def _signed_bytes(
    peer_id: str,
    addrs: tuple[str, ...],
    capabilities: Mapping[str, Mapping[str, Any]],
    version: str,
    issued: int,
    expires: int,
) -> bytes:
    body = [peer_id, list(addrs), _canonical_caps(capabilities), version, issued, expires]
    return _SIG_PREFIX + msgpack.packb(body, use_bin_type=True)


def _name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_NAME_LEN:
        raise CardError("limits", f"{what} must be a string of 1..{MAX_NAME_LEN} characters")
    return value


def _freeze_value(value: Any, depth: int = 0) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        # NaN != NaN would make equal cards compare unequal; infinities are never a real parameter.
        raise CardError("bad-param", "non-finite float")
    if isinstance(value, str) and len(value) > MAX_STR_LEN:
        raise CardError("limits", f"string parameter longer than {MAX_STR_LEN}")
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, (list, tuple)):
        if depth >= MAX_LIST_DEPTH:
            raise CardError("bad-param", "parameter lists nested too deep")
        if len(value) > MAX_LIST_LEN:
            raise CardError("limits", f"parameter list longer than {MAX_LIST_LEN}")
        return tuple(_freeze_value(v, depth + 1) for v in value)
    raise CardError("bad-param", f"parameter of type {type(value).__name__}")


def _freeze_capabilities(capabilities: Any) -> FrozenMap:
    if not isinstance(capabilities, Mapping):
        raise CardError("malformed", "capabilities must be a map")
    if len(capabilities) > MAX_CAPABILITIES:
        raise CardError("limits", f"more than {MAX_CAPABILITIES} capabilities")
    frozen = []
    for name, params in capabilities.items():
        _name(name, "capability name")
        if not isinstance(params, Mapping):
            raise CardError("malformed", f"parameters of {name!r} must be a map")
        if len(params) > MAX_PARAMS:
            raise CardError("limits", f"capability {name!r} has more than {MAX_PARAMS} parameters")
        frozen.append((name, FrozenMap((_name(k, "parameter name"), _freeze_value(v)) for k, v in params.items())))
    return FrozenMap(frozen)


def _check_addrs(addrs: Any) -> tuple[str, ...]:
    if not isinstance(addrs, (list, tuple)):
        raise CardError("malformed", "addrs must be a list")
    if len(addrs) > MAX_ADDRS:
        raise CardError("limits", f"more than {MAX_ADDRS} addresses")
    for a in addrs:
        if not isinstance(a, str) or not 0 < len(a) <= MAX_ADDR_LEN:
            raise CardError("limits", f"an address must be a string of 1..{MAX_ADDR_LEN} characters")
    return tuple(addrs)


def _check_validity(issued: Any, expires: Any, now_ms: int) -> None:
    if type(issued) is not int or type(expires) is not int or issued < 0 or expires >= 2**63:
        raise CardError("malformed", "validity times must be non-negative ints")
    if expires <= issued:
        raise CardError("bad-validity", "expires at or before it was issued")
    if expires - issued > MAX_TTL_MS:
        raise CardError("ttl-too-long", f"lifetime over {MAX_TTL_MS} ms")
    if issued > now_ms + MAX_FUTURE_SKEW_MS:
        raise CardError("not-yet-valid", f"issued {issued - now_ms} ms in the future")
    if now_ms >= expires:
        raise CardError("expired", f"expired {now_ms - expires} ms ago")


def issue_card(
    identity: Identity,
    *,
    addrs: Iterable[str],
    capabilities: Mapping[str, Mapping[str, Any]],
    version: str,
    now_ms: int,
    ttl_ms: int = DEFAULT_TTL_MS,
) -> CapabilityCard:
    """Sign a card; the same limits as `verify_card` apply, so we never issue what peers refuse."""
    addr_tuple = _check_addrs(tuple(addrs))
    caps = _freeze_capabilities(capabilities)
    _name(version, "version")
    expires = now_ms + ttl_ms
    _check_validity(now_ms, expires, now_ms)
    sig = identity.sign(_signed_bytes(identity.peer_id, addr_tuple, caps, version, now_ms, expires))
    return CapabilityCard(identity.peer_id, addr_tuple, caps, version, now_ms, expires, sig)


def verify_card(data: bytes, *, now_ms: int, max_size: int = 16 * 1024) -> CapabilityCard:
    """Decode and verify a card, or raise CardError; nothing else escapes."""
    try:
        # A valid card nests card map > capabilities > params > list > list; the slack lets the
        # field checks below name what is wrong. Items are bounded by the size (each takes a byte).
        m = unpack(data, max_size=max_size, max_depth=8, max_items=max_size, int_keys=False)
    except WireError as e:
        raise CardError("oversize" if e.reason == "oversize" else "malformed", e.detail) from None
    if type(m) is not dict or m.keys() != _KEYS:
        raise CardError("malformed", "expected a map with exactly the card fields")
    if type(m["v"]) is not int or m["v"] != VERSION:
        raise CardError("unsupported-version", repr(m["v"]))
    try:
        public_key = public_key_from_peer_id(m["peer_id"])
    except PeerIdError as e:
        raise CardError("bad-peer-id", str(e)) from None
    addrs = _check_addrs(m["addrs"])
    caps = _freeze_capabilities(m["capabilities"])
    version = _name(m["version"], "version")
    issued, expires, sig = m["issued_at_ms"], m["expires_at_ms"], m["sig"]
    _check_validity(issued, expires, now_ms)
    if type(sig) is not bytes:
        raise CardError("malformed", "sig must be bytes")
    if not sig:
        raise CardError("unsigned")
    # The key comes from the card's own peer id: a card claiming another node's id cannot verify.
    if not verify_signature(public_key, sig, _signed_bytes(m["peer_id"], addrs, caps, version, issued, expires)):
        raise CardError("bad-signature")
    return CapabilityCard(m["peer_id"], addrs, caps, version, issued, expires, sig)
