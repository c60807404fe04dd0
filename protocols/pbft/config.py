"""Static configuration of one PBFT committee."""

from __future__ import annotations

from dataclasses import dataclass, field

from protocols.committee import Committee
from protocols.pbft.messages import MAX_BATCH, MAX_CERTS, MAX_MEMBERS


@dataclass(frozen=True)
class PbftConfig:
    members: tuple[str, ...]  # replica ids (peer ids in the daemon; any strings in tests), n = 3f+1
    checkpoint_interval: int = 128  # K
    max_batch: int = 64
    batch_delay: float = 0.005  # seconds after the first queued request
    window: int = 256  # in-flight sequence numbers: H = h + window (the paper's 2K)
    request_timeout: float = 1.0  # view-change timer, doubled per failed view change
    # Batches the primary keeps ordered but not yet executed. Beyond it, requests wait and join
    # the next batch: under a steady trickle of requests every batch would otherwise hold one
    # request and cost a whole protocol round, and the replicas would spend themselves on rounds.
    max_in_flight: int = 4
    # The sequence number this configuration starts from (0 at genesis; after a committee change,
    # the checkpoint where the previous committee halted). Its checkpoint needs no proof here:
    # the previous committee made it stable.
    base_seq: int = 0
    committee: Committee = field(init=False, repr=False, compare=False)  # n, f, quorum: see protocols/committee.py

    def __post_init__(self) -> None:
        # A misconfigured committee is a programming error, not peer input: fail loudly at startup.
        if len(self.members) < 1 or len(set(self.members)) != len(self.members):
            raise ValueError("members must be non-empty and distinct")
        object.__setattr__(self, "committee", Committee(tuple(self.members)))
        if self.max_in_flight < 1:
            raise ValueError("max_in_flight must be >= 1")
        if self.checkpoint_interval < 1 or self.max_batch < 1 or self.window < self.checkpoint_interval:
            raise ValueError("need checkpoint_interval >= 1, max_batch >= 1, window >= checkpoint_interval")
        if self.base_seq < 0 or self.base_seq % self.checkpoint_interval:
            raise ValueError("base_seq must be a checkpoint (a non-negative multiple of checkpoint_interval)")
        if self.batch_delay < 0 or self.request_timeout <= 0:
            raise ValueError("bad timing configuration")
        # What the wire schema accepts bounds what a committee may be configured to send.
        if self.max_batch > MAX_BATCH or self.window > MAX_CERTS or self.n > MAX_MEMBERS:
            raise ValueError(f"max_batch <= {MAX_BATCH}, window <= {MAX_CERTS}, members <= {MAX_MEMBERS}")

    @property
    def n(self) -> int:
        return len(self.members)

    @property
    def f(self) -> int:
        return self.committee.f

    @property
    def quorum(self) -> int:
        """Any two quorums intersect in at least one correct replica (2f+1 when n = 3f+1)."""
        return self.committee.quorum

    def primary(self, view: int) -> str:
        return self.committee.primary(view)
