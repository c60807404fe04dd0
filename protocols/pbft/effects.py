"""What a replica asks its driver to do. Pure values; the driver (daemon or simulator) performs them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from protocols.effects import CancelTimer as CancelTimer, SetTimer as SetTimer  # shared by every machine
from protocols.pbft.messages import Message, Reply, Request


@dataclass(frozen=True)
class Send:
    """Send `message` to one replica."""

    to: str
    message: Message


@dataclass(frozen=True)
class Broadcast:
    """Send `message` to every other replica (never to the sender itself)."""

    message: Message


@dataclass(frozen=True)
class SendReply:
    """Send a reply to a client."""

    client_id: str
    reply: Reply


@dataclass(frozen=True)
class Executed:
    """A batch was executed at `seq`; emitted in strict sequence order (null batches included),
    except that a state transfer (StateRestored) jumps over the sequence numbers it installs.
    `results[i]` belongs to `batch[i]`; a request ordered twice (a client retransmission re-proposed
    after a view change) is not applied again: its result is the cached one (or b"" if older).
    `view` is the view in which this replica executed it, which may differ between replicas."""

    seq: int
    view: int
    batch: tuple[Request, ...]
    results: tuple[bytes, ...]


@dataclass(frozen=True)
class StableCheckpoint:
    seq: int
    state_digest: bytes


@dataclass(frozen=True)
class ViewInstalled:
    view: int
    primary: str


@dataclass(frozen=True)
class Evidence:
    """Something invalid arrived from `sender` and was dropped; `reason` is short and machine-readable."""

    sender: str
    reason: str


@dataclass(frozen=True)
class StateRestored:
    """State transfer installed the checkpoint at `seq` (the driver may want to know Executed skipped)."""

    seq: int
    state_digest: bytes


Effect = Union[Send, Broadcast, SendReply, SetTimer, CancelTimer, Executed, StableCheckpoint, ViewInstalled, Evidence, StateRestored]
