"""node.*: who this node is, how it is doing, and stopping it."""

from __future__ import annotations

import os
from typing import Any

import trio

from node.api.context import Method, NodeContext
from protocols.discovery import PeerState


async def node_id(ctx: NodeContext) -> dict[str, Any]:
    """This node's peer id and full listen multiaddrs (ending in /p2p/<peer id>)."""
    return {"peer_id": ctx.identity.peer_id, "addrs": ctx.network.listen_addrs()}


async def node_status(ctx: NodeContext) -> dict[str, Any]:
    """Version, pid, uptime, listen addresses, peer counts by state, banned peers."""
    net, m = ctx.network, ctx.discovery.membership
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


async def node_shutdown(ctx: NodeContext) -> dict[str, Any]:
    """Stop the daemon cleanly (as SIGTERM does), after answering."""
    ctx.request_shutdown()
    return {"stopping": True}


METHODS: tuple[Method[NodeContext], ...] = (
    Method("node.id", node_id),
    Method("node.status", node_status),
    Method("node.shutdown", node_shutdown),
)
