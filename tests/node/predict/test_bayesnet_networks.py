"""The standard networks shipped in tests/data (bnlearn's cancer, asia, child and alarm, as BIF
files copied unchanged from pgmpy's wheel, pgmpy/utils/example_models/*.bif.gz)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from node.predict.bayesnet import BayesianNetwork, read_bif

DATA = Path(__file__).resolve().parents[2] / "data"

# name -> (variables, edges, a variable to query, evidence for it)
NETWORKS = {
    "cancer": (5, 4, "Cancer", {"Xray": "positive", "Smoker": "True"}),
    "asia": (8, 8, "lung", {"xray": "yes", "dysp": "yes"}),
    "child": (20, 25, "Disease", {"LowerBodyO2": "<5", "CO2Report": ">=7.5"}),
    "alarm": (37, 46, "HYPOVOLEMIA", {"CVP": "HIGH", "BP": "LOW"}),
}


@pytest.fixture(scope="module", params=sorted(NETWORKS))
def network(request: pytest.FixtureRequest) -> tuple[str, BayesianNetwork]:
    return request.param, read_bif(DATA / f"{request.param}.bif")


def test_shipped_network_shape_and_query(network: tuple[str, BayesianNetwork]) -> None:
    name, net = network
    n_vars, n_edges, target, evidence = NETWORKS[name]
    assert len(net.variables) == n_vars
    assert sum(len(ps) for ps in net.parents.values()) == n_edges
    for ev in ({}, evidence):
        post = net.query(target, ev)
        assert set(post) == set(net.states[target])
        assert sum(post.values()) == pytest.approx(1.0, abs=1e-12)
        assert all(p >= 0.0 for p in post.values())


def test_shipped_network_round_trips_through_bif(network: tuple[str, BayesianNetwork]) -> None:
    _, net = network
    assert BayesianNetwork.from_bif(net.to_bif()) == net


# P(target | evidence) printed by pgmpy 1.1.2 VariableElimination on tests/data/alarm.bif
# (BIFReader(...).get_model(); ve.query([target], evidence=...)), copied here as literals.
ALARM_PGMPY = [
    ("HYPOVOLEMIA", {"CVP": "HIGH", "BP": "LOW"}, {"TRUE": 0.8372270745654835, "FALSE": 0.16277292543451646}),
    ("LVFAILURE", {"HISTORY": "TRUE"}, {"TRUE": 0.8256880733944955, "FALSE": 0.17431192660550457}),
    (
        "KINKEDTUBE",
        {"PRESS": "HIGH", "VENTLUNG": "ZERO", "SAO2": "LOW"},
        {"TRUE": 0.03830125964520894, "FALSE": 0.9616987403547912},
    ),
    (
        "INTUBATION",
        {"SHUNT": "HIGH"},
        {"NORMAL": 0.5220427760803142, "ESOPHAGEAL": 0.017023134002618942, "ONESIDED": 0.46093408991706675},
    ),
]


@pytest.mark.parametrize("target,evidence,expected", ALARM_PGMPY)
def test_alarm_matches_pgmpy(target: str, evidence: dict[str, str], expected: dict[str, float]) -> None:
    net = read_bif(DATA / "alarm.bif")
    got = net.query(target, evidence)
    assert got.keys() == expected.keys()
    for s, p in expected.items():
        assert got[s] == pytest.approx(p, abs=1e-12)


def test_alarm_agrees_with_likelihood_weighting() -> None:
    # An independent check of the exact answers that does not go through variable elimination.
    net = read_bif(DATA / "alarm.bif")
    evidence = {"CVP": "HIGH", "BP": "LOW"}
    exact = net.query("HYPOVOLEMIA", evidence)
    approx = net.likelihood_weighting("HYPOVOLEMIA", evidence, samples=100_000, seed=3)
    assert np.allclose([approx[s] for s in exact], list(exact.values()), atol=0.02)
