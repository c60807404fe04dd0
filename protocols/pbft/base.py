"""The state every part of a replica shares (the log, watermarks, timers) and small helpers.

The replica is split by protocol phase: `checkpointing.CheckpointMixin` (checkpoints, garbage
collection, state transfer), `views.ViewChangeMixin` (view change), and `replica.Replica` (inputs,
normal case, retransmission, persistence), all over this base.

Signatures (protocols/pbft/signing.py): given a `signer`, the replica signs every PRE-PREPARE,
PREPARE, CHECKPOINT and VIEW-CHANGE it creates before storing or sending it (`_sign`), so that its
messages carry their signature into the certificates others build from them. It never verifies
signatures itself: the driver runs signing.check_signatures on each message before on_message.
Received messages are stored as received (never rebuilt), so their signatures survive too."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from protocols.pbft.app import Application
from protocols.pbft.config import PbftConfig
from protocols.pbft.effects import CancelTimer, Effect, SetTimer
from protocols.pbft.messages import Checkpoint, Commit, NewView, PrePrepare, Prepare, PreparedCert, Request, ViewChange
from protocols.pbft.signing import Signer, sign_message
from protocols.pbft.view_checks import encode_client_table, state_digest

T_BATCH = "batch"
T_VIEW_CHANGE = "view-change"
T_FETCH = "fetch"
T_STATUS = "status"
MAX_BACKOFF = 16  # the view-change timeout doubles at most this many times

M = TypeVar("M")


class ReplicaBase:
    def __init__(self, replica_id: str, config: PbftConfig, app: Application, *, signer: Signer | None = None) -> None:
        if replica_id not in config.members:
            raise ValueError(f"{replica_id!r} is not a member")
        self.id = replica_id
        # Signs what this replica creates (its key must be the one behind `replica_id`, a peer id);
        # None: messages go unsigned (tests, the simulator, a transport-only deployment).
        self.signer = signer
        self.config = config
        self.app = app
        self.view = 0
        self.active = True  # False between sending VIEW-CHANGE and installing the new view
        self.last_executed = 0
        # Client table {client: (last executed timestamp, its result)}: exactly-once execution.
        self.clients: dict[str, tuple[int, bytes]] = {}
        table = encode_client_table(self.clients)
        snap = app.snapshot()
        self.stable_checkpoint: tuple[int, bytes] = (0, state_digest(snap, table))
        self.stable_proof: tuple[Checkpoint, ...] = ()
        self.stable_snapshot = snap
        self.stable_table = table
        # The message log, all above the stable checkpoint (garbage-collected below it).
        self.pre_prepares: dict[int, PrePrepare] = {}  # accepted in the current view
        self.early: dict[int, PrePrepare] = {}  # pre-prepares for a view not installed yet (one view)
        self.prepares: dict[int, dict[str, Prepare]] = {}  # latest view per sender
        self.commits: dict[int, dict[str, Commit]] = {}  # latest view per sender
        self.certs: dict[int, PreparedCert] = {}  # highest-view prepared certificate per seq (P)
        self.committed: dict[int, PrePrepare] = {}  # committed-local, waiting for their turn
        self.last_commit_quorum = -1e18  # when a batch last became committed here (see _provably_behind)
        # Pre-prepares and commits of views older than ours: 2f+1 matching commits still prove a
        # batch committed, so we can execute it (Replica._keep_old). Within the window only.
        self.old_pre_prepares: dict[int, PrePrepare] = {}
        self.old_commits: dict[int, dict[str, Commit]] = {}
        self.checkpoints: dict[int, dict[str, Checkpoint]] = {}
        self.own_checkpoints: dict[int, tuple[bytes, bytes, bytes]] = {}  # seq -> (digest, snapshot, table)
        self.view_changes: dict[str, ViewChange] = {}  # latest per sender
        # The highest view each member (ourselves included) voted to move to, by StartViewChange
        # or VIEW-CHANGE: a view change starts only once 2f+1 voted (view_change.py).
        self.votes: dict[str, int] = {}
        self.last_vote_echo = -1e18  # when we last repeated our vote to a replica waiting on it
        self.nv_sent: dict[str, tuple[int, float]] = {}  # peer -> (view, when) of the NEW-VIEW we last sent it
        self.new_view_msg: NewView | None = None  # the NEW-VIEW we installed (resent to replicas that missed it)
        self.vc_attempts = 0  # view changes since the last execution: the timeout doubles with each
        # Requests this replica waits to see executed (one per client, the newest); they drive the timer.
        self.pending: dict[str, Request] = {}
        self.timer_armed = False
        self.timed: tuple[str, int] | None = None  # the pending request the view-change timer is for
        # Primary only: requests waiting to be ordered and the next sequence number to assign.
        self.queue: list[Request] = []
        # (client, timestamp) of requests queued or ordered but not yet executed: no double ordering.
        self.ordered: set[tuple[str, int]] = set()
        self.batch_timer_armed = False
        self.throttled = False  # the queue waits for room under config.max_in_flight
        self.seq_next = 1
        # State transfer: the certified checkpoint (seq, digest, certifiers) being fetched, if any.
        self.fetch_target: tuple[int, bytes, tuple[Checkpoint, ...]] | None = None
        self.fetch_attempts = 0
        self.fetch_served: dict[str, tuple[float, int]] = {}  # peer -> (when, seq) of our last StateTransfer
        self.last_vc_resend = -1e18
        # Retransmission: the highest seq seen in the log (above last_executed = we wait for it), the
        # status timer, our position at its last tick, and when we last answered each peer's STATUS.
        self.max_seen = 0
        self.status_armed = False
        self.status_mark: tuple[int, bool, int] | None = None
        self.status_replied: dict[str, float] = {}
        self.restarted = False  # set by recover(): timers must be re-armed on the first input
        # The last sequence number of this configuration: set at the checkpoint whose state asks
        # for a new committee (Application.reconfiguring()). Nothing beyond it is ordered or
        # executed here; the driver starts the next configuration from that stable checkpoint.
        self.halt_at: int | None = None

    # ------------------------------------------------------------------ introspection

    @property
    def low_watermark(self) -> int:
        return self.stable_checkpoint[0]

    @property
    def high_watermark(self) -> int:
        return self.stable_checkpoint[0] + self.config.window

    @property
    def primary(self) -> str:
        return self.config.primary(self.view)

    def is_primary(self) -> bool:
        return self.primary == self.id

    def log_size(self) -> int:
        """Log entries held (pre-prepares, prepares, commits, certificates, checkpoints); bounded by GC."""
        return (
            len(self.pre_prepares)
            + len(self.early)
            + sum(len(v) for v in self.prepares.values())
            + sum(len(v) for v in self.commits.values())
            + len(self.certs)
            + len(self.committed)
            + len(self.old_pre_prepares)
            + sum(len(v) for v in self.old_commits.values())
            + sum(len(v) for v in self.checkpoints.values())
            + len(self.own_checkpoints)
        )

    # ------------------------------------------------------------------ helpers

    def _sign(self, msg: M) -> M:
        """`msg` (one this replica creates) signed with our key, or as is without a signer."""
        return msg if self.signer is None else sign_message(msg, self.signer)

    def _timeout(self) -> float:
        return self.config.request_timeout * (2.0 ** min(self.vc_attempts, MAX_BACKOFF))

    @property
    def halted(self) -> bool:
        return self.halt_at is not None and self.last_executed >= self.halt_at

    def _last_orderable(self) -> int:
        return self.high_watermark if self.halt_at is None else min(self.high_watermark, self.halt_at)

    def _check_reconfiguring(self, seq: int) -> None:
        wants = getattr(self.app, "reconfiguring", None)
        if wants is not None and wants():
            self.halt_at = seq

    def _in_window(self, seq: int) -> bool:
        return self.low_watermark < seq <= self.high_watermark

    def _arm_request_timer(self, now: float, out: list[Effect], restart: bool = False) -> None:
        """The view-change timer runs while we wait for a request to execute. It times one request
        (the oldest pending) and is restarted only once *that* one executes: restarting it whenever
        anything executes would let a primary starve one client forever while serving the others.
        `restart` rearms even so (after a state transfer, which may have satisfied it)."""
        if self.halted:
            # Nothing more executes in this configuration: no primary is to blame for waiting.
            if self.timer_armed:
                self.timer_armed = False
                self.timed = None
                out.append(CancelTimer(T_VIEW_CHANGE))
            return
        if self.pending:
            t = self.timed
            still = t is not None and (p := self.pending.get(t[0])) is not None and p.timestamp == t[1]
            if restart or not self.timer_armed or not still:
                oldest = next(iter(self.pending.values()))
                self.timed = (oldest.client_id, oldest.timestamp)
                self.timer_armed = True
                out.append(SetTimer(T_VIEW_CHANGE, now + self._timeout()))
        elif self.timer_armed and self.active:
            self.timer_armed = False
            self.timed = None
            out.append(CancelTimer(T_VIEW_CHANGE))

    if TYPE_CHECKING:
        # Implemented by the mixins and Replica; declared here so each part type-checks alone.
        def _progress(self, seq: int, now: float, out: list[Effect]) -> None: ...
        def _execute(self, now: float, out: list[Effect]) -> None: ...
        def _enqueue(self, request: Request, now: float, out: list[Effect]) -> None: ...
        def _cut_batches(self, now: float, out: list[Effect], force: bool) -> None: ...
        def _on_pre_prepare(self, pp: PrePrepare, now: float, out: list[Effect]) -> None: ...
        def _certified_checkpoint(
            self, seq: int, digest: bytes, proof: tuple[Checkpoint, ...], now: float, out: list[Effect]
        ) -> None: ...
        def _resend_view_change(self, now: float, out: list[Effect]) -> None: ...
        def _start_view_change(self, new_view: int, now: float, out: list[Effect]) -> None: ...
