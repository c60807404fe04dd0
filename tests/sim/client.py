"""A closed-loop PBFT client, as the paper describes it.

It sends Request(client_id, timestamp, op) to the primary it believes in, retransmits the SAME
request to every replica on timeout (doubling the timeout up to a cap), and accepts a result once
f+1 distinct replicas sent matching replies (same timestamp and result): at least one of them is
correct. One request outstanding at a time; timestamps strictly increase.

Ops are drawn over a few keys with unique put values, so the linearizability search stays small
and fast (a read can only match one write).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Callable

import msgpack

from protocols.pbft import app as kv
from protocols.pbft.config import PbftConfig
from protocols.pbft.messages import Reply, Request
from tests.sim.checkers import Op, audited_op


@dataclass
class ClientParams:
    ops: int = 8  # requests per client
    keys: tuple[str, ...] = ("a", "b")
    think: tuple[float, float] = (0.0, 0.01)  # pause between a reply and the next request
    start: float = 0.0
    retransmit: float = 0.15
    retransmit_cap: float = 1.0
    mix: tuple[float, float] = (0.45, 0.3)  # P(put), P(get); the rest is cas


@dataclass
class Client:
    cid: str
    config: PbftConfig
    params: ClientParams
    rng: random.Random
    # send(client, replica_id or None for all, request); timer(client, at, token)
    send: Callable[["Client", str | None, Request], None]
    timer: Callable[["Client", float, int], None]
    history: list[Op] = field(default_factory=list)
    view: int = 0
    timestamp: int = 0
    current: Request | None = None
    op: Op | None = None
    votes: dict[bytes, set[str]] = field(default_factory=dict)
    views: dict[str, int] = field(default_factory=dict)
    timeout: float = 0.0
    last_seen: dict[str, bytes | None] = field(default_factory=dict)
    reply_quorum: int = 0  # matching replies needed; 0 means f+1 (tests lower it to prove the checkers)

    @property
    def done(self) -> bool:
        return self.current is None and len(self.history) >= self.params.ops

    def next_op(self, now: float) -> None:
        if self.current is not None or len(self.history) >= self.params.ops:
            return
        self.timestamp += 1
        key = self.rng.choice(self.params.keys)
        value = f"{self.cid}.{self.timestamp}".encode()
        r = self.rng.random()
        p_put, p_get = self.params.mix
        args: tuple[Any, ...]
        if r < p_put:
            kind, args, body = "put", (value,), kv.put(key, value)
        elif r < p_put + p_get:
            kind, args, body = "get", (), kv.get(key)
        else:
            expected = self.last_seen.get(key)
            kind, args, body = "cas", (expected, value), kv.cas(key, expected, value)
        self.current = Request(self.cid, self.timestamp, audited_op(self.cid, self.timestamp, body))
        self.op = Op(self.cid, self.timestamp, key, kind, args, inv=now)
        self.history.append(self.op)
        self.votes = {}
        self.views = {}
        self.timeout = self.params.retransmit
        self.send(self, self.config.primary(self.view), self.current)
        self.timer(self, now + self.timeout, self.timestamp)

    def on_timer(self, token: int, now: float) -> None:
        if self.current is None or token != self.timestamp:
            return  # a stale timer for a request already answered
        # Maybe the primary is faulty or the request was lost: every replica gets it, and the
        # backups' request timers will force a view change if the primary keeps ignoring it.
        self.send(self, None, self.current)
        self.timeout = min(self.timeout * 2, self.params.retransmit_cap)
        self.timer(self, now + self.timeout, self.timestamp)

    def on_reply(self, sender: str, reply: Reply, now: float) -> bool:
        """`sender` is the transport-authenticated replica id. True when the request completed."""
        if self.current is None or self.op is None:
            return False
        if reply.sender != sender or reply.client_id != self.cid or reply.timestamp != self.current.timestamp:
            return False
        if sender not in self.config.members:
            return False
        voters = self.votes.setdefault(reply.result, set())
        voters.add(sender)
        self.views[sender] = reply.view
        if len(voters) < (self.reply_quorum or self.config.f + 1):
            return False
        try:
            result = msgpack.unpackb(reply.result, raw=False)
        except Exception:  # f+1 matching replies include a correct one: this should never happen
            result = ("undecodable", reply.result)
        op = self.op
        op.resp, op.result = now, result
        if isinstance(result, list) and len(result) == 2 and result[0] in ("ok", "fail"):
            if op.kind == "put":
                self.last_seen[op.key] = op.args[0]
            elif op.kind == "get" or result[0] == "fail":
                self.last_seen[op.key] = result[1]
            else:
                self.last_seen[op.key] = op.args[1]
        # The primary is the one of the highest view that f+1 voters agree on... cheaply: the view
        # reported by the most voters (at least one of the f+1 is correct).
        vs = [self.views[s] for s in voters]
        self.view = max(set(vs), key=lambda v: (vs.count(v), v))
        self.current = None
        self.op = None
        return True
