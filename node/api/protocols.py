"""protocol.*: the extra peer protocols the config loads (node/runtime/service.py), each a
machine on its own runtime; `protocol.call` hands a request to one and returns its answer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import trio

from node.api import checks
from node.api.context import Method
from node.rpc import CALL_FAILED, INVALID_PARAMS, RpcError
from node.runtime import CallFailed
from node.runtime.service import Protocols


@dataclass(frozen=True)
class CallParams:
    name: str
    request: dict[str, Any] = field(default_factory=dict)
    timeout: float = 10.0


async def protocol_list(protocols: Protocols) -> list[dict[str, Any]]:
    """The protocols this node runs besides the federation and discovery: name, stream protocol,
    gossip topics, timers armed, inputs and publications dropped, link counters."""
    return [r.status() for r in protocols.running.values()]


async def protocol_call(protocols: Protocols, p: CallParams) -> Any:
    """Send `request` (an object) to protocol `name`'s machine and return its answer; what a
    request may say is the protocol's own."""
    checks.timeout(p.timeout)
    running = protocols.get(p.name)
    if running is None:
        names = ", ".join(sorted(protocols.running)) or "none"
        raise RpcError(INVALID_PARAMS, f"no protocol {p.name!r} runs here (running: {names})", {"field": "name"})
    try:
        return await running.runtime.call(p.request, p.timeout)
    except trio.TooSlowError:
        raise RpcError(CALL_FAILED, f"protocol {p.name!r} did not answer within {p.timeout:g} s") from None
    except CallFailed as exc:
        raise RpcError(CALL_FAILED, f"protocol {p.name!r} failed on this request: {exc}") from None


METHODS: tuple[Method[Protocols], ...] = (
    Method("protocol.list", protocol_list),
    Method("protocol.call", protocol_call, CallParams),
)
