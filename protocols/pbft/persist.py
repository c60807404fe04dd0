"""What a replica persists (Replica.persistent_state) and how it comes back (Replica.recover).

Every attribute of a replica is declared here, once: PERSISTENT (with how it is encoded and
decoded) or VOLATILE (with why losing it at a crash is safe). A test fails when a replica grows an
attribute that is in neither, so nothing is dropped silently.

The current application snapshot is included so that recovery needs no re-execution. Everything
persistent is the paper's list: view, the log above the stable checkpoint, certificates, the stable
checkpoint with its proof and snapshot, the client table, and (ours) the view-change votes.
Messages are stored with their signatures (the optional "sig" key of the wire encoding), so
certificates built after a recovery still verify."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from protocols.codec import decode, encode
from protocols.pbft.messages import PreparedCert, encode_message, message_from_obj
from protocols.pbft.view_checks import decode_client_table, encode_client_table

if TYPE_CHECKING:
    from protocols.pbft.replica import Replica

FORMAT = 2  # 1 kept the stable checkpoint as stable_seq / stable_digest; still read


def _msgs(xs: Iterable[Any]) -> list[bytes]:
    return [encode_message(x) for x in xs]


def _dec(b: bytes) -> Any:
    # Our own bytes, so generous limits; the schema is still checked by message_from_obj.
    return message_from_obj(decode(b, max_size=1 << 31, max_depth=12, max_items=1 << 26))


def _by(key: Callable[[Any], Any]) -> Callable[[list[bytes]], dict[Any, Any]]:
    return lambda items: {key(m): m for m in map(_dec, items)}


def _nested(items: list[bytes]) -> dict[int, dict[str, Any]]:
    """Votes and checkpoints: {seq: {sender: message}}."""
    out: dict[int, dict[str, Any]] = {}
    for m in map(_dec, items):
        out.setdefault(m.seq, {})[m.sender] = m
    return out


def _flat(d: dict[int, dict[str, Any]]) -> list[bytes]:
    return _msgs(m for slot in d.values() for m in slot.values())


def _same(x: Any) -> Any:
    return x


# attribute -> (encode, decode); decode gets what encode made (after a msgpack round trip).
PERSISTENT: dict[str, tuple[Callable[[Any], Any], Callable[[Any], Any]]] = {
    "view": (_same, _same),
    "active": (_same, _same),
    "last_executed": (_same, _same),
    "clients": (encode_client_table, decode_client_table),
    "stable_checkpoint": (list, tuple),
    "stable_proof": (_msgs, lambda bs: tuple(map(_dec, bs))),
    "stable_snapshot": (_same, _same),
    "stable_table": (_same, _same),
    "pre_prepares": (lambda d: _msgs(d.values()), _by(lambda m: m.seq)),
    "prepares": (_flat, _nested),
    "commits": (_flat, _nested),
    "certs": (
        lambda d: [[encode_message(c.pre_prepare), _msgs(c.prepares)] for c in d.values()],
        lambda rows: {(pp := _dec(p)).seq: PreparedCert(pp, tuple(map(_dec, ps))) for p, ps in rows},
    ),
    "committed": (lambda d: _msgs(d.values()), _by(lambda m: m.seq)),
    "checkpoints": (_flat, _nested),
    "own_checkpoints": (
        lambda d: [[s, dg, sn, t] for s, (dg, sn, t) in d.items()],
        lambda rows: {s: (dg, sn, t) for s, dg, sn, t in rows},
    ),
    "view_changes": (lambda d: _msgs(d.values()), _by(lambda m: m.sender)),
    "votes": (lambda d: [[m, v] for m, v in sorted(d.items())], lambda rows: {m: v for m, v in rows}),
    "new_view_msg": (lambda m: None if m is None else encode_message(m), lambda b: None if b is None else _dec(b)),
    "vc_attempts": (_same, _same),
    "pending": (lambda d: _msgs(d.values()), _by(lambda q: q.client_id)),
    "queue": (_msgs, lambda bs: list(map(_dec, bs))),
    "seq_next": (_same, _same),
    "halt_at": (_same, _same),
}

# attribute -> why a restart may lose it.
VOLATILE: dict[str, str] = {
    "id": "given at construction",
    "signer": "given at construction",
    "config": "given at construction",
    "app": "given at construction; its state is the 'app' snapshot of the dump",
    "early": "pre-prepares for a view not installed yet: the new primary retransmits them",
    "last_commit_quorum": "a time: only shortens a timeout while we catch up",
    "old_pre_prepares": "older views' messages kept to catch up: retransmitted on our STATUS",
    "old_commits": "older views' messages kept to catch up: retransmitted on our STATUS",
    "last_vote_echo": "a time: rate limit of vote echoes",
    "last_vc_resend": "a time: rate limit of VIEW-CHANGE resends",
    "nv_sent": "a rate limit of NEW-VIEW resends",
    "timer_armed": "timers die with the process; resume() re-arms them",
    "batch_timer_armed": "timers die with the process; resume() re-arms them",
    "status_armed": "timers die with the process; resume() re-arms them",
    "timed": "which request the view-change timer times: re-chosen when it is re-armed",
    "throttled": "derived from the queue and the pipeline on the next batch cut",
    "ordered": "derived at load from the queue and the pre-prepares (primary)",
    "max_seen": "derived at load from the log",
    "fetch_target": "a state transfer in progress: restarted from peers' checkpoints on our STATUS",
    "fetch_attempts": "a state transfer in progress: restarted from peers' checkpoints on our STATUS",
    "fetch_served": "a rate limit of state transfers we serve",
    "status_mark": "progress seen at the last status tick: the first tick after a restart sets it",
    "status_replied": "a rate limit of STATUS answers",
    "restarted": "set by resume() itself",
}


def dump(r: Replica) -> bytes:
    state = {name: enc(getattr(r, name)) for name, (enc, _dec_) in PERSISTENT.items()}
    return encode({"v": FORMAT, "app": r.app.snapshot(), **state})


def upgrade(d: Any) -> dict[str, Any]:
    """A decoded dump in the current format (ValueError for one we cannot read)."""
    if not isinstance(d, dict) or d.get("v") not in (1, FORMAT):
        raise ValueError(f"unknown persistent state format {d.get('v') if isinstance(d, dict) else d!r}")
    state: dict[str, Any] = d
    if state["v"] == 1:
        state = {**state, "v": FORMAT, "stable_checkpoint": [state.pop("stable_seq"), state.pop("stable_digest")]}
    return state


def load(r: Replica, state: bytes) -> Replica:
    """Fill the fresh replica `r` from `state`; its application is restored in place."""
    d = upgrade(decode(state, max_size=1 << 31, max_depth=16, max_items=1 << 26))
    r.app.restore(d["app"])
    for name, (_enc, dec) in PERSISTENT.items():
        if name in d:  # a dump from before the field existed keeps the fresh replica's default
            setattr(r, name, dec(d[name]))
    r.max_seen = max([r.last_executed, *r.pre_prepares, *r.prepares, *r.commits, *r.committed])
    r.resume()  # timers died with the old process: re-armed on the first input
    if r.active and r.is_primary():
        r.ordered = {(q.client_id, q.timestamp) for q in r.queue} | {
            (q.client_id, q.timestamp) for pp in r.pre_prepares.values() if pp.seq > r.last_executed for q in pp.batch
        }
    return r
