"""ledger.*: transfers, balances and where a transaction was committed, on this node's federation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from node.api import checks
from node.api.context import Method
from node.federation.service import Federation
from node.rpc import CALL_FAILED, INVALID_PARAMS, RpcError

MAX_AMOUNT = 2**63 - 1
TX_ID_DIGITS = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class TransferParams:
    to: str
    amount: int
    timeout: float = 30.0


@dataclass(frozen=True)
class BalanceParams:
    account: str | None = None


@dataclass(frozen=True)
class TxParams:
    id: str


async def ledger_transfer(fed: Federation, p: TransferParams) -> dict[str, Any]:
    """Transfer `amount` from this node's account to `to` (a peer id); returns the receipt
    once f+1 replicas agree on it (status "applied" or "refused" with a reason)."""
    checks.peer_id(p.to, "to")
    if not 0 < p.amount <= MAX_AMOUNT:
        raise RpcError(INVALID_PARAMS, f"amount must be in 1..{MAX_AMOUNT}", {"field": "amount"})
    checks.timeout(p.timeout)
    with checks.submitting():
        r = await fed.transfer(p.to, p.amount, p.timeout)
    return {"tx_id": r.tx_id, "status": r.status, "reason": r.reason}


async def ledger_balance(fed: Federation, p: BalanceParams) -> dict[str, Any]:
    """The balance of `account` (default: this node's) in this replica's ledger."""
    # A follower's ledger stands at the last stable checkpoint it synced (federation.status says which).
    ledger = fed.host.ledger
    account = checks.peer_id(p.account if p.account is not None else fed.me, "account")
    return {"account": account, "balance": ledger.balance(account), "exists": ledger.has_account(account)}


async def ledger_tx(fed: Federation, p: TxParams) -> dict[str, Any]:
    """Where a transaction (by id, as a receipt names it) was committed, and its receipt."""
    if len(p.id) != 64 or not TX_ID_DIGITS.issuperset(p.id):
        raise RpcError(INVALID_PARAMS, "id must be 64 lowercase hex digits", {"field": "id"})
    row = fed.store.ledger_tx(p.id)
    if row is None:
        raise RpcError(CALL_FAILED, f"transaction {p.id} is not in this node's ledger (yet)", {"id": p.id})
    seq, idx, sender, status, reason = row
    return {"tx_id": p.id, "seq": seq, "index": idx, "sender": sender, "status": status, "reason": reason}


METHODS: tuple[Method[Federation], ...] = (
    Method("ledger.transfer", ledger_transfer, TransferParams),
    Method("ledger.balance", ledger_balance, BalanceParams),
    Method("ledger.tx", ledger_tx, TxParams),
)
