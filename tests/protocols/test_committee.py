"""The committee's fault arithmetic: the one place n, f and the quorum sizes are computed."""

from __future__ import annotations

import pytest

from protocols.committee import Committee
from protocols.pbft import PbftConfig


def members(n: int) -> tuple[str, ...]:
    return tuple(f"r{i}" for i in range(n))


@pytest.mark.parametrize("n", range(1, 130))
def test_quorums_intersect_in_a_correct_member_and_stay_reachable(n: int) -> None:
    c = Committee(members(n))
    assert 3 * c.f + 1 <= n < 3 * (c.f + 1) + 1  # the largest f with n >= 3f + 1
    assert 2 * c.quorum - n >= c.f + 1, "two quorums share f+1 members, so at least one correct"
    assert c.quorum <= n - c.f, "the correct members alone form a quorum"
    assert c.weak == c.f + 1


def test_the_familiar_sizes() -> None:
    assert [(Committee(members(n)).f, Committee(members(n)).quorum) for n in (1, 4, 5, 7)] == [
        (0, 1), (1, 3), (1, 4), (2, 5)]  # n = 5: 2f + 1 = 3 would let two quorums meet in one faulty member


def test_pbft_uses_the_committee() -> None:
    cfg = PbftConfig(members=members(5))
    assert (cfg.f, cfg.quorum, cfg.primary(7)) == (1, 4, "r2")


def test_bad_committees_are_refused() -> None:
    for bad in ((), ("a", "a")):
        with pytest.raises(ValueError):
            Committee(bad)
