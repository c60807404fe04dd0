"""Checkpoints, their stability and garbage collection, and state transfer (paper sections 4.3, 5.3.2)."""

from __future__ import annotations

from protocols.pbft.effects import (
    Broadcast,
    CancelTimer,
    Effect,
    Evidence,
    Send,
    SetTimer,
    StableCheckpoint,
    StateRestored,
)
from protocols.pbft.messages import Checkpoint, FetchState, StateTransfer
from protocols.pbft.view_checks import decode_client_table, encode_client_table, state_digest
from protocols.pbft.base import T_FETCH, ReplicaBase


class CheckpointMixin(ReplicaBase):
    # ------------------------------------------------------------------ checkpoints

    def _take_checkpoint(self, seq: int, now: float, out: list[Effect]) -> None:
        snap = self.app.snapshot()
        table = encode_client_table(self.clients)
        digest = state_digest(snap, table)
        self.own_checkpoints[seq] = (digest, snap, table)
        self._check_reconfiguring(seq)
        cp = self._sign(Checkpoint(seq, digest, self.id))
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
        for store in (
            self.pre_prepares, self.early, self.prepares, self.commits, self.certs, self.committed, self.own_checkpoints,
            self.old_pre_prepares, self.old_commits,
        ):
            for s in [s for s in store if s <= seq]:
                del store[s]
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

    def _on_fetch_state(self, fs: FetchState, now: float, out: list[Effect]) -> None:
        own = self.own_checkpoints.get(fs.seq)
        if own is not None:
            # Not stable here yet, but certified at the fetcher (it would not ask otherwise); it may
            # be exactly our vote that is missing for stability, so wait-for-stable could deadlock.
            seq, (digest, snap, table) = fs.seq, own
        else:
            seq, digest = self.stable_checkpoint
            snap, table = self.stable_snapshot, self.stable_table
            if seq < fs.seq or seq == 0:
                return  # we do not have it (yet); the fetcher rotates to another certifier
        last = self.fetch_served.get(fs.sender)
        if last is not None and last[1] == seq and now - last[0] < self.config.request_timeout / 2:
            return  # a snapshot is large: the same one at most twice per timeout to one peer
        self.fetch_served[fs.sender] = (now, seq)
        out.append(Send(fs.sender, StateTransfer(seq, digest, snap, table, self.id)))

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
        self.halt_at = None
        self._check_reconfiguring(st.seq)
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
        # Vouch for the state we now hold (it matched a 2f+1 certificate): peers that computed it
        # themselves may still lack a third vote to make it stable, e.g. when its other voter crashed.
        out.append(Broadcast(self._sign(Checkpoint(st.seq, st.state_digest, self.id))))
        self._make_stable(st.seq, st.state_digest, proof, st.snapshot, st.client_table, now, out)
        for client in [c for c, r in self.pending.items() if c in clients and r.timestamp <= clients[c][0]]:
            del self.pending[client]
        self._execute(now, out)
        for seq in sorted(self.pre_prepares):
            self._progress(seq, now, out)
        self._arm_request_timer(now, out, restart=True)

