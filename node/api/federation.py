"""federation.*: the committee's state, its committed log, and votes to change its members."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from node.api import checks
from node.api.context import Method
from node.federation.service import Federation
from node.rpc import INVALID_PARAMS, RpcError

MAX_LOG_LIMIT = 1000


@dataclass(frozen=True)
class MemberParams:
    peer: str | None = None
    timeout: float = 30.0


@dataclass(frozen=True)
class LogParams:
    since: int = 0
    limit: int = 100


async def federation_status(fed: Federation) -> dict[str, Any]:
    """Committee, view and primary, last executed sequence number, stable checkpoint,
    state digest, lag and throughput; on a client-only node, what it knows of the committee."""
    return fed.status()


async def federation_log(fed: Federation, p: LogParams) -> dict[str, Any]:
    """Committed batches after sequence number `since` (at most `limit`, <= 1000), in order."""
    if p.since < 0:
        raise RpcError(INVALID_PARAMS, "since must be >= 0", {"field": "since"})
    if not 0 < p.limit <= MAX_LOG_LIMIT:
        raise RpcError(INVALID_PARAMS, f"limit must be in 1..{MAX_LOG_LIMIT}", {"field": "limit"})
    return {"batches": fed.log_entries(p.since, p.limit)}


async def federation_join(fed: Federation, p: MemberParams) -> dict[str, Any]:
    """Vote, as a committee member, to add `peer` to the committee. It joins once f+1 members
    have voted, at the next checkpoint (every replica switches at the same sequence number)."""
    return await _vote(fed, "federation.join", p, p.peer)


async def federation_leave(fed: Federation, p: MemberParams) -> dict[str, Any]:
    """Leave the committee (default: this node), or vote to remove `peer` (f+1 votes needed).
    Takes effect at the next checkpoint; the node then follows the ledger as a non-member."""
    return await _vote(fed, "federation.leave", p, p.peer if p.peer is not None else fed.me)


async def _vote(
    fed: Federation, op: Literal["federation.join", "federation.leave"], p: MemberParams, peer: str | None
) -> dict[str, Any]:
    if peer is None:
        raise RpcError(INVALID_PARAMS, "peer is required: the peer id to vote in", {"field": "peer"})
    checks.peer_id(peer, "peer")
    checks.timeout(p.timeout)
    with checks.submitting():
        r = await fed.vote(op, peer, p.timeout)
    # What the vote did, as our own ledger has it (so a caller reading pending_members sees its
    # effect): wait for our replica to execute it too, briefly (a follower learns it later).
    if r.tx_id and r.status == "applied":
        await fed.applied_here(r.tx_id, min(p.timeout, 5.0))
    pending = fed.host.ledger.pending_committee
    return {
        "tx_id": r.tx_id, "status": r.status, "reason": r.reason, "peer": peer,
        "pending_members": list(pending) if pending else None,
        "members": list(fed.host.members),
    }


METHODS: tuple[Method[Federation], ...] = (
    Method("federation.status", federation_status),
    Method("federation.log", federation_log, LogParams),
    Method("federation.join", federation_join, MemberParams),
    Method("federation.leave", federation_leave, MemberParams),
)
