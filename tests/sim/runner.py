"""The simulation driver for bare PBFT replicas: n replicas (plus twins and byzantine processes),
closed-loop clients and the checkers, on the generic core (tests/sim/world.py: its clock, network,
faults, timers and per-node driver).

Each replica process is a core node whose machine is a `ReplicaMachine`: the Replica behind the
Machine interface (protocols/machine.py), its PBFT effects turned into the shared ones (a
Broadcast is a Send to every other member, a SendReply a Send to the client) after its byzantine
behaviour, if any, rewrote them; the others (executions, checkpoints, views, evidence, state
transfers) go to this module's host hook, which feeds the checkers. Every message travels in its
own frame, encoded with `encode_message` and decoded at the receiver with `decode_message`, as the
daemon will; a ProtocolError there is a refused frame.

The sender handed to `on_message` is the *authenticated* identity of the sending process (the
daemon verifies the envelope signature first): a byzantine process can put any `sender` it likes
inside a message, but cannot change the transport sender. Twins share one identity (core nodes
with one pid).

The sim also models what signatures give beyond the envelope: client requests are signed by their
clients, so a message from a byzantine process carrying a request no client submitted is dropped
before the replica sees it (see `_forged_request`). Nested replica messages (prepares inside a
certificate, view-changes inside a new-view) carry no signatures in this interface; see
byzantine.py for how forged certificates are modelled.
"""

from __future__ import annotations

import random
import traceback
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Callable

from node.runtime.driver import Turn
from protocols.effects import Send as Deliver
from protocols.errors import ProtocolError
from protocols.pbft.config import PbftConfig
from protocols.pbft.effects import (
    Broadcast,
    Evidence,
    Executed,
    Send,
    SendReply,
    StableCheckpoint,
    StateRestored,
    ViewInstalled,
)
from protocols.pbft.messages import (
    Message,
    NewView,
    PrePrepare,
    Reply,
    Request,
    ViewChange,
    decode_message,
    encode_message,
)
from protocols.pbft.replica import T_VIEW_CHANGE, Replica
from tests.sim.checkers import AuditedApp, Observations, Op, check_history, check_liveness
from tests.sim.client import Client, ClientParams
from tests.sim.network import Crash, LinkProfile
from tests.sim.world import SimNode, World

CHANNEL = "pbft"


class SimAbort(Exception):
    """A correct replica (or the decoder) raised: a bug, reported as a safety violation."""


@dataclass
class Proc:
    """One replica process. `name` is unique ("r0", a twin "r0~"); `ident` is the replica id it
    signs as. `behaviour` is None for a correct replica."""

    name: str
    ident: str
    node: SimNode | None = None
    correct: bool = True
    behaviour: Any = None
    saved: bytes | None = None
    app: AuditedApp | None = None
    blank: bool = False  # the next start is from nothing (a new disk)
    received: int = 0
    evidence: int = 0
    timeouts: int = 0  # view-change timer expiries seen by this process

    @property
    def replica(self) -> Replica | None:
        node = self.node
        return node.machine.replica if node is not None and node.up else None

    @replica.setter
    def replica(self, replica: Replica) -> None:
        """Swap the running process's replica (tests plant broken ones)."""
        assert self.node is not None and self.node.up
        self.node.machine.replica = replica


@dataclass
class RunResult:
    scenario: str
    n: int
    seed: int
    safety: list[str]
    liveness: list[str]
    trace: list[str]
    stats: dict[str, Any]
    faults: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.safety and not self.liveness

    def report(self) -> str:
        lines = [f"FAILED scenario={self.scenario} n={self.n} seed={self.seed} "
                 f"(replay: python -m tests.sim --scenario {self.scenario} --replicas {self.n} "
                 f"--seeds 1 --first-seed {self.seed} --trace)"]
        lines += ["  faults: " + "; ".join(self.faults or ["none"])]
        lines += ["  " + s for s in self.safety + self.liveness]
        lines.append(f"  stats: {self.stats}")
        lines.append(f"  last {len(self.trace)} events:")
        lines += ["    " + t for t in self.trace]
        return "\n".join(lines)


def describe(msg: Any) -> str:
    """A one-line summary of a message for traces."""
    if isinstance(msg, Request):
        return f"Request({msg.client_id}#{msg.timestamp})"
    if isinstance(msg, PrePrepare):
        return f"PrePrepare(v={msg.view} n={msg.seq} d={msg.digest.hex()[:8]} |b|={len(msg.batch)} from {msg.sender})"
    if isinstance(msg, ViewChange):
        return f"ViewChange(v={msg.new_view} h={msg.stable_seq} P={len(msg.prepared)} from {msg.sender})"
    if isinstance(msg, NewView):
        return f"NewView(v={msg.view} V={len(msg.view_changes)} O={len(msg.pre_prepares)} from {msg.sender})"
    if isinstance(msg, Reply):
        return f"Reply(v={msg.view} {msg.client_id}#{msg.timestamp} from {msg.sender})"
    parts = []
    for name in ("view", "seq", "digest", "state_digest", "sender"):
        if hasattr(msg, name):
            v = getattr(msg, name)
            parts.append(f"{name[0] if name != 'state_digest' else 'sd'}={v.hex()[:8] if isinstance(v, bytes) else v}")
    return f"{type(msg).__name__}({' '.join(parts)})"


class PbftWire:
    """One PBFT message per frame (as the runner always sent them), decoded once per payload."""

    protocol = domain = "sim/pbft/1"
    topics: tuple[str, ...] = ()
    max_frame = 1 << 30

    def __init__(self, sim: Sim) -> None:
        self.sim = sim
        self._encoded: dict[int, tuple[Any, bytes]] = {}  # id -> (message, bytes): a Broadcast is n-1 Sends of one message

    def encode(self, channel: str, messages: Sequence[Any]) -> list[bytes]:
        out = []
        for m in messages:
            hit = self._encoded.get(id(m))
            if hit is None or hit[0] is not m:
                if len(self._encoded) > 4096:
                    self._encoded.clear()
                hit = self._encoded[id(m)] = (m, encode_message(m))
            out.append(hit[1])
        return out

    def decode(self, channel: str, payload: bytes) -> Sequence[Any]:
        msg = self.sim.decode(payload)
        if msg is None:
            raise ProtocolError("malformed", "not a PBFT message")
        return (msg,)

    def encode_gossip(self, topic: str, message: Any) -> bytes:
        raise ProtocolError("unknown-topic", topic[:64])

    def decode_gossip(self, topic: str, payload: bytes) -> Any:
        raise ProtocolError("unknown-topic", topic[:64])


class ReplicaMachine:
    """A Replica (and its byzantine behaviour) as a Machine for the core."""

    def __init__(self, sim: Sim, proc: Proc, replica: Replica) -> None:
        self.sim, self.proc, self.replica = sim, proc, replica

    def on_message(self, peer: str, channel: str, messages: Sequence[Any], now: float) -> list[Any]:
        sim, proc = self.sim, self.proc
        out: list[Any] = []
        for msg in messages:
            sim.trace.append((now, "deliver", proc.name, sim.world.sender, msg))
            proc.received += 1
            if peer in sim.clients:
                out += self._step("on_request", self.replica.on_request, msg, now)
                continue
            for tap in sim.taps:
                tap(sim.world.sender, proc.name, encode_message(msg))
            if proc.behaviour is not None:
                proc.behaviour.observe(sim, proc, msg)
            out += self._step("on_message", self.replica.on_message, peer, msg, now)
        return out

    def on_timer(self, key: str, due: float, now: float) -> list[Any]:
        if key == T_VIEW_CHANGE:
            self.proc.timeouts += 1
        self.sim.trace.append((now, "timer", self.proc.name, key))
        return self._step("on_timer", self.replica.on_timer, key, now)

    def on_gossip(self, topic: str, origin: str, message: Any, now: float) -> list[Any]:
        return []

    def on_call(self, token: int, request: Any, now: float) -> list[Any]:
        return []

    def _step(self, what: str, fn: Callable[..., list[Any]], *args: Any) -> list[Any]:
        proc, sim = self.proc, self.sim
        try:
            effects = fn(*args)
        except Exception as e:
            if not proc.correct:
                return []  # a byzantine process's own replica may be confused by its lies
            raise SimAbort(f"{proc.name}.{what} raised {type(e).__name__}: {e}\n{traceback.format_exc()}") from e
        if proc.behaviour is not None:
            effects = proc.behaviour.outgoing(sim, proc, effects)
        out: list[Any] = []
        for e in effects:
            t = type(e)
            if t is Broadcast:
                out += [Deliver(m, CHANNEL, e.message) for m in sim.config.members if m != proc.ident]
            elif t is Send:
                out.append(Deliver(e.to, CHANNEL, e.message))
            elif t is SendReply:
                out.append(Deliver(e.client_id, CHANNEL, e.reply))
            else:
                out.append(e)  # timers are shared effects; the rest is the host's
        return out


class Sim:
    def __init__(
        self,
        name: str,
        n: int,
        seed: int,
        *,
        config: dict[str, Any] | None = None,
        clients: int = 3,
        client_params: ClientParams | None = None,
        link: LinkProfile | None = None,
        bound: float = 5.0,  # virtual seconds after the heal; the worst seen in 5,700 runs was 1.6 s
        horizon: float = 60.0,
        max_events: int = 400_000,
        trace_len: int = 60,
    ) -> None:
        self.name, self.n, self.seed = name, n, seed
        members = tuple(f"r{i}" for i in range(n))
        cfg: dict[str, Any] = dict(checkpoint_interval=8, window=16, max_batch=4, batch_delay=0.002, request_timeout=0.25)
        cfg.update(config or {})
        self.config = PbftConfig(members=members, **cfg)
        self.world = World(f"{seed}/pbft", link=link or LinkProfile())
        self.world.on_refused = self._refused
        self.clock, self.network = self.world.clock, self.world.network
        # Independent streams per concern, each split off the world's one seeded RNG: adding a draw
        # in the byzantine code does not reshuffle the network's schedule of the same seed.
        self.rng = random.Random(self.world.rng.getrandbits(64))
        self.wire = PbftWire(self)
        self.procs: dict[str, Proc] = {}
        self.by_ident: dict[str, list[Proc]] = {}
        for m in members:
            self.add_proc(m, m)
        self.client_params = client_params or ClientParams()
        self.clients: dict[str, Client] = {}
        for i in range(clients):
            cid = f"c{i}"
            self.clients[cid] = Client(cid, self.config, self.client_params, random.Random(self.world.rng.getrandbits(64)),
                                       self._client_send, self._client_timer)
            self.world.endpoint(cid, cid, lambda src, channel, payload, cid=cid: self._client_frame(cid, src, payload))
        self.obs = Observations(correct=set())
        self.bound, self.horizon, self.max_events = bound, horizon, max_events
        self.trace: deque[tuple[Any, ...]] = deque(maxlen=trace_len)
        self.track_log = False
        self.always_trace = False  # format the trace even when the run passed (--trace)
        self.drain = 0.0  # keep running this long after the last client finished
        self.heal_at = 0.0  # liveness is owed from here on (the scenario moves it)
        self._decoded: dict[bytes, Any] = {}
        self.decode_errors = 0
        self.forged_dropped = 0
        self.false_evidence: dict[str, int] = {}  # reason -> count, evidence against correct replicas
        self.evidence: dict[str, int] = {}  # reason -> count, evidence against faulty ones
        self.restored = 0  # state transfers completed
        self.restarts = 0
        self.faults: list[str] = []
        self.taps: list[Callable[[str, str, bytes], None]] = []  # see every replica-to-replica delivery
        self.hooks: list[Callable[["Sim"], list[str]]] = []  # extra end-of-run checks (safety)
        self.live_hooks: list[Callable[["Sim"], list[str]]] = []  # extra end-of-run checks (liveness)
        self.extra_stats: dict[str, Any] = {}  # a scenario's own measurements, for its `expect` guard
        self._stop_at: float | None = None

    @property
    def events(self) -> int:
        return self.world.events

    # ------------------------------------------------------------ setup helpers (scenarios)

    def app(self, proc_name: str) -> AuditedApp:
        def report(what: str) -> None:
            proc = self.procs.get(proc_name)
            if proc is None or proc.correct:
                self.obs.safety.append(f"{what} by {proc_name} at t={self.clock.now:.4f}")

        return AuditedApp(report)

    def add_proc(self, name: str, ident: str) -> Proc:
        p = Proc(name, ident)
        self.procs[name] = p
        twin = ident in self.by_ident
        self.by_ident.setdefault(ident, []).append(p)
        p.node = self.world.add(
            name, ident, lambda node: (ReplicaMachine(self, p, self._replica(p)), self.wire), boot_at=None, twin=twin,
            start=None, host=self._host, after=self._after, prefilter=self._screen,
            on_crash=lambda node: setattr(p, "saved", p.replica.persistent_state() if p.replica else None),
        )
        return p

    def mark_faulty(self, ident: str) -> None:
        for p in self.by_ident[ident]:
            p.correct = False

    def note(self, what: str) -> None:
        """Describe a fault for failure reports."""
        self.faults.append(what)

    def schedule_crash(self, crash: Crash) -> None:
        self.note(f"{crash.proc} crashes at {crash.at:.4f}" + (
            f", restarts {'blank' if crash.blank else 'from its persisted state'} at {crash.restart_at:.4f}"
            if crash.restart_at is not None else ""))
        self.world.at(crash.at, lambda: self._crash(crash))
        if crash.restart_at is not None:
            self.world.at(crash.restart_at, lambda: self.restart(crash))

    def call_at(self, at: float, fn: Callable[["Sim"], None]) -> None:
        self.world.at(at, lambda: fn(self))

    # ------------------------------------------------------------ transport

    def transmit(self, src: str, dst_proc: Proc | Client, payload: bytes) -> None:
        dst = dst_proc.name if isinstance(dst_proc, Proc) else dst_proc.cid
        sender = self.procs[src].ident if src in self.procs else src
        self.world.transmit(src, dst, sender, CHANNEL, payload)

    def send_to_ident(self, src: str, ident: str, payload: bytes) -> None:
        for p in self.by_ident.get(ident, ()):
            if p.name != src:
                self.transmit(src, p, payload)

    def _client_send(self, client: Client, ident: str | None, req: Request) -> None:
        payload = encode_message(req)
        self.trace.append((self.clock.now, "client", client.cid, "->", ident or "all", req))
        for p in self.procs.values():
            if ident is None or p.ident == ident:
                self.transmit(client.cid, p, payload)

    def _client_timer(self, client: Client, at: float, token: int) -> None:
        self.world.at(at, lambda: client.on_timer(token, self.clock.now))

    def decode(self, payload: bytes) -> Message | None:
        msg = self._decoded.get(payload)
        if msg is not None:
            return msg  # type: ignore[no-any-return]
        try:
            msg = decode_message(payload)
        except ProtocolError:
            self.decode_errors += 1
            return None
        except Exception as e:  # the decoder must refuse with ProtocolError only
            raise SimAbort(f"decoder raised {type(e).__name__}: {e} on {payload[:60]!r}") from e
        if len(self._decoded) > 20_000:
            self._decoded.clear()
        self._decoded[payload] = msg
        return msg

    def _refused(self, node: SimNode, peer: str, reason: str, what: str) -> None:
        self.trace.append((self.clock.now, "garbage", node.name, self.world.sender, reason))

    def _forged_request(self, msg: Any) -> bool:
        """A request no client submitted (or with another op) cannot carry a valid client
        signature; the daemon would drop the whole message."""
        sub = self.obs.submitted
        reqs: list[Request] = []
        if isinstance(msg, Request):
            reqs.append(msg)
        elif isinstance(msg, PrePrepare):
            reqs.extend(msg.batch)
        elif isinstance(msg, ViewChange):
            for c in msg.prepared:
                reqs.extend(c.pre_prepare.batch)
        elif isinstance(msg, NewView):
            for pp in msg.pre_prepares:
                reqs.extend(pp.batch)
            for vc in msg.view_changes:
                for c in vc.prepared:
                    reqs.extend(c.pre_prepare.batch)
        return any(sub.get((r.client_id, r.timestamp)) != r.op for r in reqs)

    def _screen(self, node: SimNode, peer: str, channel: str, messages: Sequence[Any]) -> Sequence[Any]:
        """What the daemon's envelope checks would let through (the runtime's prefilter): a client
        speaks for itself only; a liar's messages with requests or nested messages nobody signed
        are dropped."""
        if peer in self.clients:
            return [m for m in messages if type(m) is Request and m.client_id == peer]
        sender = self.procs[self.world.sender] if self.world.sender in self.procs else self.by_ident[peer][0]
        if sender.correct:
            return messages
        kept = []
        for msg in messages:
            if self._forged_request(msg) or (sender.behaviour is not None and not sender.behaviour.authentic(self, msg)):
                self.forged_dropped += 1
            else:
                kept.append(msg)
        return kept

    # ------------------------------------------------------------ the host: what the checkers see

    def _host(self, node: SimNode, e: Any, turn: Turn) -> None:
        proc = self.procs[node.name]
        now = self.clock.now
        t = type(e)
        if t is Executed:
            self.trace.append((now, "exec", proc.name, e.seq, e.view, e.batch))
            self.obs.executed(proc.name, e.seq, e.batch, now)
            rep = proc.replica
            # The app reflects the last batch of this step only; checkpoints are where states are compared.
            if e.seq % self.config.checkpoint_interval == 0 and rep is not None and rep.last_executed == e.seq \
                    and proc.app is not None:
                self.obs.app_state(proc.name, e.seq, proc.app.digest(), now)
        elif t is StableCheckpoint:
            self.trace.append((now, "stable", proc.name, e.seq, e.state_digest))
            self.obs.stable_checkpoint(proc.name, e.seq, e.state_digest, now)
        elif t is ViewInstalled:
            self.trace.append((now, "view", proc.name, e.view, e.primary))
        elif t is Evidence:
            proc.evidence += 1
            accused = self.by_ident.get(e.sender)
            if proc.correct and accused and all(a.correct for a in accused):
                # Not a safety violation (evidence only costs the accused some reputation),
                # but a correct replica accusing a correct one is worth seeing in the stats.
                self.false_evidence[e.reason] = self.false_evidence.get(e.reason, 0) + 1
            elif proc.correct:
                self.evidence[e.reason] = self.evidence.get(e.reason, 0) + 1
            self.trace.append((now, "evidence", proc.name, e.sender, e.reason))
        elif t is StateRestored:
            self.restored += 1
            self.trace.append((now, "restored", proc.name, e.seq, e.state_digest))
        else:
            raise SimAbort(f"{proc.name}: an effect the runner does not know: {t.__name__}")

    def _after(self, node: SimNode, turn: Turn) -> None:
        # Sampled every 4th event: the log moves by a few entries per step, and the bound has slack.
        if not self.track_log or self.events & 3:
            return
        rep = self.procs[node.name].replica
        if rep is not None:
            size = rep.log_size()
            if size > self.obs.max_log:
                self.obs.max_log = size

    # ------------------------------------------------------------ clients

    def _client_frame(self, cid: str, src_pid: str, payload: bytes) -> None:
        now = self.clock.now
        c = self.clients[cid]
        msg = self.decode(payload)
        if type(msg) is Reply:
            self.trace.append((now, "deliver", cid, self.world.sender, msg))
            if c.on_reply(src_pid, msg, now):
                self.trace.append((now, "done", cid, c.timestamp))
                lo, hi = self.client_params.think
                self.world.after(c.rng.uniform(lo, hi), lambda: self._client_next(cid))

    def _client_next(self, cid: str) -> None:
        c = self.clients[cid]
        c.next_op(self.clock.now)
        if c.current is not None:
            self.obs.submitted[(c.cid, c.current.timestamp)] = c.current.op
        if self._stop_at is None and all(c.done for c in self.clients.values()):
            self._stop_at = self.clock.now + self.drain

    # ------------------------------------------------------------ crashes

    def _crash(self, c: Crash) -> None:
        # The daemon persists before it acts on any effect, so the state at the crash is what a
        # kill -9 leaves on disk (the node's on_crash hook takes it).
        if self.procs[c.proc].replica is None:
            return
        self.world.kill(c.proc)
        self.trace.append((self.clock.now, "crash", c.proc))

    def restart(self, c: Crash) -> None:
        proc = self.procs[c.proc]
        if proc.replica is not None:
            return
        proc.blank = c.blank
        self.world.boot(c.proc)
        self.restarts += 1
        self.trace.append((self.clock.now, "restart", proc.name, "blank" if c.blank else "persisted"))

    def _replica(self, proc: Proc) -> Replica:
        """The replica a (re)start of `proc` runs: new, or recovered from what it persisted."""
        proc.app = self.app(proc.name)
        if proc.blank or proc.saved is None:
            return Replica(proc.ident, self.config, proc.app)
        try:
            return Replica.recover(proc.ident, self.config, proc.app, proc.saved)
        except Exception as e:
            raise SimAbort(f"{proc.name}: Replica.recover raised {type(e).__name__}: {e}") from e

    # ------------------------------------------------------------ the loop

    def run(self) -> RunResult:
        self.obs.correct = {p.name for p in self.procs.values() if p.correct}
        for p in self.procs.values():
            if not p.correct:
                self.note(f"{p.name} ({p.ident}) is byzantine: {type(p.behaviour).__name__ if p.behaviour else 'a twin'}")
        for part in self.network.partitions:
            self.note(f"partition {[sorted(g) for g in part.groups]} from {part.start:.4f} to {part.end:.4f}")
        if self.network.heal_at < float("inf"):
            self.note(f"lossy links until {self.network.heal_at:.4f}")
        for c in self.clients.values():
            self.world.at(self.client_params.start + c.rng.uniform(0, 0.005), lambda cid=c.cid: self._client_next(cid))
        for p in self.procs.values():
            if p.behaviour is not None:
                p.behaviour.start(self, p)
        aborted: str | None = None
        try:
            self.world.run(self.horizon, stop=self._stop)
        except SimAbort as e:
            aborted = str(e)
        return self._result(aborted)

    def _stop(self) -> bool:
        if self.obs.safety:
            return True  # stop at the first violation, so the trace ends where it happened
        if self.world.events >= self.max_events:
            return True
        if self._stop_at is None:
            return False
        nxt = self.clock.peek_time()  # as the loop stood: nothing after the drain runs
        return nxt is not None and nxt > self._stop_at

    def _result(self, aborted: str | None) -> RunResult:
        safety = list(self.obs.safety)
        if aborted:
            safety.append(f"crash: {aborted}")
        ops: list[Op] = [o for c in self.clients.values() for o in c.history]
        safety += check_history(ops)
        liveness: list[str] = []
        if not aborted and not self.obs.safety:  # a run cut short at a violation owes no liveness
            if self.events >= self.max_events:
                liveness.append(f"liveness: event budget {self.max_events} exhausted at t={self.clock.now:.3f}")
            liveness += check_liveness(ops, self.heal_at, self.bound, self.clock.now)
            for hook in self.hooks:
                safety += hook(self)
            for hook in self.live_hooks:
                liveness += hook(self)
        waits = [o.resp - max(o.inv, self.heal_at) for o in ops if o.resp is not None]
        stats = {
            "seed": self.seed,
            "max_wait_after_heal": round(max(waits, default=0.0), 3),
            "t": round(self.clock.now, 3),
            "events": self.events,
            "ops": sum(1 for o in ops if o.resp is not None),
            "executions": self.obs.executions,
            "sent": self.network.sent,
            "dropped": self.network.dropped,
            "decode_errors": self.decode_errors,
            "forged_dropped": self.forged_dropped,
            "reordered": self.obs.reordered,
            "restored": self.restored,
            "restarts": self.restarts,
            "evidence": self.evidence,
            "false_evidence": self.false_evidence,
            "views": sorted({p.replica.view for p in self.procs.values() if p.replica is not None}),
        }
        if self.track_log:
            stats["max_log"] = self.obs.max_log
        stats.update(self.extra_stats)
        trace = [format_event(e) for e in self.trace] if (safety or liveness or self.always_trace) else []
        return RunResult(self.name, self.n, self.seed, safety, liveness, trace, stats, self.faults)


def format_event(e: tuple[Any, ...]) -> str:
    now, kind, *rest = e
    if kind == "deliver":
        return f"{now:9.4f} {rest[1]:>4} -> {rest[0]:<4} {describe(rest[2])}"
    if kind == "client":  # a client sends (deliveries are the "src -> dst" lines)
        return f"{now:9.4f} {rest[0]:>4} SENDS {describe(rest[3])} to {rest[2]}"
    if kind == "exec":
        reqs = ",".join(f"{r.client_id}#{r.timestamp}" for r in rest[3]) or "null"
        return f"{now:9.4f} {rest[0]:>4} EXECUTE n={rest[1]} v={rest[2]} [{reqs}]"
    if kind == "stable":
        return f"{now:9.4f} {rest[0]:>4} STABLE n={rest[1]} {rest[2].hex()[:8]}"
    return f"{now:9.4f} {rest[0]:>4} {kind.upper()} " + " ".join(str(x) for x in rest[1:])
