"""CI for the test protocol in the simulator (tests/sim/echo.py): four echo nodes, 20% loss, one
cut off for three seconds. The sweep: `python -m tests.sim.echo --nodes 4 --seeds 200`."""

from __future__ import annotations

import pytest

from tests.sim import echo

CI_SEEDS = range(0, 8)


@pytest.mark.parametrize("seed", CI_SEEDS)
def test_echo_under_loss_and_a_partition(seed: int) -> None:
    r, failures, unexercised = echo.run(seed)
    where = f"seed={seed} (python -m tests.sim.echo --first-seed {seed} --seeds 1); faults: {r.world.faults}"
    assert not failures, f"{failures[:3]} in {where}"
    assert not unexercised, f"{unexercised} in {where}"
    assert r.world.network.dropped > 0.1 * r.world.network.sent  # the loss was there


def test_without_the_partition_the_guard_fails() -> None:
    r, failures, unexercised = echo.run(0, partition=False)
    assert not failures and unexercised, "the guard passed a run without its partition"


def test_a_partition_that_never_heals_fails_the_check() -> None:
    """The check can fail: the victim stays cut off to the end."""
    r = echo.build(1)
    r.world.network.partitions[0] = type(r.world.network.partitions[0])(
        echo.CUT_FROM, float("inf"), r.world.network.partitions[0].groups
    )
    r.world.run(echo.END)
    failures = echo.check(r)
    assert failures and all(r.victim in f for f in failures), failures


def test_same_seed_replays_exactly() -> None:
    a, b, c = (echo.build(seed, trace=True) for seed in (5, 5, 6))
    for r in (a, b, c):
        r.world.run(echo.END)
    assert a.world.trace and a.world.trace == b.world.trace and a.snapshots == b.snapshots
    assert a.world.trace != c.world.trace
