"""Signed ledger transactions: the wire schema, signing and verification.

A transaction is a msgpack map {"v": 3, "chain", "genesis", "from", "lane", "nonce", "op", "args",
"sig"}. The signature covers TX_DOMAIN + msgpack([3, chain, genesis, from, lane, nonce, op,
canonical(args)]), where `genesis` is the raw 32-byte hash of the genesis the sender holds (two
chains may share a chain id; a transaction signed for one is refused by the other, with its own
receipt reason, "wrong-genesis"; raw, not hex: it rides in every transaction, and v2's 64 hex
characters made a signed transfer a quarter longer than v1), and canonical(args) sorts map keys recursively (Python str order, i.e. by code point), so that the
signed bytes do not depend on how a client's msgpack library ordered the map. The account is the
sender's peer id, which embeds its Ed25519 public key: no key directory is needed to verify.

`decode_tx` only checks shapes (types and ranges) and raises only ProtocolError; `verify_tx` checks
the signature. The ledger applies both, in that order, to every op PBFT commits.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from types import MappingProxyType
from typing import Any



from keys.identity import Identity, verify_signature
from keys.peerid import PeerIdError, public_key_from_peer_id
from keys.wire import PLAIN_TYPES
from protocols.codec import as_map, bytes_max, decode, encode, field as get_field, int_in, str_max
from protocols.errors import ProtocolError

MAX_TX = 16 * 1024
MAX_LANES = 256
TX_DOMAIN = b"sovereign-tx-v1\x00"
TX_VERSION = 3
MAX_CHAIN = 64
GENESIS_LEN = 32  # a raw sha256 (Genesis.hash is its hex)
MAX_OP_NAME = 64
MAX_SENDER = 128
MAX_NONCE = 2**63 - 1
SIG_LEN = 64
# args are small structured values: depth 1 is the tx map, 2 its args map, a few more for nesting.
MAX_DEPTH = 8
MAX_ITEMS = 1024

_FIELDS = ("v", "chain", "genesis", "from", "lane", "nonce", "op", "args", "sig")
# No floats in a transaction: their encodings are not canonical across msgpack libraries.
_TX_TYPES: frozenset[type] = PLAIN_TYPES - {float}
_SCALARS = (type(None), bool, int, str, bytes)
_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1

Verify = Callable[[bytes, bytes, bytes], bool]


@lru_cache(maxsize=8192)
def _peer_key_cached(peer_id: str) -> bytes | None:
    try:
        return public_key_from_peer_id(peer_id)
    except PeerIdError:
        return None


def peer_public_key(peer_id: Any) -> bytes | None:
    """The Ed25519 public key a peer id embeds, or None if `peer_id` is not a valid Ed25519 peer
    id. Cached: decoding a peer id is big-int base58 arithmetic, and the same few ids recur."""
    if type(peer_id) is not str or not 0 < len(peer_id) <= MAX_SENDER:
        return None
    return _peer_key_cached(peer_id)


def is_peer_id(value: Any) -> bool:
    return peer_public_key(value) is not None


def _canonical_value(value: Any, depth: int) -> Any:
    t = type(value)
    if t is str or t is bytes or t is bool or value is None:
        return value
    if t is int:
        if not _INT_MIN <= value <= _INT_MAX:
            raise ProtocolError("bad-field", "args: integer out of msgpack range")
        return value
    if depth >= MAX_DEPTH:
        raise ProtocolError("too-deep", "args nested too deeply")
    if t is list or t is tuple:
        return [_canonical_value(v, depth + 1) for v in value]
    if isinstance(value, Mapping):
        return _canonical_map(value, depth + 1)
    raise ProtocolError("bad-field", f"args: values of type {t.__name__} are not allowed")


def _canonical_map(m: Mapping[Any, Any], depth: int = 0) -> dict[str, Any]:
    for k in m:
        if type(k) is not str:
            raise ProtocolError("bad-field", f"args: map key of type {type(k).__name__}")
    # Fast path: a flat map of scalars (every built-in op's args) needs no recursion.
    if all(type(v) in _SCALARS for v in m.values()):
        for v in m.values():
            if type(v) is int and not _INT_MIN <= v <= _INT_MAX:
                raise ProtocolError("bad-field", "args: integer out of msgpack range")
        return {k: m[k] for k in sorted(m)}
    return {k: _canonical_value(m[k], depth) for k in sorted(m)}


def canonical_args(args: Mapping[str, Any]) -> dict[str, Any]:
    """`args` with map keys sorted recursively (the form that is signed). Raises ProtocolError on
    a value outside nil/bool/int/str/bytes/list/map-with-str-keys."""
    if not isinstance(args, Mapping):
        raise ProtocolError("bad-field", "args: expected a map")
    return _canonical_map(args)


def _body_bytes(chain: str, genesis: bytes, sender: str, lane: int, nonce: int, op: str, canon: dict[str, Any]) -> bytes:
    return TX_DOMAIN + encode([TX_VERSION, chain, genesis, sender, lane, nonce, op, canon])


@dataclass(frozen=True)
class Tx:
    """A decoded (not yet verified) transaction. `args` is a read-only view of the canonical
    (key-sorted) args map; it takes no part in the hash (equality still compares it)."""

    chain: str
    genesis: bytes  # the raw genesis hash (bytes.fromhex(Genesis.hash))
    sender: str
    lane: int
    nonce: int
    op: str
    args: Mapping[str, Any] = field(hash=False)
    sig: bytes
    _body: bytes = field(init=False, repr=False, compare=False)
    _id: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        canon = canonical_args(self.args)
        body = _body_bytes(self.chain, self.genesis, self.sender, self.lane, self.nonce, self.op, canon)
        object.__setattr__(self, "args", MappingProxyType(canon))
        object.__setattr__(self, "_body", body)
        object.__setattr__(self, "_id", hashlib.sha256(body).hexdigest())

    def body(self) -> bytes:
        """The bytes the signature covers (TX_DOMAIN included)."""
        return self._body

    @property
    def id(self) -> str:
        """hex sha256 of the signed body: the same for every wire encoding of one signed tx."""
        return self._id


def encode_tx(tx: Tx) -> bytes:
    """The wire form of a Tx (as sign_tx produces it)."""
    return encode(
        {
            "v": TX_VERSION,
            "chain": tx.chain,
            "genesis": tx.genesis,
            "from": tx.sender,
            "lane": tx.lane,
            "nonce": tx.nonce,
            "op": tx.op,
            "args": dict(tx.args),
            "sig": tx.sig,
        },
    )


def _signed_fields(
    identity: Identity, chain: str, genesis: str, lane: int, nonce: int, op: str, args: Mapping[str, Any]
) -> tuple[str, bytes, str, int, int, str, dict[str, Any], bytes]:
    if type(chain) is not str or len(chain) > MAX_CHAIN:
        raise ValueError(f"chain must be a str of at most {MAX_CHAIN} characters")
    raw_genesis = _genesis_bytes(genesis)
    if type(op) is not str or len(op) > MAX_OP_NAME:
        raise ValueError(f"op must be a str of at most {MAX_OP_NAME} characters")
    if type(lane) is not int or not 0 <= lane < MAX_LANES:
        raise ValueError(f"lane must be an int in [0, {MAX_LANES - 1}]")
    if type(nonce) is not int or not 1 <= nonce <= MAX_NONCE:
        raise ValueError(f"nonce must be an int in [1, {MAX_NONCE}]")
    try:
        canon = canonical_args(args)
    except ProtocolError as e:
        raise ValueError(str(e)) from None
    sender = identity.peer_id
    sig = identity.sign(_body_bytes(chain, raw_genesis, sender, lane, nonce, op, canon))
    return chain, raw_genesis, sender, lane, nonce, op, canon, sig


def _wire(
    chain: str, genesis: bytes, sender: str, lane: int, nonce: int, op: str, args: dict[str, Any], sig: bytes
) -> bytes:
    data = encode(
        {"v": TX_VERSION, "chain": chain, "genesis": genesis, "from": sender, "lane": lane, "nonce": nonce, "op": op, "args": args, "sig": sig},
    )
    if len(data) > MAX_TX:
        raise ValueError(f"signed transaction is {len(data)} bytes > {MAX_TX}")
    return data


def sign_tx(
    identity: Identity, *, chain: str, genesis: str, lane: int, nonce: int, op: str, args: Mapping[str, Any]
) -> bytes:
    """The encoded signed transaction for the chain `chain` whose genesis hash (hex, as
    Genesis.hash gives it) is `genesis`. Raises ValueError on arguments decode_tx would refuse."""
    return _wire(*_signed_fields(identity, chain, genesis, lane, nonce, op, args))


def signed_tx(
    identity: Identity, *, chain: str, genesis: str, lane: int, nonce: int, op: str, args: Mapping[str, Any]
) -> tuple[Tx, bytes]:
    """sign_tx's bytes with their decoded form, for a signer that needs both (the tx id): without
    decoding what it just encoded."""
    fields = _signed_fields(identity, chain, genesis, lane, nonce, op, args)
    return Tx(*fields), _wire(*fields)


def _genesis_bytes(genesis: str) -> bytes:
    if type(genesis) is str and len(genesis) == 2 * GENESIS_LEN:
        try:
            raw = bytes.fromhex(genesis)
        except ValueError:
            pass
        else:
            if len(raw) == GENESIS_LEN:  # fromhex skips whitespace: 64 characters may hold fewer bytes
                return raw
    raise ValueError(f"genesis must be a hex hash of {2 * GENESIS_LEN} characters")


def decode_tx(data: bytes) -> Tx:
    """Decode and shape-check an encoded signed tx (not its signature). ProtocolError only."""
    m = as_map(
        decode(data, max_size=MAX_TX, max_depth=MAX_DEPTH, max_items=MAX_ITEMS, allow_types=_TX_TYPES),
        required=_FIELDS,
    )
    if get_field(m, "v", int) != TX_VERSION:
        raise ProtocolError("bad-version", f"v: {m['v']}")
    return Tx(
        chain=str_max(m, "chain", MAX_CHAIN),
        genesis=bytes_max(m, "genesis", GENESIS_LEN, min_len=GENESIS_LEN),
        sender=str_max(m, "from", MAX_SENDER),
        lane=int_in(m, "lane", 0, MAX_LANES - 1),
        nonce=int_in(m, "nonce", 1, MAX_NONCE),
        op=str_max(m, "op", MAX_OP_NAME),
        args=get_field(m, "args", dict),
        sig=bytes_max(m, "sig", SIG_LEN, min_len=SIG_LEN),
    )


def verify_tx(tx: Tx, verify: Verify = verify_signature) -> bool:
    """True iff tx.sig is the sender's signature over tx.body(); a bad peer id gives False."""
    public_key = peer_public_key(tx.sender)
    if public_key is None:
        return False
    try:
        return bool(verify(public_key, tx.sig, tx._body))
    except Exception:  # noqa: BLE001 - an injected verifier must not turn a bad tx into a crash
        return False
