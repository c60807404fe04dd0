"""The test protocol (tests/echo_protocol.py) on its own: its decoders refuse anything but what its
encoders make (with ProtocolError only), its machine's rules, and its registration."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.runtime.registry import NodeContext, load_spec
from protocols.codec import encode
from protocols.effects import Answer, Publish, Send, SetTimer
from protocols.errors import ProtocolError
from tests.echo_protocol import ACK, MAX_ACKS, MAX_COUNTER, PROTOCOL, TOPIC, Ack, Beat, EchoMachine, EchoWire

WIRE = EchoWire()
COUNTERS = st.integers(min_value=0, max_value=MAX_COUNTER)
# Values msgpack can carry, nested: what a hostile peer can put in a well-formed payload.
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1) | st.floats() | st.text(max_size=8)
    | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def _decodes_or_refuses(fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except ProtocolError:
        return None


@settings(max_examples=400, deadline=None)
@given(payload=st.binary(max_size=5000), channel=st.sampled_from([ACK, "beat", "", "ack/1"]))
def test_frame_decoder_raises_only_protocol_error(payload: bytes, channel: str) -> None:
    acks = _decodes_or_refuses(WIRE.decode, channel, payload)
    if acks is not None:
        assert channel == ACK and 1 <= len(acks) <= MAX_ACKS
        assert all(type(a) is Ack and type(a.counter) is int and 0 <= a.counter <= MAX_COUNTER for a in acks)


@settings(max_examples=400, deadline=None)
@given(payload=st.binary(max_size=100), topic=st.sampled_from([TOPIC, "sovereign/test-echo/2", ""]))
def test_gossip_decoder_raises_only_protocol_error(payload: bytes, topic: str) -> None:
    beat = _decodes_or_refuses(WIRE.decode_gossip, topic, payload)
    if beat is not None:
        assert topic == TOPIC and type(beat) is Beat and 0 <= beat.counter <= MAX_COUNTER


@settings(max_examples=400, deadline=None)
@given(value=VALUES)
def test_well_formed_msgpack_of_the_wrong_shape_is_refused(value: object) -> None:
    """Random bytes rarely parse; these do, so the schema checks are what is tested: whatever is
    taken is exactly what the encoder makes of the messages it decoded to."""
    for obj in (value, [value], {"counter": value}, [{"counter": value}], [{"counter": 1}, value]):
        data = encode(obj)
        acks = _decodes_or_refuses(WIRE.decode, ACK, data)
        beat = _decodes_or_refuses(WIRE.decode_gossip, TOPIC, data)
        assert acks is None or WIRE.encode(ACK, acks) == [data]
        assert beat is None or WIRE.encode_gossip(TOPIC, beat) == data


@settings(max_examples=200, deadline=None)
@given(counters=st.lists(COUNTERS, min_size=1, max_size=3 * MAX_ACKS))
def test_acks_round_trip_in_frames_the_receiver_takes(counters: list[int]) -> None:
    frames = WIRE.encode(ACK, [Ack(c) for c in counters])
    assert all(len(f) <= WIRE.max_frame for f in frames)
    assert [a.counter for f in frames for a in WIRE.decode(ACK, f)] == counters


@given(counter=COUNTERS)
def test_beats_round_trip(counter: int) -> None:
    assert WIRE.decode_gossip(TOPIC, WIRE.encode_gossip(TOPIC, Beat(counter))) == Beat(counter)


@pytest.mark.parametrize("counter", [-1, MAX_COUNTER + 1, 2**64 - 1, True, 1.0, "1", None])
def test_counters_outside_the_range_are_refused(counter: object) -> None:
    with pytest.raises(ProtocolError):
        WIRE.decode_gossip(TOPIC, encode({"counter": counter}))
    with pytest.raises(ProtocolError):
        WIRE.decode(ACK, encode([{"counter": 1}, {"counter": counter}]))


def test_the_machine_beats_hears_and_acks() -> None:
    m = EchoMachine("me", 0.5)
    assert m.on_timer("start", 1.0, 1.0) == [SetTimer("beat", 1.0)]
    assert m.on_timer("beat", 1.0, 1.25) == [Publish(TOPIC, Beat(1)), SetTimer("beat", 1.75)]
    assert m.on_timer("other", 2.0, 2.0) == []
    assert m.on_gossip(TOPIC, "p", Beat(7), 2.0) == [Send("p", ACK, Ack(7))]
    assert m.on_gossip(TOPIC, "p", Beat(3), 2.0) == [Send("p", ACK, Ack(3))]  # acked, but seen keeps the max
    assert m.on_gossip(TOPIC, "me", Beat(9), 2.0) == []  # our own, relayed back
    assert m.on_message("p", ACK, [Ack(1), Ack(0)], 2.0) == []
    assert m.on_message("q", ACK, [Ack(1)], 2.0) == []
    assert m.on_call(5, {"op": "status"}, 3.0) == [Answer(5, {"counter": 1, "seen": {"p": 7}, "acked": {"p": 1, "q": 1}})]
    for bad in ({"op": "reset"}, {}, [], "status", None):
        [answer] = m.on_call(6, bad, 3.0)
        assert answer.token == 6 and "error" in answer.value
    with pytest.raises(ValueError):
        EchoMachine("me", 0.0)


def test_the_registration_builds_it_from_the_config() -> None:
    spec = load_spec("tests.echo_protocol")
    assert spec is PROTOCOL and spec.name == "echo" and spec.start == "start"
    machine, wire = spec.make(NodeContext(me="peer-a", options={"interval": "1.5"}))
    assert isinstance(machine, EchoMachine) and isinstance(wire, EchoWire)
    assert (machine.me, machine.interval) == ("peer-a", 1.5)
    assert spec.make(NodeContext(me="peer-a"))[0].interval == 0.2
    assert (wire.protocol, wire.domain, wire.topics, wire.max_frame) == (
        "/sovereign/test-echo/1", "sovereign/test-echo/1", (TOPIC,), 4096
    )
