"""The protocols the config names (`protocols = [...]`), each on its own runtime in the daemon.

For each spec: its machine and wire are built for this node, its stream protocol is served and
its links opened, its gossip topics joined (the runtime is their validator), and its runtime runs
in the daemon's nursery. `protocol.list` and `protocol.call` (node/api/protocols.py) reach them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import trio

from keys.identity import Identity
from node.network import Network
from node.runtime.driver import Runtime
from node.runtime.links import Links
from node.runtime.registry import NodeContext, ProtocolSpec, RegistryError, load_spec

log = logging.getLogger("sovereign.runtime")


@dataclass
class Running:
    spec: ProtocolSpec
    runtime: Runtime
    links: Links | None = None

    def status(self) -> dict[str, Any]:
        wire = self.runtime.wire
        return {
            "name": self.spec.name,
            "protocol": wire.protocol,
            "topics": list(wire.topics),
            "timers": len(self.runtime.timers),
            "dropped_inputs": self.runtime.dropped_inputs,
            "dropped_publications": self.runtime.dropped_publications,
            "links": self.links.stats() if self.links is not None else {},
        }


def load_specs(paths: Sequence[str]) -> list[ProtocolSpec]:
    """Every spec the config names, or RegistryError (before anything starts)."""
    specs = [load_spec(p) for p in paths]
    names = [s.name for s in specs]
    for name in names:
        if name in ("federation", "discovery"):
            raise RegistryError(f"protocol name {name!r} is the daemon's own")
        if names.count(name) > 1:
            raise RegistryError(f"protocol name {name!r} is used twice")
    return specs


class Protocols:
    def __init__(
        self, identity: Identity, net: Network, specs: Sequence[ProtocolSpec],
        emit: Callable[[str, dict[str, Any]], None],
    ) -> None:
        self.net = net
        self.running: dict[str, Running] = {}
        for spec in specs:
            machine, wire = spec.make(NodeContext(identity.peer_id))
            # Events are the protocol's own, named under it: protocol.<name>.<event>.
            runtime = Runtime(
                machine, wire, identity,
                emit=lambda event, params, name=spec.name: emit(f"protocol.{name}.{event}", params),
                on_refused=net.report_refusal,
            )
            self.running[spec.name] = Running(spec, runtime)

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            for r in self.running.values():
                wire = r.runtime.wire
                r.links = Links(self.net, nursery, wire.protocol)
                self.net.serve_frames(wire.protocol, r.runtime.on_frame, wire.max_frame)
                for topic in wire.topics:
                    await self.net.join_topic(topic, partial(r.runtime.on_gossip, topic))
                nursery.start_soon(r.runtime.run, r.links.send, self.net.publish, r.spec.start)
                log.info("protocol %s running on %s (topics: %s)", r.spec.name, wire.protocol, ", ".join(wire.topics) or "none")

    def get(self, name: str) -> Running | None:
        return self.running.get(name)


__all__ = ["Protocols", "Running", "load_specs"]
