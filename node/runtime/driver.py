"""Runs one protocol machine (protocols/machine.py) on trio: inputs in, effects out, on one task.

Every input (a peer's frame, a gossip message, a timer expiry, a local call) goes through one
bounded channel to one task, which feeds the machine whatever has queued up (a *turn*), then,
before anything leaves the node, hands the turn to the machine's host to make durable (the
journal of inputs and whatever the host keeps, in one transaction), and only then sends the
machine's messages (one signed frame per peer and channel), publishes, answers local callers and
emits events. Nothing a machine decides depends on this module: it only moves bytes.

On the way in, every frame is verified before the machine sees it: the envelope's signature, its
domain (the protocol's own), the sender being the authenticated stream peer, freshness and replay
(keys/envelope.py), then the wire's decoder. Anything refused is counted against the peer
(discovery bans peers that keep sending provably bad messages).

Effects the shared vocabulary (protocols/effects.py) does not name are the machine's own and go
to its host, which may add to the turn what it must persist (the federation's executed batches).

Time is CLOCK_BOOTTIME: monotonic and shared by every process on the host, so the times recorded
in a journal before a crash still compare correctly with the clock after the restart.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, Union

import trio

from keys.envelope import EnvelopeError, ReplayGuard, SeqCounter, open_envelope, seal
from keys.identity import Identity
from protocols.effects import Answer, CancelTimer, Emit, Journal, Note, Publish, Refused, Send, SetTimer
from protocols.errors import ProtocolError
from protocols.machine import Machine, Wire

log = logging.getLogger("sovereign.runtime")

INBOX = 16_384  # queued inputs; beyond that peers' messages are dropped (protocols retransmit)
TURN = 1024  # inputs fed per turn before effects are flushed
PUBLISH_QUEUE = 1024  # gossip publications waiting for the network
GOSSIP_PREFIX = "gossip/"  # envelope type of a publication: "gossip/<topic>"


def clock() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def seal_messages(identity: Identity, wire: Wire, channel: str, messages: Sequence[Any], seqs: SeqCounter) -> list[bytes]:
    """The signed frames that carry `messages` on `channel`, as a runtime sends them."""
    return [
        seal(identity, domain=wire.domain, type=channel, seq=seqs.next(), ts=now_ms(), payload=payload)
        for payload in wire.encode(channel, messages)
    ]


# ---------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Frame:
    peer: str
    channel: str
    messages: Sequence[Any]


@dataclass(frozen=True)
class Gossip:
    topic: str
    origin: str
    message: Any


@dataclass(frozen=True)
class Timer:
    key: str
    due: float | None = None  # when it was set to fire (None: now)


@dataclass(frozen=True)
class Call:
    token: int
    request: Any


Input = Union[Frame, Gossip, Timer, Call]


class CallFailed(Exception):
    """The machine raised on a call; `call` raises this in the caller."""


# ---------------------------------------------------------------------- one turn


@dataclass
class Turn:
    """What one turn produced, in the order it leaves: journal first (durable), then the rest."""

    now: float
    journal: list[tuple[str, str, bytes, float]] = field(default_factory=list)
    sends: dict[tuple[str, str], list[Any]] = field(default_factory=dict)
    publishes: list[Publish] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)
    emits: list[Emit] = field(default_factory=list)
    host: dict[str, Any] = field(default_factory=dict)  # the host's own bookkeeping for this turn

    def send(self, to: str, channel: str, message: Any) -> None:
        queued = self.sends.get((to, channel))
        if queued is None:
            self.sends[(to, channel)] = [message]
        else:
            queued.append(message)



class Host(Protocol):
    """What a machine's daemon side adds to the runtime: its own effects and its persistence."""

    def handle(self, effect: Any, turn: Turn) -> None:
        """An effect outside the shared vocabulary (TypeError for one the host does not know)."""
        ...

    def commit(self, turn: Turn) -> None:
        """Make the turn's journal and the host's own rows durable, in one transaction."""
        ...

    def after(self, turn: Turn) -> None:
        """The turn's outputs have left: tell the rest of the daemon."""
        ...


class Volatile:
    """The host of a machine that keeps nothing across restarts and has no effects of its own."""

    def handle(self, effect: Any, turn: Turn) -> None:
        raise TypeError(f"no host handles {type(effect).__name__}")

    def commit(self, turn: Turn) -> None:
        if turn.journal:
            raise TypeError("a volatile machine journalled an input")

    def after(self, turn: Turn) -> None:
        return None


Sink = Callable[[str, bytes], None]  # (peer, frame): the per-peer links (node/runtime/links.py)


# ---------------------------------------------------------------------- the runtime


class Runtime:
    def __init__(
        self,
        machine: Machine,
        wire: Wire,
        identity: Identity,
        *,
        host: Host | None = None,
        emit: Callable[[str, dict[str, Any]], None] = lambda event, params: None,
        on_refused: Callable[[str, str, Exception], None] = lambda peer, where, exc: None,
        prefilter: Callable[[str, str, Sequence[Any]], Sequence[Any]] | None = None,
    ) -> None:
        """`prefilter(peer, channel, messages)` may take messages out of a verified frame before
        they queue (the federation hands PBFT replies straight to its client)."""
        self.machine = machine
        self.wire = wire
        self.identity = identity
        self.me = identity.peer_id
        self.host: Host = host if host is not None else Volatile()
        self._emit = emit
        self._on_refused = on_refused
        self._prefilter = prefilter
        self._seqs = SeqCounter()  # one counter per identity and domain: receivers guard per domain
        self._guard = ReplayGuard()
        self._gossip_guard = ReplayGuard()
        self._send_in, self._inbox = trio.open_memory_channel[Input](INBOX)
        self._publish_in, self._publish_out = trio.open_memory_channel[tuple[str, bytes]](PUBLISH_QUEUE)
        self.timers: dict[str, float] = {}
        self._calls: dict[int, tuple[trio.Event, list[Any]]] = {}
        self._next_token = 1
        self.sink: Sink | None = None
        self.dropped_inputs = 0
        self.dropped_publications = 0
        self._handlers: dict[type, Callable[[Any, Turn], None]] = {
            Send: self._on_send, Publish: self._on_publish, SetTimer: self._on_set_timer,
            CancelTimer: self._on_cancel_timer, Emit: self._on_emit, Answer: self._on_answer,
            Journal: self._on_journal, Refused: self._on_refused_effect, Note: self._on_note,
        }

    # ------------------------------------------------------------------ inputs

    def put(self, item: Input) -> None:
        try:
            self._send_in.send_nowait(item)
        except trio.WouldBlock:
            self.dropped_inputs += 1

    def call_nowait(self, request: Any) -> None:
        """A call whose answer nobody waits for."""
        self.put(Call(0, request))

    async def call(self, request: Any, timeout: float) -> Any:
        """A call answered by the machine (an Answer effect), within `timeout` seconds
        (trio.TooSlowError after that; CallFailed if the machine raised on it)."""
        token = self._next_token
        self._next_token += 1
        done, box = trio.Event(), []
        self._calls[token] = (done, box)
        try:
            self.put(Call(token, request))
            with trio.fail_after(timeout):
                await done.wait()
        finally:
            self._calls.pop(token, None)
        if isinstance(box[0], CallFailed):
            raise box[0]
        return box[0]

    def on_frame(self, peer: str, data: bytes) -> None:
        """A frame from `peer`'s stream: verify, decode, queue. Called on the network's task."""
        try:
            env = open_envelope(
                data, domain=self.wire.domain, now_ms=now_ms(), guard=self._guard,
                max_size=self.wire.max_frame, expected_sender=peer,
            )
            messages = self.wire.decode(env.type, env.payload)
        except (EnvelopeError, ProtocolError) as exc:
            self._on_refused(peer, self.wire.protocol, exc)
            return
        if self._prefilter is not None:
            messages = self._prefilter(peer, env.type, messages)
        if messages:
            self.put(Frame(peer, env.type, messages))

    def on_gossip(self, topic: str, via: str, data: bytes) -> bool:
        """A gossip message relayed by `via`: True to deliver and forward it (a GossipSub
        validator: only what verifies travels on)."""
        try:
            env = open_envelope(data, domain=self.wire.domain, now_ms=now_ms(), guard=self._gossip_guard,
                                max_size=self.wire.max_frame)
            if env.type != GOSSIP_PREFIX + topic:
                raise ProtocolError("wrong-topic", f"{env.type[:64]} published on {topic[:64]}")
            message = self.wire.decode_gossip(topic, env.payload)
        except (EnvelopeError, ProtocolError) as exc:
            if getattr(exc, "reason", "") != "replayed":  # a second path's copy is no offence
                self._on_refused(via, topic, exc)
            return False
        if env.sender != self.me:
            self.put(Gossip(topic, env.sender, message))
        return True

    # ------------------------------------------------------------------ the loop

    async def run(self, sink: Sink, publish: Callable[[str, bytes], Any] | None = None, start: str | None = None) -> None:
        """Feed the machine until cancelled. `sink(peer, frame)` queues a frame for a peer (never
        blocks); `publish(topic, data)` is awaited for every publication, in order; timer `start`,
        if given, fires first."""
        self.sink = sink
        if start is not None:
            self.put(Timer(start))
        async with trio.open_nursery() as nursery:
            if publish is not None:
                nursery.start_soon(self._publisher, publish)
            while True:
                items: list[Input] = []
                deadline = min(self.timers.values(), default=None)
                if deadline is None:
                    items.append(await self._inbox.receive())
                else:
                    with trio.move_on_after(max(0.0, deadline - clock())):
                        items.append(await self._inbox.receive())
                while len(items) < TURN:
                    try:
                        items.append(self._inbox.receive_nowait())
                    except trio.WouldBlock:
                        break
                now = clock()
                for key in [k for k, at in self.timers.items() if at <= now]:
                    items.append(Timer(key, self.timers.pop(key)))
                self.turn(items, now)
                await trio.sleep(0)  # let the network tasks run between turns

    async def _publisher(self, publish: Callable[[str, bytes], Any]) -> None:
        async for topic, data in self._publish_out:
            try:
                await publish(topic, data)
            except Exception as exc:  # noqa: BLE001 - gossip is best effort; the machine repeats what matters
                log.warning("publishing on %s failed: %s: %s", topic, type(exc).__name__, exc)

    def turn(self, items: Sequence[Input], now: float) -> None:
        """Feed the machine, then persist, then let the effects out: nothing leaves the node before
        the inputs behind it are durable."""
        turn = Turn(now)
        handlers = self._handlers
        for item in items:
            try:
                effects = self._feed(item, now)
            except Exception as exc:
                if not isinstance(item, Call):
                    raise  # a machine that fails on a peer's input or its own timer is broken: stop
                # A request the machine cannot take: its caller hears why, the node goes on.
                log.exception("a call to the machine failed")
                turn.answers.append(Answer(item.token, CallFailed(f"{type(exc).__name__}: {exc}")))
                continue
            for e in effects:
                handler = handlers.get(type(e))
                if handler is not None:
                    handler(e, turn)
                else:
                    self.host.handle(e, turn)
        self.host.commit(turn)
        self._flush(turn)
        self.host.after(turn)

    def _feed(self, item: Input, now: float) -> list[Any]:
        m = self.machine
        if isinstance(item, Frame):
            return m.on_message(item.peer, item.channel, item.messages, now)
        if isinstance(item, Timer):
            return m.on_timer(item.key, now if item.due is None else item.due, now)
        if isinstance(item, Call):
            return m.on_call(item.token, item.request, now)
        return m.on_gossip(item.topic, item.origin, item.message, now)

    def _flush(self, turn: Turn) -> None:
        sink = self.sink
        assert sink is not None, "run() first"
        for (peer, channel), messages in turn.sends.items():
            for payload in self.wire.encode(channel, messages):
                sink(peer, self.seal(channel, payload))
        for p in turn.publishes:
            data = self.seal(GOSSIP_PREFIX + p.topic, self.wire.encode_gossip(p.topic, p.message))
            try:
                self._publish_in.send_nowait((p.topic, data))
            except trio.WouldBlock:
                self.dropped_publications += 1
        for a in turn.answers:
            waiting = self._calls.get(a.token)
            if waiting is not None:
                waiting[1].append(a.value)
                waiting[0].set()
        for e in turn.emits:
            self._emit(e.event, e.params)

    def seal(self, channel: str, payload: bytes) -> bytes:
        return seal(self.identity, domain=self.wire.domain, type=channel, seq=self._seqs.next(), ts=now_ms(), payload=payload)

    # ------------------------------------------------------------------ the shared effects

    def _on_send(self, e: Send, turn: Turn) -> None:
        turn.send(e.to, e.channel, e.message)

    def _on_publish(self, e: Publish, turn: Turn) -> None:
        turn.publishes.append(e)

    def _on_set_timer(self, e: SetTimer, turn: Turn) -> None:
        self.timers[e.key] = e.at

    def _on_cancel_timer(self, e: CancelTimer, turn: Turn) -> None:
        self.timers.pop(e.key, None)

    def _on_emit(self, e: Emit, turn: Turn) -> None:
        turn.emits.append(e)

    def _on_answer(self, e: Answer, turn: Turn) -> None:
        turn.answers.append(e)

    def _on_journal(self, e: Journal, turn: Turn) -> None:
        turn.journal.append((e.kind, e.sender, e.payload, turn.now))

    def _on_refused_effect(self, e: Refused, turn: Turn) -> None:
        self._on_refused(e.peer, self.wire.protocol, ProtocolError(e.reason, e.what))

    def _on_note(self, e: Note, turn: Turn) -> None:
        getattr(log, e.level if e.level in ("debug", "info", "warning", "error") else "info")("%s", e.text)


__all__ = ["Call", "CallFailed", "Frame", "Gossip", "Host", "Input", "Runtime", "Timer", "Turn", "Volatile", "clock", "now_ms", "seal_messages"]
