"""Domain checks shared by the namespaces: the params dataclasses check types, these check meaning
(is this a peer id? a dialable peer address?) and answer INVALID_PARAMS naming the field."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from keys.peerid import PeerIdError, public_key_from_peer_id
from node.federation.ledger_client import LanesBusy, SubmitTimeout
from node.network import DialError, parse_peer_addr
from node.rpc import CALL_FAILED, INVALID_PARAMS, RpcError

MAX_TIMEOUT_S = 3600  # of a call that waits for a commit (the CLI's socket waits a margin longer)


def peer_id(value: str, field: str) -> str:
    try:
        public_key_from_peer_id(value)
    except PeerIdError as exc:
        raise RpcError(INVALID_PARAMS, f"not a peer id: {exc}", {"field": field}) from None
    return value


def peer_addr(addr: str, own_peer_id: str) -> str:
    """The peer id of an address worth dialing or persisting: a transport, a non-zero port, a
    peer id, and not this node (dialing ourselves fails; persisting it would retry forever)."""
    try:
        pid = parse_peer_addr(addr)[0]
    except DialError as exc:
        raise RpcError(INVALID_PARAMS, str(exc), {"field": "addr"}) from None
    if pid == own_peer_id:
        raise RpcError(INVALID_PARAMS, f"{addr!r} is this node's own address", {"field": "addr"})
    return pid


def timeout(value: float) -> float:
    if not 0 < value <= MAX_TIMEOUT_S:
        raise RpcError(INVALID_PARAMS, "timeout must be in (0, 3600] seconds", {"field": "timeout"})
    return value


@contextmanager
def submitting() -> Iterator[None]:
    """Around a submission to the federation: no commit in time, or no lane free, is CALL_FAILED
    saying which (a timed-out transaction may still commit: its id lets the caller look)."""
    try:
        yield
    except SubmitTimeout as exc:
        raise RpcError(CALL_FAILED, str(exc), {"tx_id": exc.tx_id}) from None
    except LanesBusy as exc:
        raise RpcError(CALL_FAILED, str(exc), {"submitted": False}) from None
