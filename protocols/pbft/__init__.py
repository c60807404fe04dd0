"""PBFT consensus core (Castro & Liskov), sans-I/O: messages in, effects out."""

from protocols.pbft.app import Application, KVStore
from protocols.pbft.config import PbftConfig
from protocols.pbft.effects import (
    Broadcast,
    CancelTimer,
    Effect,
    Evidence,
    Executed,
    Send,
    SendReply,
    SetTimer,
    StableCheckpoint,
    StateRestored,
    ViewInstalled,
)
from protocols.pbft.messages import (
    Checkpoint,
    Commit,
    FetchState,
    Message,
    NewView,
    PrePrepare,
    Prepare,
    PreparedCert,
    Reply,
    Request,
    StartViewChange,
    StateTransfer,
    Status,
    ViewChange,
    batch_digest,
    decode_message,
    encode_message,
)
from protocols.pbft.replica import Replica
from protocols.pbft.signing import (
    CachingVerifier,
    Signer,
    Verifier,
    check_signatures,
    default_verifier,
    sign_message,
    signing_bytes,
)

__all__ = [
    "Application", "KVStore", "PbftConfig", "Broadcast", "CancelTimer", "Effect", "Evidence", "Executed",
    "Send", "SendReply", "SetTimer", "StableCheckpoint", "StateRestored", "ViewInstalled", "Checkpoint",
    "Commit", "FetchState", "Message", "NewView", "PrePrepare", "Prepare", "PreparedCert", "Reply",
    "Request", "StartViewChange", "StateTransfer", "Status", "ViewChange", "batch_digest", "decode_message", "encode_message", "Replica",
    "CachingVerifier", "Signer", "Verifier", "check_signatures", "default_verifier", "sign_message", "signing_bytes",
]
