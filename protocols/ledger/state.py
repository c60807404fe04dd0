"""The ledger's mutable state. Private to the ledger and its operations: only `Ledger` mutates it
(through the operations it dispatches to), and only inside `apply` / `activate_pending`."""

from __future__ import annotations

from dataclasses import dataclass, field

from protocols.committee import Committee


@dataclass
class LedgerState:
    accounts: dict[str, int] = field(default_factory=dict)  # peer id -> balance (>= 0)
    nonces: dict[tuple[str, int], int] = field(default_factory=dict)  # (peer id, lane) -> last nonce
    committee: tuple[str, ...] = ()  # the PBFT members now, in order
    pending_committee: tuple[str, ...] | None = None  # activated at the next stable checkpoint
    join_votes: dict[str, set[str]] = field(default_factory=dict)  # candidate -> voting members
    leave_votes: dict[str, set[str]] = field(default_factory=dict)  # member to remove -> voting members

    def target_committee(self) -> tuple[str, ...]:
        """The committee as it will be once the pending change activates."""
        return self.committee if self.pending_committee is None else self.pending_committee

    def fault_bound(self) -> int:
        """f of the current committee: n = 3f + 1 tolerates f faulty members."""
        return Committee(self.committee).f
