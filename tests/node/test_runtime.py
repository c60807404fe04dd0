"""The protocol runtime (node/runtime/driver.py) with a small machine of the test's own: what it
verifies before a machine sees a message, the order of a turn (durable first, then out), timers,
calls and gossip."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
import trio

from keys.envelope import SeqCounter, seal
from keys.identity import Identity
from node.runtime import Call, CallFailed, Frame, Gossip, Runtime, Timer, Turn, clock, now_ms, seal_messages
from protocols.codec import decode, encode
from protocols.effects import Answer, Emit, Journal, Publish, Send, SetTimer
from protocols.errors import ProtocolError

ME, PEER, OTHER = (Identity.from_seed(bytes([i]) * 32) for i in (41, 42, 43))
TOPIC = "test/topic/1"


class Wire:
    protocol = "/test/rt/1"
    domain = "test/rt/1"
    topics = (TOPIC,)
    max_frame = 4096

    def encode(self, channel: str, messages: Sequence[Any]) -> list[bytes]:
        return [encode(list(messages))]

    def decode(self, channel: str, payload: bytes) -> Sequence[Any]:
        if channel != "num":
            raise ProtocolError("unknown-channel", channel[:32])
        items = decode(payload, max_size=4096, max_depth=2, max_items=64)
        if type(items) is not list or not all(type(i) is int for i in items):
            raise ProtocolError("malformed", "a list of ints")
        return items

    def encode_gossip(self, topic: str, message: Any) -> bytes:
        return encode(message)

    def decode_gossip(self, topic: str, payload: bytes) -> Any:
        v = decode(payload, max_size=4096, max_depth=1, max_items=1)
        if type(v) is not int:
            raise ProtocolError("malformed", "an int")
        return v


class Machine:
    """Echoes each number back +1, journals it, publishes the sum on a timer, answers calls."""

    def __init__(self) -> None:
        self.got: list[tuple[str, str, int]] = []
        self.total = 0

    def on_message(self, peer: str, channel: str, messages: Sequence[Any], now: float) -> list[Any]:
        out: list[Any] = []
        for n in messages:
            self.got.append((peer, channel, n))
            self.total += n
            out += [Journal("num", peer, encode(n)), Send(peer, "num", n + 1)]
        return out

    def on_gossip(self, topic: str, origin: str, message: Any, now: float) -> list[Any]:
        self.got.append((origin, topic, message))
        return [Emit("heard", {"from": origin, "n": message})]

    def on_timer(self, key: str, due: float, now: float) -> list[Any]:
        return [Publish(TOPIC, self.total)] if key == "sum" else []

    def on_call(self, token: int, request: Any, now: float) -> list[Any]:
        return [Answer(token, {"total": self.total}), SetTimer("sum", now)]


class Host:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    def handle(self, effect: Any, turn: Turn) -> None:
        raise TypeError(type(effect).__name__)

    def commit(self, turn: Turn) -> None:
        self.log.append(f"commit {len(turn.journal)}")

    def after(self, turn: Turn) -> None:
        self.log.append("after")


def _runtime(log: list[str] | None = None, me: Identity = ME) -> tuple[Runtime, Machine, list[tuple[str, Exception]], list[str]]:
    refused: list[tuple[str, Exception]] = []
    events: list[str] = []
    machine = Machine()
    rt = Runtime(
        machine, Wire(), me, host=Host(log if log is not None else []),
        emit=lambda e, p: events.append(f"{e} {p['n']}"), on_refused=lambda peer, where, exc: refused.append((peer, exc)),
    )
    return rt, machine, refused, events


def _queued(rt: Runtime) -> list[Any]:
    out = []
    while True:
        try:
            out.append(rt._inbox.receive_nowait())
        except trio.WouldBlock:
            return out


def _frame(who: Identity, channel: str, payload: bytes, *, domain: str = "test/rt/1") -> bytes:
    return seal(who, domain=domain, type=channel, seq=SeqCounter().next(), ts=now_ms(), payload=payload)


async def test_a_verified_frame_reaches_the_machine_and_a_bad_one_never_does() -> None:
    rt, _, refused, _ = _runtime()
    good = seal_messages(PEER, Wire(), "num", [1, 2], SeqCounter())[0]
    rt.on_frame(PEER.peer_id, good)
    assert _queued(rt) == [Frame(PEER.peer_id, "num", [1, 2])] and refused == []

    rt.on_frame(PEER.peer_id, good)  # the same frame again: a replay
    rt.on_frame(OTHER.peer_id, seal_messages(PEER, Wire(), "num", [3], SeqCounter())[0])  # not the stream's peer
    rt.on_frame(PEER.peer_id, _frame(PEER, "num", encode([1]), domain="other/1"))  # another protocol's signature
    rt.on_frame(PEER.peer_id, _frame(PEER, "num", encode(["x"])))  # the wire's decoder refuses it
    rt.on_frame(PEER.peer_id, _frame(PEER, "nope", encode([1])))  # an unknown channel
    rt.on_frame(PEER.peer_id, b"\x00garbage")
    assert _queued(rt) == []
    assert [p for p, _ in refused] == [PEER.peer_id, OTHER.peer_id] + [PEER.peer_id] * 4
    reasons = [getattr(e, "reason", "") for _, e in refused]
    assert "malformed" in reasons and "unknown-channel" in reasons


async def test_a_turn_is_durable_before_anything_leaves() -> None:
    log: list[str] = []
    rt, machine, _, _ = _runtime(log)
    rt.sink = lambda peer, data: log.append(f"send {peer[-4:]}")
    rt.turn([Frame(PEER.peer_id, "num", [1, 2]), Frame(OTHER.peer_id, "num", [5])], clock())
    # Two messages for one peer and channel travel in one frame; the journal went first.
    assert log == ["commit 3", f"send {PEER.peer_id[-4:]}", f"send {OTHER.peer_id[-4:]}", "after"]
    assert machine.total == 8


async def test_calls_are_answered_and_timers_publish_on_gossip() -> None:
    rt, machine, _, events = _runtime()
    published: list[tuple[str, bytes]] = []
    got_one = trio.Event()

    async def publish(topic: str, data: bytes) -> None:
        published.append((topic, data))
        got_one.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(rt.run, lambda peer, data: None, publish)
        rt.put(Frame(PEER.peer_id, "num", [7]))
        assert await rt.call({"q": 1}, timeout=10) == {"total": 7}
        with trio.fail_after(10):
            await got_one.wait()  # the "sum" timer the call armed fires on the runtime's own task
        nursery.cancel_scope.cancel()
    topic, data = published[0]
    # What we publish verifies as the protocol's gossip at a peer, and comes to it from us.
    peer_rt, _, refused, _ = _runtime(me=PEER)
    assert topic == TOPIC and peer_rt.on_gossip(TOPIC, OTHER.peer_id, data) and refused == []
    assert _queued(peer_rt) == [Gossip(TOPIC, ME.peer_id, 7)]
    assert events == []


async def test_gossip_on_the_wrong_topic_or_garbage_is_refused_and_not_forwarded() -> None:
    rt, _, refused, _ = _runtime()
    wrong = _frame(PEER, "gossip/other/1", encode(1))
    assert not rt.on_gossip(TOPIC, OTHER.peer_id, wrong)
    assert not rt.on_gossip(TOPIC, OTHER.peer_id, _frame(PEER, "gossip/" + TOPIC, encode("x")))
    assert not rt.on_gossip(TOPIC, OTHER.peer_id, b"junk")
    assert _queued(rt) == [] and [p for p, _ in refused] == [OTHER.peer_id] * 3  # the forwarder answers for it
    ours = _frame(ME, "gossip/" + TOPIC, encode(3))
    assert rt.on_gossip(TOPIC, OTHER.peer_id, ours) and _queued(rt) == []  # our own, relayed back: not fed


async def test_a_call_that_is_not_answered_or_fails_reaches_its_caller_and_an_unknown_effect_is_the_hosts() -> None:
    class Silent(Machine):
        def on_call(self, token: int, request: Any, now: float) -> list[Any]:
            return []

    rt = Runtime(Silent(), Wire(), ME)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(rt.run, lambda peer, data: None)
        with pytest.raises(trio.TooSlowError):
            await rt.call({}, timeout=0.05)
        nursery.cancel_scope.cancel()

    class Fussy(Machine):
        def on_call(self, token: int, request: Any, now: float) -> list[Any]:
            raise ValueError("no such request")

    fussy = Fussy()
    rt = Runtime(fussy, Wire(), ME, host=Host([]))
    answered = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(rt.run, lambda peer, data: answered.set())
        with pytest.raises(CallFailed, match="no such request"):
            await rt.call({}, timeout=10)
        rt.put(Frame(PEER.peer_id, "num", [1]))  # and the runtime goes on: it answers this frame
        with trio.fail_after(10):
            await answered.wait()
        assert fussy.total == 1
        nursery.cancel_scope.cancel()

    class Odd(Machine):
        def on_timer(self, key: str, due: float, now: float) -> list[Any]:
            return [object()]

    with pytest.raises(TypeError):
        Runtime(Odd(), Wire(), ME).turn([Timer("x"), Call(0, None)], clock())
