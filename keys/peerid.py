"""libp2p peer ids for Ed25519 keys, both ways.

An Ed25519 peer id embeds the public key itself (identity multihash), so any message can be
verified from its sender id alone, without a key directory.
"""

from __future__ import annotations

_B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(_B58_ALPHABET)}

# identity multihash (code 0x00, length 0x24 = 36) of the protobuf PublicKey{Type: Ed25519 (1), Data: <32 bytes>}
_PREFIX = bytes([0x00, 0x24, 0x08, 0x01, 0x12, 0x20])
_KEY_LEN = 32
# A valid id is 52 characters; anything much longer is refused before any big-int arithmetic.
_MAX_ID_LEN = 64


class PeerIdError(ValueError):
    """Not a valid Ed25519 identity-multihash peer id."""


def b58encode(data: bytes) -> str:
    n = int.from_bytes(data, "big")
    out = []
    while n:
        n, r = divmod(n, 58)
        out.append(_B58_ALPHABET[r])
    # Each leading zero byte is carried as a literal '1', since the integer loses it.
    zeros = len(data) - len(data.lstrip(b"\x00"))
    return "1" * zeros + "".join(reversed(out))


def b58decode(text: str) -> bytes:
    n = 0
    for c in text:
        digit = _B58_INDEX.get(c)
        if digit is None:
            raise PeerIdError(f"invalid base58 character {c!r}")
        n = n * 58 + digit
    zeros = len(text) - len(text.lstrip("1"))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return b"\x00" * zeros + body


def peer_id_from_public_key(public_key: bytes) -> str:
    if not isinstance(public_key, (bytes, bytearray)) or len(public_key) != _KEY_LEN:
        raise PeerIdError("an Ed25519 public key is 32 raw bytes")
    return b58encode(_PREFIX + bytes(public_key))


def public_key_from_peer_id(peer_id: str) -> bytes:
    if not isinstance(peer_id, str):
        raise PeerIdError("peer id must be a string")
    if not 0 < len(peer_id) <= _MAX_ID_LEN:
        raise PeerIdError("peer id has the wrong length")
    raw = b58decode(peer_id)
    if len(raw) != len(_PREFIX) + _KEY_LEN or not raw.startswith(_PREFIX):
        raise PeerIdError("not an Ed25519 identity-multihash peer id")
    # Base58 as decoded here is canonical, but checking the round trip makes that a fact, not an
    # argument: one key must have exactly one id, or replay tracking per sender could be dodged.
    if b58encode(raw) != peer_id:
        raise PeerIdError("non-canonical peer id encoding")
    return raw[len(_PREFIX) :]
