"""Several PBFT messages in one signed envelope: what the daemon sends one peer in one turn.

Signing each message alone would cost an Ed25519 signature per message and a verification per
message per receiver; a replica's turn typically yields a prepare, a commit and a checkpoint for
the same peer, and a batch of client replies for the same client node. A bundle is a msgpack list
of message maps; decoding validates each message as `decode_message` does and raises only
ProtocolError.
"""

from __future__ import annotations

from collections.abc import Sequence

from protocols.codec import decode, encode
from protocols.errors import ProtocolError
from protocols.pbft.messages import MAX_MESSAGE, Message, message_from_obj, message_to_obj

DOMAIN = "sovereign/pbft/1"  # the envelope domain tag (and the stream protocol id's name)
MAX_BUNDLE = 4096  # messages in one bundle
MAX_BUNDLE_BYTES = 64 * 1024 * 1024  # a state transfer carries a whole snapshot


def encode_bundle(messages: Sequence[Message]) -> bytes:
    if not 0 < len(messages) <= MAX_BUNDLE:
        raise ValueError(f"a bundle holds 1..{MAX_BUNDLE} messages")
    return encode([message_to_obj(m) for m in messages])


def decode_bundle(data: bytes, *, max_size: int = MAX_BUNDLE_BYTES) -> list[Message]:
    """Decode and validate untrusted bytes; raises only ProtocolError."""
    # One level deeper than a lone message (see decode_message).
    obj = decode(data, max_size=min(max_size, MAX_MESSAGE), max_depth=11, max_items=4_000_000)
    if type(obj) is not list or not 0 < len(obj) <= MAX_BUNDLE:
        raise ProtocolError("malformed", f"a bundle is a list of 1..{MAX_BUNDLE} messages")
    return [message_from_obj(m) for m in obj]
