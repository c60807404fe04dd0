"""Deterministic identities, a genesis and tx builders shared by the ledger tests."""

from __future__ import annotations

from typing import Any

from keys.identity import Identity
from protocols.ledger import Ledger, Receipt, decode_receipt, make_genesis, sign_tx

CHAIN = "test-chain"
IDS = [Identity.from_seed(bytes([i]) * 32) for i in range(1, 11)]
PIDS = [i.peer_id for i in IDS]
# IDS[0..3] are the committee; IDS[0..5] have funds; IDS[6..9] have no account.
COMMITTEE = PIDS[:4]
FUNDED = {p: 1000 for p in PIDS[:6]}
GENESIS = make_genesis(CHAIN, COMMITTEE, FUNDED, checkpoint_interval=16)


def tx(
    who: int, nonce: int, op: str = "transfer", args: dict[str, Any] | None = None, *, lane: int = 0, chain: str = CHAIN,
    genesis: str = GENESIS.hash,
) -> bytes:
    return sign_tx(IDS[who], chain=chain, genesis=genesis, lane=lane, nonce=nonce, op=op, args={} if args is None else args)


def transfer(who: int, nonce: int, to: int | str, amount: int, *, lane: int = 0) -> bytes:
    dest = PIDS[to] if isinstance(to, int) else to
    return tx(who, nonce, "transfer", {"to": dest, "amount": amount}, lane=lane)


def apply(ledger: Ledger, op: bytes) -> Receipt:
    return decode_receipt(ledger.apply(op))


def outcome(ledger: Ledger, op: bytes) -> str:
    """"applied" or the refusal reason."""
    r = apply(ledger, op)
    return r.status if r.applied else r.reason
