"""CI for the federation simulator (tests/sim/federation.py): whole FederationNode machines with the
real Ledger through committee changes, follower sync and a replica cut off across an epoch switch.
The out-of-CI sweep: `python -m tests.sim.federation --replicas 4 --seeds 300`."""

from __future__ import annotations

import pytest

from tests.sim.federation import FED_SCENARIOS, run_one

CI_SEEDS = {4: range(0, 6), 7: range(0, 2)}


@pytest.mark.parametrize("n", sorted(CI_SEEDS))
@pytest.mark.parametrize("name", sorted(FED_SCENARIOS))
def test_federation_scenario(name: str, n: int) -> None:
    for seed in CI_SEEDS[n]:
        safety, liveness, guard, sim = run_one(name, seed, n)
        where = f"{name} n={n} seed={seed} (python -m tests.sim.federation --scenario {name} --replicas {n} " \
                f"--first-seed {seed} --seeds 1); faults: {sim.notes}"
        assert not safety, f"{safety[:3]} in {where}"
        assert not liveness, f"{liveness[:3]} in {where}"
        assert not guard, f"{guard} in {where}"


def test_a_scenario_without_its_fault_fails_its_guard() -> None:
    """The guards can fail: with the cut removed, the victim never missed the epoch switch."""
    sim, guard = FED_SCENARIOS["cut_off_across_an_epoch_switch"](0, 4)
    sim.network.cuts.clear()
    sim.run()
    assert guard(sim), "the guard passed a run in which its fault had no effect"


def test_same_seed_replays_exactly() -> None:
    a = run_one("join_and_leave", 3)[3]
    b = run_one("join_and_leave", 3)[3]
    assert (a.events, a.clock.now, a.executed, a.reconfigured) == (b.events, b.clock.now, b.executed, b.reconfigured)
