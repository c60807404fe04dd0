"""What a replica persists (Replica.persistent_state) and how it comes back (Replica.recover).

The current application snapshot is included so that recovery needs no re-execution (a daemon that
persists executed batches could instead replay them from the stable checkpoint). Everything else is
the paper's list: view, the log above the stable checkpoint, certificates, the stable checkpoint
with its proof and snapshot, and the client table. Messages are stored with their signatures (the
optional "sig" key of the wire encoding), so certificates built after a recovery still verify."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from protocols.codec import decode, encode
from protocols.pbft.messages import PreparedCert, encode_message, message_from_obj
from protocols.pbft.viewchange import decode_client_table, encode_client_table

if TYPE_CHECKING:
    from protocols.pbft.replica import Replica

FORMAT = 1


def _msgs(xs: Iterable[Any]) -> list[bytes]:
    return [encode_message(x) for x in xs]


def dump(r: Replica) -> bytes:
    return encode(
        {
            "v": FORMAT,
            "view": r.view,
            "active": r.active,
            "last_executed": r.last_executed,
            "clients": encode_client_table(r.clients),
            "app": r.app.snapshot(),
            "stable_seq": r.stable_checkpoint[0],
            "stable_digest": r.stable_checkpoint[1],
            "stable_proof": _msgs(r.stable_proof),
            "stable_snapshot": r.stable_snapshot,
            "stable_table": r.stable_table,
            "pre_prepares": _msgs(r.pre_prepares.values()),
            "prepares": _msgs(p for d in r.prepares.values() for p in d.values()),
            "commits": _msgs(c for d in r.commits.values() for c in d.values()),
            "certs": [[encode_message(c.pre_prepare), _msgs(c.prepares)] for c in r.certs.values()],
            "committed": _msgs(r.committed.values()),
            "checkpoints": _msgs(c for d in r.checkpoints.values() for c in d.values()),
            "own_checkpoints": [[s, d, sn, t] for s, (d, sn, t) in r.own_checkpoints.items()],
            "view_changes": _msgs(r.view_changes.values()),
            "votes": [[m, v] for m, v in sorted(r.votes.items())],
            "new_view": encode_message(r.new_view_msg) if r.new_view_msg else None,
            "vc_attempts": r.vc_attempts,
            "pending": _msgs(r.pending.values()),
            "queue": _msgs(r.queue),
            "seq_next": r.seq_next,
            "halt_at": r.halt_at,
        }
    )


def _dec(b: bytes) -> Any:
    # Our own bytes, so generous limits; the schema is still checked by message_from_obj.
    return message_from_obj(decode(b, max_size=1 << 31, max_depth=12, max_items=1 << 26))


def load(r: Replica, state: bytes) -> Replica:
    """Fill the fresh replica `r` from `state`; its application is restored in place."""
    d = decode(state, max_size=1 << 31, max_depth=16, max_items=1 << 26)
    if d.get("v") != FORMAT:
        raise ValueError(f"unknown persistent state format {d.get('v')!r}")
    r.app.restore(d["app"])
    r.view = d["view"]
    r.active = d["active"]
    r.last_executed = d["last_executed"]
    r.clients = decode_client_table(d["clients"])
    r.stable_checkpoint = (d["stable_seq"], d["stable_digest"])
    r.stable_proof = tuple(_dec(b) for b in d["stable_proof"])
    r.stable_snapshot = d["stable_snapshot"]
    r.stable_table = d["stable_table"]
    for b in d["pre_prepares"]:
        pp = _dec(b)
        r.pre_prepares[pp.seq] = pp
    for b in d["prepares"]:
        p = _dec(b)
        r.prepares.setdefault(p.seq, {})[p.sender] = p
    for b in d["commits"]:
        c = _dec(b)
        r.commits.setdefault(c.seq, {})[c.sender] = c
    for ppb, pbs in d["certs"]:
        pp = _dec(ppb)
        r.certs[pp.seq] = PreparedCert(pp, tuple(_dec(b) for b in pbs))
    for b in d["committed"]:
        pp = _dec(b)
        r.committed[pp.seq] = pp
    for b in d["checkpoints"]:
        cp = _dec(b)
        r.checkpoints.setdefault(cp.seq, {})[cp.sender] = cp
    for s, dg, sn, t in d["own_checkpoints"]:
        r.own_checkpoints[s] = (dg, sn, t)
    for b in d["view_changes"]:
        vc = _dec(b)
        r.view_changes[vc.sender] = vc
    r.votes = {m: v for m, v in d.get("votes", [])}
    r.new_view_msg = _dec(d["new_view"]) if d["new_view"] is not None else None
    r.vc_attempts = d["vc_attempts"]
    pending: list[Any] = [_dec(b) for b in d["pending"]]
    r.pending = {q.client_id: q for q in pending}
    r.queue = [_dec(b) for b in d["queue"]]
    r.seq_next = d["seq_next"]
    r.halt_at = d.get("halt_at")
    r.max_seen = max([r.last_executed, *r.pre_prepares, *r.prepares, *r.commits, *r.committed])
    r.resume()  # timers died with the old process: re-armed on the first input
    if r.active and r.is_primary():
        r.ordered = {(q.client_id, q.timestamp) for q in r.queue} | {
            (q.client_id, q.timestamp) for pp in r.pre_prepares.values() if pp.seq > r.last_executed for q in pp.batch
        }
    return r
