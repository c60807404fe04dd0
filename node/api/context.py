"""What the control methods' handlers are given, and how a namespace's table of them is registered.

A handler is a module-level ``async def h(ctx)`` or ``async def h(ctx, p)``: ``ctx`` is the one
object its namespace needs (the node's services, the federation, the predictor's worker), ``p``
an instance of its params dataclass, already checked against its types by the control server.
Each namespace lists its handlers in a ``METHODS`` table of ``Method``; ``register_methods``
binds them to a context. The first paragraph of a handler's docstring is what ``rpc.methods``
shows, so the binding keeps it.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from keys.identity import Identity
from node.control import ControlServer
from node.discovery import DiscoveryService
from node.network import Network
from node.rpc import CALL_FAILED, RpcError
from node.store import Store

C = TypeVar("C")
Handler = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class NodeContext:
    """What node.*, peers.* and bootstrap.* need: this node's identity and its services."""

    identity: Identity
    version: str
    started_at: float  # trio clock
    network: Network
    discovery: DiscoveryService
    store: Store
    request_shutdown: Callable[[], None]


@dataclass(frozen=True)
class Method(Generic[C]):
    """One control method: its name, its handler (given the namespace's context first, then its
    params if `params` names a dataclass) and its params dataclass (None: it takes none)."""

    name: str
    handler: Handler
    params: type | None = None


def register_methods(server: ControlServer, ctx: C, methods: Iterable[Method[C]]) -> None:
    for m in methods:
        server.register(m.name, _bound(m, ctx), m.params)


def register_unavailable(server: ControlServer, methods: Iterable[Method[Any]], reason: str) -> None:
    """Register each method with its params and doc, answering CALL_FAILED `reason` once its
    params are valid: a node without the service says why, rather than "method not found"."""

    for m in methods:

        async def refuse(*_: Any) -> Any:
            raise RpcError(CALL_FAILED, reason)

        functools.update_wrapper(refuse, m.handler)
        server.register(m.name, refuse, m.params)


def _bound(m: Method[C], ctx: C) -> Handler:
    handler = m.handler

    async def without_params() -> Any:
        return await handler(ctx)

    async def with_params(p: Any) -> Any:
        return await handler(ctx, p)

    return functools.update_wrapper(without_params if m.params is None else with_params, handler)
