"""A committee of replicas and its fault arithmetic, in one place.

With n members, at most f = floor((n - 1) / 3) may be faulty. A *quorum* must be large enough that
any two quorums share at least one correct member: 2q - n >= f + 1, so q = floor((n + f) / 2) + 1.
For n = 3f + 1 that is the familiar 2f + 1; for the other sizes a committee reaches by votes
(n = 5, 6, 8, ...) it is larger than 2f + 1, and 2f + 1 would be unsafe: two sets of 3 among 5
members can meet in a single, faulty one. A *weak* certificate, f + 1 matching answers, holds at
least one correct member (enough to trust a reply or a vouched state, never to decide).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Committee:
    members: tuple[str, ...]
    f: int = field(init=False)
    quorum: int = field(init=False)

    def __post_init__(self) -> None:
        if not self.members or len(set(self.members)) != len(self.members):
            raise ValueError("a committee has one or more distinct members")
        n = len(self.members)
        f = (n - 1) // 3
        object.__setattr__(self, "f", f)
        object.__setattr__(self, "quorum", (n + f) // 2 + 1)

    @property
    def n(self) -> int:
        return len(self.members)

    @property
    def weak(self) -> int:
        """f + 1: at least one of that many distinct members is correct."""
        return self.f + 1

    def primary(self, view: int) -> str:
        return self.members[view % len(self.members)]

    def __contains__(self, member: object) -> bool:
        return member in self.members

