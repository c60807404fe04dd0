"""The replicated ledger: signed transactions, a genesis, and a deterministic state machine that
PBFT replicates (it implements protocols.pbft.app.Application). Pure: no clock, no I/O."""

from protocols.ledger.genesis import Genesis, GenesisError, load_genesis, make_genesis
from protocols.ledger.ledger import Ledger
from protocols.ledger.ops import DEFAULT_OPS, FederationJoin, FederationLeave, Operation, Transfer
from protocols.ledger.receipt import (
    ALREADY_MEMBER,
    APPLIED,
    BAD_ARGS,
    BAD_NONCE,
    BAD_SIGNATURE,
    COMMITTEE_TOO_LARGE,
    COMMITTEE_TOO_SMALL,
    INSUFFICIENT_FUNDS,
    MALFORMED,
    NO_SUCH_MEMBER,
    NOT_A_MEMBER,
    OP_FAILED,
    REASONS,
    REFUSED,
    UNKNOWN_ACCOUNT,
    UNKNOWN_OP,
    WRONG_CHAIN,
    WRONG_GENESIS,
    Receipt,
    decode_receipt,
    encode_receipt,
)
from protocols.ledger.state import LedgerState
from protocols.ledger.tx import MAX_LANES, MAX_TX, TX_DOMAIN, Tx, decode_tx, encode_tx, sign_tx, signed_tx, verify_tx

__all__ = [
    "Genesis", "GenesisError", "load_genesis", "make_genesis", "Ledger", "DEFAULT_OPS", "FederationJoin",
    "FederationLeave", "Operation", "Transfer", "ALREADY_MEMBER", "APPLIED", "BAD_ARGS", "BAD_NONCE",
    "BAD_SIGNATURE", "COMMITTEE_TOO_LARGE", "COMMITTEE_TOO_SMALL", "INSUFFICIENT_FUNDS", "MALFORMED",
    "NO_SUCH_MEMBER", "NOT_A_MEMBER", "OP_FAILED", "REASONS", "REFUSED", "UNKNOWN_ACCOUNT", "UNKNOWN_OP",
    "WRONG_CHAIN", "WRONG_GENESIS", "Receipt", "decode_receipt", "encode_receipt", "LedgerState", "MAX_LANES", "MAX_TX",
    "TX_DOMAIN", "Tx", "decode_tx", "encode_tx", "sign_tx", "signed_tx", "verify_tx",
]
