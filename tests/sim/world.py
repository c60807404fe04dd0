"""The simulator core: any set of protocol machines (protocols/machine.py) on one virtual clock, over
one faulty virtual network, each run by a driver that performs the shared effects
(protocols/effects.py) the way the daemon's runtime does (node/runtime/driver.py).

A node's turn (one input per turn, a schedule the runtime can produce too):

- the machine's effects are collected in the runtime's own `Turn`: Sends grouped per (peer,
  channel), publications, answers, events, journal entries; timers are (re)armed on the spot;
  a Refused is counted against the peer; a Note is kept;
- any other effect goes to the node's host hook (the runtime's Host.handle), which may edit the
  turn (add sends, drop what an installed state made moot);
- then the journal is kept on the node's "disk" (it survives a crash) and the host's commit hook
  runs: nothing leaves a node before the inputs behind it are durable;
- then the turn leaves: each (peer, channel) group through the sender's `wire.encode`, one frame per
  payload, each over the network and through the receiver's `wire.decode` (a ProtocolError is a
  refused frame; any other exception is a bug and propagates); each publication through
  `encode_gossip` to every other node whose wire takes part in the topic, each copy over its own
  link; answers resolve calls; then the host's after hook.

Faults: tests/sim/network.py's seeded loss, delay, duplication, reordering, partitions and link cuts
(all of them stop at `network.heal_at`), twins (several nodes under one peer id), raw frames a
test injects from any name (`transmit`, `send`), and crashes. A crashed node loses its machine, its timers
and every frame or call in flight to it; restarted, it is rebuilt by its factory, recovers from what
its host persisted (`node.state`) and the journal since if the machine can (`recover(state,
journal)`), and its start timer fires, as the runtime feeds it on every start.

Left out, on purpose: envelopes (a receiver is handed the sender's peer id, as the runtime does once
the signature verified) and GossipSub's relaying (a publication goes straight to each subscriber).

Determinism: one random.Random(seed) is the only source of randomness; the network draws from a
stream split off it at construction, so draws a host or scenario adds do not reshuffle the
network's schedule, and a seed replays exactly.
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from node.runtime.driver import Turn
from protocols.effects import Answer, CancelTimer, Emit, Journal, Note, Publish, Refused, Send, SetTimer
from protocols.errors import ProtocolError
from tests.sim.clock import VirtualClock
from tests.sim.network import LinkProfile, Network, Partition

FRAME, GOSSIP, TIMER, CALL, FN, CRASH, BOOT = range(7)

Factory = Callable[["SimNode"], tuple[Any, Any]]  # -> (machine, wire), at every (re)start
Hook = Callable[["SimNode", Any, Turn], None]  # an effect outside the shared vocabulary
TurnHook = Callable[["SimNode", Turn], None]
Prefilter = Callable[["SimNode", str, str, Sequence[Any]], Sequence[Any]]  # the runtime's prefilter
Receive = Callable[[str, str, bytes], None]  # an endpoint's (sender pid, channel, payload)


class SimError(Exception):
    """The driver was asked for something the runtime would refuse too (an effect no host handles,
    a journal from a machine that cannot recover)."""


@dataclass
class SimNode:
    name: str  # the network's name for it (partitions and cuts name nodes)
    pid: str  # its peer id: what Send.to and the receivers' `peer` say
    make: Factory
    host: Hook | None = None
    commit: TurnHook | None = None
    after: TurnHook | None = None
    prefilter: Prefilter | None = None
    on_boot: Callable[[SimNode], None] | None = None  # the host's own loops start with the process
    on_crash: Callable[[SimNode], None] | None = None  # the machine is still there: a last look
    start: str | None = "start"  # the timer fed at every start (ProtocolSpec.start)
    machine: Any = None
    wire: Any = None
    up: bool = False
    incarnation: int = 0
    # The disk: what survives a crash.
    journal: list[tuple[str, str, bytes, float]] = field(default_factory=list)
    state: bytes | None = None  # the host's last dump of the machine
    disk: dict[str, Any] = field(default_factory=dict)  # whatever else the host keeps
    # Volatile.
    timers: dict[str, tuple[int, float]] = field(default_factory=dict)  # key -> (generation, due)
    answers: dict[int, Any] = field(default_factory=dict)
    waiting: dict[int, Callable[[Any], None]] = field(default_factory=dict)
    emits: list[tuple[float, str, dict[str, Any]]] = field(default_factory=list)
    refused: dict[str, int] = field(default_factory=dict)  # reason -> count, refusals by this node
    notes: deque[tuple[float, str, str]] = field(default_factory=lambda: deque(maxlen=64))
    next_token: int = 1


class World:
    def __init__(self, seed: int | str, *, link: LinkProfile | None = None, trace: bool = False) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.clock = VirtualClock()
        self.network = Network(random.Random(self.rng.getrandbits(64)), default=link or LinkProfile())
        self.nodes: dict[str, SimNode] = {}
        self.endpoints: dict[str, Receive] = {}
        self.holders: dict[str, list[str]] = {}  # pid -> the names holding it (more than one: twins)
        self.on_refused: Callable[[SimNode, str, str, str], None] | None = None  # (node, peer, reason, what)
        self.sender: str | None = None  # while a frame is delivered, the name it came from
        self.events = 0
        self.lost = 0  # frames, gossip and calls that arrived at a node that was down (or restarted)
        self.unroutable = 0  # frames for a peer id nobody holds
        self.faults: list[str] = []
        self.trace: list[tuple[Any, ...]] | None = [] if trace else None
        self._gen = 0

    # ------------------------------------------------------------------ building a world

    def add(
        self, name: str, pid: str, make: Factory, *, boot_at: float | None = 0.0, twin: bool = False, **hooks: Any
    ) -> SimNode:
        """A node, started at `boot_at` (None: at once, for a machine whose start sends nothing),
        with hooks: host, commit, after, prefilter, on_boot, on_crash, start. A `twin` shares
        `pid` with a node already there: frames for the pid reach both (a byzantine identity run
        twice, which no receiver can tell from one node)."""
        self._name(name, pid, twin)
        node = SimNode(name, pid, make, **hooks)
        self.nodes[name] = node
        self.holders.setdefault(pid, []).append(name)
        if boot_at is None:
            self._boot(node)
        else:
            self.clock.schedule(boot_at, (BOOT, name))
        return node

    def endpoint(self, name: str, pid: str, receive: Receive) -> None:
        """A participant that is no machine (a test's client): it gets the raw frames sent to `pid`."""
        self._name(name, pid, False)
        self.endpoints[name] = receive
        self.holders[pid] = [name]

    def _name(self, name: str, pid: str, twin: bool) -> None:
        if name in self.nodes or name in self.endpoints:
            raise ValueError(f"{name} exists")
        held = self.holders.get(pid)
        if twin != bool(held) or (held and held[0] in self.endpoints):
            raise ValueError(f"{pid[:16]}: " + ("a twin of nothing" if twin else f"held by {held}"))

    def at(self, t: float, fn: Callable[[], None]) -> None:
        self.clock.schedule(t, (FN, fn))

    def after(self, delay: float, fn: Callable[[], None]) -> None:
        self.clock.after(delay, (FN, fn))

    def crash(self, name: str, at: float, restart_at: float | None = None) -> None:
        """Schedule a crash (kill -9) of `name`, and its restart."""
        self.clock.schedule(at, (CRASH, name))
        if restart_at is not None:
            self.clock.schedule(restart_at, (BOOT, name))
        self.faults.append(f"{name} crashes at {at:.3f}" + (f", restarts at {restart_at:.3f}" if restart_at else ""))

    def partition(self, start: float, end: float, *groups: Sequence[str]) -> None:
        """Between `start` and `end` only nodes of one group talk (endpoints talk to everybody)."""
        self.network.partitions.append(Partition(start, end, tuple(frozenset(g) for g in groups)))
        self.faults.append(f"partition {[sorted(g) for g in groups]} from {start:.3f} to {end:.3f}")

    def isolate(self, name: str, start: float, end: float) -> None:
        self.partition(start, end, [name], [n for n in self.nodes if n != name])

    # ------------------------------------------------------------------ inputs from outside

    def call(self, name: str, request: Any, on_answer: Callable[[Any], None] | None = None) -> int:
        """A local call (the control API's protocol.call): its Answer lands in node.answers[token]."""
        node = self.nodes[name]
        token = node.next_token
        node.next_token += 1
        if on_answer is not None:
            node.waiting[token] = on_answer
        self.clock.schedule(self.clock.now, (CALL, name, node.incarnation, token, request))
        return token

    def call_nowait(self, name: str, request: Any) -> None:
        """A call nobody waits for (token 0, as the runtime's call_nowait)."""
        node = self.nodes[name]
        self.clock.schedule(self.clock.now, (CALL, name, node.incarnation, 0, request))

    def feed(self, name: str, fn: Callable[[Any, float], list[Any]]) -> None:
        """A turn of `fn(machine, now)`'s effects on a live node, now (a test's poke)."""
        node = self.nodes[name]
        if not node.up:
            raise SimError(f"{name} is down")
        self._turn(node, fn)

    def send(self, src_pid: str, dst_pid: str, channel: str, payload: bytes, *, src: str | None = None) -> None:
        """A raw frame from `src_pid` (an endpoint, or a node's pid speaking outside its machine) to
        every holder of `dst_pid` but `src` (the sending name: by default the pid's first holder)."""
        held = self.holders.get(src_pid)
        src = src if src is not None else held[0] if held else src_pid
        dsts = [d for d in self.holders.get(dst_pid, ()) if d != src]
        if not dsts:
            self.unroutable += 1
        for dst in dsts:
            self.transmit(src, dst, src_pid, channel, payload)

    def transmit(self, src: str, dst: str, src_pid: str, channel: str, payload: bytes) -> None:
        """One frame over the network from name `src` to name `dst`, arriving as sent by `src_pid`."""
        now = self.clock.now
        target = self.nodes.get(dst)
        incarnation = target.incarnation if target is not None else 0
        for d in self.network.transmit(src, dst, now):
            self.clock.schedule(now + d, (FRAME, dst, incarnation, src, src_pid, channel, payload))

    def kill(self, name: str) -> None:
        """Crash `name` now."""
        self._crash(self.nodes[name])

    def boot(self, name: str) -> None:
        """Start `name` now (nothing if it runs)."""
        self._boot(self.nodes[name])

    # ------------------------------------------------------------------ the loop

    def run(self, until: float, stop: Callable[[], bool] | None = None) -> World:
        """Process events up to virtual time `until` (or until `stop()` holds after an event); may be
        called again to go on."""
        clock = self.clock
        heap = clock._heap  # the hot loop: VirtualClock.pop without its two method calls
        while heap and heap[0][0] <= until:
            at, _, ev = heapq.heappop(heap)
            clock.now = at
            self.events += 1
            if self.trace is not None:
                self.trace.append((clock.now, *(len(x) if isinstance(x, bytes) else x for x in ev if not callable(x))))
            kind = ev[0]
            if kind == FRAME:
                self._frame(*ev[1:])
            elif kind == GOSSIP:
                self._gossip(*ev[1:])
            elif kind == TIMER:
                self._timer(*ev[1:])
            elif kind == CALL:
                self._call(*ev[1:])
            elif kind == FN:
                ev[1]()
            elif kind == CRASH:
                self._crash(self.nodes[ev[1]])
            elif kind == BOOT:
                self._boot(self.nodes[ev[1]])
            if stop is not None and stop():
                break
        return self

    def _live(self, name: str, incarnation: int) -> SimNode | None:
        node = self.nodes[name]
        if not node.up or node.incarnation != incarnation:
            self.lost += 1
            return None
        return node

    def _frame(self, name: str, incarnation: int, src: str, src_pid: str, channel: str, payload: bytes) -> None:
        self.sender = src
        receive = self.endpoints.get(name)
        if receive is not None:
            receive(src_pid, channel, payload)
            return
        node = self._live(name, incarnation)
        if node is None:
            return
        if len(payload) > node.wire.max_frame:
            self._refuse(node, src_pid, "oversize", f"{len(payload)} bytes on {channel[:32]}")
            return
        try:
            messages = node.wire.decode(channel, payload)
        except ProtocolError as exc:
            self._refuse(node, src_pid, exc.reason, exc.detail)
            return
        if node.prefilter is not None:
            messages = node.prefilter(node, src_pid, channel, messages)
        if messages:
            self._turn(node, lambda m, now: m.on_message(src_pid, channel, messages, now))

    def _gossip(self, name: str, incarnation: int, origin: str, topic: str, payload: bytes) -> None:
        node = self._live(name, incarnation)
        if node is None or topic not in node.wire.topics:
            return
        if len(payload) > node.wire.max_frame:
            self._refuse(node, origin, "oversize", f"{len(payload)} bytes on {topic[:32]}")
            return
        try:
            message = node.wire.decode_gossip(topic, payload)
        except ProtocolError as exc:
            self._refuse(node, origin, exc.reason, exc.detail)
            return
        self._turn(node, lambda m, now: m.on_gossip(topic, origin, message, now))

    def _timer(self, name: str, incarnation: int, key: str, gen: int) -> None:
        node = self.nodes[name]
        armed = node.timers.get(key)
        if not node.up or node.incarnation != incarnation or armed is None or armed[0] != gen:
            return  # re-armed, cancelled, or died with the process
        del node.timers[key]
        self._turn(node, lambda m, now: m.on_timer(key, armed[1], now))

    def _call(self, name: str, incarnation: int, token: int, request: Any) -> None:
        node = self._live(name, incarnation)
        if node is not None:
            self._turn(node, lambda m, now: m.on_call(token, request, now))

    def _crash(self, node: SimNode) -> None:
        if not node.up:
            return
        if node.on_crash is not None:
            node.on_crash(node)
        node.up, node.machine = False, None
        node.incarnation += 1
        node.timers.clear()
        node.waiting.clear()

    def _boot(self, node: SimNode) -> None:
        if node.up:
            return
        self.sender = None
        node.machine, node.wire = node.make(node)
        recover = getattr(node.machine, "recover", None)
        if recover is not None:  # as the daemon does at every start, with nothing persisted too
            note = recover(node.state, node.journal)
            if note:
                node.notes.append((self.clock.now, "info", str(note)))
        elif node.state is not None or node.journal:
            raise SimError(f"{node.name}: persisted state for a machine that cannot recover")
        node.up = True
        node.incarnation += 1  # what was sent to the dead process dies with its connections
        if node.on_boot is not None:
            node.on_boot(node)
        if node.start is not None:
            key = node.start
            self._turn(node, lambda m, now: m.on_timer(key, now, now))

    # ------------------------------------------------------------------ one turn

    def _turn(self, node: SimNode, feed: Callable[[Any, float], list[Any]]) -> None:
        now = self.clock.now
        turn = Turn(now)
        for e in feed(node.machine, now):
            t = type(e)
            if t is Send:
                turn.send(e.to, e.channel, e.message)
            elif t is Publish:
                turn.publishes.append(e)
            elif t is SetTimer:
                self._gen += 1
                node.timers[e.key] = (self._gen, e.at)
                self.clock.schedule(e.at, (TIMER, node.name, node.incarnation, e.key, self._gen))
            elif t is CancelTimer:
                node.timers.pop(e.key, None)
            elif t is Answer:
                turn.answers.append(e)
            elif t is Emit:
                turn.emits.append(e)
            elif t is Journal:
                turn.journal.append((e.kind, e.sender, e.payload, now))
            elif t is Refused:
                self._refuse(node, e.peer, e.reason, e.what)
            elif t is Note:
                node.notes.append((now, e.level, e.text))
            elif node.host is not None:
                node.host(node, e, turn)
            else:
                raise SimError(f"{node.name}: no host handles {t.__name__}")
        # Durable first: the journal (and whatever the host commits) before anything leaves.
        if turn.journal:
            if not hasattr(node.machine, "recover"):
                raise SimError(f"{node.name}: a machine that cannot recover journalled an input")
            node.journal.extend(turn.journal)
        if node.commit is not None:
            node.commit(node, turn)
        self._flush(node, turn)
        if node.after is not None:
            node.after(node, turn)

    def _flush(self, node: SimNode, turn: Turn) -> None:
        wire = node.wire
        for (peer, channel), messages in turn.sends.items():
            payloads = wire.encode(channel, messages)
            dsts = [d for d in self.holders.get(peer, ()) if d != node.name]
            if not dsts:
                self.unroutable += len(payloads)
            for dst in dsts:
                for payload in payloads:
                    self.transmit(node.name, dst, node.pid, channel, payload)
        now = self.clock.now
        for p in turn.publishes:
            payload = wire.encode_gossip(p.topic, p.message)
            for other in self.nodes.values():
                if other is node or other.wire is None or p.topic not in other.wire.topics:
                    continue
                for d in self.network.transmit(node.name, other.name, now):
                    self.clock.schedule(now + d, (GOSSIP, other.name, other.incarnation, node.pid, p.topic, payload))
        for a in turn.answers:
            if a.token:
                node.answers[a.token] = a.value
                waiting = node.waiting.pop(a.token, None)
                if waiting is not None:
                    waiting(a.value)
        for e in turn.emits:
            node.emits.append((now, e.event, e.params))

    def _refuse(self, node: SimNode, peer: str, reason: str, what: str) -> None:
        node.refused[reason] = node.refused.get(reason, 0) + 1
        node.notes.append((self.clock.now, "refused", f"{peer[-8:]}: {reason}: {what[:80]}"))
        if self.on_refused is not None:
            self.on_refused(node, peer, reason, what)


__all__ = ["SimError", "SimNode", "World"]
