"""peers.* (the membership view, dialing and hanging up) and bootstrap.* (the persisted peers)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from node.api import checks
from node.api.context import Method, NodeContext
from node.network import DialError
from node.rpc import CALL_FAILED, INVALID_PARAMS, RpcError

# How long an operator's `peers.disconnect` keeps our dialer away from that peer.
DISCONNECT_HOLD_OFF_S = 60.0


@dataclass(frozen=True)
class AddrParams:
    addr: str


@dataclass(frozen=True)
class PeerParams:
    peer_id: str


async def peers_list(ctx: NodeContext) -> dict[str, Any]:
    """The membership view: every known peer with state, last seen, latency, card."""
    return {"peers": ctx.discovery.peers()}


async def peers_connect(ctx: NodeContext, p: AddrParams) -> dict[str, Any]:
    """Dial a peer address (/ip4/HOST/tcp/PORT/p2p/PEER_ID) and exchange cards."""
    checks.peer_addr(p.addr, ctx.identity.peer_id)
    try:
        peer_id = await ctx.network.connect(p.addr)
    except DialError as exc:
        raise RpcError(CALL_FAILED, str(exc), {"addr": p.addr}) from None
    return {"peer_id": peer_id, "connected": True}


async def peers_disconnect(ctx: NodeContext, p: PeerParams) -> dict[str, Any]:
    """Close connections to a peer; it is not redialed by us for 60 s."""
    peer_id = checks.peer_id(p.peer_id, "peer_id")
    ctx.discovery.hold_off(peer_id, DISCONNECT_HOLD_OFF_S)
    return {"peer_id": peer_id, "disconnected": await ctx.network.disconnect(peer_id)}


async def bootstrap_list(ctx: NodeContext) -> dict[str, Any]:
    """Bootstrap peers: configured plus persisted (`persisted` lists the latter)."""
    return {"bootstrap": ctx.discovery.bootstrap_addrs(), "persisted": ctx.store.bootstrap_list()}


async def bootstrap_add(ctx: NodeContext, p: AddrParams) -> dict[str, Any]:
    """Persist a bootstrap peer address and dial it if we are short of peers."""
    checks.peer_addr(p.addr, ctx.identity.peer_id)
    added = ctx.store.bootstrap_add(p.addr)
    ctx.discovery.wake_dialer()
    return {"addr": p.addr, "added": added}


async def bootstrap_remove(ctx: NodeContext, p: AddrParams) -> dict[str, Any]:
    """Forget a persisted bootstrap peer address."""
    # Any text that may have been persisted (by an older version, say) can be removed.
    if not p.addr:
        raise RpcError(INVALID_PARAMS, "addr must be a non-empty string", {"field": "addr"})
    return {"addr": p.addr, "removed": ctx.store.bootstrap_remove(p.addr)}


METHODS: tuple[Method[NodeContext], ...] = (
    Method("peers.list", peers_list),
    Method("peers.connect", peers_connect, AddrParams),
    Method("peers.disconnect", peers_disconnect, PeerParams),
    Method("bootstrap.list", bootstrap_list),
    Method("bootstrap.add", bootstrap_add, AddrParams),
    Method("bootstrap.remove", bootstrap_remove, AddrParams),
)
