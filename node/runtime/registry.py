"""How a protocol joins the daemon: one `ProtocolSpec`, named in `protocols = [...]` of the config.

A spec says how to build the protocol's machine and wire for this node; the daemon then runs it
on its own runtime (node/runtime/driver.py): the wire's stream protocol is served, its gossip
topics joined with the runtime as their validator, its timers, journal and events handled, and
`protocol.call` on the control socket reaches its `on_call`. Nothing else in the daemon changes.

The federation is wired by hand (node/federation/service.py) because it has a host of its own
(the store, the ledger client); a protocol without one is a spec and nothing more.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from protocols.machine import Machine, Wire

NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")


@dataclass(frozen=True)
class NodeContext:
    """What a protocol may know of the node it runs in when it is built."""

    me: str  # our peer id
    # Settings for the protocol from whoever builds it (the simulator, tests). The daemon passes
    # none: the config has no per-protocol section, so a protocol's defaults are what runs.
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ProtocolSpec:
    name: str  # short, lowercase: names it in logs, status and `protocol.call`
    make: Callable[[NodeContext], tuple[Machine, Wire]]
    start: str | None = "start"  # a timer key fed once when the runtime starts (None: none)

    def __post_init__(self) -> None:
        if not self.name or len(self.name) > 32 or not set(self.name) <= NAME_CHARS:
            raise ValueError(f"protocol name {self.name!r}: 1-32 of a-z, 0-9 and -")


class RegistryError(Exception):
    """A protocol named in the config cannot be loaded; the message says which and why."""


def load_spec(path: str) -> ProtocolSpec:
    """`module` or `module:attribute` naming a ProtocolSpec (attribute default: PROTOCOL)."""
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - an import runs arbitrary code: report whatever it raised
        raise RegistryError(f"protocol {path!r}: cannot import {module_name!r}: {type(exc).__name__}: {exc}") from None
    spec = getattr(module, attr or "PROTOCOL", None)
    if not isinstance(spec, ProtocolSpec):
        raise RegistryError(f"protocol {path!r}: {module_name}.{attr or 'PROTOCOL'} is not a ProtocolSpec")
    return spec


__all__ = ["NodeContext", "ProtocolSpec", "RegistryError", "load_spec"]
