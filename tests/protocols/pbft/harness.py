"""A tiny deterministic driver for PBFT replica tests: FIFO delivery, a manual clock, no randomness.

Every message goes through encode_message/decode_message so the wire schema is exercised too.
`filter(src, dst, msg) -> bool` drops messages (return False), `down` silences replicas entirely.

`Cluster(signed=True)`: members are the peer ids of deterministic Ed25519 identities (seeds
bytes([i]) * 32), every replica signs with its key, and `step()` runs signing.check_signatures on
every delivered message as a daemon would: a refused message is dropped and recorded in `refused`;
one from a correct replica (anything not `inject`ed) fails the test at once."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from keys.identity import Identity

from protocols.pbft import (
    Broadcast,
    CancelTimer,
    Effect,
    Evidence,
    Executed,
    KVStore,
    Message,
    PbftConfig,
    Replica,
    Request,
    Send,
    SendReply,
    SetTimer,
    StableCheckpoint,
    ViewInstalled,
    decode_message,
    encode_message,
)
from protocols.pbft.signing import Verifier, check_signatures, default_verifier


class Cluster:
    def __init__(self, n: int = 4, *, signed: bool = False, verify: Verifier = default_verifier, **cfg: Any) -> None:
        self.signed = signed
        self.verify = verify
        self.identities: dict[str, Identity] = {}
        if signed:
            ids = [Identity.from_seed(bytes([i]) * 32) for i in range(n)]
            self.identities = {i.peer_id: i for i in ids}
            self.members = tuple(i.peer_id for i in ids)
        else:
            self.members = tuple(f"r{i}" for i in range(n))
        self.config = PbftConfig(self.members, **cfg)
        self.apps: dict[str, KVStore] = {m: KVStore() for m in self.members}
        self.replicas: dict[str, Replica] = {m: self.new_replica(m) for m in self.members}
        self.now = 0.0
        self.queue: deque[tuple[str, str, Message, bool]] = deque()
        self.timers: dict[tuple[str, str], float] = {}
        self.down: set[str] = set()
        self.filter: Callable[[str, str, Message], bool] = lambda s, d, m: True
        self.executed: dict[str, list[Executed]] = {m: [] for m in self.members}
        self.replies: dict[tuple[str, int], dict[str, bytes]] = {}
        self.evidence: list[tuple[str, Evidence]] = []
        self.stable: dict[str, list[StableCheckpoint]] = {m: [] for m in self.members}
        self.views: dict[str, list[int]] = {m: [] for m in self.members}
        self.delivered = 0
        self.checked = 0  # messages run through check_signatures (signed clusters)
        self.refused: list[tuple[str, str, Message, str]] = []  # (src, dst, message, reason)

    def signer(self, rid: str) -> Callable[[bytes], bytes] | None:
        return self.identities[rid].sign if self.signed else None

    def new_replica(self, rid: str, app: KVStore | None = None) -> Replica:
        """A fresh replica for `rid` (with its signer when signed), e.g. after it lost its disk."""
        if app is not None:
            self.apps[rid] = app
        return Replica(rid, self.config, self.apps[rid], signer=self.signer(rid))

    # ------------------------------------------------------------------ effects

    def apply(self, rid: str, effects: list[Effect]) -> None:
        for e in effects:
            if isinstance(e, Send):
                self.queue.append((rid, e.to, e.message, False))
            elif isinstance(e, Broadcast):
                for m in self.members:
                    if m != rid:
                        self.queue.append((rid, m, e.message, False))
            elif isinstance(e, SendReply):
                r = e.reply
                assert r.sender == rid
                self.replies.setdefault((r.client_id, r.timestamp), {})[rid] = r.result
            elif isinstance(e, SetTimer):
                self.timers[(rid, e.key)] = e.at
            elif isinstance(e, CancelTimer):
                self.timers.pop((rid, e.key), None)
            elif isinstance(e, Executed):
                log = self.executed[rid]
                assert not log or e.seq == log[-1].seq + 1 or e.seq > log[-1].seq, "execution out of order"
                log.append(e)
            elif isinstance(e, Evidence):
                self.evidence.append((rid, e))
            elif isinstance(e, StableCheckpoint):
                self.stable[rid].append(e)
            elif isinstance(e, ViewInstalled):
                self.views[rid].append(e.view)

    # ------------------------------------------------------------------ inputs

    def request(self, client: str, ts: int, op: bytes, to: str | None = None) -> Request:
        """A client sends a request to `to` (default: the primary of r0's view), or to all with to='all'."""
        req = Request(client, ts, op)
        targets = self.members if to == "all" else [to or self.config.primary(max(r.view for r in self.replicas.values()))]
        for t in targets:
            if t not in self.down:
                self.apply(t, self.replicas[t].on_request(req, self.now))
        return req

    def inject(self, src: str, dst: str, msg: Message) -> None:
        """Queue a message as if `src` sent it (plays a byzantine replica: bypasses `down` and `filter`)."""
        self.queue.append((src, dst, msg, True))

    def step(self) -> bool:
        if not self.queue:
            return False
        src, dst, msg, forced = self.queue.popleft()
        if dst in self.down or not forced and (src in self.down or not self.filter(src, dst, msg)):
            return True
        msg = decode_message(encode_message(msg))
        if self.signed:
            self.checked += 1
            reason = check_signatures(msg, self.verify)
            if reason is not None:
                self.refused.append((src, dst, msg, reason))
                assert forced, f"{src}'s {type(msg).__name__} to {dst} refused ({reason}): {msg!r}"
                return True
        self.delivered += 1
        self.apply(dst, self.replicas[dst].on_message(src, msg, self.now))
        return True

    def run(self, until: float | None = None, max_steps: int = 1_000_000) -> None:
        """Deliver until quiet, firing timers in time order up to `until` (default: now, i.e. none later)."""
        limit = self.now if until is None else until
        for _ in range(max_steps):
            if self.step():
                continue
            live = [(at, k) for k, at in self.timers.items() if k[0] not in self.down and at <= limit]
            if not live:
                self.now = max(self.now, limit)
                return
            at, key = min(live)
            del self.timers[key]
            self.now = max(self.now, at)
            self.apply(key[0], self.replicas[key[0]].on_timer(key[1], self.now))
        raise AssertionError("did not quiesce")

    # ------------------------------------------------------------------ checks

    def result(self, client: str, ts: int) -> bytes | None:
        """The client's accepted result: f+1 matching replies."""
        got = self.replies.get((client, ts), {})
        counts: dict[bytes, int] = {}
        for res in got.values():
            counts[res] = counts.get(res, 0) + 1
        for res, c in counts.items():
            if c >= self.config.f + 1:
                return res
        return None

    def history(self, rid: str) -> list[tuple[int, tuple[Request, ...]]]:
        return [(e.seq, e.batch) for e in self.executed[rid]]

    def assert_agreement(self) -> None:
        """No two replicas executed different batches at one sequence number."""
        seen: dict[int, tuple[Request, ...]] = {}
        for rid in self.members:
            for e in self.executed[rid]:
                assert seen.setdefault(e.seq, e.batch) == e.batch, f"divergence at {e.seq}"
