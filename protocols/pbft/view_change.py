"""The view-change protocol's handlers (paper section 4.4); the pure checks live in view_checks.py.

A view change starts with votes. A replica whose request timer expires broadcasts
StartViewChange(v+1) and keeps working in view v; it sends its VIEW-CHANGE for a view w (the PBFT
promise to take no further part in views below w) only once 2f+1 members voted for w or higher.
f+1 votes beyond our view include a correct replica's, so we join them (the paper's join rule,
on votes). A replica that times out alone (it started before the others, or it is cut off)
therefore stays active in the committee's view and never races ahead; when its peers arrive it
takes part at once. Safety is PBFT's unchanged: a vote promises nothing and carries no state, and
every VIEW-CHANGE still reflects everything its sender prepared, since a replica stops taking part
in older views exactly when it sends one. What the votes cost is one message delay per view change,
paid only when a primary is already suspected. The paper's rule that a replica starts its timer for
the next view only after 2f+1 VIEW-CHANGEs is implied: no VIEW-CHANGE without 2f+1 votes.

Votes are never withdrawn within a view (a replica that sent its VIEW-CHANGE on the strength of
them must not be left alone); they are repeated while their sender waits (the status timer) and to
any replica whose VIEW-CHANGE shows it is waiting on them.

Signatures: our VIEW-CHANGE is signed, and so is the O set of a NEW-VIEW we build (after
compute_new_view, which makes them unsigned); a backup installs the *received* (signed) O set once
it equals the recomputed one (equality ignores signatures), so certificates it later builds from
those pre-prepares carry the new primary's signature. Signatures are checked by the driver."""

from __future__ import annotations

from protocols.pbft.effects import Broadcast, CancelTimer, Effect, Evidence, Send, SetTimer, ViewInstalled
from protocols.pbft.messages import Checkpoint, NewView, PrePrepare, Prepare, StartViewChange, ViewChange
from protocols.pbft.view_checks import compute_new_view, view_change_error
from protocols.pbft.base import T_BATCH, T_VIEW_CHANGE, ReplicaBase


class ViewChangeMixin(ReplicaBase):
    # ------------------------------------------------------------------ votes

    @property
    def vote(self) -> int:
        """The view we voted to move to (no vote when it is not above our view)."""
        return self.votes.get(self.id, 0)

    def _vote(self, new_view: int, now: float, out: list[Effect]) -> None:
        """Vote to leave our view for `new_view` (or repeat the vote we hold, if it is as high)."""
        if new_view > self.vote:
            self.votes[self.id] = new_view
        out.append(Broadcast(StartViewChange(self.vote, self.id)))
        self._count_votes(now, out)

    def _record_vote(self, sender: str, new_view: int) -> None:
        if sender in self.config.members and new_view > self.votes.get(sender, 0):
            self.votes[sender] = new_view

    def _count_votes(self, now: float, out: list[Effect]) -> None:
        f, quorum = self.config.f, self.config.quorum
        others = sorted((v for s, v in self.votes.items() if s != self.id and v > self.view), reverse=True)
        if len(others) > f and others[f] > self.vote:
            # Join: f+1 members voting beyond our view include a correct one whose timer expired.
            self.votes[self.id] = others[f]
            out.append(Broadcast(StartViewChange(self.vote, self.id)))
        ranked = sorted(self.votes.values(), reverse=True)
        if len(ranked) >= quorum and ranked[quorum - 1] > self.view:
            # The highest view 2f+1 members voted for (or beyond).
            self._start_view_change(ranked[quorum - 1], now, out)

    def _on_start_view_change(self, m: StartViewChange, now: float, out: list[Effect]) -> None:
        if m.new_view <= self.view:
            nv = self.new_view_msg
            if m.new_view == self.view and self.active and nv is not None and nv.view == self.view:
                self._send_new_view(m.sender, now, out)  # it votes for the view we run: it missed its NEW-VIEW
            return
        self._record_vote(m.sender, m.new_view)
        self._count_votes(now, out)

    def _send_new_view(self, to: str, now: float, out: list[Effect]) -> None:
        """Our installed NEW-VIEW to a member still waiting for it, at most once per peer per half
        timeout: it holds 2f+1 VIEW-CHANGEs and their certificates, often MBs."""
        nv = self.new_view_msg
        if nv is None or nv.view != self.view:
            return
        last = self.nv_sent.get(to)
        if last is not None and last[0] == nv.view and now - last[1] < self._timeout() / 2:
            return
        if len(self.nv_sent) > 4 * self.config.n:
            self.nv_sent.clear()
        self.nv_sent[to] = (nv.view, now)
        out.append(Send(to, nv))

    def _echo_vote(self, waiting: ViewChange, now: float, out: list[Effect]) -> None:
        """`waiting` sent its VIEW-CHANGE on the strength of 2f+1 votes that may not all have
        reached everyone: if ours was one, repeat it (at most once per status interval)."""
        if self.vote >= waiting.new_view > self.view and now - self.last_vote_echo >= self.config.request_timeout / 4:
            self.last_vote_echo = now
            out.append(Broadcast(StartViewChange(self.vote, self.id)))

    # ------------------------------------------------------------------ view change

    def _start_view_change(self, new_view: int, now: float, out: list[Effect]) -> None:
        if new_view <= self.view:
            return
        self._record_vote(self.id, new_view)
        self.view = new_view
        self.active = False
        self.pre_prepares.clear()  # old-view proposals; what prepared survives in self.certs
        self._drop_queue(out)
        h = self.low_watermark
        vc = ViewChange(new_view, h, self.stable_proof, tuple(self.certs[s] for s in sorted(self.certs) if s > h), self.id)
        vc = self._sign(vc)
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
            if vc.new_view == self.view and nv is not None and nv.view == self.view:
                self._send_new_view(vc.sender, now, out)  # it missed the NEW-VIEW: any holder relays it (signed)
            return
        self._echo_vote(vc, now, out)
        cur = self.view_changes.get(vc.sender)
        if cur is not None and cur.new_view >= vc.new_view:
            return
        self.view_changes[vc.sender] = vc
        self._record_vote(vc.sender, vc.new_view)  # a VIEW-CHANGE is a vote too
        self._count_votes(now, out)
        self._maybe_send_new_view(now, out)

    def _maybe_send_new_view(self, now: float, out: list[Effect]) -> None:
        if self.active or self.config.primary(self.view) != self.id:
            return
        vcs = tuple(sorted((v for v in self.view_changes.values() if v.new_view == self.view), key=lambda v: v.sender))
        if len(vcs) < self.config.quorum:
            return
        min_s, digest, proof, o = compute_new_view(self.config, self.view, vcs)
        o = tuple(self._sign(pp) for pp in o)
        nv = NewView(self.view, vcs, o, self.id)
        out.append(Broadcast(nv))
        self._install_view(nv, min_s, digest, proof, o, now, out)

    def _on_new_view(self, nv: NewView, now: float, out: list[Effect]) -> None:
        if nv.sender != self.config.primary(nv.view):
            out.append(Evidence(nv.sender, "new-view-not-from-primary"))
            return
        if nv.sender == self.id:
            # Our own NEW-VIEW relayed back: we build ours, never install one we do not remember
            # (after a restart without our log we may already have proposed in that view).
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
        # Equal but for signatures: keep the new primary's signed pre-prepares, not our copies.
        self._install_view(nv, min_s, digest, proof, nv.pre_prepares, now, out)

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
        for s in [s for s, v in self.votes.items() if v <= self.view]:
            del self.votes[s]
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
                prep = self._sign(Prepare(self.view, pp.seq, pp.digest, self.id))
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

