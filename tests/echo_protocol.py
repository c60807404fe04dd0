"""A protocol written only for the tests: every node publishes a heartbeat counter on one gossip
topic, and answers each beat it hears with an Ack to its origin on a stream channel.

It is here to show what a protocol is to the daemon: this one module (a machine, a wire, their
messages) plus the registration at the bottom, nothing else. It runs between real daemons
(`protocols = ["tests.echo_protocol"]` in config.toml; tests/integration/test_echo_protocol.py)
and in the simulator (tests/sim/test_echo_sim.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from protocols.codec import as_map, decode, encode, int_in
from protocols.effects import Answer, Publish, Send, SetTimer
from protocols.errors import ProtocolError

TOPIC = "sovereign/test-echo/1"
ACK = "ack"  # the one stream channel
MAX_COUNTER = 2**63 - 1
MAX_ACKS = 64  # per frame: a turn that heard more beats sends several frames


@dataclass(frozen=True)
class Beat:
    counter: int


@dataclass(frozen=True)
class Ack:
    counter: int


def _counter(obj: Any) -> int:
    value: int = int_in(as_map(obj, required=("counter",)), "counter", 0, MAX_COUNTER)
    return value


class EchoWire:
    protocol = "/sovereign/test-echo/1"
    domain = "sovereign/test-echo/1"
    topics: tuple[str, ...] = (TOPIC,)
    max_frame = 4096

    def encode(self, channel: str, messages: Sequence[Any]) -> list[bytes]:
        if channel != ACK:
            raise ProtocolError("unknown-channel", channel[:64])
        maps = [{"counter": m.counter} for m in messages]
        return [encode(maps[i : i + MAX_ACKS]) for i in range(0, len(maps), MAX_ACKS)]

    def decode(self, channel: str, payload: bytes) -> Sequence[Any]:
        if channel != ACK:
            raise ProtocolError("unknown-channel", channel[:64])
        items = decode(payload, max_size=self.max_frame, max_depth=2, max_items=2 * MAX_ACKS)
        if type(items) is not list or not 1 <= len(items) <= MAX_ACKS:
            raise ProtocolError("malformed", f"an ack frame is a list of 1 to {MAX_ACKS} acks")
        return [Ack(_counter(i)) for i in items]

    def encode_gossip(self, topic: str, message: Any) -> bytes:
        if topic != TOPIC:
            raise ProtocolError("unknown-topic", topic[:64])
        return encode({"counter": message.counter})

    def decode_gossip(self, topic: str, payload: bytes) -> Any:
        if topic != TOPIC:
            raise ProtocolError("unknown-topic", topic[:64])
        return Beat(_counter(decode(payload, max_size=64, max_depth=1, max_items=1)))


class EchoMachine:
    """Beats every `interval` seconds from the "start" timer on; remembers the highest beat heard
    from each origin (`seen`) and the highest of ours each peer acknowledged (`acked`)."""

    def __init__(self, me: str, interval: float) -> None:
        if not interval > 0:
            raise ValueError(f"interval {interval!r}: a positive number of seconds")
        self.me = me
        self.interval = interval
        self.counter = 0
        self.seen: dict[str, int] = {}
        self.acked: dict[str, int] = {}

    def on_timer(self, key: str, due: float, now: float) -> list[Any]:
        if key == "start":
            return [SetTimer("beat", now)]
        if key == "beat":
            self.counter += 1
            return [Publish(TOPIC, Beat(self.counter)), SetTimer("beat", now + self.interval)]
        return []

    def on_gossip(self, topic: str, origin: str, message: Any, now: float) -> list[Any]:
        if topic != TOPIC or not isinstance(message, Beat) or origin == self.me:
            return []
        self.seen[origin] = max(self.seen.get(origin, 0), message.counter)
        return [Send(origin, ACK, Ack(message.counter))]

    def on_message(self, peer: str, channel: str, messages: Sequence[Any], now: float) -> list[Any]:
        for m in messages:
            if channel == ACK and isinstance(m, Ack):
                self.acked[peer] = max(self.acked.get(peer, 0), m.counter)
        return []

    def on_call(self, token: int, request: Any, now: float) -> list[Any]:
        if isinstance(request, dict) and request.get("op") == "status":
            status = {"counter": self.counter, "seen": dict(self.seen), "acked": dict(self.acked)}
            return [Answer(token, status)]
        return [Answer(token, {"error": 'unknown request: the one request is {"op": "status"}'})]


# ---------------------------------------------------------------------- the registration

from node.runtime.registry import NodeContext, ProtocolSpec  # noqa: E402 - the registration is this module's tail

PROTOCOL = ProtocolSpec(
    "echo", lambda ctx: (EchoMachine(ctx.me, float(ctx.options.get("interval", 0.2))), EchoWire())
)

__all__ = ["ACK", "Ack", "Beat", "EchoMachine", "EchoWire", "NodeContext", "PROTOCOL", "TOPIC"]
