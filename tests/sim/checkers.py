"""Safety and liveness properties, checked after (and partly during) every run.

The runner feeds an `Observations` object as effects come out of the replicas; `check()` turns it
into lists of violations. Only *correct* processes count: a byzantine replica, either twin of a
twinned identity, may execute anything it likes.

Properties:
- agreement: no two correct replicas executed different batches (by digest) at one sequence number;
- validity: only submitted requests are executed, and each (client_id, timestamp) at one sequence
  number at most (a blank restart may legitimately re-execute the same sequence numbers);
- checkpoints: all correct replicas certify the same state digest at each stable checkpoint, and
  their applications (read directly) hold the same state after each checkpoint's sequence number;
- linearizability of the clients' key-value history (per key, Wing & Gong search with memo);
- liveness: every request completes, within `bound` virtual seconds of max(invocation, heal time);
- bounded log: `log_size()` never exceeded a scenario's limit.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Callable

import msgpack

from protocols.codec import decode, encode
from protocols.errors import ProtocolError
from protocols.pbft.app import KVStore
from protocols.pbft.messages import Request, batch_digest


@dataclass
class Op:
    """One client operation as the client saw it: invoked at `inv`, answered at `resp` (None while
    pending, which means it may or may not have taken effect)."""

    client: str
    timestamp: int
    key: str
    kind: str  # "put" | "get" | "cas"
    args: tuple[Any, ...]
    inv: float
    resp: float | None = None
    result: Any = None


@dataclass
class Observations:
    correct: set[str]  # process names whose executions are checked
    submitted: dict[tuple[str, int], bytes] = field(default_factory=dict)  # (client, ts) -> op
    executed_at: dict[int, tuple[bytes, str]] = field(default_factory=dict)  # seq -> (digest, first proc)
    request_seq: dict[tuple[str, int], int] = field(default_factory=dict)  # (client, ts) -> seq
    checkpoints: dict[int, tuple[bytes, str]] = field(default_factory=dict)  # seq -> (digest, first proc)
    app_states: dict[int, tuple[bytes, str]] = field(default_factory=dict)  # seq -> (app digest, first proc)
    executions: int = 0
    exec_log: list[tuple[float, str, int]] = field(default_factory=list)  # (time, proc, seq)
    reordered: int = 0  # requests ordered again at a later sequence number (not a violation)
    max_log: int = 0
    safety: list[str] = field(default_factory=list)
    liveness: list[str] = field(default_factory=list)

    def executed(self, proc: str, seq: int, batch: tuple[Request, ...], now: float) -> None:
        if proc not in self.correct:
            return
        self.executions += 1
        self.exec_log.append((now, proc, seq))
        d = batch_digest(batch)
        first = self.executed_at.setdefault(seq, (d, proc))
        if first[0] != d:
            self.safety.append(
                f"agreement: t={now:.4f} {proc} executed {d.hex()[:12]} at seq {seq}, "
                f"{first[1]} executed {first[0].hex()[:12]}"
            )
        for r in batch:
            key = (r.client_id, r.timestamp)
            op = self.submitted.get(key)
            if op is None or op != r.op:
                self.safety.append(f"validity: t={now:.4f} {proc} executed unsubmitted request {key} at seq {seq}")
            # The same request ordered at two sequence numbers is legal (a faulty primary can do
            # it, retransmissions across a view change can too): exactly-once is the client
            # table's job, and AuditedApp checks that nothing is *applied* twice.
            elif self.request_seq.setdefault(key, seq) != seq:
                self.reordered += 1

    def app_state(self, proc: str, seq: int, digest: bytes, now: float) -> None:
        """The application's own state digest right after `proc` executed `seq`, read by the sim
        (not reported by the replica): catches a replica that installs a wrong state and then
        simply never certifies a checkpoint again."""
        if proc not in self.correct:
            return
        first = self.app_states.setdefault(seq, (digest, proc))
        if first[0] != digest:
            self.safety.append(
                f"state: t={now:.4f} {proc}'s application after seq {seq} is {digest.hex()[:12]}, "
                f"{first[1]}'s is {first[0].hex()[:12]}"
            )

    def stable_checkpoint(self, proc: str, seq: int, digest: bytes, now: float) -> None:
        if proc not in self.correct:
            return
        first = self.checkpoints.setdefault(seq, (digest, proc))
        if first[0] != digest:
            self.safety.append(
                f"checkpoint: t={now:.4f} {proc} stable at seq {seq} with state {digest.hex()[:12]}, "
                f"{first[1]} with {first[0].hex()[:12]}"
            )


# ---------------------------------------------------------------- exactly-once application


def audited_op(client: str, timestamp: int, kv_op: bytes) -> bytes:
    """The op a sim client submits: its (client, timestamp) travel inside the op, so the
    application can tell when the replica applies one request twice."""
    return encode([client, timestamp, kv_op])


class AuditedApp:
    """KVStore plus the set of (client, timestamp) applied so far, which is part of the replicated
    state (in the snapshot, hence in the checkpoint digests, restored by state transfer). Applying
    a request already in the set is a validity violation: the replica executed it twice."""

    def __init__(self, report: Callable[[str], None]) -> None:
        self.kv = KVStore()
        self.applied: set[tuple[str, int]] = set()
        self.report = report

    def apply(self, op: bytes) -> bytes:
        try:
            cmd: Any = decode(op, max_depth=3, max_items=16)
        except ProtocolError as e:
            return encode(["error", e.reason])
        if type(cmd) is not list or len(cmd) != 3 or type(cmd[0]) is not str or type(cmd[1]) is not int \
                or type(cmd[2]) is not bytes:
            return encode(["error", "malformed"])
        key = (cmd[0], cmd[1])
        if key in self.applied:
            self.report(f"validity: request {key} applied twice")
        self.applied.add(key)
        return self.kv.apply(cmd[2])

    def snapshot(self) -> bytes:
        return encode([self.kv.snapshot(), sorted([c, t] for c, t in self.applied)])

    def restore(self, data: bytes) -> None:
        kv, applied = msgpack.unpackb(data, raw=False)
        self.kv.restore(kv)
        self.applied = {(c, t) for c, t in applied}

    def digest(self) -> bytes:
        return hashlib.sha256(self.snapshot()).digest()


# ---------------------------------------------------------------- linearizability


def _step(state: bytes | None, op: Op) -> tuple[Any, bytes | None]:
    """The sequential register: (expected result, next state)."""
    if op.kind == "put":
        return ["ok", None], op.args[0]
    if op.kind == "get":
        return ["ok", state], state
    expected, new = op.args  # cas
    if state == expected:
        return ["ok", state], new
    return ["fail", state], state


def linearizable(ops: list[Op]) -> bool:
    """Wing & Gong search with Lowe's memo of (linearized set, state), for one key's history.

    An op may be linearized next iff it was invoked before every still-unlinearized op responded.
    Pending ops (resp None) may be linearized at any point after their invocation, or never.
    """
    ops = sorted(ops, key=lambda o: o.inv)
    n = len(ops)
    inf = float("inf")
    resp = [o.resp if o.resp is not None else inf for o in ops]
    must = 0
    for i, o in enumerate(ops):
        if o.resp is not None:
            must |= 1 << i
    seen: set[tuple[int, bytes | None]] = set()
    stack: list[tuple[int, bytes | None]] = [(0, None)]
    while stack:
        done, state = stack.pop()
        if done & must == must:
            return True
        if (done, state) in seen:
            continue
        seen.add((done, state))
        horizon = min((resp[i] for i in range(n) if not done >> i & 1), default=inf)
        for i in range(n):
            if done >> i & 1:
                continue
            o = ops[i]
            if o.inv > horizon:
                break  # sorted by invocation: no later op can go next either
            result, nxt = _step(state, o)
            if o.resp is not None and result != o.result:
                continue
            stack.append((done | 1 << i, nxt))
    return False


def check_history(ops: list[Op]) -> list[str]:
    by_key: dict[str, list[Op]] = {}
    for o in ops:
        by_key.setdefault(o.key, []).append(o)
    bad = []
    # Linearizability is local (Herlihy & Wing): the history is linearizable iff each key's is.
    for key, kops in sorted(by_key.items()):
        if not linearizable(kops):
            lines = ", ".join(
                f"{o.client}#{o.timestamp} {o.kind}{o.args}->{o.result} [{o.inv:.3f},{o.resp}]"
                for o in sorted(kops, key=lambda o: o.inv)
            )
            bad.append(f"linearizability: key {key!r} history not linearizable: {lines}")
    return bad


def check_liveness(ops: list[Op], heal_at: float, bound: float, end: float) -> list[str]:
    bad = []
    for o in ops:
        deadline = max(o.inv, heal_at) + bound
        if o.resp is None:
            if end >= deadline:
                bad.append(f"liveness: {o.client}#{o.timestamp} {o.kind} invoked at {o.inv:.3f} never completed (deadline {deadline:.3f})")
            else:
                bad.append(f"liveness: {o.client}#{o.timestamp} still pending when the run ended at {end:.3f}")
        elif o.resp > deadline:
            bad.append(f"liveness: {o.client}#{o.timestamp} took until {o.resp:.3f} (deadline {deadline:.3f})")
    return bad
