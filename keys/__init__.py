"""Who a node is: keypair files, peer ids, signing, signed envelopes, capability cards.

Imports only the stdlib, cryptography and msgpack (ARCHITECTURE.md).
"""

from keys.card import CapabilityCard, CardError, issue_card, verify_card
from keys.envelope import Envelope, EnvelopeError, ReplayGuard, SeqCounter, open_envelope, seal
from keys.identity import (
    Identity,
    KeyFileError,
    KeyFileExistsError,
    KeyFilePermissionError,
    PassphraseRequiredError,
    load_identity,
    load_or_create_identity,
    passphrase_from_environment,
    save_identity,
    verify_signature,
)
from keys.peerid import PeerIdError, peer_id_from_public_key, public_key_from_peer_id

__all__ = [
    "CapabilityCard",
    "CardError",
    "Envelope",
    "EnvelopeError",
    "Identity",
    "KeyFileError",
    "KeyFileExistsError",
    "KeyFilePermissionError",
    "PassphraseRequiredError",
    "PeerIdError",
    "ReplayGuard",
    "SeqCounter",
    "issue_card",
    "load_identity",
    "load_or_create_identity",
    "open_envelope",
    "passphrase_from_environment",
    "peer_id_from_public_key",
    "public_key_from_peer_id",
    "save_identity",
    "seal",
    "verify_card",
    "verify_signature",
]
