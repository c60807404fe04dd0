"""One PBFT replica (Castro & Liskov, TOCS 2002) as a pure state machine.

Inputs: client requests, replica messages (already authenticated by the caller: `sender` is who
really sent them) and timer expiries, each with `now`. Outputs: a list of effects. The replica keeps
no clock, draws no randomness and does no I/O, so the daemon and the simulator drive the same code.

Every handler validates before it changes state; anything a member could only send by lying (a
forged certificate, a conflicting pre-prepare, a digest that does not match) is dropped and reported
as `Evidence`. Merely stale or early input (an old view, a sequence number outside the watermarks) is
dropped silently: correct replicas send such things under ordinary asynchrony.
"""

from __future__ import annotations

from typing import Any

from protocols.errors import ProtocolError
from protocols.pbft.app import Application
from protocols.pbft.config import PbftConfig
from protocols.pbft.effects import (
    Broadcast,
    CancelTimer,
    Effect,
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
    MAX_ID,
    MAX_OP,
    Checkpoint,
    Commit,
    FetchState,
    Message,
    NewView,
    PrePrepare,
    Prepare,
    PreparedCert,
    Reply,
    Request,
    StateTransfer,
    Status,
    ViewChange,
    batch_digest,
)
from protocols.pbft.viewchange import (
    compute_new_view,
    decode_client_table,
    encode_client_table,
    pre_prepare_error,
    state_digest,
    view_change_error,
)

T_BATCH = "batch"
T_VIEW_CHANGE = "view-change"
T_FETCH = "fetch"
T_STATUS = "status"
MAX_BACKOFF = 16  # the view-change timeout doubles at most this many times


class Replica:
    def __init__(self, replica_id: str, config: PbftConfig, app: Application) -> None:
        if replica_id not in config.members:
            raise ValueError(f"{replica_id!r} is not a member")
        self.id = replica_id
        self.config = config
        self.app = app
        self.view = 0
        self.active = True  # False between sending VIEW-CHANGE and installing the new view
        self.last_executed = 0
        # Client table {client: (last executed timestamp, its result)}: exactly-once execution.
        self.clients: dict[str, tuple[int, bytes]] = {}
        table = encode_client_table(self.clients)
        snap = app.snapshot()
        self.stable_checkpoint: tuple[int, bytes] = (0, state_digest(snap, table))
        self.stable_proof: tuple[Checkpoint, ...] = ()
        self.stable_snapshot = snap
        self.stable_table = table
        # The message log, all above the stable checkpoint (garbage-collected below it).
        self.pre_prepares: dict[int, PrePrepare] = {}  # accepted in the current view
        self.early: dict[int, PrePrepare] = {}  # pre-prepares for a view not installed yet (one view)
        self.prepares: dict[int, dict[str, Prepare]] = {}  # latest view per sender
        self.commits: dict[int, dict[str, Commit]] = {}  # latest view per sender
        self.certs: dict[int, PreparedCert] = {}  # highest-view prepared certificate per seq (P)
        self.committed: dict[int, PrePrepare] = {}  # committed-local, waiting for their turn
        self.checkpoints: dict[int, dict[str, Checkpoint]] = {}
        self.own_checkpoints: dict[int, tuple[bytes, bytes, bytes]] = {}  # seq -> (digest, snapshot, table)
        self.view_changes: dict[str, ViewChange] = {}  # latest per sender
        self.new_view_msg: NewView | None = None  # the NEW-VIEW we installed (resent to replicas that missed it)
        self.vc_attempts = 0  # view changes since the last execution: the timeout doubles with each
        # Requests this replica waits to see executed (one per client, the newest); they drive the timer.
        self.pending: dict[str, Request] = {}
        self.timer_armed = False
        # Primary only: requests waiting to be ordered and the next sequence number to assign.
        self.queue: list[Request] = []
        # (client, timestamp) of requests queued or ordered but not yet executed: no double ordering.
        self.ordered: set[tuple[str, int]] = set()
        self.batch_timer_armed = False
        self.seq_next = 1
        # State transfer: the certified checkpoint (seq, digest, certifiers) being fetched, if any.
        self.fetch_target: tuple[int, bytes, tuple[Checkpoint, ...]] | None = None
        self.fetch_attempts = 0
        self.last_vc_resend = -1e18
        # Retransmission: the highest seq seen in the log (above last_executed = we wait for it), the
        # status timer, our position at its last tick, and when we last answered each peer's STATUS.
        self.max_seen = 0
        self.status_armed = False
        self.status_mark: tuple[int, bool, int] | None = None
        self.status_replied: dict[str, float] = {}
        self.restarted = False  # set by recover(): timers must be re-armed on the first input

    # ------------------------------------------------------------------ introspection

    @property
    def low_watermark(self) -> int:
        return self.stable_checkpoint[0]

    @property
    def high_watermark(self) -> int:
        return self.stable_checkpoint[0] + self.config.window

    @property
    def primary(self) -> str:
        return self.config.primary(self.view)

    def is_primary(self) -> bool:
        return self.primary == self.id

    def log_size(self) -> int:
        """Log entries held (pre-prepares, prepares, commits, certificates, checkpoints); bounded by GC."""
        return (
            len(self.pre_prepares)
            + len(self.early)
            + sum(len(v) for v in self.prepares.values())
            + sum(len(v) for v in self.commits.values())
            + len(self.certs)
            + len(self.committed)
            + sum(len(v) for v in self.checkpoints.values())
            + len(self.own_checkpoints)
        )

    # ------------------------------------------------------------------ helpers

    def _timeout(self) -> float:
        return self.config.request_timeout * (2 ** min(self.vc_attempts, MAX_BACKOFF))

    def _in_window(self, seq: int) -> bool:
        return self.low_watermark < seq <= self.high_watermark

    def _arm_request_timer(self, now: float, out: list[Effect], restart: bool = False) -> None:
        if self.pending and (restart or not self.timer_armed):
            self.timer_armed = True
            out.append(SetTimer(T_VIEW_CHANGE, now + self._timeout()))
        elif not self.pending and self.timer_armed and self.active:
            self.timer_armed = False
            out.append(CancelTimer(T_VIEW_CHANGE))

    # ------------------------------------------------------------------ inputs

    def on_request(self, request: Request, now: float) -> list[Effect]:
        out: list[Effect] = []
        if not (0 < len(request.client_id) <= MAX_ID and len(request.op) <= MAX_OP and request.timestamp >= 0):
            return out
        last = self.clients.get(request.client_id)
        if last is not None and request.timestamp <= last[0]:
            if request.timestamp == last[0]:
                # A retransmission of the last executed request: its reply may have been lost.
                out.append(SendReply(request.client_id, Reply(self.view, last[0], request.client_id, self.id, last[1])))
            return out
        cur = self.pending.get(request.client_id)
        if cur is None or cur.timestamp < request.timestamp:
            self.pending[request.client_id] = request
        elif cur != request:
            return out  # an older or different request under a pending timestamp: ignore
        if self.active and self.is_primary():
            self._enqueue(request, now, out)
        elif self.active:
            # Backups forward to the primary (the client may have sent to us only, or the primary lost it).
            out.append(Send(self.primary, request))
        self._arm_request_timer(now, out)
        self._housekeeping(now, out)
        return out

    def on_message(self, sender: str, message: Message, now: float) -> list[Effect]:
        out: list[Effect] = []
        if sender == self.id:
            return out  # our own echo (a driver broadcasting to everybody)
        if sender not in self.config.members:
            # Replica messages come from members only; clients use on_request.
            out.append(Evidence(sender, "not-a-member"))
            return out
        if isinstance(message, Request):
            return self.on_request(message, now)
        if getattr(message, "sender", None) != sender:
            out.append(Evidence(sender, "sender-mismatch"))
            return out
        try:
            if isinstance(message, PrePrepare):
                self._on_pre_prepare(message, now, out)
            elif isinstance(message, Prepare):
                self._on_prepare(message, now, out)
            elif isinstance(message, Commit):
                self._on_commit(message, now, out)
            elif isinstance(message, Checkpoint):
                self._on_checkpoint(message, now, out)
            elif isinstance(message, ViewChange):
                self._on_view_change(message, now, out)
            elif isinstance(message, NewView):
                self._on_new_view(message, now, out)
            elif isinstance(message, FetchState):
                self._on_fetch_state(message, out)
            elif isinstance(message, StateTransfer):
                self._on_state_transfer(message, now, out)
            elif isinstance(message, Status):
                self._on_status(message, now, out)
            # Replies are for clients; a replica receiving one just ignores it.
        except ProtocolError as e:
            out.append(Evidence(sender, e.reason))
        self._housekeeping(now, out)
        return out

    def on_timer(self, key: str, now: float) -> list[Effect]:
        out: list[Effect] = []
        if key == T_BATCH:
            self.batch_timer_armed = False
            self._cut_batches(now, out, force=True)
        elif key == T_VIEW_CHANGE:
            self.timer_armed = False
            if not self.active or self.pending:
                self._start_view_change(self.view + 1, now, out)
        elif key == T_FETCH:
            self._fetch(now, out)
        elif key == T_STATUS:
            self._status_tick(out)
        self._housekeeping(now, out)
        return out

    # ------------------------------------------------------------------ retransmission

    def _status_interval(self) -> float:
        return self.config.request_timeout / 4

    def _waiting(self) -> bool:
        return bool(self.pending) or not self.active or self.fetch_target is not None or self.max_seen > self.last_executed

    def _housekeeping(self, now: float, out: list[Effect]) -> None:
        if self.restarted:
            # A recovered replica's timers died with the old process.
            self.restarted = False
            if not self.active:
                self.timer_armed = True
                out.append(SetTimer(T_VIEW_CHANGE, now + self._timeout()))
            else:
                self._arm_request_timer(now, out)
            self._cut_batches(now, out, force=False)
        if not self.status_armed and self._waiting():
            self.status_armed = True
            out.append(SetTimer(T_STATUS, now + self._status_interval()))

    def _status_tick(self, out: list[Effect]) -> None:
        """Waiting a whole interval without progress: tell the others where we stand (they resend
        what we miss), and while a view change is pending, repeat our VIEW-CHANGE."""
        self.status_armed = False
        if not self._waiting():
            self.status_mark = None
            return
        mark = (self.view, self.active, self.last_executed)
        if mark == self.status_mark:
            out.append(Broadcast(Status(self.view, self.active, self.last_executed, self.low_watermark, self.id)))
            vc = self.view_changes.get(self.id)
            if not self.active and vc is not None and vc.new_view == self.view:
                out.append(Broadcast(vc))
        self.status_mark = mark

    def _on_status(self, st: Status, now: float, out: list[Effect]) -> None:
        last = self.status_replied.get(st.sender)
        if last is not None and now - last < self._status_interval() / 2:
            return  # answering is costly: at most twice per interval per peer
        self.status_replied[st.sender] = now
        to = st.sender
        h, digest = self.stable_checkpoint
        if st.last_executed < h and st.stable_seq < h:
            out.append(Send(to, Checkpoint(h, digest, self.id)))  # with 2f others: it can fetch state
        if not self.active:
            return
        nv = self.new_view_msg
        if (st.view < self.view or (st.view == self.view and not st.active)) and nv is not None:
            if nv.view == self.view and nv.sender == self.id:
                out.append(Send(to, nv))
            return
        if st.view != self.view or not st.active:
            return
        primary = self.is_primary()
        for seq in range(max(st.last_executed, h) + 1, min(st.last_executed + self.config.window, self.max_seen) + 1):
            pp = self.pre_prepares.get(seq)
            if primary and pp is not None and pp.view == self.view:
                out.append(Send(to, pp))
            p = self.prepares.get(seq, {}).get(self.id)
            if p is not None and p.view == self.view:
                out.append(Send(to, p))
            c = self.commits.get(seq, {}).get(self.id)
            if c is not None and c.view == self.view:
                out.append(Send(to, c))

    # ------------------------------------------------------------------ normal case

    def _enqueue(self, request: Request, now: float, out: list[Effect]) -> None:
        key = (request.client_id, request.timestamp)
        if key in self.ordered:
            return  # queued, or ordered and not executed yet
        self.ordered.add(key)
        self.queue.append(request)
        self._cut_batches(now, out, force=False)

    def _cut_batches(self, now: float, out: list[Effect], force: bool) -> None:
        """Primary: order full batches (or, when the batch timer fired, whatever is queued) while the
        window has room. A partial batch waits at most batch_delay after its first request."""
        if not (self.active and self.is_primary()):
            return
        mb = self.config.max_batch
        while self.queue and self.seq_next <= self.high_watermark and (len(self.queue) >= mb or force):
            batch = tuple(self.queue[:mb])
            del self.queue[:mb]
            pp = PrePrepare(self.view, self.seq_next, batch_digest(batch), batch, self.id)
            self.seq_next += 1
            self.pre_prepares[pp.seq] = pp
            out.append(Broadcast(pp))
            self._progress(pp.seq, now, out)
        if self.queue and not self.batch_timer_armed and self.seq_next <= self.high_watermark:
            self.batch_timer_armed = True
            out.append(SetTimer(T_BATCH, now + self.config.batch_delay))

    def _on_pre_prepare(self, pp: PrePrepare, now: float, out: list[Effect]) -> None:
        if pp.view < self.view:
            return  # stale
        err = pre_prepare_error(self.config, pp)
        if err:
            out.append(Evidence(pp.sender, err))
            return
        if pp.view > self.view or not self.active:
            # Early: the links are not FIFO, so a new primary's first pre-prepares can overtake its
            # NEW-VIEW. Keep them (for the highest such view only, within its window: bounded) and
            # accept them once that view is installed.
            if pp.view == self.view:
                self._resend_view_change(now, out)
            if self.early and next(iter(self.early.values())).view != pp.view:
                if next(iter(self.early.values())).view > pp.view:
                    return
                self.early.clear()
            if self.low_watermark < pp.seq <= self.low_watermark + 2 * self.config.window:
                self.early.setdefault(pp.seq, pp)
            return
        if not self._in_window(pp.seq):
            return
        cur = self.pre_prepares.get(pp.seq)
        if cur is not None:
            if cur.digest != pp.digest:
                out.append(Evidence(pp.sender, "equivocation"))
            return
        self.pre_prepares[pp.seq] = pp
        self.max_seen = max(self.max_seen, pp.seq)
        prep = Prepare(pp.view, pp.seq, pp.digest, self.id)
        self.prepares.setdefault(pp.seq, {})[self.id] = prep
        out.append(Broadcast(prep))
        self._progress(pp.seq, now, out)

    def _store_vote(self, store: dict[int, dict[str, Any]], msg: Prepare | Commit) -> bool:
        slot = store.setdefault(msg.seq, {})
        cur = slot.get(msg.sender)
        if cur is not None and cur.view >= msg.view:
            return False
        slot[msg.sender] = msg
        self.max_seen = max(self.max_seen, msg.seq)
        return True

    def _on_prepare(self, p: Prepare, now: float, out: list[Effect]) -> None:
        if p.sender == self.config.primary(p.view):
            out.append(Evidence(p.sender, "prepare-from-primary"))
            return
        if p.view < self.view or not self._in_window(p.seq):
            return
        cur = self.prepares.get(p.seq, {}).get(p.sender)
        if cur is not None and cur.view == p.view and cur.digest != p.digest:
            out.append(Evidence(p.sender, "conflicting-prepare"))
            return
        if self._store_vote(self.prepares, p) and p.view == self.view:
            if not self.active:
                self._resend_view_change(now, out)
            self._progress(p.seq, now, out)

    def _on_commit(self, c: Commit, now: float, out: list[Effect]) -> None:
        if c.view < self.view or not self._in_window(c.seq):
            return
        cur = self.commits.get(c.seq, {}).get(c.sender)
        if cur is not None and cur.view == c.view and cur.digest != c.digest:
            out.append(Evidence(c.sender, "conflicting-commit"))
            return
        if self._store_vote(self.commits, c) and c.view == self.view:
            self._progress(c.seq, now, out)

    def _progress(self, seq: int, now: float, out: list[Effect]) -> None:
        """Advance one sequence number through prepared -> committed-local -> executed."""
        if not self.active:
            return
        pp = self.pre_prepares.get(seq)
        if pp is None or pp.view != self.view:
            return
        cert = self.certs.get(seq)
        if cert is None or cert.pre_prepare.view != self.view:
            primary = self.config.primary(self.view)
            votes = [
                p
                for s, p in sorted(self.prepares.get(seq, {}).items())
                if p.view == self.view and p.digest == pp.digest and s != primary
            ]
            if len(votes) < 2 * self.config.f:
                return
            cert = PreparedCert(pp, tuple(votes[: 2 * self.config.f]))
            self.certs[seq] = cert
            com = Commit(self.view, seq, pp.digest, self.id)
            self.commits.setdefault(seq, {})[self.id] = com
            out.append(Broadcast(com))
        if seq <= self.last_executed or seq in self.committed:
            return
        n = sum(1 for c in self.commits.get(seq, {}).values() if c.view == self.view and c.digest == pp.digest)
        if n >= self.config.quorum:
            self.committed[seq] = pp
            self._execute(now, out)

    def _execute(self, now: float, out: list[Effect]) -> None:
        executed_any = False
        while self.last_executed + 1 in self.committed:
            seq = self.last_executed + 1
            pp = self.committed.pop(seq)
            results = []
            for req in pp.batch:
                self.ordered.discard((req.client_id, req.timestamp))
                last = self.clients.get(req.client_id)
                if last is not None and req.timestamp <= last[0]:
                    # Ordered twice (a retransmission re-proposed after a view change): never apply twice.
                    results.append(last[1] if req.timestamp == last[0] else b"")
                    continue
                result = self.app.apply(req.op)
                self.clients[req.client_id] = (req.timestamp, result)
                results.append(result)
                out.append(SendReply(req.client_id, Reply(self.view, req.timestamp, req.client_id, self.id, result)))
                p = self.pending.get(req.client_id)
                if p is not None and p.timestamp <= req.timestamp:
                    del self.pending[req.client_id]
            self.last_executed = seq
            executed_any = True
            out.append(Executed(seq, self.view, pp.batch, tuple(results)))
            if seq % self.config.checkpoint_interval == 0:
                self._take_checkpoint(seq, now, out)
        if executed_any:
            self.vc_attempts = 0
            self._arm_request_timer(now, out, restart=True)
            if self.fetch_target is not None and self.fetch_target[0] <= self.last_executed:
                self.fetch_target = None
                out.append(CancelTimer(T_FETCH))

    # ------------------------------------------------------------------ checkpoints

    def _take_checkpoint(self, seq: int, now: float, out: list[Effect]) -> None:
        snap = self.app.snapshot()
        table = encode_client_table(self.clients)
        digest = state_digest(snap, table)
        self.own_checkpoints[seq] = (digest, snap, table)
        cp = Checkpoint(seq, digest, self.id)
        self.checkpoints.setdefault(seq, {})[self.id] = cp
        out.append(Broadcast(cp))
        self._check_stable(seq, now, out)

    def _on_checkpoint(self, cp: Checkpoint, now: float, out: list[Effect]) -> None:
        if cp.seq % self.config.checkpoint_interval or cp.seq == 0:
            out.append(Evidence(cp.sender, "checkpoint-not-on-interval"))
            return
        if cp.seq <= self.low_watermark:
            return
        if cp.seq > self.high_watermark:
            # Beyond our window (we are behind): keep only each sender's latest such claim, which
            # bounds the memory a byzantine replica can make us spend.
            for s in [s for s in self.checkpoints if s > self.high_watermark and cp.sender in self.checkpoints[s]]:
                if s >= cp.seq:
                    return
                del self.checkpoints[s][cp.sender]
        slot = self.checkpoints.setdefault(cp.seq, {})
        if cp.sender in slot:
            if slot[cp.sender].state_digest != cp.state_digest:
                out.append(Evidence(cp.sender, "conflicting-checkpoint"))
            return
        slot[cp.sender] = cp
        self._check_stable(cp.seq, now, out)

    def _check_stable(self, seq: int, now: float, out: list[Effect]) -> None:
        slot = self.checkpoints.get(seq, {})
        by_digest: dict[bytes, list[Checkpoint]] = {}
        for cp in slot.values():
            by_digest.setdefault(cp.state_digest, []).append(cp)
        for digest, cps in by_digest.items():
            if len(cps) >= self.config.quorum:
                proof = tuple(sorted(cps, key=lambda c: c.sender)[: self.config.quorum])
                self._certified_checkpoint(seq, digest, proof, now, out)
                return

    def _certified_checkpoint(
        self, seq: int, digest: bytes, proof: tuple[Checkpoint, ...], now: float, out: list[Effect]
    ) -> None:
        """A checkpoint with a valid 2f+1 proof is known: make it stable, or fetch its state if we lack it."""
        if seq <= self.low_watermark:
            return
        own = self.own_checkpoints.get(seq)
        if own is not None and own[0] == digest:
            self._make_stable(seq, digest, proof, own[1], own[2], now, out)
            return
        # We have not executed up to it (or, which only a bug could cause, our state differs).
        if self.fetch_target is None or self.fetch_target[0] < seq:
            self.fetch_target = (seq, digest, proof)
            self.fetch_attempts = 0
            if seq > self.high_watermark or seq <= self.last_executed:
                self._fetch(now, out)  # we cannot get there by ordinary execution
            else:
                # Probably just a little behind: give ordinary execution a chance first.
                out.append(SetTimer(T_FETCH, now + self.config.request_timeout / 2))

    def _make_stable(
        self, seq: int, digest: bytes, proof: tuple[Checkpoint, ...], snap: bytes, table: bytes, now: float, out: list[Effect]
    ) -> None:
        self.stable_checkpoint = (seq, digest)
        self.stable_proof = proof
        self.stable_snapshot = snap
        self.stable_table = table
        for store in (self.pre_prepares, self.early, self.prepares, self.commits, self.certs, self.committed, self.own_checkpoints):
            for s in [s for s in store if s <= seq]:
                del store[s]  # type: ignore[attr-defined]
        for s in [s for s in self.checkpoints if s <= seq]:
            del self.checkpoints[s]
        out.append(StableCheckpoint(seq, digest))
        self.seq_next = max(self.seq_next, seq + 1)
        self._cut_batches(now, out, force=False)

    # ------------------------------------------------------------------ state transfer

    def _fetch(self, now: float, out: list[Effect]) -> None:
        target = self.fetch_target
        if target is None or target[0] <= self.last_executed and target[0] <= self.low_watermark:
            self.fetch_target = None
            return
        seq, _digest, proof = target
        certifiers = [c.sender for c in proof if c.sender != self.id]
        if certifiers:
            # One certifier at a time (a snapshot is large); rotate on each retry.
            to = certifiers[self.fetch_attempts % len(certifiers)]
            out.append(Send(to, FetchState(seq, self.id)))
        self.fetch_attempts += 1
        out.append(SetTimer(T_FETCH, now + self.config.request_timeout))

    def _on_fetch_state(self, fs: FetchState, out: list[Effect]) -> None:
        seq, digest = self.stable_checkpoint
        if seq >= fs.seq and seq > 0:
            out.append(Send(fs.sender, StateTransfer(seq, digest, self.stable_snapshot, self.stable_table, self.id)))

    def _on_state_transfer(self, st: StateTransfer, now: float, out: list[Effect]) -> None:
        target = self.fetch_target
        if st.seq <= self.last_executed and st.seq <= self.low_watermark:
            return
        certified = target is not None and target[0] == st.seq and target[1] == st.state_digest
        if not certified:
            slot = self.checkpoints.get(st.seq, {})
            certified = sum(1 for c in slot.values() if c.state_digest == st.state_digest) >= self.config.quorum
        if not certified:
            return  # unsolicited or for a checkpoint we cannot vouch for
        own = self.own_checkpoints.get(st.seq)
        if st.seq <= self.last_executed and own is not None and own[0] == st.state_digest:
            return  # we have that state already (and executed past it): never roll back
        if state_digest(st.snapshot, st.client_table) != st.state_digest:
            out.append(Evidence(st.sender, "bad-state"))
            return
        clients = decode_client_table(st.client_table)
        try:
            self.app.restore(st.snapshot)
        except Exception:  # noqa: BLE001 - certified bytes the app refuses: a bug, but never crash
            out.append(Evidence(st.sender, "unrestorable-state"))
            return
        self.clients = clients
        self.last_executed = st.seq
        if target is not None and target[0] == st.seq and target[1] == st.state_digest:
            proof = target[2]
        else:
            proof = tuple(
                sorted(
                    (c for c in self.checkpoints.get(st.seq, {}).values() if c.state_digest == st.state_digest),
                    key=lambda c: c.sender,
                )
            )[: self.config.quorum]
        self.fetch_target = None
        out.append(CancelTimer(T_FETCH))
        out.append(StateRestored(st.seq, st.state_digest))
        self._make_stable(st.seq, st.state_digest, proof, st.snapshot, st.client_table, now, out)
        for client in [c for c, r in self.pending.items() if c in clients and r.timestamp <= clients[c][0]]:
            del self.pending[client]
        self._execute(now, out)
        for seq in sorted(self.pre_prepares):
            self._progress(seq, now, out)
        self._arm_request_timer(now, out, restart=True)

    # ------------------------------------------------------------------ view change

    def _start_view_change(self, new_view: int, now: float, out: list[Effect]) -> None:
        if new_view <= self.view and not self.active:
            return
        if new_view <= self.view and self.active:
            return
        self.view = new_view
        self.active = False
        self.pre_prepares.clear()  # old-view proposals; what prepared survives in self.certs
        self._drop_queue(out)
        h = self.low_watermark
        vc = ViewChange(new_view, h, self.stable_proof, tuple(self.certs[s] for s in sorted(self.certs) if s > h), self.id)
        self.view_changes[self.id] = vc
        out.append(Broadcast(vc))
        self.last_vc_resend = now
        # If the new view does not come up in time, move on to the next one, waiting twice as long.
        self.vc_attempts += 1
        self.timer_armed = True
        out.append(SetTimer(T_VIEW_CHANGE, now + self._timeout()))
        self._maybe_send_new_view(now, out)

    def _drop_queue(self, out: list[Effect]) -> None:
        """Leaving a view: requests we queued as its primary go back to waiting (the next primary orders them)."""
        for r in self.queue:
            cur = self.pending.get(r.client_id)
            if cur is None or cur.timestamp < r.timestamp:
                self.pending[r.client_id] = r
        self.queue.clear()
        self.ordered.clear()
        if self.batch_timer_armed:
            self.batch_timer_armed = False
            out.append(CancelTimer(T_BATCH))

    def _resend_view_change(self, now: float, out: list[Effect]) -> None:
        """We wait for a NEW-VIEW that others seem to have installed (we see their traffic of our
        pending view): resend our VIEW-CHANGE to its primary, at most once per quarter timeout."""
        vc = self.view_changes.get(self.id)
        if vc is None or vc.new_view != self.view or now - self.last_vc_resend < self.config.request_timeout / 4:
            return
        self.last_vc_resend = now
        out.append(Send(self.primary, vc))

    def _on_view_change(self, vc: ViewChange, now: float, out: list[Effect]) -> None:
        err = view_change_error(self.config, vc)
        if err:
            out.append(Evidence(vc.sender, err))
            return
        if vc.new_view < self.view or (vc.new_view == self.view and self.active):
            nv = self.new_view_msg
            if vc.new_view == self.view and nv is not None and nv.view == self.view and nv.sender == self.id:
                out.append(Send(vc.sender, nv))  # it missed our NEW-VIEW (only its author may resend it)
            return
        cur = self.view_changes.get(vc.sender)
        if cur is not None and cur.new_view >= vc.new_view:
            return
        self.view_changes[vc.sender] = vc
        # Join rule: f+1 replicas asking for views above ours include a correct one, so a view change
        # is under way; join at the smallest such view rather than wait for our own timer.
        higher = sorted(v.new_view for s, v in self.view_changes.items() if s != self.id and v.new_view > self.view)
        if len(higher) >= self.config.f + 1:
            self._start_view_change(higher[0], now, out)
        self._maybe_send_new_view(now, out)

    def _maybe_send_new_view(self, now: float, out: list[Effect]) -> None:
        if self.active or self.config.primary(self.view) != self.id:
            return
        vcs = tuple(sorted((v for v in self.view_changes.values() if v.new_view == self.view), key=lambda v: v.sender))
        if len(vcs) < self.config.quorum:
            return
        min_s, digest, proof, o = compute_new_view(self.config, self.view, vcs)
        nv = NewView(self.view, vcs, o, self.id)
        out.append(Broadcast(nv))
        self._install_view(nv, min_s, digest, proof, o, now, out)

    def _on_new_view(self, nv: NewView, now: float, out: list[Effect]) -> None:
        if nv.sender != self.config.primary(nv.view):
            out.append(Evidence(nv.sender, "new-view-not-from-primary"))
            return
        if nv.view < self.view or (nv.view == self.view and self.active):
            return
        senders = {v.sender for v in nv.view_changes}
        if len(senders) != len(nv.view_changes) or len(senders) < self.config.quorum:
            out.append(Evidence(nv.sender, "new-view-quorum"))
            return
        for vc in nv.view_changes:
            if vc.new_view != nv.view or view_change_error(self.config, vc):
                out.append(Evidence(nv.sender, "new-view-bad-view-change"))
                return
        min_s, digest, proof, o = compute_new_view(self.config, nv.view, nv.view_changes)
        if o != nv.pre_prepares:
            out.append(Evidence(nv.sender, "new-view-bad-pre-prepares"))
            return
        self._install_view(nv, min_s, digest, proof, o, now, out)

    def _install_view(
        self,
        nv: NewView,
        min_s: int,
        digest: bytes,
        proof: tuple[Checkpoint, ...],
        o: tuple[PrePrepare, ...],
        now: float,
        out: list[Effect],
    ) -> None:
        self.view = nv.view
        self.active = True
        self.new_view_msg = nv
        for s in [s for s, v in self.view_changes.items() if v.new_view <= self.view]:
            del self.view_changes[s]
        self.pre_prepares.clear()
        self._drop_queue(out)  # we may jump here from an older view in which we were primary
        out.append(ViewInstalled(self.view, self.primary))
        if min_s > self.low_watermark:
            # The new view starts from a checkpoint we may not have made stable (or even reached).
            for cp in proof:
                self.checkpoints.setdefault(min_s, {}).setdefault(cp.sender, cp)
            self._certified_checkpoint(min_s, digest, proof, now, out)
        primary = self.is_primary()
        max_s = min_s
        for pp in o:
            max_s = max(max_s, pp.seq)
            if pp.seq <= self.low_watermark:
                continue
            self.pre_prepares[pp.seq] = pp
            self.max_seen = max(self.max_seen, pp.seq)
            if not primary:
                prep = Prepare(self.view, pp.seq, pp.digest, self.id)
                self.prepares.setdefault(pp.seq, {})[self.id] = prep
                out.append(Broadcast(prep))
        self.seq_next = max(max_s, self.last_executed, self.low_watermark) + 1
        for pp in o:
            self._progress(pp.seq, now, out)
        early = [pp for pp in self.early.values() if pp.view == self.view]
        self.early.clear()
        for pp in sorted(early, key=lambda p: p.seq):
            self._on_pre_prepare(pp, now, out)
        # Requests still waiting: the new primary orders them, backups hand them to it.
        self.ordered = {(r.client_id, r.timestamp) for pp in o if pp.seq > self.last_executed for r in pp.batch}
        for req in list(self.pending.values()):
            if (req.client_id, req.timestamp) in self.ordered:
                continue
            if primary:
                self._enqueue(req, now, out)
            else:
                out.append(Send(self.primary, req))
        self.timer_armed = False
        out.append(CancelTimer(T_VIEW_CHANGE))
        self._arm_request_timer(now, out)

    # ------------------------------------------------------------------ persistence

    def persistent_state(self) -> bytes:
        """Everything needed to resume after a crash (see protocols/pbft/persist.py)."""
        from protocols.pbft.persist import dump

        return dump(self)

    @classmethod
    def recover(cls, replica_id: str, config: PbftConfig, app: Application, state: bytes) -> "Replica":
        """Restart from `persistent_state()` bytes (our own, so trusted: errors here raise)."""
        from protocols.pbft.persist import load

        return load(cls(replica_id, config, app), state)
