"""Tests for node.predict.structure: hill-climbing structure learning with BIC."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.predict.bayesnet import BayesianNetwork
from node.predict.structure import bic_family_score, hill_climb

TF = ("T", "F")


def sample(net: BayesianNetwork, n: int, seed: int) -> list[dict[str, str]]:
    """Ancestral sampling from `net` (numpy, seeded)."""
    rng = np.random.default_rng(seed)
    drawn: dict[str, np.ndarray] = {}
    for v in net.order:
        table = net.cpts[v]
        if net.parents[v]:
            rows = table[tuple(drawn[p] for p in net.parents[v])]
        else:
            rows = np.broadcast_to(table, (n, table.shape[-1]))
        cdf = np.cumsum(rows, axis=1)
        u = rng.random(n)
        drawn[v] = np.minimum((u[:, None] >= cdf).sum(axis=1), table.shape[-1] - 1)
    return [{v: net.states[v][int(drawn[v][i])] for v in net.states} for i in range(n)]


def skeleton(net: BayesianNetwork) -> set[frozenset[str]]:
    return {frozenset((p, v)) for v, ps in net.parents.items() for p in ps}


def edges(net: BayesianNetwork) -> set[tuple[str, str]]:
    return {(p, v) for v, ps in net.parents.items() for p in ps}


def chain() -> BayesianNetwork:
    return BayesianNetwork(
        states={"A": TF, "B": TF, "C": TF},
        parents={"B": ("A",), "C": ("B",)},
        cpts={
            "A": [0.5, 0.5],
            "B": [[0.9, 0.1], [0.15, 0.85]],
            "C": [[0.85, 0.15], [0.1, 0.9]],
        },
    )


def v_structure() -> BayesianNetwork:
    return BayesianNetwork(
        states={"A": TF, "B": TF, "C": TF},
        parents={"C": ("A", "B")},
        cpts={
            "A": [0.5, 0.5],
            "B": [0.5, 0.5],
            "C": [[[0.95, 0.05], [0.5, 0.5]], [[0.5, 0.5], [0.05, 0.95]]],
        },
    )


def test_chain_skeleton_recovered() -> None:
    true = chain()
    learned = hill_climb(sample(true, 3000, seed=1), true.states)
    assert skeleton(learned) == skeleton(true)
    # CPTs are fitted: the marginal of A is close to the truth.
    assert abs(learned.query("A")["T"] - 0.5) < 0.05


def test_v_structure_skeleton_and_orientation() -> None:
    true = v_structure()
    learned = hill_climb(sample(true, 4000, seed=2), true.states)
    assert edges(learned) == {("A", "C"), ("B", "C")}


def test_columns_input_matches_rows_input() -> None:
    true = chain()
    rows = sample(true, 2000, seed=3)
    columns = {v: [r[v] for r in rows] for v in true.states}
    a = hill_climb(rows, true.states)
    b = hill_climb(columns, true.states)
    assert a.parents == b.parents
    for v in a.states:
        np.testing.assert_allclose(a.cpts[v], b.cpts[v])


def test_independent_variables_give_no_edges() -> None:
    rng = np.random.default_rng(4)
    states = {v: ("x", "y", "z") for v in "PQRS"}
    rows = [{v: str(rng.choice(states[v])) for v in states} for _ in range(3000)]
    learned = hill_climb(rows, states)
    assert edges(learned) == set()


def test_max_parents_respected() -> None:
    # D depends on A, B and C; with max_parents=1 nobody may have more than one parent.
    rng = np.random.default_rng(5)
    n = 3000
    a, b, c = (rng.random(n) < 0.5 for _ in range(3))
    noise = rng.random(n) < 0.05
    d = (a.astype(int) + b + c >= 2) ^ noise
    cols = {"A": a, "B": b, "C": c, "D": d}
    rows = [{k: ("T" if bool(col[i]) else "F") for k, col in cols.items()} for i in range(n)]
    states = {k: TF for k in cols}
    free = hill_climb(rows, states, max_parents=3)
    assert set(free.parents["D"]) == {"A", "B", "C"}
    for k in (0, 1, 2):
        limited = hill_climb(rows, states, max_parents=k)
        assert all(len(ps) <= k for ps in limited.parents.values())
    assert edges(hill_climb(rows, states, max_parents=0)) == set()


def test_max_iter_zero_gives_empty_graph() -> None:
    true = chain()
    learned = hill_climb(sample(true, 500, seed=6), true.states, max_iter=0)
    assert edges(learned) == set()


def test_deterministic() -> None:
    true = chain()
    rows = sample(true, 1500, seed=7)
    assert hill_climb(rows, true.states).parents == hill_climb(rows, true.states).parents


def test_bic_family_score_by_hand() -> None:
    child = np.array([0, 0, 1, 1, 1, 0])
    parent = np.array([0, 0, 0, 1, 1, 1])
    # parent=0: counts (2, 1); parent=1: counts (1, 2); 2 free parameters.
    ll = 2 * (2 * np.log(2 / 3) + 1 * np.log(1 / 3))
    expected = ll - 0.5 * np.log(6) * 2
    assert bic_family_score(child, [parent], 2, [2]) == pytest.approx(expected)
    assert bic_family_score(child, [], 2, []) == pytest.approx(6 * np.log(0.5) - 0.5 * np.log(6))


def test_bad_input_raises_value_error() -> None:
    states = {"A": TF, "B": TF}
    with pytest.raises(ValueError, match="empty"):
        hill_climb([], states)
    with pytest.raises(ValueError, match="empty"):
        hill_climb({"A": [], "B": []}, states)
    with pytest.raises(ValueError, match="unknown state"):
        hill_climb([{"A": "T", "B": "maybe"}], states)
    with pytest.raises(ValueError, match="unknown state"):
        hill_climb({"A": ["T"], "B": ["maybe"]}, states)
    with pytest.raises(ValueError, match="no value"):
        hill_climb([{"A": "T"}], states)
    with pytest.raises(ValueError, match="lengths"):
        hill_climb({"A": ["T", "F"], "B": ["T"]}, states)
    with pytest.raises(ValueError, match="score"):
        hill_climb([{"A": "T", "B": "F"}], states, score="aic")
    with pytest.raises(ValueError, match="max_parents"):
        hill_climb([{"A": "T", "B": "F"}], states, max_parents=-1)


@settings(max_examples=30, deadline=None)
@given(
    n_vars=st.integers(1, 5),
    n_rows=st.integers(1, 60),
    max_parents=st.integers(0, 3),
    seed=st.integers(0, 2**32 - 1),
)
def test_random_data_gives_valid_dag_within_max_parents(
    n_vars: int, n_rows: int, max_parents: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    states = {f"V{i}": ("a", "b", "c")[: int(rng.integers(1, 4))] for i in range(n_vars)}
    # Correlated columns so that edges actually get added.
    base = rng.integers(0, 3, n_rows)
    rows = [
        {v: ss[(int(base[r]) + int(rng.random() < 0.2)) % len(ss)] for v, ss in states.items()}
        for r in range(n_rows)
    ]
    learned = hill_climb(rows, states, max_parents=max_parents)  # the constructor rejects cycles
    assert set(learned.states) == set(states)
    assert all(len(ps) <= max_parents for ps in learned.parents.values())
