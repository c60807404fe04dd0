"""What applying one transaction produced: applied, or refused with a machine-readable reason.

A receipt is final: the ledger state machine is deterministic, so every correct replica returns
byte-identical receipts for the same committed op, and PBFT clients accept f+1 matching replies.
"""

from __future__ import annotations

import re
from dataclasses import dataclass



from protocols.codec import as_map, decode, encode, str_max
from protocols.errors import ProtocolError

APPLIED = "applied"
REFUSED = "refused"

# Refusal reasons.
MALFORMED = "malformed"  # the op is not a decodable signed tx (its receipt has tx_id "")
WRONG_CHAIN = "wrong-chain"
WRONG_GENESIS = "wrong-genesis"  # the right chain id, but signed against another genesis
BAD_SIGNATURE = "bad-signature"
BAD_NONCE = "bad-nonce"  # replay or gap: nonce != last nonce for (sender, lane) + 1
UNKNOWN_ACCOUNT = "unknown-account"  # the sender has no account
INSUFFICIENT_FUNDS = "insufficient-funds"
UNKNOWN_OP = "unknown-op"
BAD_ARGS = "bad-args"
NOT_A_MEMBER = "not-a-member"  # the sender of a federation vote is not in the current committee
COMMITTEE_TOO_SMALL = "committee-too-small"
COMMITTEE_TOO_LARGE = "committee-too-large"
ALREADY_MEMBER = "already-member"  # federation.join for a current member
NO_SUCH_MEMBER = "no-such-member"  # federation.leave for someone who is not a member
OP_FAILED = "op-failed"  # a registered operation raised (a bug in that operation)

REASONS = frozenset(
    {
        MALFORMED, WRONG_CHAIN, WRONG_GENESIS, BAD_SIGNATURE, BAD_NONCE, UNKNOWN_ACCOUNT, INSUFFICIENT_FUNDS, UNKNOWN_OP,
        BAD_ARGS, NOT_A_MEMBER, COMMITTEE_TOO_SMALL, COMMITTEE_TOO_LARGE, ALREADY_MEMBER, NO_SUCH_MEMBER,
        OP_FAILED,
    }
)

MAX_REASON = 64
MAX_RECEIPT = 512
_TX_ID = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Receipt:
    tx_id: str  # hex sha256 of the signed body; "" when the op could not be decoded
    status: str  # APPLIED | REFUSED
    reason: str  # "" when applied

    @property
    def applied(self) -> bool:
        return self.status == APPLIED


def encode_receipt(r: Receipt) -> bytes:
    return encode({"tx_id": r.tx_id, "status": r.status, "reason": r.reason})


def decode_receipt(data: bytes) -> Receipt:
    """Guarded; raises only ProtocolError."""
    m = as_map(decode(data, max_size=MAX_RECEIPT, max_depth=1, max_items=8), required=("tx_id", "status", "reason"))
    tx_id = str_max(m, "tx_id", 64)
    status = str_max(m, "status", 16)
    reason = str_max(m, "reason", MAX_REASON)
    if status not in (APPLIED, REFUSED):
        raise ProtocolError("bad-field", f"status: {status!r}")
    if tx_id and not _TX_ID.fullmatch(tx_id):
        raise ProtocolError("bad-field", "tx_id: not a hex sha256")
    if status == APPLIED and (reason or not tx_id):
        raise ProtocolError("bad-field", "an applied receipt has a tx_id and no reason")
    if status == REFUSED and not reason:
        raise ProtocolError("bad-field", "a refused receipt has a reason")
    return Receipt(tx_id, status, reason)
