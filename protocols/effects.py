"""The effects every protocol machine speaks: what a machine asks its driver to do.

A machine (see protocols/machine.py) takes inputs and returns a list of effects. The driver (the
daemon's node/runtime, or the simulator in tests/sim) performs the ones here the same way for
every machine; anything else a machine returns is its own and goes to its host (the federation's
Executed batches, for example, which its host writes to the store).

Order within one turn: Journal effects are made durable first, then the rest leave in the order
given (Send grouped per peer and channel, so many small messages travel in one signed frame).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union


@dataclass(frozen=True)
class Send:
    """`message` to one peer, on `channel` (a name of the machine's wire, see Codec). Messages for
    the same peer and channel in one turn travel together in one signed frame."""

    to: str
    channel: str
    message: Any


@dataclass(frozen=True)
class Publish:
    """`message` to everyone subscribed to gossip `topic` (signed end to end by the driver)."""

    topic: str
    message: Any


@dataclass(frozen=True)
class SetTimer:
    """(Re)arm timer `key`; the driver feeds on_timer(key, due=at, now) once `at` is reached."""

    key: str
    at: float


@dataclass(frozen=True)
class CancelTimer:
    key: str


@dataclass(frozen=True)
class Emit:
    """An event for the control socket's subscribers (`events.subscribe`)."""

    event: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Answer:
    """The answer to a local caller's call `token` (the driver resolves the caller's wait)."""

    token: int
    value: Any


@dataclass(frozen=True)
class Journal:
    """An input this turn fed to the machine's persistent state: durable before any effect of the
    turn leaves the node, so that a restart replays exactly what stood behind what was sent."""

    kind: str
    sender: str
    payload: bytes


@dataclass(frozen=True)
class Refused:
    """Something a peer sent was refused (logged and counted by the driver; bans follow repeats)."""

    peer: str
    reason: str
    what: str


@dataclass(frozen=True)
class Note:
    """Something worth a log line (the driver logs; a machine does no I/O)."""

    level: str  # "debug" | "info" | "warning" | "error"
    text: str


Effect = Union[Send, Publish, SetTimer, CancelTimer, Emit, Answer, Journal, Refused, Note]
SHARED = (Send, Publish, SetTimer, CancelTimer, Emit, Answer, Journal, Refused, Note)

__all__ = ["Answer", "CancelTimer", "Effect", "Emit", "Journal", "Note", "Publish", "Refused", "SHARED", "Send", "SetTimer"]
