import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from libp2p.crypto.ed25519 import Ed25519PrivateKey as Libp2pEd25519
from libp2p.peer.id import ID

from keys.identity import Identity
from keys.peerid import (
    PeerIdError,
    b58decode,
    b58encode,
    peer_id_from_public_key,
    public_key_from_peer_id,
)

PROPS = settings(max_examples=300, deadline=None, derandomize=True)
SEEDS = [bytes(32), bytes(range(32)), b"\xff" * 32] + [hashlib.sha256(bytes([i])).digest() for i in range(5)]


@pytest.mark.parametrize("seed", SEEDS)
def test_peer_id_matches_libp2p(seed: bytes) -> None:
    theirs = ID.from_pubkey(Libp2pEd25519.new(seed).get_public_key()).to_base58()
    ours = Identity.from_seed(seed)
    assert peer_id_from_public_key(ours.public_key) == theirs
    assert ours.peer_id == theirs
    assert theirs.startswith("12D3KooW")


@pytest.mark.parametrize("seed", SEEDS)
def test_public_key_round_trip(seed: bytes) -> None:
    ident = Identity.from_seed(seed)
    assert public_key_from_peer_id(ident.peer_id) == ident.public_key


def test_base58_known_vectors() -> None:
    # Bitcoin base58 test vectors.
    assert b58encode(b"") == ""
    assert b58encode(b"\x00\x00\x01") == "112"
    assert b58encode(b"Hello World!") == "2NEpo7TZRRrLZSi2U"
    assert b58decode("2NEpo7TZRRrLZSi2U") == b"Hello World!"
    assert b58decode("112") == b"\x00\x00\x01"


def test_sha256_peer_id_is_refused() -> None:
    # An RSA/secp256k1-style id (sha2-256 multihash, "Qm...") does not embed a key.
    qm = b58encode(b"\x12\x20" + hashlib.sha256(b"x").digest())
    assert qm.startswith("Qm")
    with pytest.raises(PeerIdError):
        public_key_from_peer_id(qm)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "12D3KooW",  # truncated
        Identity.from_seed(bytes(32)).peer_id[:-1],
        Identity.from_seed(bytes(32)).peer_id + "1",
        Identity.from_seed(bytes(32)).peer_id.replace("K", "0", 1),  # '0' is not base58
        Identity.from_seed(bytes(32)).peer_id.replace("o", "l", 1),  # nor 'l'
        "1" + Identity.from_seed(bytes(32)).peer_id,  # extra leading zero byte
        "z" * 10_000,  # refused by length before any arithmetic
        b58encode(b"\x00\x24\x08\x02\x12\x20" + bytes(32)),  # key type 2 (secp256k1)
        b58encode(b"\x00\x25\x08\x01\x12\x21" + bytes(33)),  # wrong lengths
    ],
)
def test_invalid_peer_ids_are_refused(bad: str) -> None:
    with pytest.raises(PeerIdError):
        public_key_from_peer_id(bad)


@pytest.mark.parametrize("bad", [None, 42, b"12D3KooW", ["x"]])
def test_non_string_peer_ids_are_refused(bad: object) -> None:
    with pytest.raises(PeerIdError):
        public_key_from_peer_id(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [b"", bytes(31), bytes(33), "x" * 32])
def test_public_key_must_be_32_bytes(bad: object) -> None:
    with pytest.raises(PeerIdError):
        peer_id_from_public_key(bad)  # type: ignore[arg-type]


@PROPS
@given(st.text(max_size=80) | st.text(alphabet="123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz", min_size=40, max_size=60))
def test_arbitrary_strings_only_raise_peer_id_error(text: str) -> None:
    try:
        key = public_key_from_peer_id(text)
    except PeerIdError:
        return
    assert peer_id_from_public_key(key) == text


@PROPS
@given(st.binary(min_size=32, max_size=32))
def test_any_key_round_trips(key: bytes) -> None:
    pid = peer_id_from_public_key(key)
    assert pid.startswith("12D3KooW") and len(pid) == 52
    assert public_key_from_peer_id(pid) == key
