"""Static configuration of one PBFT committee."""

from __future__ import annotations

from dataclasses import dataclass

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

    def __post_init__(self) -> None:
        # A misconfigured committee is a programming error, not peer input: fail loudly at startup.
        if len(self.members) < 1 or len(set(self.members)) != len(self.members):
            raise ValueError("members must be non-empty and distinct")
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
        # The largest f with n >= 3f+1; extra members beyond 3f+1 only add redundancy.
        return (self.n - 1) // 3

    @property
    def quorum(self) -> int:
        """2f+1: any two quorums intersect in at least one correct replica."""
        return 2 * self.f + 1

    def primary(self, view: int) -> str:
        return self.members[view % self.n]
