"""Per-message Ed25519 signatures: transferable certificates (Castro & Liskov's signature-based PBFT).

A signed envelope (the transport) proves who sent a message, but not who wrote the messages nested
inside it: the pre-prepare and prepares of a prepared certificate and the checkpoint proof inside
a VIEW-CHANGE, the VIEW-CHANGEs and re-issued pre-prepares inside a NEW-VIEW. So the four message
kinds that end up inside certificates (PRE-PREPARE, PREPARE, CHECKPOINT, VIEW-CHANGE) carry their
author's own signature, and whoever relays them cannot forge or alter them.

Division of labour (pure, sans-I/O):
- the replica signs every such message it creates (Replica(..., signer=...)) before storing or
  sending it, and never strips a signature;
- the replica does NOT verify: the driver calls `check_signatures(msg, verify)` on every message
  (after decoding, before `Replica.on_message`) and drops a refused one (reporting its sender);
- the replica still checks the *contents* of certificates (quorums, senders, digests): a signature
  only proves who wrote a nested message, `message.sender` being the identity it is checked against.

What is signed: SIG_DOMAIN + the canonical msgpack encoding of the message with an empty `sig`
(nested messages keep their own signatures inside it). The peer id of a sender is its libp2p id,
which embeds its Ed25519 public key, so no key registry is needed.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from typing import Any, TypeVar

from keys.identity import verify_signature
from keys.peerid import public_key_from_peer_id
from protocols.codec import encode
from protocols.pbft.messages import (
    SIG_LEN,
    Checkpoint,
    Message,
    NewView,
    PrePrepare,
    Prepare,
    ViewChange,
    message_to_obj,
)

SIG_DOMAIN = b"sovereign-pbft-msg-v1\x00"

Signer = Callable[[bytes], bytes]  # data -> 64-byte Ed25519 signature (e.g. Identity.sign)
Verifier = Callable[[str, bytes, bytes], bool]  # (sender peer id, signature, data) -> valid?

SIGNED_TYPES = (PrePrepare, Prepare, Checkpoint, ViewChange)

# Refusal reasons of check_signatures.
UNSIGNED = "unsigned"  # the message itself carries no signature
BAD_SIGNATURE = "bad-signature"  # its own signature does not verify against its sender
BAD_NESTED = "bad-nested-signature"  # a message nested in it is unsigned, forged or altered

M = TypeVar("M")


def _unsigned_bytes(obj: dict[str, Any]) -> bytes:
    """SIG_DOMAIN + the encoding of a message map without its "sig" key (always the last key, so
    the remaining map encodes exactly as the unsigned message does). `obj` is not modified."""
    if "sig" in obj:
        obj = dict(obj)
        del obj["sig"]
    return SIG_DOMAIN + encode(obj)


def signing_bytes(msg: Message) -> bytes:
    """What the author of `msg` signs: SIG_DOMAIN + encode_message(replace(msg, sig=b""))."""
    return _unsigned_bytes(message_to_obj(msg))


def sign_message(msg: M, signer: Signer) -> M:
    """A copy of `msg` carrying `signer`'s signature; messages of other types come back unchanged."""
    if not isinstance(msg, SIGNED_TYPES):
        return msg
    sig = signer(signing_bytes(msg))
    if type(sig) is not bytes or len(sig) != SIG_LEN:
        raise ValueError(f"a signer must return {SIG_LEN} bytes")
    return dataclasses.replace(msg, sig=sig)


# ---------------------------------------------------------------- verification

_MAX_KEYS = 4096
_keys: dict[str, bytes | None] = {}  # peer id -> public key (None: not an Ed25519 peer id)


def _public_key(peer_id: str) -> bytes | None:
    try:
        return _keys[peer_id]
    except KeyError:
        pass
    try:
        key: bytes | None = public_key_from_peer_id(peer_id)
    except (ValueError, TypeError):  # PeerIdError is a ValueError
        key = None
    if len(_keys) >= _MAX_KEYS:
        del _keys[next(iter(_keys))]  # bounded: forget the oldest entry
    _keys[peer_id] = key
    return key


def default_verifier(peer_id: str, sig: bytes, data: bytes) -> bool:
    """Ed25519 verification against the key embedded in a libp2p peer id; a bad peer id is False."""
    key = _public_key(peer_id)
    return key is not None and verify_signature(key, sig, data)


class CachingVerifier:
    """A Verifier that remembers the last `size` (sender, signature, sha256(data)) it accepted and
    accepts them again without the Ed25519 work. A replica sees most nested messages twice or more
    (a PREPARE on its own, then inside VIEW-CHANGEs, then inside the NEW-VIEW); a driver can keep one
    of these for the replica's lifetime. Refusals are not remembered. The cache is bounded (oldest
    entry evicted first) and keyed on a digest of the data, so it holds no message bytes."""

    __slots__ = ("_verify", "_size", "_ok", "hits")

    def __init__(self, verify: Verifier = default_verifier, size: int = 1 << 16) -> None:
        if size < 1:
            raise ValueError("size must be positive")
        self._verify = verify
        self._size = size
        self._ok: dict[tuple[str, bytes, bytes], None] = {}
        self.hits = 0

    def __call__(self, peer_id: str, sig: bytes, data: bytes) -> bool:
        key = (peer_id, sig, hashlib.sha256(data).digest())
        if key in self._ok:
            self.hits += 1
            return True
        if not self._verify(peer_id, sig, data):
            return False
        if len(self._ok) >= self._size:
            del self._ok[next(iter(self._ok))]
        self._ok[key] = None
        return True


class _Check:
    """One check_signatures call: verifies each distinct (sender, sig, data) once (a NEW-VIEW repeats
    the same checkpoint proofs and prepares in several VIEW-CHANGEs)."""

    __slots__ = ("verify", "ok")

    def __init__(self, verify: Verifier) -> None:
        self.verify = verify
        self.ok: set[tuple[str, bytes, bytes]] = set()

    def one(self, sender: str, sig: bytes, obj: dict[str, Any]) -> bool:
        if not sig:
            return False
        key = (sender, sig, _unsigned_bytes(obj))
        if key in self.ok:
            return True
        if not self.verify(sender, sig, key[2]):
            return False
        self.ok.add(key)
        return True

    def view_change_nested(self, vc: ViewChange, obj: dict[str, Any]) -> bool:
        """The signatures inside a VIEW-CHANGE (checkpoint proof, prepared certificates); `obj` is
        its message map, whose sub-maps are reused rather than re-encoding each nested message."""
        for cp, cp_obj in zip(vc.checkpoint_proof, obj["checkpoint_proof"]):
            if not self.one(cp.sender, cp.sig, cp_obj):
                return False
        for cert, cert_obj in zip(vc.prepared, obj["prepared"]):
            pp = cert.pre_prepare
            if not self.one(pp.sender, pp.sig, cert_obj["pre_prepare"]):
                return False
            for p, p_obj in zip(cert.prepares, cert_obj["prepares"]):
                if not self.one(p.sender, p.sig, p_obj):
                    return False
        return True


def check_signatures(msg: Message, verify: Verifier = default_verifier) -> str | None:
    """None when every signature `msg` must carry verifies, else a short reason:
    "unsigned" (a PRE-PREPARE, PREPARE, CHECKPOINT or VIEW-CHANGE without its own signature),
    "bad-signature" (its own signature does not verify against msg.sender), or
    "bad-nested-signature" (a nested message is unsigned or does not verify against its sender;
    in a NEW-VIEW, a re-issued pre-prepare not signed by the NEW-VIEW's sender).

    Checked recursively: VIEW-CHANGE -> its checkpoint proof and each prepared certificate's
    pre-prepare and prepares; NEW-VIEW -> each VIEW-CHANGE (with its nested messages) and each
    pre-prepare of O. Other types (COMMIT, REQUEST, REPLY, STATUS, FETCH-STATE, STATE-TRANSFER)
    carry no signature of their own (the envelope authenticates them) and pass. Only signatures are
    checked here; whether the certificates are complete and consistent is the replica's business.
    """
    if isinstance(msg, (Prepare, Checkpoint, PrePrepare)):
        if not msg.sig:
            return UNSIGNED
        return None if verify(msg.sender, msg.sig, signing_bytes(msg)) else BAD_SIGNATURE
    if isinstance(msg, ViewChange):
        if not msg.sig:
            return UNSIGNED
        check = _Check(verify)
        obj = message_to_obj(msg)
        if not check.one(msg.sender, msg.sig, obj):
            return BAD_SIGNATURE
        return None if check.view_change_nested(msg, obj) else BAD_NESTED
    if isinstance(msg, NewView):
        check = _Check(verify)
        obj = message_to_obj(msg)
        for vc, vc_obj in zip(msg.view_changes, obj["view_changes"]):
            if not (check.one(vc.sender, vc.sig, vc_obj) and check.view_change_nested(vc, vc_obj)):
                return BAD_NESTED
        for pp, pp_obj in zip(msg.pre_prepares, obj["pre_prepares"]):
            if pp.sender != msg.sender or not check.one(pp.sender, pp.sig, pp_obj):
                return BAD_NESTED
        return None
    return None
