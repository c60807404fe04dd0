"""One PBFT replica (Castro & Liskov, TOCS 2002) as a pure state machine.

Inputs: client requests, replica messages (already authenticated by the caller: `sender` is who
really sent them, and signing.check_signatures accepted their own and nested signatures; the
replica checks no signature itself) and timer expiries, each with `now`. Outputs: a list of effects. The replica keeps
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
from protocols.pbft.effects import Broadcast, CancelTimer, Effect, Evidence, Executed, Send, SendReply, SetTimer
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
    StartViewChange,
    StateTransfer,
    Status,
    ViewChange,
    batch_digest,
)
from protocols.pbft.signing import Signer
from protocols.pbft.view_checks import pre_prepare_error
from protocols.pbft.base import MAX_BACKOFF, T_BATCH, T_FETCH, T_STATUS, T_VIEW_CHANGE, ReplicaBase
from protocols.pbft.checkpointing import CheckpointMixin
from protocols.pbft.view_change import ViewChangeMixin

__all__ = ["Replica", "T_BATCH", "T_FETCH", "T_STATUS", "T_VIEW_CHANGE", "MAX_BACKOFF"]


class Replica(ViewChangeMixin, CheckpointMixin, ReplicaBase):
    """One replica. See ReplicaBase for its state; the public API is on_request / on_message /
    on_timer, the introspection properties, persistent_state and recover."""

    # ------------------------------------------------------------------ inputs

    def on_request(self, request: Request, now: float) -> list[Effect]:
        return self._request(request, now, forwarded=False)

    def _request(self, request: Request, now: float, forwarded: bool) -> list[Effect]:
        out: list[Effect] = []
        if not (0 < len(request.client_id) <= MAX_ID and len(request.op) <= MAX_OP and request.timestamp >= 0):
            return out
        last = self.clients.get(request.client_id)
        if last is not None and request.timestamp <= last[0]:
            if request.timestamp == last[0]:
                # A retransmission of the last executed request: its reply may have been lost.
                out.append(SendReply(request.client_id, Reply(self.view, last[0], request.client_id, self.id, last[1])))
            return out
        if forwarded and not self.is_primary():
            # A backup's forward reaches a replica that is not the primary in its view (one of them
            # lags a view change). Forwarding it on could ping-pong forever between the two, and
            # timing it would let a byzantine replica trigger view changes with requests nobody
            # else sees: drop it (the client retransmits to everybody).
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
            return self._request(message, now, forwarded=True)
        if getattr(message, "sender", None) != sender and not isinstance(message, NewView):
            # (A NEW-VIEW may be relayed by any member: everything in it is signed by its
            # authors, the VIEW-CHANGEs by theirs and the re-issued pre-prepares by the primary.)
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
                self._on_fetch_state(message, now, out)
            elif isinstance(message, StateTransfer):
                self._on_state_transfer(message, now, out)
            elif isinstance(message, Status):
                self._on_status(message, now, out)
            elif isinstance(message, StartViewChange):
                self._on_start_view_change(message, now, out)
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
            if self.active and self.pending and self._provably_behind(now):
                # The committee is ahead of us, not stuck: catch up before blaming the primary.
                self.timer_armed = True
                out.append(SetTimer(T_VIEW_CHANGE, now + self._timeout()))
            elif not self.halted and (not self.active or self.pending):
                # Vote for the next view; the view change starts once 2f+1 voted. Until then we
                # keep working in this view and repeat the vote every timeout: alone, we never
                # move (nor back off: the timeout doubles per view change, not per vote).
                self._vote(self.view + 1, now, out)
                if not self.timer_armed:
                    self.timer_armed = True
                    out.append(SetTimer(T_VIEW_CHANGE, now + self._timeout()))
        elif key == T_FETCH:
            self._fetch(now, out)
        elif key == T_STATUS:
            self._status_tick(now, out)
        self._housekeeping(now, out)
        return out

    def _provably_behind(self, now: float) -> bool:
        """Certificates show the committee getting further than we did, so its primary is not
        what keeps our request waiting: 2f+1 CHECKPOINTs certify a state beyond what we executed
        and we are fetching it (f+1 certifiers are correct, so the fetch succeeds), or batches
        above a gap of ours got their 2f+1 commits within the last timeout (the primary is
        ordering; we are catching up). A faulty primary can fake neither. Seeing higher sequence
        numbers is not enough (one faulty member could send those), and commits that stopped
        coming are not either (that gap may need a view change to fill). If the primary starves
        our request while serving others, the replicas that are not behind time it out."""
        if self.fetch_target is not None:
            return True
        return bool(self.committed) and now - self.last_commit_quorum < self.config.request_timeout

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
            if self.fetch_target is not None:
                self._fetch(now, out)
            # Say where we stand at once: whatever committed while we were away (or before we
            # joined) is resent by the others, even if no new request ever comes to show us
            # that we are behind.
            out.append(Broadcast(Status(self.view, self.active, self.last_executed, self.low_watermark, self.id)))
        if not self.status_armed and self._waiting():
            self.status_armed = True
            out.append(SetTimer(T_STATUS, now + self._status_interval()))

    def _status_tick(self, now: float, out: list[Effect]) -> None:
        """Waiting a whole interval without progress: tell the others where we stand (they resend
        what we miss), and while a view change is pending, repeat our VIEW-CHANGE."""
        self.status_armed = False
        if not self._waiting():
            self.status_mark = None
            return
        # Waiting for a NEW-VIEW, batches of older views we still execute (_keep_old) are no
        # progress on what we wait for: our VIEW-CHANGE must still be repeated.
        mark = (self.view, self.active, self.last_executed if self.active else -1)
        if mark == self.status_mark:
            out.append(Broadcast(Status(self.view, self.active, self.last_executed, self.low_watermark, self.id)))
            vc = self.view_changes.get(self.id)
            # A VIEW-CHANGE carries every prepared certificate since the stable checkpoint (MBs
            # when batches are big): repeat it at most every half timeout, which grows with each
            # failed view change, or the repeats themselves saturate the links they wait on.
            if not self.active and vc is not None and vc.new_view == self.view and now - self.last_vc_resend >= self._timeout() / 2:
                self.last_vc_resend = now
                out.append(Broadcast(vc))
            if self.vote > self.view:
                out.append(Broadcast(StartViewChange(self.vote, self.id)))
        self.status_mark = mark

    def _own_checkpoint(self, seq: int, digest: bytes) -> Checkpoint:
        """Our CHECKPOINT for (seq, digest): the one we sent if we still hold it (no re-signing)."""
        for cp in self.stable_proof if seq == self.low_watermark else self.checkpoints.get(seq, {}).values():
            if cp.sender == self.id and cp.seq == seq and cp.state_digest == digest:
                return cp
        return self._sign(Checkpoint(seq, digest, self.id))

    def _on_status(self, st: Status, now: float, out: list[Effect]) -> None:
        if st.view == self.view and st.active and st.last_executed > self.max_seen:
            # It executed further than we have seen: we are behind, so our status timer runs and
            # asks for what we miss. (A lie only costs us a few STATUS messages.)
            self.max_seen = min(st.last_executed, self.high_watermark)
        last = self.status_replied.get(st.sender)
        if last is not None and now - last < self._status_interval() / 2:
            return  # answering is costly: at most twice per interval per peer
        self.status_replied[st.sender] = now
        to = st.sender
        h, digest = self.stable_checkpoint
        if st.last_executed < h and st.stable_seq < h:
            out.append(Send(to, self._own_checkpoint(h, digest)))  # with 2f others: it can fetch state
        for seq in sorted(self.own_checkpoints):
            if seq > st.stable_seq:
                # Our votes for checkpoints it has not seen stable: it may lack just ours.
                out.append(Send(to, self._own_checkpoint(seq, self.own_checkpoints[seq][0])))
        if not self.active:
            return
        nv = self.new_view_msg
        if (st.view < self.view or (st.view == self.view and not st.active)) and nv is not None:
            if nv.view == self.view:
                # Any replica that installed the view relays its NEW-VIEW: the asker may be unable
                # to reach the primary, and would otherwise wait for the next view change.
                self._send_new_view(to, now, out)
            return
        if st.view < self.view or (st.view == self.view and not st.active):
            return
        # The asker is in our view, or stuck in a view change of its own to a higher one: either
        # way our commits (and pre-prepares, as primary) let it execute what it missed.
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
        last = min(self._last_orderable(), self.last_executed + self.config.max_in_flight)
        while self.queue and self.seq_next <= last and (len(self.queue) >= mb or force):
            batch = tuple(self.queue[:mb])
            del self.queue[:mb]
            pp = self._sign(PrePrepare(self.view, self.seq_next, batch_digest(batch), batch, self.id))
            self.seq_next += 1
            self.pre_prepares[pp.seq] = pp
            out.append(Broadcast(pp))
            self._progress(pp.seq, now, out)
        # Requests held back by the in-flight limit go out as soon as a batch executes.
        self.throttled = bool(self.queue) and self.seq_next > self.last_executed + self.config.max_in_flight
        if self.queue and not self.batch_timer_armed and self.seq_next <= last:
            self.batch_timer_armed = True
            out.append(SetTimer(T_BATCH, now + self.config.batch_delay))

    def _on_pre_prepare(self, pp: PrePrepare, now: float, out: list[Effect]) -> None:
        if pp.view < self.view:
            if not pre_prepare_error(self.config, pp):
                self._keep_old(pp, now, out)
            return  # stale for ordering; perhaps still useful to catch up (see _keep_old)
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
        prep = self._sign(Prepare(pp.view, pp.seq, pp.digest, self.id))
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
        if not self._in_window(c.seq):
            return
        if c.view < self.view:
            self._keep_old(c, now, out)
            return
        cur = self.commits.get(c.seq, {}).get(c.sender)
        if cur is not None and cur.view == c.view and cur.digest != c.digest:
            out.append(Evidence(c.sender, "conflicting-commit"))
            return
        if self._store_vote(self.commits, c) and c.view == self.view:
            self._progress(c.seq, now, out)

    def _keep_old(self, msg: PrePrepare | Commit, now: float, out: list[Effect]) -> None:
        """A pre-prepare or commit of a view older than ours. We take no part in that view any
        more, but 2f+1 commits for one pre-prepare of it prove the batch committed (f+1 correct
        replicas prepared it, so every later view keeps it), and executing a committed batch
        promises nothing. This lets a replica that went into a view change nobody else wanted
        (it was slow or cut off, say) keep executing while it waits, instead of idling until
        the next real view change; likewise a replica that installed a view while batches of
        the previous one were still in flight."""
        if msg.seq <= self.last_executed or not self._in_window(msg.seq):
            return
        if isinstance(msg, PrePrepare):
            cur = self.old_pre_prepares.get(msg.seq)
            if cur is not None and cur.view >= msg.view:
                return
            self.old_pre_prepares[msg.seq] = msg
        else:
            slot = self.old_commits.setdefault(msg.seq, {})
            cur_c = slot.get(msg.sender)
            if cur_c is not None and cur_c.view >= msg.view:
                return
            slot[msg.sender] = msg
        pp = self.old_pre_prepares.get(msg.seq)
        if pp is None or msg.seq in self.committed:
            return
        votes = sum(1 for c in self.old_commits.get(msg.seq, {}).values() if c.view == pp.view and c.digest == pp.digest)
        if votes >= self.config.quorum:
            self.committed[msg.seq] = pp
            self.last_commit_quorum = now
            self._execute(now, out)

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
            need = self.config.quorum - 1  # with the pre-prepare, a quorum (2f when n = 3f+1)
            if len(votes) < need:
                return
            cert = PreparedCert(pp, tuple(votes[:need]))
            self.certs[seq] = cert
            com = Commit(self.view, seq, pp.digest, self.id)
            self.commits.setdefault(seq, {})[self.id] = com
            out.append(Broadcast(com))
        if seq <= self.last_executed or seq in self.committed:
            return
        n = sum(1 for c in self.commits.get(seq, {}).values() if c.view == self.view and c.digest == pp.digest)
        if n >= self.config.quorum:
            self.committed[seq] = pp
            self.last_commit_quorum = now
            self._execute(now, out)

    def _execute(self, now: float, out: list[Effect]) -> None:
        executed_any = False
        while self.last_executed + 1 in self.committed and not self.halted:
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
            if self.throttled and self.queue and self.active and self.is_primary():
                self._cut_batches(now, out, force=True)  # room in the pipeline for what waited
            self.vc_attempts = 0
            self._arm_request_timer(now, out)
            if self.fetch_target is not None and self.fetch_target[0] <= self.last_executed:
                self.fetch_target = None
                out.append(CancelTimer(T_FETCH))

    # ------------------------------------------------------------------ persistence

    def resume(self) -> None:
        """The process restarted (state recovered or replayed): every timer died with the old
        process. They are re-armed by the next input; a driver can feed `on_timer("resume", now)`."""
        self.restarted = True
        self.timer_armed = False
        self.batch_timer_armed = False
        self.status_armed = False

    def persistent_state(self) -> bytes:
        """Everything needed to resume after a crash (see protocols/pbft/persist.py)."""
        from protocols.pbft.persist import dump

        return dump(self)

    @classmethod
    def from_checkpoint(
        cls,
        replica_id: str,
        config: PbftConfig,
        app: Application,
        seq: int,
        client_table: bytes,
        view: int,
        *,
        signer: Signer | None = None,
        proof: tuple[Checkpoint, ...] = (),
    ) -> "Replica":
        """A replica starting from the stable checkpoint at `seq`: `app` already holds that state.
        Either the checkpoint that ended the previous configuration (config.base_seq, no proof
        needed: the previous committee made it stable), or a later one of this configuration
        that a syncing node installed, with the 2f+1 CHECKPOINTs that proved it."""
        from protocols.pbft.view_checks import decode_client_table, state_digest

        r = cls(replica_id, config, app, signer=signer)
        snap = app.snapshot()
        r.clients = decode_client_table(client_table)
        r.view = view
        r.last_executed = seq
        r.stable_checkpoint = (seq, state_digest(snap, client_table))
        r.stable_proof = proof
        r.stable_snapshot = snap
        r.stable_table = client_table
        r.seq_next = seq + 1
        r.max_seen = seq
        return r

    @classmethod
    def recover(
        cls, replica_id: str, config: PbftConfig, app: Application, state: bytes, *, signer: Signer | None = None
    ) -> "Replica":
        """Restart from `persistent_state()` bytes (our own, so trusted: errors here raise). The
        persisted log keeps every message's signature."""
        from protocols.pbft.persist import load

        return load(cls(replica_id, config, app, signer=signer), state)

