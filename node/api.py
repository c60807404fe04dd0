"""The daemon's control methods: every capability of the node as a JSON-RPC method.

Each handler is a thin binding of a method name to the service that owns the state; parameter
validation is the control server's job (the params dataclasses below), domain validation
(is this a peer address?) happens here and answers INVALID_PARAMS with the reason.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

import trio

from keys.identity import Identity
from keys.peerid import PeerIdError, public_key_from_peer_id
from node.control import ControlServer
from node.federation.client import LanesBusy, SubmitTimeout
from node.federation.service import Federation
from node.discovery import DiscoveryService
from node.network import DialError, Network, parse_peer_addr
from node.rpc import CALL_FAILED, INVALID_PARAMS, RpcError
from node.store import Store
from protocols.discovery import PeerState

# How long an operator's `peers.disconnect` keeps our dialer away from that peer.
DISCONNECT_HOLD_OFF_S = 60.0
MAX_AMOUNT = 2**63 - 1
MAX_LOG_LIMIT = 1000


@dataclass(frozen=True)
class AddrParams:
    addr: str


@dataclass(frozen=True)
class PeerParams:
    peer_id: str


@dataclass(frozen=True)
class TransferParams:
    to: str
    amount: int
    timeout: float = 30.0


@dataclass(frozen=True)
class BalanceParams:
    account: str | None = None


@dataclass(frozen=True)
class MemberParams:
    peer: str | None = None
    timeout: float = 30.0


@dataclass(frozen=True)
class TxParams:
    id: str


@dataclass(frozen=True)
class LogParams:
    since: int = 0
    limit: int = 100


@dataclass(frozen=True)
class NodeContext:
    identity: Identity
    version: str
    started_at: float  # trio clock
    network: Network
    discovery: DiscoveryService
    store: Store
    request_shutdown: Callable[[], None]


def _peer_addr_param(addr: str, own_peer_id: str) -> str:
    """The peer id of an address worth dialing or persisting: a transport, a non-zero port, a
    peer id, and not this node (dialing ourselves fails; persisting it would retry forever)."""
    try:
        peer_id = parse_peer_addr(addr)[0]
    except DialError as exc:
        raise RpcError(INVALID_PARAMS, str(exc), {"field": "addr"}) from None
    if peer_id == own_peer_id:
        raise RpcError(INVALID_PARAMS, f"{addr!r} is this node's own address", {"field": "addr"})
    return peer_id


def _peer_id_param(peer_id: str) -> str:
    try:
        public_key_from_peer_id(peer_id)
    except PeerIdError as exc:
        raise RpcError(INVALID_PARAMS, f"not a peer id: {exc}", {"field": "peer_id"}) from None
    return peer_id


def register(server: ControlServer, ctx: NodeContext) -> None:
    net, disc, store = ctx.network, ctx.discovery, ctx.store

    async def node_id() -> dict[str, Any]:
        """This node's peer id and full listen multiaddrs (ending in /p2p/<peer id>)."""
        return {"peer_id": ctx.identity.peer_id, "addrs": net.listen_addrs()}

    async def node_status() -> dict[str, Any]:
        """Version, pid, uptime, listen addresses, peer counts by state, banned peers."""
        m = disc.membership
        return {
            "version": ctx.version,
            "peer_id": ctx.identity.peer_id,
            "pid": os.getpid(),
            "uptime_s": round(trio.current_time() - ctx.started_at, 3),
            "listen_addrs": net.listen_addrs(),
            "peer_count": m.count(PeerState.ALIVE),
            "peers": {
                "alive": m.count(PeerState.ALIVE),
                "suspect": m.count(PeerState.SUSPECT),
                "dead": m.count(PeerState.DEAD),
                "connected": len(net.connected_peers()),
            },
            "banned": sorted(p for p in list(net.banned) if net.is_banned(p)),
        }

    async def peers_list() -> dict[str, Any]:
        """The membership view: every known peer with state, last seen, latency, card."""
        return {"peers": disc.peers()}

    async def peers_connect(p: AddrParams) -> dict[str, Any]:
        """Dial a peer address (/ip4/HOST/tcp/PORT/p2p/PEER_ID) and exchange cards."""
        _peer_addr_param(p.addr, ctx.identity.peer_id)
        try:
            peer_id = await net.connect(p.addr)
        except DialError as exc:
            raise RpcError(CALL_FAILED, str(exc), {"addr": p.addr}) from None
        return {"peer_id": peer_id, "connected": True}

    async def peers_disconnect(p: PeerParams) -> dict[str, Any]:
        """Close connections to a peer; it is not redialed by us for 60 s."""
        peer_id = _peer_id_param(p.peer_id)
        disc.hold_off(peer_id, DISCONNECT_HOLD_OFF_S)
        return {"peer_id": peer_id, "disconnected": await net.disconnect(peer_id)}

    async def bootstrap_list() -> dict[str, Any]:
        """Bootstrap peers: configured plus persisted (`persisted` lists the latter)."""
        return {"bootstrap": disc.bootstrap_addrs(), "persisted": store.bootstrap_list()}

    async def bootstrap_add(p: AddrParams) -> dict[str, Any]:
        """Persist a bootstrap peer address and dial it if we are short of peers."""
        _peer_addr_param(p.addr, ctx.identity.peer_id)
        added = store.bootstrap_add(p.addr)
        disc.wake_dialer()
        return {"addr": p.addr, "added": added}

    async def bootstrap_remove(p: AddrParams) -> dict[str, Any]:
        """Forget a persisted bootstrap peer address."""
        # Any text that may have been persisted (by an older version, say) can be removed.
        if not p.addr:
            raise RpcError(INVALID_PARAMS, "addr must be a non-empty string", {"field": "addr"})
        return {"addr": p.addr, "removed": store.bootstrap_remove(p.addr)}

    async def node_shutdown() -> dict[str, Any]:
        """Stop the daemon cleanly (as SIGTERM does), after answering."""
        ctx.request_shutdown()
        return {"stopping": True}

    server.register("node.id", node_id)
    server.register("node.status", node_status)
    server.register("peers.list", peers_list)
    server.register("peers.connect", peers_connect, AddrParams)
    server.register("peers.disconnect", peers_disconnect, PeerParams)
    server.register("bootstrap.list", bootstrap_list)
    server.register("bootstrap.add", bootstrap_add, AddrParams)
    server.register("bootstrap.remove", bootstrap_remove, AddrParams)
    server.register("node.shutdown", node_shutdown)


def register_federation(server: ControlServer, fed: Federation | None) -> None:
    """ledger.* and federation.*; on a node without a genesis file each answers why it cannot."""

    def need() -> Federation:
        if fed is None:
            raise RpcError(CALL_FAILED, "this node is in no federation: its home has no genesis.json")
        return fed

    def need_ledger(f: Federation) -> Any:
        # A follower's ledger stands at the last stable checkpoint it synced (federation.status says which).
        return f.driver.ledger

    async def ledger_transfer(p: TransferParams) -> dict[str, Any]:
        """Transfer `amount` from this node's account to `to` (a peer id); returns the receipt
        once f+1 replicas agree on it (status "applied" or "refused" with a reason)."""
        f = need()
        try:
            public_key_from_peer_id(p.to)
        except PeerIdError as exc:
            raise RpcError(INVALID_PARAMS, f"not a peer id: {exc}", {"field": "to"}) from None
        if not 0 < p.amount <= MAX_AMOUNT:
            raise RpcError(INVALID_PARAMS, f"amount must be in 1..{MAX_AMOUNT}", {"field": "amount"})
        if not 0 < p.timeout <= 3600:
            raise RpcError(INVALID_PARAMS, "timeout must be in (0, 3600] seconds", {"field": "timeout"})
        try:
            r = await f.transfer(p.to, p.amount, p.timeout)
        except SubmitTimeout as exc:
            raise RpcError(CALL_FAILED, str(exc), {"tx_id": exc.tx_id}) from None
        except LanesBusy as exc:
            raise RpcError(CALL_FAILED, str(exc), {"submitted": False}) from None
        return {"tx_id": r.tx_id, "status": r.status, "reason": r.reason}

    async def ledger_balance(p: BalanceParams) -> dict[str, Any]:
        """The balance of `account` (default: this node's) in this replica's ledger."""
        f = need()
        ledger = need_ledger(f)
        account = p.account if p.account is not None else f.me
        try:
            public_key_from_peer_id(account)
        except PeerIdError as exc:
            raise RpcError(INVALID_PARAMS, f"not a peer id: {exc}", {"field": "account"}) from None
        return {"account": account, "balance": ledger.balance(account), "exists": ledger.has_account(account)}

    async def ledger_tx(p: TxParams) -> dict[str, Any]:
        """Where a transaction (by id, as a receipt names it) was committed, and its receipt."""
        f = need()
        if len(p.id) != 64 or any(c not in "0123456789abcdef" for c in p.id):
            raise RpcError(INVALID_PARAMS, "id must be 64 lowercase hex digits", {"field": "id"})
        row = f.store.ledger_tx(p.id)
        if row is None:
            raise RpcError(CALL_FAILED, f"transaction {p.id} is not in this node's ledger (yet)", {"id": p.id})
        seq, idx, sender, status, reason = row
        return {"tx_id": p.id, "seq": seq, "index": idx, "sender": sender, "status": status, "reason": reason}

    async def federation_status() -> dict[str, Any]:
        """Committee, view and primary, last executed sequence number, stable checkpoint,
        state digest, lag and throughput; on a client-only node, what it knows of the committee."""
        return need().status()

    async def federation_log(p: LogParams) -> dict[str, Any]:
        """Committed batches after sequence number `since` (at most `limit`, <= 1000), in order."""
        f = need()
        if p.since < 0:
            raise RpcError(INVALID_PARAMS, "since must be >= 0", {"field": "since"})
        if not 0 < p.limit <= MAX_LOG_LIMIT:
            raise RpcError(INVALID_PARAMS, f"limit must be in 1..{MAX_LOG_LIMIT}", {"field": "limit"})
        return {"batches": f.log_entries(p.since, p.limit)}

    async def vote(op: str, p: MemberParams, default_self: bool) -> dict[str, Any]:
        f = need()
        peer = p.peer if p.peer is not None else (f.me if default_self else None)
        if peer is None:
            raise RpcError(INVALID_PARAMS, "peer is required: the peer id to vote in", {"field": "peer"})
        try:
            public_key_from_peer_id(peer)
        except PeerIdError as exc:
            raise RpcError(INVALID_PARAMS, f"not a peer id: {exc}", {"field": "peer"}) from None
        if not 0 < p.timeout <= 3600:
            raise RpcError(INVALID_PARAMS, "timeout must be in (0, 3600] seconds", {"field": "timeout"})
        try:
            r = await f.vote(op, peer, p.timeout)
        except SubmitTimeout as exc:
            raise RpcError(CALL_FAILED, str(exc), {"tx_id": exc.tx_id}) from None
        except LanesBusy as exc:
            raise RpcError(CALL_FAILED, str(exc), {"submitted": False}) from None
        ledger = f.driver.ledger
        return {
            "tx_id": r.tx_id, "status": r.status, "reason": r.reason, "peer": peer,
            "pending_members": list(ledger.pending_committee) if ledger.pending_committee else None,
        }

    async def federation_join(p: MemberParams) -> dict[str, Any]:
        """Vote, as a committee member, to add `peer` to the committee. It joins once f+1 members
        have voted, at the next checkpoint (every replica switches at the same sequence number)."""
        return await vote("federation.join", p, default_self=False)

    async def federation_leave(p: MemberParams) -> dict[str, Any]:
        """Leave the committee (default: this node), or vote to remove `peer` (f+1 votes needed).
        Takes effect at the next checkpoint; the node then follows the ledger as a non-member."""
        return await vote("federation.leave", p, default_self=True)

    server.register("federation.join", federation_join, MemberParams)
    server.register("federation.leave", federation_leave, MemberParams)
    server.register("ledger.transfer", ledger_transfer, TransferParams)
    server.register("ledger.balance", ledger_balance, BalanceParams)
    server.register("ledger.tx", ledger_tx, TxParams)
    server.register("federation.status", federation_status)
    server.register("federation.log", federation_log, LogParams)
