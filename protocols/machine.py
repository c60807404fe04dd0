"""What a peer protocol is, to the drivers that run it (node/runtime in the daemon, tests/sim).

A protocol is two things: a *machine*, which decides (inputs in, protocols/effects.py values out,
time as an argument, no clock, no randomness of its own, no I/O), and a *wire*, which names its
stream protocol, its envelope domain and its gossip topics and turns its messages into bytes and
back. The driver does everything else: per-peer links, signed envelopes and their verification
before the machine sees a message, replay refusal, timers, the write-ahead log, events.

Decoders raise ProtocolError (protocols/errors.py) and nothing else; the driver refuses the frame
and counts it against the peer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol


class Machine(Protocol):
    def on_message(self, peer: str, channel: str, messages: Sequence[Any], now: float) -> list[Any]:
        """Messages from `peer` (authenticated: the envelope's signer) on `channel`, in order."""
        ...

    def on_gossip(self, topic: str, origin: str, message: Any, now: float) -> list[Any]:
        """A message published on `topic` by `origin` (the envelope's signer, not the forwarder)."""
        ...

    def on_timer(self, key: str, due: float, now: float) -> list[Any]:
        """Timer `key`, set for `due`, fires at `now` (later than due if the process was paused)."""
        ...

    def on_call(self, token: int, request: Any, now: float) -> list[Any]:
        """A call from this node (the control API, another part of the daemon); Answer(token, ...)
        resolves it, now or in a later turn."""
        ...


class Wire(Protocol):
    protocol: str  # the libp2p stream protocol id, e.g. "/sovereign/pbft/1"
    domain: str  # the envelope domain: a signature for one protocol never verifies for another
    topics: tuple[str, ...]  # gossip topics the machine takes part in
    max_frame: int  # bytes: a larger frame is refused before it is parsed

    def encode(self, channel: str, messages: Sequence[Any]) -> list[bytes]:
        """The payloads of one or more frames carrying `messages` on `channel`."""
        ...

    def decode(self, channel: str, payload: bytes) -> Sequence[Any]:
        """The messages of one frame's payload; ProtocolError if the channel or payload is bad."""
        ...

    def encode_gossip(self, topic: str, message: Any) -> bytes: ...

    def decode_gossip(self, topic: str, payload: bytes) -> Any: ...


__all__ = ["Machine", "Wire"]
