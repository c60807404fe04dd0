"""PBFT wire messages (Castro & Liskov, TOCS 2002) and their guarded msgpack schema.

Every message is a frozen dataclass. On the wire each is a msgpack map with a "t" type tag; nested
messages (requests in a batch, checkpoints and certificates in a VIEW-CHANGE, ...) are the same maps
without re-checking the outer size. `decode_message` validates every field's type and range and
raises only ProtocolError, so a replica's handlers can trust the shapes (not the contents) of what
they receive.

PRE-PREPARE, PREPARE, CHECKPOINT and VIEW-CHANGE carry their author's own Ed25519 signature in
`sig` (64 bytes, or b"" when unsigned), so that certificates built from them (a prepared
certificate or checkpoint proof inside a VIEW-CHANGE, the VIEW-CHANGEs and re-issued pre-prepares
inside a NEW-VIEW) are transferable: nobody can fabricate a nested message "from" another replica.
`sig` is last, defaults to b"" and takes no part in equality or hashing; on the wire it is an
optional "sig" key, present only when non-empty. This module only carries signatures: making and
checking them is protocols/pbft/signing.py's job (the driver checks before feeding a message).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field as dc_field
from typing import Any, Union

from protocols.codec import as_map, bytes_max, decode, encode, field, int_in, list_max, str_max
from protocols.errors import ProtocolError

MAX_ID = 128  # replica and client ids (libp2p peer ids are ~52 chars)
MAX_OP = 64 * 1024
MAX_RESULT = 64 * 1024
MAX_BATCH = 1024  # hard wire limit; the configured max_batch is usually much smaller
MAX_INT = 2**63 - 1
DIGEST_LEN = 32
MAX_CERTS = 4096  # prepared certificates in one VIEW-CHANGE (>= any sane window)
MAX_MEMBERS = 1024
MAX_BLOB = 256 * 1024 * 1024  # snapshot / client table in a state transfer
MAX_MESSAGE = 512 * 1024 * 1024
SIG_LEN = 64  # Ed25519


@dataclass(frozen=True)
class Request:
    client_id: str
    timestamp: int
    op: bytes


@dataclass(frozen=True)
class PrePrepare:
    view: int
    seq: int
    digest: bytes
    batch: tuple[Request, ...]
    sender: str
    sig: bytes = dc_field(default=b"", compare=False)  # the sender's signature (signing.py)


@dataclass(frozen=True)
class Prepare:
    view: int
    seq: int
    digest: bytes
    sender: str
    sig: bytes = dc_field(default=b"", compare=False)  # the sender's signature (signing.py)


@dataclass(frozen=True)
class Commit:
    view: int
    seq: int
    digest: bytes
    sender: str


@dataclass(frozen=True)
class Reply:
    view: int
    timestamp: int
    client_id: str
    sender: str
    result: bytes


@dataclass(frozen=True)
class Checkpoint:
    seq: int
    state_digest: bytes
    sender: str
    sig: bytes = dc_field(default=b"", compare=False)  # the sender's signature (signing.py)


@dataclass(frozen=True)
class PreparedCert:
    """Proof that `pre_prepare` prepared: 2f PREPAREs from distinct backups matching its (v, n, d)."""

    pre_prepare: PrePrepare
    prepares: tuple[Prepare, ...]


@dataclass(frozen=True)
class ViewChange:
    new_view: int
    stable_seq: int
    checkpoint_proof: tuple[Checkpoint, ...]  # 2f+1 CHECKPOINTs for stable_seq (empty when stable_seq == 0)
    prepared: tuple[PreparedCert, ...]  # for every seq > stable_seq that prepared at the sender
    sender: str
    sig: bytes = dc_field(default=b"", compare=False)  # the sender's signature (signing.py)


@dataclass(frozen=True)
class NewView:
    view: int
    view_changes: tuple[ViewChange, ...]  # 2f+1 VIEW-CHANGEs for `view` from distinct replicas
    pre_prepares: tuple[PrePrepare, ...]  # O: re-issued pre-prepares, min-s < n <= max-s
    sender: str


@dataclass(frozen=True)
class FetchState:
    seq: int
    sender: str


@dataclass(frozen=True)
class StateTransfer:
    seq: int
    state_digest: bytes
    snapshot: bytes
    client_table: bytes
    sender: str


@dataclass(frozen=True)
class Status:
    """Sent (broadcast) by a replica that waits without progress: where it stands, so that peers
    can retransmit what it lacks (a lossy link loses PBFT messages; the paper retransmits too)."""

    view: int
    active: bool  # False while waiting for the NEW-VIEW of `view`
    last_executed: int
    stable_seq: int
    sender: str


@dataclass(frozen=True)
class StartViewChange:
    """A vote to leave the sender's view for `new_view` (its request timer expired). Not a promise:
    the sender keeps working in its view until 2f+1 members voted for `new_view` or higher, and
    only then sends its VIEW-CHANGE (which is one). A replica that times out alone (it started
    before the others, or is cut off) therefore never leaves the view the committee is in."""

    new_view: int
    sender: str


Message = Union[
    Request, PrePrepare, Prepare, Commit, Reply, Checkpoint, ViewChange, NewView, FetchState, StateTransfer, Status,
    StartViewChange,
]


def _request_wire(r: Request) -> list[Any]:
    return [r.client_id, r.timestamp, r.op]


def batch_digest(batch: tuple[Request, ...]) -> bytes:
    """sha256 of the canonical encoding of the batch; the null request is the empty batch."""
    return hashlib.sha256(encode([_request_wire(r) for r in batch])).digest()


# ---------------------------------------------------------------- encoding

def _enc(msg: Any) -> dict[str, Any]:
    if isinstance(msg, Request):
        return {"t": "request", "client_id": msg.client_id, "timestamp": msg.timestamp, "op": msg.op}
    if isinstance(msg, PrePrepare):
        d = {
            "t": "pre_prepare",
            "view": msg.view,
            "seq": msg.seq,
            "digest": msg.digest,
            "batch": [_enc(r) for r in msg.batch],
            "sender": msg.sender,
        }
        if msg.sig:
            d["sig"] = msg.sig
        return d
    if isinstance(msg, Prepare):
        d = {"t": "prepare", "view": msg.view, "seq": msg.seq, "digest": msg.digest, "sender": msg.sender}
        if msg.sig:
            d["sig"] = msg.sig
        return d
    if isinstance(msg, Commit):
        return {"t": "commit", "view": msg.view, "seq": msg.seq, "digest": msg.digest, "sender": msg.sender}
    if isinstance(msg, Reply):
        return {
            "t": "reply",
            "view": msg.view,
            "timestamp": msg.timestamp,
            "client_id": msg.client_id,
            "sender": msg.sender,
            "result": msg.result,
        }
    if isinstance(msg, Checkpoint):
        d = {"t": "checkpoint", "seq": msg.seq, "state_digest": msg.state_digest, "sender": msg.sender}
        if msg.sig:
            d["sig"] = msg.sig
        return d
    if isinstance(msg, PreparedCert):
        return {"t": "prepared_cert", "pre_prepare": _enc(msg.pre_prepare), "prepares": [_enc(p) for p in msg.prepares]}
    if isinstance(msg, ViewChange):
        d = {
            "t": "view_change",
            "new_view": msg.new_view,
            "stable_seq": msg.stable_seq,
            "checkpoint_proof": [_enc(c) for c in msg.checkpoint_proof],
            "prepared": [_enc(c) for c in msg.prepared],
            "sender": msg.sender,
        }
        if msg.sig:
            d["sig"] = msg.sig
        return d
    if isinstance(msg, NewView):
        return {
            "t": "new_view",
            "view": msg.view,
            "view_changes": [_enc(v) for v in msg.view_changes],
            "pre_prepares": [_enc(p) for p in msg.pre_prepares],
            "sender": msg.sender,
        }
    if isinstance(msg, FetchState):
        return {"t": "fetch_state", "seq": msg.seq, "sender": msg.sender}
    if isinstance(msg, StateTransfer):
        return {
            "t": "state_transfer",
            "seq": msg.seq,
            "state_digest": msg.state_digest,
            "snapshot": msg.snapshot,
            "client_table": msg.client_table,
            "sender": msg.sender,
        }
    if isinstance(msg, Status):
        return {
            "t": "status",
            "view": msg.view,
            "active": msg.active,
            "last_executed": msg.last_executed,
            "stable_seq": msg.stable_seq,
            "sender": msg.sender,
        }
    if isinstance(msg, StartViewChange):
        return {"t": "start_view_change", "new_view": msg.new_view, "sender": msg.sender}
    raise TypeError(f"not a PBFT message: {type(msg).__name__}")


def message_to_obj(msg: Message) -> dict[str, Any]:
    """The msgpack-ready map of a message (for embedding several in one encoding). For the signed
    types the "sig" key, when present, is always the last one, so removing it gives the map of the
    unsigned message (what signing.py signs)."""
    return _enc(msg)


def encode_message(msg: Message) -> bytes:
    return encode(_enc(msg))


# ---------------------------------------------------------------- decoding

def _sender(m: dict[Any, Any], name: str = "sender") -> str:
    return str_max(m, name, MAX_ID, min_len=1)


def _digest(m: dict[Any, Any], name: str) -> bytes:
    return bytes_max(m, name, DIGEST_LEN, min_len=DIGEST_LEN)


def _tagged(obj: Any, tag: str, fields: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict[Any, Any]:
    # The tag first, so that a message of the wrong kind is reported as such, not as missing fields.
    if type(obj) is dict and obj.get("t") != tag:
        raise ProtocolError("bad-type", f"expected {tag}, got {obj.get('t')!r}")
    return as_map(obj, required=("t",) + fields, optional=optional)


_SIG = ("sig",)


def _sig(m: dict[Any, Any]) -> bytes:
    """The optional signature: absent (unsigned) or exactly SIG_LEN bytes."""
    return bytes_max(m, "sig", SIG_LEN, min_len=SIG_LEN, optional=True, default=b"")


def _dec_request(obj: Any) -> Request:
    m = _tagged(obj, "request", ("client_id", "timestamp", "op"))
    return Request(_sender(m, "client_id"), int_in(m, "timestamp", 0, MAX_INT), bytes_max(m, "op", MAX_OP))


def _dec_pre_prepare(obj: Any) -> PrePrepare:
    m = _tagged(obj, "pre_prepare", ("view", "seq", "digest", "batch", "sender"), _SIG)
    return PrePrepare(
        int_in(m, "view", 0, MAX_INT),
        int_in(m, "seq", 0, MAX_INT),
        _digest(m, "digest"),
        tuple(_dec_request(r) for r in list_max(m, "batch", MAX_BATCH)),
        _sender(m),
        _sig(m),
    )


def _dec_phase(obj: Any, tag: str) -> Any:
    if tag == "prepare":
        m = _tagged(obj, tag, ("view", "seq", "digest", "sender"), _SIG)
        return Prepare(
            int_in(m, "view", 0, MAX_INT), int_in(m, "seq", 0, MAX_INT), _digest(m, "digest"), _sender(m), _sig(m)
        )
    m = _tagged(obj, tag, ("view", "seq", "digest", "sender"))
    return Commit(int_in(m, "view", 0, MAX_INT), int_in(m, "seq", 0, MAX_INT), _digest(m, "digest"), _sender(m))


def _dec_reply(obj: Any) -> Reply:
    m = _tagged(obj, "reply", ("view", "timestamp", "client_id", "sender", "result"))
    return Reply(
        int_in(m, "view", 0, MAX_INT),
        int_in(m, "timestamp", 0, MAX_INT),
        _sender(m, "client_id"),
        _sender(m),
        bytes_max(m, "result", MAX_RESULT),
    )


def _dec_checkpoint(obj: Any) -> Checkpoint:
    m = _tagged(obj, "checkpoint", ("seq", "state_digest", "sender"), _SIG)
    return Checkpoint(int_in(m, "seq", 0, MAX_INT), _digest(m, "state_digest"), _sender(m), _sig(m))


def _dec_cert(obj: Any) -> PreparedCert:
    m = _tagged(obj, "prepared_cert", ("pre_prepare", "prepares"))
    return PreparedCert(
        _dec_pre_prepare(m["pre_prepare"]),
        tuple(_dec_phase(p, "prepare") for p in list_max(m, "prepares", MAX_MEMBERS)),
    )


def _dec_view_change(obj: Any) -> ViewChange:
    m = _tagged(obj, "view_change", ("new_view", "stable_seq", "checkpoint_proof", "prepared", "sender"), _SIG)
    return ViewChange(
        int_in(m, "new_view", 0, MAX_INT),
        int_in(m, "stable_seq", 0, MAX_INT),
        tuple(_dec_checkpoint(c) for c in list_max(m, "checkpoint_proof", MAX_MEMBERS)),
        tuple(_dec_cert(c) for c in list_max(m, "prepared", MAX_CERTS)),
        _sender(m),
        _sig(m),
    )


def _dec_new_view(obj: Any) -> NewView:
    m = _tagged(obj, "new_view", ("view", "view_changes", "pre_prepares", "sender"))
    return NewView(
        int_in(m, "view", 0, MAX_INT),
        tuple(_dec_view_change(v) for v in list_max(m, "view_changes", MAX_MEMBERS)),
        tuple(_dec_pre_prepare(p) for p in list_max(m, "pre_prepares", MAX_CERTS)),
        _sender(m),
    )


def _dec_fetch_state(obj: Any) -> FetchState:
    m = _tagged(obj, "fetch_state", ("seq", "sender"))
    return FetchState(int_in(m, "seq", 0, MAX_INT), _sender(m))


def _dec_state_transfer(obj: Any) -> StateTransfer:
    m = _tagged(obj, "state_transfer", ("seq", "state_digest", "snapshot", "client_table", "sender"))
    return StateTransfer(
        int_in(m, "seq", 0, MAX_INT),
        _digest(m, "state_digest"),
        bytes_max(m, "snapshot", MAX_BLOB),
        bytes_max(m, "client_table", MAX_BLOB),
        _sender(m),
    )


def _dec_status(obj: Any) -> Status:
    m = _tagged(obj, "status", ("view", "active", "last_executed", "stable_seq", "sender"))
    return Status(
        int_in(m, "view", 0, MAX_INT),
        field(m, "active", bool),
        int_in(m, "last_executed", 0, MAX_INT),
        int_in(m, "stable_seq", 0, MAX_INT),
        _sender(m),
    )


def _dec_start_view_change(obj: Any) -> StartViewChange:
    m = _tagged(obj, "start_view_change", ("new_view", "sender"))
    return StartViewChange(int_in(m, "new_view", 1, MAX_INT), _sender(m))


_DECODERS: dict[str, Callable[[Any], Message]] = {
    "status": _dec_status,
    "start_view_change": _dec_start_view_change,
    "request": _dec_request,
    "pre_prepare": _dec_pre_prepare,
    "prepare": lambda o: _dec_phase(o, "prepare"),
    "commit": lambda o: _dec_phase(o, "commit"),
    "reply": _dec_reply,
    "checkpoint": _dec_checkpoint,
    "view_change": _dec_view_change,
    "new_view": _dec_new_view,
    "fetch_state": _dec_fetch_state,
    "state_transfer": _dec_state_transfer,
}


def message_from_obj(obj: Any) -> Message:
    """Validate an already-decoded msgpack value as a top-level PBFT message."""
    if type(obj) is not dict:
        raise ProtocolError("malformed", f"expected a map, got {type(obj).__name__}")
    tag = obj.get("t")
    decoder = _DECODERS.get(tag) if type(tag) is str else None
    if decoder is None:
        raise ProtocolError("bad-type", f"unknown message type {tag!r}")
    return decoder(obj)


def decode_message(data: bytes, *, max_size: int = MAX_MESSAGE) -> Message:
    """Decode and validate untrusted bytes; raises only ProtocolError."""
    # Depth: new_view > view_changes > view_change > prepared > cert > pre_prepare > batch > request = 8.
    obj = decode(data, max_size=max_size, max_depth=10, max_items=4_000_000)
    return message_from_obj(obj)
