"""The simulation driver: n replicas (plus twins and byzantine processes), closed-loop clients, one
virtual clock, one seeded network, and the checkers.

Replica-to-replica and replica-to-client traffic is encoded with `encode_message` and decoded at
the receiver with `decode_message`, as the daemon will; a ProtocolError there is a dropped message.
The transport sender handed to `on_message` is the *authenticated* identity of the sending process
(the daemon verifies the envelope signature first): a byzantine process can put any `sender` it
likes inside a message, but cannot change the transport sender. Twins share one identity.

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
from dataclasses import dataclass, field
from typing import Any, Callable

from protocols.errors import ProtocolError
from protocols.pbft.config import PbftConfig
from protocols.pbft.effects import (
    Broadcast,
    CancelTimer,
    Evidence,
    Executed,
    Send,
    SendReply,
    SetTimer,
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
from tests.sim.clock import VirtualClock
from tests.sim.network import Crash, LinkProfile, Network

# Event kinds (small ints in tuples: the heap holds hundreds of thousands of these per minute).
DELIVER, TIMER, CLIENT_TIMER, CLIENT_NEXT, CRASH, RESTART, CALL = range(7)


class SimAbort(Exception):
    """A correct replica (or the decoder) raised: a bug, reported as a safety violation."""


@dataclass
class Proc:
    """One replica process. `name` is unique ("r0", a twin "r0~"); `ident` is the replica id it
    signs as. `behaviour` is None for a correct replica."""

    name: str
    ident: str
    replica: Replica | None
    correct: bool = True
    behaviour: Any = None
    incarnation: int = 0
    timers: dict[str, int] = field(default_factory=dict)
    saved: bytes | None = None
    app: AuditedApp | None = None
    received: int = 0
    evidence: int = 0
    timeouts: int = 0  # view-change timer expiries seen by this process


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
        self.clock = VirtualClock()
        # Independent streams per concern, each seeded from (seed, purpose): adding a draw in the
        # byzantine code does not reshuffle the network's schedule of the same seed.
        self.rng = random.Random(f"{seed}/sim")
        self.network = Network(random.Random(f"{seed}/net"), default=link or LinkProfile())
        self.procs: dict[str, Proc] = {}
        self.by_ident: dict[str, list[Proc]] = {}
        for m in members:
            self.add_proc(m, m)
        self.client_params = client_params or ClientParams()
        self.clients: dict[str, Client] = {}
        for i in range(clients):
            cid = f"c{i}"
            self.clients[cid] = Client(cid, self.config, self.client_params, random.Random(f"{seed}/{cid}"),
                                       self._client_send, self._client_timer)
        self.obs = Observations(correct=set())
        self.bound, self.horizon, self.max_events = bound, horizon, max_events
        self.trace: deque[tuple[Any, ...]] = deque(maxlen=trace_len)
        self.events = 0
        self.track_log = False
        self.always_trace = False  # format the trace even when the run passed (--trace)
        self.drain = 0.0  # keep running this long after the last client finished
        self.heal_at = 0.0  # liveness is owed from here on (the scenario moves it)
        self._decoded: dict[bytes, Any] = {}
        self._timer_gen = 0
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

    # ------------------------------------------------------------ setup helpers (scenarios)

    def app(self, proc_name: str) -> AuditedApp:
        def report(what: str) -> None:
            proc = self.procs.get(proc_name)
            if proc is None or proc.correct:
                self.obs.safety.append(f"{what} by {proc_name} at t={self.clock.now:.4f}")

        return AuditedApp(report)

    def add_proc(self, name: str, ident: str) -> Proc:
        app = self.app(name)
        p = Proc(name, ident, Replica(ident, self.config, app), app=app)
        self.procs[name] = p
        self.by_ident.setdefault(ident, []).append(p)
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
        self.clock.schedule(crash.at, (CRASH, crash))
        if crash.restart_at is not None:
            self.clock.schedule(crash.restart_at, (RESTART, crash))

    def call_at(self, at: float, fn: Callable[["Sim"], None]) -> None:
        self.clock.schedule(at, (CALL, fn))

    # ------------------------------------------------------------ transport

    def transmit(self, src: str, dst_proc: Proc | Client, payload: Any) -> None:
        dst = dst_proc.name if isinstance(dst_proc, Proc) else dst_proc.cid
        for d in self.network.transmit(src, dst, self.clock.now):
            self.clock.after(d, (DELIVER, dst, src, payload))

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
        self.clock.schedule(at, (CLIENT_TIMER, client.cid, token))

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

    # ------------------------------------------------------------ effects

    def perform(self, proc: Proc, effects: list[Any]) -> None:
        if proc.behaviour is not None:
            effects = proc.behaviour.outgoing(self, proc, effects)
        now = self.clock.now
        for e in effects:
            t = type(e)
            if t is Broadcast:
                payload = encode_message(e.message)
                for p in self.procs.values():
                    if p.ident != proc.ident:
                        self.transmit(proc.name, p, payload)
            elif t is Send:
                self.send_to_ident(proc.name, e.to, encode_message(e.message))
            elif t is SendReply:
                c = self.clients.get(e.client_id)
                if c is not None:
                    self.transmit(proc.name, c, encode_message(e.reply))
            elif t is SetTimer:
                self._timer_gen += 1
                proc.timers[e.key] = self._timer_gen
                self.clock.schedule(e.at, (TIMER, proc.name, proc.incarnation, e.key, self._timer_gen))
            elif t is CancelTimer:
                proc.timers.pop(e.key, None)
            elif t is Executed:
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
        # Sampled every 4th event: the log moves by a few entries per step, and the bound has slack.
        if self.track_log and proc.replica is not None and not self.events & 3:
            size = proc.replica.log_size()
            if size > self.obs.max_log:
                self.obs.max_log = size

    def _call(self, proc: Proc, what: str, fn: Callable[..., list[Any]], *args: Any) -> None:
        try:
            effects = fn(*args)
        except Exception as e:
            if not proc.correct:
                return  # a byzantine process's own replica may be confused by its lies
            raise SimAbort(f"{proc.name}.{what} raised {type(e).__name__}: {e}\n{traceback.format_exc()}") from e
        self.perform(proc, effects)

    # ------------------------------------------------------------ the loop

    def _deliver(self, dst: str, src: str, payload: bytes) -> None:
        now = self.clock.now
        client = self.clients.get(dst)
        if client is not None:
            msg = self.decode(payload)
            if type(msg) is Reply:
                src_proc = self.procs[src]
                self.trace.append((now, "deliver", dst, src, msg))
                if client.on_reply(src_proc.ident, msg, now):
                    self.trace.append((now, "done", dst, client.timestamp))
                    lo, hi = self.client_params.think
                    self.clock.after(client.rng.uniform(lo, hi), (CLIENT_NEXT, dst))
            return
        proc = self.procs[dst]
        if proc.replica is None:
            return  # crashed
        msg = self.decode(payload)
        if msg is None:
            self.trace.append((now, "garbage", dst, src, len(payload)))
            return
        if src in self.clients:
            if type(msg) is not Request or msg.client_id != src:
                return  # a client can only speak for itself
            self.trace.append((now, "deliver", dst, src, msg))
            proc.received += 1
            self._call(proc, "on_request", proc.replica.on_request, msg, now)
            return
        sender = self.procs[src]
        if not sender.correct and self._forged_request(msg):
            self.forged_dropped += 1
            return
        if not sender.correct and sender.behaviour is not None and not sender.behaviour.authentic(self, msg):
            self.forged_dropped += 1
            return
        self.trace.append((now, "deliver", dst, src, msg))
        proc.received += 1
        for tap in self.taps:
            tap(src, dst, payload)
        if proc.behaviour is not None:
            proc.behaviour.observe(self, proc, msg)
        self._call(proc, "on_message", proc.replica.on_message, sender.ident, msg, now)

    def _crash(self, c: Crash) -> None:
        proc = self.procs[c.proc]
        if proc.replica is None:
            return
        # The daemon persists before it acts on any effect, so the state at the crash is what a
        # kill -9 leaves on disk.
        proc.saved = proc.replica.persistent_state()
        proc.replica = None
        proc.incarnation += 1
        proc.timers.clear()
        self.trace.append((self.clock.now, "crash", proc.name))

    def _restart(self, c: Crash) -> None:
        proc = self.procs[c.proc]
        if proc.replica is not None:
            return
        if c.blank or proc.saved is None:
            proc.app = self.app(proc.name)
            proc.replica = Replica(proc.ident, self.config, proc.app)
        else:
            try:
                proc.app = self.app(proc.name)
                proc.replica = Replica.recover(proc.ident, self.config, proc.app, proc.saved)
            except Exception as e:
                raise SimAbort(f"{proc.name}: Replica.recover raised {type(e).__name__}: {e}") from e
        self.restarts += 1
        self.trace.append((self.clock.now, "restart", proc.name, "blank" if c.blank else "persisted"))

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
            self.clock.schedule(self.client_params.start + c.rng.uniform(0, 0.005), (CLIENT_NEXT, c.cid))
        for p in self.procs.values():
            if p.behaviour is not None:
                p.behaviour.start(self, p)
        aborted: str | None = None
        stop_at: float | None = None
        clock, procs, clients, obs = self.clock, self.procs, self.clients, self.obs
        try:
            while True:
                ev = clock.pop()
                if ev is None or clock.now > self.horizon:
                    break
                if stop_at is not None and clock.now > stop_at:
                    break
                self.events += 1
                if self.events > self.max_events:
                    break
                kind = ev[0]
                if kind == DELIVER:
                    self._deliver(ev[1], ev[2], ev[3])
                elif kind == TIMER:
                    proc = procs[ev[1]]
                    if proc.replica is not None and proc.incarnation == ev[2] and proc.timers.get(ev[3]) == ev[4]:
                        del proc.timers[ev[3]]
                        if ev[3] == T_VIEW_CHANGE:
                            proc.timeouts += 1
                        self.trace.append((clock.now, "timer", proc.name, ev[3]))
                        self._call(proc, "on_timer", proc.replica.on_timer, ev[3], clock.now)
                elif kind == CLIENT_TIMER:
                    clients[ev[1]].on_timer(ev[2], clock.now)
                elif kind == CLIENT_NEXT:
                    c = clients[ev[1]]
                    c.next_op(clock.now)
                    if c.current is not None:
                        self.obs.submitted[(c.cid, c.current.timestamp)] = c.current.op
                elif kind == CRASH:
                    self._crash(ev[1])
                elif kind == RESTART:
                    self._restart(ev[1])
                elif kind == CALL:
                    ev[1](self)
                if obs.safety:
                    break  # stop at the first violation, so the trace ends where it happened
                if stop_at is None and kind == CLIENT_NEXT and all(c.done for c in clients.values()):
                    stop_at = clock.now + self.drain
        except SimAbort as e:
            aborted = str(e)
        return self._result(aborted)

    def _result(self, aborted: str | None) -> RunResult:
        safety = list(self.obs.safety)
        if aborted:
            safety.append(f"crash: {aborted}")
        ops: list[Op] = [o for c in self.clients.values() for o in c.history]
        safety += check_history(ops)
        liveness: list[str] = []
        if not aborted and not self.obs.safety:  # a run cut short at a violation owes no liveness
            if self.events > self.max_events:
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
