"""Pure checks and computations of the view-change protocol, shared by the new primary (which
builds NEW-VIEW) and the backups (which recompute it to verify it): nothing here trusts the sender."""

from __future__ import annotations

import hashlib

from protocols.codec import decode, encode
from protocols.errors import ProtocolError
from protocols.pbft.config import PbftConfig
from protocols.pbft.messages import Checkpoint, PrePrepare, PreparedCert, ViewChange, batch_digest

NULL_DIGEST = batch_digest(())


def state_digest(snapshot: bytes, client_table: bytes) -> bytes:
    """The digest a CHECKPOINT certifies. Computed from the snapshot bytes (not Application.digest())
    so that a replica can check a transferred snapshot before restoring it; this is why snapshots
    must be canonical (equal state, equal bytes)."""
    h = hashlib.sha256(b"sovereign-pbft-state\0")
    h.update(hashlib.sha256(snapshot).digest())
    h.update(hashlib.sha256(client_table).digest())
    return h.digest()


def checkpoint_proof_error(config: PbftConfig, seq: int, proof: tuple[Checkpoint, ...]) -> str | None:
    """None when `proof` certifies checkpoint `seq`: 2f+1 CHECKPOINTs from distinct members with one digest."""
    if seq == config.base_seq:
        return None if not proof else "proof-for-genesis"
    if seq < config.base_seq:
        return "checkpoint-before-configuration"
    if seq % config.checkpoint_interval:
        return "checkpoint-not-on-interval"
    members = set(config.members)
    senders = {c.sender for c in proof}
    if len(senders) != len(proof) or not senders <= members:
        return "checkpoint-proof-senders"
    if len(senders) < config.quorum:
        return "checkpoint-proof-too-small"
    if any(c.seq != seq or c.state_digest != proof[0].state_digest for c in proof):
        return "checkpoint-proof-mismatch"
    return None


def pre_prepare_error(config: PbftConfig, pp: PrePrepare) -> str | None:
    """Checks a pre-prepare can make on its own (the sender/primary relation included)."""
    if pp.sender != config.primary(pp.view):
        return "pre-prepare-not-from-primary"
    if pp.seq < 1:
        return "seq-out-of-range"
    if len(pp.batch) > config.max_batch:
        return "batch-too-large"
    if batch_digest(pp.batch) != pp.digest:
        return "bad-digest"
    return None


def prepared_cert_error(config: PbftConfig, cert: PreparedCert) -> str | None:
    """A cert proves preparation: a valid pre-prepare plus quorum - 1 (2f when n = 3f+1) PREPAREs from
    distinct backups that match it."""
    pp = cert.pre_prepare
    err = pre_prepare_error(config, pp)
    if err:
        return err
    members = set(config.members)
    primary = config.primary(pp.view)
    senders = {p.sender for p in cert.prepares}
    if len(senders) != len(cert.prepares) or not senders <= members or primary in senders:
        return "cert-senders"
    if len(senders) < config.quorum - 1:  # with the pre-prepare, a quorum
        return "cert-too-small"
    if any(p.view != pp.view or p.seq != pp.seq or p.digest != pp.digest for p in cert.prepares):
        return "cert-mismatch"
    return None


def view_change_error(config: PbftConfig, vc: ViewChange) -> str | None:
    if vc.sender not in config.members:
        return "not-a-member"
    if vc.new_view < 1:
        return "view-out-of-range"
    err = checkpoint_proof_error(config, vc.stable_seq, vc.checkpoint_proof)
    if err:
        return err
    seqs = set()
    for cert in vc.prepared:
        err = prepared_cert_error(config, cert)
        if err:
            return err
        pp = cert.pre_prepare
        if pp.view >= vc.new_view:
            return "cert-from-future-view"
        if not vc.stable_seq < pp.seq <= vc.stable_seq + config.window:
            return "cert-outside-watermarks"
        if pp.seq in seqs:
            return "cert-duplicate-seq"
        seqs.add(pp.seq)
    return None


def compute_new_view(
    config: PbftConfig, view: int, vcs: tuple[ViewChange, ...]
) -> tuple[int, bytes, tuple[Checkpoint, ...], tuple[PrePrepare, ...]]:
    """From valid VIEW-CHANGEs for `view`: (min-s, its checkpoint digest, its proof, O).

    min-s is the latest stable checkpoint among them; O re-issues, in `view`, a pre-prepare for every
    n in (min-s, max-s]: the batch of the highest-view prepared certificate for n, or the null batch
    when no certificate exists (a gap nobody can have committed). The pre-prepares of O come back
    unsigned: the new primary signs them (a backup compares them with the received ones, equality
    ignoring signatures, and keeps the received signed ones)."""
    best = max(vcs, key=lambda v: (v.stable_seq, v.sender))
    min_s = best.stable_seq
    digest = best.checkpoint_proof[0].state_digest if best.checkpoint_proof else b""
    chosen: dict[int, PrePrepare] = {}
    for vc in vcs:
        for cert in vc.prepared:
            pp = cert.pre_prepare
            if pp.seq <= min_s:
                continue
            cur = chosen.get(pp.seq)
            # Highest view wins; equal views with different digests cannot both be certified with
            # <= f faults, the digest tie-break only keeps this deterministic if they were.
            if cur is None or (pp.view, pp.digest) > (cur.view, cur.digest):
                chosen[pp.seq] = pp
    max_s = max(chosen, default=min_s)
    primary = config.primary(view)
    out = []
    for n in range(min_s + 1, max_s + 1):
        got = chosen.get(n)
        if got is None:
            out.append(PrePrepare(view, n, NULL_DIGEST, (), primary))
        else:
            out.append(PrePrepare(view, n, got.digest, got.batch, primary))
    return min_s, digest, best.checkpoint_proof, tuple(out)


def encode_client_table(table: dict[str, tuple[int, bytes]]) -> bytes:
    """Canonical bytes of the client table {client: (last timestamp, its result)}. Part of the
    certified state, so it holds no view: replicas may execute one batch in different views."""
    return encode([[c, ts, res] for c, (ts, res) in sorted(table.items())])


def decode_client_table(data: bytes) -> dict[str, tuple[int, bytes]]:
    """The client table from certified bytes; shapes are still checked, a bad entry is skipped."""
    try:
        rows = decode(data, max_size=1 << 30, max_depth=3, max_items=1 << 24)
    except ProtocolError:
        return {}
    table: dict[str, tuple[int, bytes]] = {}
    if type(rows) is not list:
        return table
    for row in rows:
        if type(row) is list and len(row) == 3 and type(row[0]) is str and type(row[1]) is int and type(row[2]) is bytes:
            table[row[0]] = (row[1], row[2])
    return table
