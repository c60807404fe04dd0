"""The simulator core (tests/sim/world.py): a turn's effects as the runtime performs them, the
wire on every frame, gossip to subscribers only, calls, crashes with the journal, partitions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from node.runtime.driver import Turn
from protocols.codec import decode, encode
from protocols.effects import Answer, Journal, Publish, Send, SetTimer
from protocols.errors import ProtocolError
from tests.echo_protocol import EchoMachine, EchoWire
from tests.sim.world import SimError, SimNode, World


class NumWire:
    protocol = domain = "test/num/1"
    topics = ("sums",)
    max_frame = 256

    def __init__(self) -> None:
        self.encoded: list[tuple[str, int]] = []  # (channel, messages) per encode call

    def encode(self, channel: str, messages: Sequence[Any]) -> list[bytes]:
        self.encoded.append((channel, len(messages)))
        return [encode(list(messages))]

    def decode(self, channel: str, payload: bytes) -> Sequence[Any]:
        items = decode(payload, max_size=self.max_frame)
        if channel != "num" or type(items) is not list or not all(type(i) is int for i in items):
            raise ProtocolError("malformed", "a list of ints on num")
        return items

    def encode_gossip(self, topic: str, message: Any) -> bytes:
        return encode(message)

    def decode_gossip(self, topic: str, payload: bytes) -> Any:
        return decode(payload, max_size=self.max_frame)


class Num:
    """Keeps a total of the numbers it is sent (journalled, so it recovers); "burst" sends three
    numbers to one peer in one turn; "publish" publishes its total; a call answers the total."""

    def __init__(self, peer: str = "") -> None:
        self.peer = peer
        self.got: list[tuple[str, tuple[int, ...]]] = []
        self.total = 0
        self.heard: list[tuple[str, Any]] = []
        self.recovered: tuple[bytes | None, int] | None = None

    def on_message(self, peer: str, channel: str, messages: Sequence[Any], now: float) -> list[Any]:
        self.got.append((peer, tuple(messages)))
        self.total += sum(messages)
        return [Journal("num", peer, encode(list(messages)))]

    def on_gossip(self, topic: str, origin: str, message: Any, now: float) -> list[Any]:
        self.heard.append((origin, message))
        return []

    def on_timer(self, key: str, due: float, now: float) -> list[Any]:
        if key == "burst":
            return [Send(self.peer, "num", 1), Send(self.peer, "num", 2), Send(self.peer, "other", 3), Send(self.peer, "num", 4)]
        if key == "publish":
            return [Publish("sums", self.total), Publish("elsewhere", 0)]
        if key == "mine":
            return [("my-effect", now)]
        return []

    def on_call(self, token: int, request: Any, now: float) -> list[Any]:
        return [Answer(token, {"total": self.total, "request": request})]

    def recover(self, state: bytes | None, journal: Sequence[tuple[str, str, bytes, float]]) -> str:
        for _kind, _sender, payload, _at in journal:
            self.total += sum(decode(payload, max_size=256))
        self.recovered = (state, len(journal))
        return f"replayed {len(journal)}"


def world_of(*names: str, **kw: Any) -> World:
    w = World(1, **kw)
    for name in names:
        w.add(name, "pid-" + name, lambda node: (Num("pid-b" if node.name == "a" else "pid-a"), NumWire()), start=None)
    w.run(0.0)
    return w


def fire(w: World, name: str, key: str) -> None:
    w.feed(name, lambda m, now: m.on_timer(key, now, now))


def test_sends_of_a_turn_leave_as_one_frame_per_peer_and_channel_through_both_wires() -> None:
    w = world_of("a", "b")
    fire(w, "a", "burst")
    w.run(1.0)
    a, b = w.nodes["a"], w.nodes["b"]
    assert sorted(a.wire.encoded) == [("num", 3), ("other", 1)]
    assert b.machine.got == [("pid-a", (1, 2, 4))]  # in order, in one on_message
    assert b.refused == {"malformed": 1}  # "other" is no channel of b's wire
    assert b.journal == [("num", "pid-a", encode([1, 2, 4]), b.journal[0][3])] and 0 < b.journal[0][3] < 1.0


def test_gossip_goes_to_other_subscribers_only_and_calls_are_answered() -> None:
    w = world_of("a", "b", "c")
    w.nodes["c"].wire.topics = ()
    fire(w, "a", "publish")
    answers: list[Any] = []
    token = w.call("b", "hello", on_answer=answers.append)
    w.run(1.0)
    assert w.nodes["b"].machine.heard == [("pid-a", 0)] and w.nodes["c"].machine.heard == []
    assert w.nodes["a"].machine.heard == []  # not to itself
    assert answers == [{"total": 0, "request": "hello"}] and w.nodes["b"].answers[token] == answers[0]


def test_an_effect_outside_the_vocabulary_goes_to_the_host_hook() -> None:
    w = world_of("a")
    with pytest.raises(SimError, match="no host handles tuple"):
        fire(w, "a", "mine")
    seen: list[Any] = []

    def host(node: SimNode, effect: Any, turn: Turn) -> None:
        seen.append(effect)
        turn.sends[("pid-a2", "num")] = [7]  # a host may add to the turn, as the federation's ServeLog does

    w.add("a2", "pid-a2", lambda node: (Num(), NumWire()), start=None)
    w.nodes["a"].host = host
    w.run(0.0)
    fire(w, "a", "mine")
    w.run(1.0)
    assert seen == [("my-effect", 0.0)] and w.nodes["a2"].machine.total == 7


def test_a_crash_loses_machine_timers_and_frames_in_flight_and_recovery_replays_the_journal() -> None:
    w = world_of("a", "b")
    fire(w, "a", "burst")
    w.run(1.0)
    b = w.nodes["b"]
    w.feed("b", lambda m, now: [SetTimer("burst", now + 5.0)])  # dies with the process
    w.crash("b", 1.5, 3.0)
    w.at(1.4995, lambda: fire(w, "a", "burst"))  # in flight when b crashes (delays are 1 ms at least): lost
    w.at(2.0, lambda: fire(w, "a", "burst"))  # b is down: lost
    w.run(2.5)
    assert not b.up and b.machine is None and w.lost == 4  # two bursts of two frames
    w.run(10.0)
    assert b.up and b.machine.recovered == (None, 1) and b.machine.total == 7 and b.machine.got == []
    assert w.nodes["a"].machine.got == []  # b's timer never fired: no burst back


def test_a_volatile_machine_may_not_journal() -> None:
    w = World(1)
    w.add("e", "pid-e", lambda node: (EchoMachine(node.pid, 0.1), EchoWire()))
    w.run(0.0)
    with pytest.raises(SimError, match="cannot recover"):
        w.feed("e", lambda m, now: [Journal("x", "", b"")])


def test_an_isolated_node_hears_nothing_until_the_partition_ends_and_echo_restarts_from_zero() -> None:
    w = World(3)
    for i in range(3):
        w.add(f"e{i}", f"pid-{i}", lambda node: (EchoMachine(node.pid, 0.1), EchoWire()))
    w.isolate("e0", 0.0, 1.0)
    w.crash("e2", 2.0, 2.5)
    w.run(0.95)
    e0, e1, e2 = (w.nodes[f"e{i}"] for i in range(3))
    assert e0.machine.seen == {} and e0.machine.counter >= 9 and "pid-0" not in e1.machine.seen
    assert e1.machine.seen["pid-2"] >= 8 and e1.machine.acked["pid-2"] >= 8
    w.run(1.95)
    assert e0.machine.seen["pid-1"] >= 9 and e1.machine.seen["pid-0"] >= 9
    counter = e2.machine.counter
    w.run(2.45)
    assert e2.machine is None and not e2.timers
    w.run(3.0)
    assert 0 < e2.machine.counter < counter  # volatile: it starts over, its start timer fired again


def test_twins_share_a_peer_id_and_each_hears_what_is_sent_to_it() -> None:
    w = world_of("a", "b")
    w.add("b~", "pid-b", lambda node: (Num("pid-a"), NumWire()), start=None, boot_at=None, twin=True)
    with pytest.raises(ValueError):
        w.add("x", "pid-b", lambda node: (Num(), NumWire()))  # only as a twin
    fire(w, "a", "burst")
    fire(w, "b~", "burst")
    w.run(1.0)
    assert w.nodes["b"].machine.got == w.nodes["b~"].machine.got == [("pid-a", (1, 2, 4))]
    assert w.nodes["a"].machine.got == [("pid-b", (1, 2, 4))]  # a twin's frames arrive as the pid's
