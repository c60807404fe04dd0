"""Tests for node.predict.bayesnet: validation, BIF, exact and approximate inference, learning."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.predict.bayesnet import (
    BayesianNetwork,
    BayesNetError,
    BifError,
    fit_mle,
    read_bif,
)

DATA = Path(__file__).resolve().parents[2] / "data"
ASIA = DATA / "asia.bif"


def burglary() -> BayesianNetwork:
    """Pearl's alarm network (Russell & Norvig numbers); states ordered (T, F)."""
    tf = ("T", "F")
    return BayesianNetwork(
        states={v: tf for v in ("Burglary", "Earthquake", "Alarm", "JohnCalls", "MaryCalls")},
        parents={
            "Alarm": ("Burglary", "Earthquake"),
            "JohnCalls": ("Alarm",),
            "MaryCalls": ("Alarm",),
        },
        cpts={
            "Burglary": [0.001, 0.999],
            "Earthquake": [0.002, 0.998],
            "Alarm": [[[0.95, 0.05], [0.94, 0.06]], [[0.29, 0.71], [0.001, 0.999]]],
            "JohnCalls": [[0.90, 0.10], [0.05, 0.95]],
            "MaryCalls": [[0.70, 0.30], [0.01, 0.99]],
        },
        name="burglary",
    )


def brute_force_joint(
    net: BayesianNetwork, variables: tuple[str, ...], evidence: dict[str, str]
) -> dict[tuple[str, ...], float]:
    """P(variables | evidence) by enumerating the full joint."""
    names = net.variables
    out = {combo: 0.0 for combo in itertools.product(*(net.states[v] for v in variables))}
    for states in itertools.product(*(net.states[v] for v in names)):
        assignment = dict(zip(names, states))
        if any(assignment[v] != s for v, s in evidence.items()):
            continue
        out[tuple(assignment[v] for v in variables)] += net.joint_probability(assignment)
    total = sum(out.values())
    return {k: p / total for k, p in out.items()}


# ---------------------------------------------------------------------------------------------
# Textbook numbers
# ---------------------------------------------------------------------------------------------


def test_burglary_posterior_given_both_calls() -> None:
    net = burglary()
    post = net.query("Burglary", {"JohnCalls": "T", "MaryCalls": "T"})
    # Hand computation: P(B, j, m) = 0.00059224, P(~B, j, m) = 0.0014919 -> 0.284.
    assert post["T"] == pytest.approx(0.00059224 / (0.00059224 + 0.0014919), rel=1e-4)
    assert round(post["T"], 3) == 0.284
    assert sum(post.values()) == pytest.approx(1.0)


def test_burglary_prior_marginals_and_alarm() -> None:
    net = burglary()
    assert net.query("Burglary")["T"] == pytest.approx(0.001)
    p_alarm = 0.001 * 0.002 * 0.95 + 0.001 * 0.998 * 0.94 + 0.999 * 0.002 * 0.29 + 0.999 * 0.998 * 0.001
    assert net.query("Alarm")["T"] == pytest.approx(p_alarm)
    assert net.probability_of_evidence({"Alarm": "T"}) == pytest.approx(p_alarm)


def test_burglary_joint_and_map() -> None:
    net = burglary()
    ev = {"JohnCalls": "T", "MaryCalls": "T"}
    joint = net.query_joint(("Burglary", "Earthquake"), ev)
    expected = brute_force_joint(net, ("Burglary", "Earthquake"), ev)
    assert joint.keys() == expected.keys()
    for k in expected:
        assert joint[k] == pytest.approx(expected[k], abs=1e-12)
    mpe = net.map_assignment(ev)
    assert set(mpe) == {"Burglary", "Earthquake", "Alarm"}
    assert mpe == {"Burglary": "F", "Earthquake": "F", "Alarm": "T"}


def test_elimination_order_is_cached_and_barren_nodes_pruned() -> None:
    net = burglary()
    order = net.elimination_order(("Burglary",), {"Alarm": "T"})
    # JohnCalls and MaryCalls are barren for this query: never eliminated.
    assert set(order) == {"Earthquake"}
    assert net.elimination_order(("Burglary",), {"Alarm": "T"}) is order
    net.query("Burglary", {"Alarm": "T"})
    assert len(net._plan_cache) == 1


# ---------------------------------------------------------------------------------------------
# Asia
# ---------------------------------------------------------------------------------------------


def test_asia_file_and_known_marginal() -> None:
    net = read_bif(ASIA)
    assert set(net.variables) == {"asia", "tub", "smoke", "lung", "bronc", "either", "xray", "dysp"}
    assert net.parents["dysp"] == ("bronc", "either")
    assert net.query("lung")["yes"] == pytest.approx(0.055)
    assert net.query("lung")["yes"] == pytest.approx(brute_force_joint(net, ("lung",), {})[("yes",)])


@pytest.mark.parametrize(
    "target,evidence",
    [
        ("lung", {"xray": "yes", "dysp": "yes"}),
        ("tub", {"asia": "yes", "xray": "yes"}),
        ("bronc", {"dysp": "yes", "smoke": "no"}),
        ("either", {"xray": "no"}),
        ("asia", {"dysp": "yes", "xray": "yes", "smoke": "yes"}),
    ],
)
def test_asia_queries_match_brute_force(target: str, evidence: dict[str, str]) -> None:
    net = read_bif(ASIA)
    got = net.query(target, evidence)
    expected = brute_force_joint(net, (target,), evidence)
    for state in net.states[target]:
        assert got[state] == pytest.approx(expected[(state,)], abs=1e-12)


def test_asia_map_matches_brute_force() -> None:
    net = read_bif(ASIA)
    ev = {"xray": "yes", "dysp": "yes"}
    mpe = net.map_assignment(ev)
    free = [v for v in net.variables if v not in ev]
    best = max(
        itertools.product(*(net.states[v] for v in free)),
        key=lambda states: net.joint_probability({**ev, **dict(zip(free, states))}),
    )
    assert mpe == dict(zip(free, best))


def test_asia_impossible_evidence() -> None:
    net = read_bif(ASIA)
    # either is a deterministic OR of lung and tub.
    with pytest.raises(BayesNetError, match="probability 0"):
        net.query("asia", {"lung": "yes", "either": "no"})
    with pytest.raises(BayesNetError, match="probability 0"):
        net.map_assignment({"tub": "yes", "either": "no"})
    with pytest.raises(BayesNetError, match="weight 0"):
        net.likelihood_weighting("asia", {"lung": "yes", "either": "no"}, samples=100, seed=0)


def test_asia_likelihood_weighting_close_to_exact_and_deterministic() -> None:
    net = read_bif(ASIA)
    ev = {"xray": "yes", "dysp": "yes"}
    exact = net.query("lung", ev)
    approx = net.likelihood_weighting("lung", ev, samples=50_000, seed=7)
    assert approx == net.likelihood_weighting("lung", ev, samples=50_000, seed=7)
    assert sum(approx.values()) == pytest.approx(1.0)
    assert approx["yes"] == pytest.approx(exact["yes"], abs=0.02)


# ---------------------------------------------------------------------------------------------
# BIF
# ---------------------------------------------------------------------------------------------


def test_bif_round_trip_is_exact() -> None:
    for net in (read_bif(ASIA), burglary()):
        text = net.to_bif()
        again = BayesianNetwork.from_bif(text)
        assert again == net
        assert again.to_bif() == text
        for v in net.variables:
            assert np.array_equal(again.cpts[v], net.cpts[v])


def test_bif_round_trip_awkward_floats() -> None:
    rng = np.random.default_rng(3)
    p = rng.dirichlet(np.ones(3), size=2)
    net = BayesianNetwork(
        {"a": ("x", "y"), "b": ("p", "q", "r")},
        {"b": ("a",)},
        {"a": [1 / 3, 2 / 3], "b": p},
    )
    assert BayesianNetwork.from_bif(net.to_bif()) == net


def test_bif_properties_comments_and_default() -> None:
    text = """// a comment
network "tiny" {
  property author = someone ;
}
variable a { type discrete [ 2 ] { t, f }; property position = (1, 2) ; }
/* block
   comment */
variable b {
  type discrete [ 2 ] { t, f };
}
probability ( a ) { table 0.3, 0.7; }
probability ( b | a ) {
  (t) 0.9, 0.1;
  default 0.2, 0.8;
}
"""
    net = BayesianNetwork.from_bif(text)
    assert net.name == "tiny"
    assert net.cpts["b"].tolist() == [[0.9, 0.1], [0.2, 0.8]]
    assert net.query("a", {"b": "t"})["t"] == pytest.approx(0.27 / (0.27 + 0.14))


def _asia_lines() -> list[str]:
    return ASIA.read_text().splitlines()


@pytest.mark.parametrize(
    "line_no,new_line,match",
    [
        (4, "  type discrete [ 3 ] { yes, no };", "declares 3 states"),
        (28, "  table 0.01 0.99;", "expected ';'"),
        (32, "  (maybe) 0.05, 0.95;", "unknown state 'maybe'"),
        (38, "  (yes) 0.1, 0.9, 0.0;", "expected 2"),
        (39, "  (no) 0.01, abc;", "expected a probability"),
        (41, "probability ( bronc | smokes ) {", "undeclared parent 'smokes'"),
        (35, "  table 0.5, 0.6;", "sums to"),
        (43, "  (no) 1.3, -0.3;", "negative"),
        (46, "  (yes, yes) 1.0, 0.0; junk", "expected 'table'"),
        (21, "variable xray ( {", r"expected '\{' \(found '\('\)"),
        (22, "  type discrete [ two ] { yes, no };", "integer number of states"),
    ],
)
def test_malformed_bif_reports_line(line_no: int, new_line: str, match: str) -> None:
    lines = _asia_lines()
    lines[line_no - 1] = new_line
    with pytest.raises(BifError, match=match) as info:
        BayesianNetwork.from_bif("\n".join(lines))
    assert info.value.line == line_no
    assert f"line {line_no}" in str(info.value)


def test_malformed_bif_missing_row_and_eof() -> None:
    lines = _asia_lines()
    del lines[46]  # "(no, yes) 1.0, 0.0;" of either (line 47)
    with pytest.raises(BifError, match=r"misses the row for parents \('no', 'yes'\)") as info:
        BayesianNetwork.from_bif("\n".join(lines))
    assert info.value.line == 45
    with pytest.raises(BifError, match="end of file") as info:
        BayesianNetwork.from_bif("\n".join(_asia_lines()[:-1]))
    assert info.value.line == len(_asia_lines()) - 1
    with pytest.raises(BifError, match="no probability block"):
        BayesianNetwork.from_bif("variable a { type discrete [ 1 ] { x }; }")


def test_bif_cycle_is_reported() -> None:
    text = """variable a { type discrete [ 2 ] { t, f }; }
variable b { type discrete [ 2 ] { t, f }; }
probability ( a | b ) { (t) 0.5, 0.5; (f) 0.5, 0.5; }
probability ( b | a ) { (t) 0.5, 0.5; (f) 0.5, 0.5; }
"""
    with pytest.raises(BifError, match="cycle"):
        BayesianNetwork.from_bif(text)


# ---------------------------------------------------------------------------------------------
# Validation and errors
# ---------------------------------------------------------------------------------------------


def _tiny(**overrides: object) -> BayesianNetwork:
    spec: dict[str, object] = {
        "states": {"a": ("t", "f"), "b": ("t", "f")},
        "parents": {"b": ("a",)},
        "cpts": {"a": [0.4, 0.6], "b": [[0.9, 0.1], [0.2, 0.8]]},
    }
    spec.update(overrides)
    return BayesianNetwork(**spec)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "overrides,match",
    [
        ({"parents": {"a": ("b",), "b": ("a",)}}, "cycle"),
        ({"parents": {"b": ("c",)}}, "unknown parent 'c'"),
        ({"parents": {"c": ("a",)}}, "unknown variable 'c'"),
        ({"cpts": {"a": [0.4, 0.6]}}, "'b' has no CPT"),
        ({"cpts": {"a": [0.4, 0.6], "b": [0.9, 0.1]}}, r"'b': CPT has shape \(2,\)"),
        ({"cpts": {"a": [1.2, -0.2], "b": [[0.9, 0.1], [0.2, 0.8]]}}, "'a': CPT has negative"),
        ({"cpts": {"a": [0.4, 0.6], "b": [[0.9, 0.1], [0.2, 0.7]]}}, "'b': CPT row .* sums to"),
        ({"cpts": {"a": [0.4, np.nan], "b": [[0.9, 0.1], [0.2, 0.8]]}}, "'a': CPT has non-finite"),
        ({"states": {"a": ("t", "t"), "b": ("t", "f")}}, "duplicate states"),
    ],
)
def test_validation_errors_name_the_variable(overrides: dict[str, object], match: str) -> None:
    with pytest.raises(BayesNetError, match=match):
        _tiny(**overrides)


def test_row_sum_tolerance_accepts_rounding() -> None:
    _tiny(cpts={"a": [0.4, 0.6 + 1e-9], "b": [[0.9, 0.1], [0.2, 0.8]]})


def test_bayes_net_error_is_value_error() -> None:
    assert issubclass(BayesNetError, ValueError)
    assert issubclass(BifError, BayesNetError)


def test_unknown_variables_and_states() -> None:
    net = _tiny()
    with pytest.raises(BayesNetError, match="unknown variable 'zz'"):
        net.query("zz")
    with pytest.raises(BayesNetError, match="unknown variable 'zz'"):
        net.query("a", {"zz": "t"})
    with pytest.raises(BayesNetError, match="unknown state 'maybe' for variable 'b'"):
        net.query("a", {"b": "maybe"})
    with pytest.raises(BayesNetError, match="both queried and observed"):
        net.query("a", {"a": "t"})
    with pytest.raises(BayesNetError, match="unknown state"):
        net.map_assignment({"a": "x"})
    with pytest.raises(BayesNetError, match="unknown variable"):
        net.likelihood_weighting("zz", {}, samples=10, seed=0)


def test_map_with_everything_observed_is_empty() -> None:
    net = _tiny()
    assert net.map_assignment({"a": "t", "b": "f"}) == {}


# ---------------------------------------------------------------------------------------------
# Random networks: variable elimination == enumeration
# ---------------------------------------------------------------------------------------------


@st.composite
def random_networks(draw: st.DrawFn) -> BayesianNetwork:
    n = draw(st.integers(2, 5))
    names = [f"v{i}" for i in range(n)]
    cards = [draw(st.integers(2, 3)) for _ in range(n)]
    states = {v: tuple(f"s{j}" for j in range(c)) for v, c in zip(names, cards)}
    parents: dict[str, tuple[str, ...]] = {}
    for i, v in enumerate(names):
        earlier = names[:i]
        chosen = draw(st.lists(st.sampled_from(earlier), unique=True, max_size=min(3, i))) if earlier else []
        parents[v] = tuple(chosen)
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    cpts: dict[str, np.ndarray] = {}
    for v, c in zip(names, cards):
        shape = tuple(len(states[p]) for p in parents[v])
        # Some zeros now and then, to exercise impossible evidence.
        alpha = np.full(c, 0.7)
        table = rng.dirichlet(alpha, size=shape if shape else None)
        if draw(st.booleans()) and c == 3:
            table = np.array(table)
            table[..., 0] = 0.0
            table = table / table.sum(axis=-1, keepdims=True)
        cpts[v] = np.asarray(table)
    # Shuffle declaration order so topological order differs from insertion order.
    perm = draw(st.permutations(names))
    return BayesianNetwork(
        {v: states[v] for v in perm}, {v: parents[v] for v in perm}, {v: cpts[v] for v in perm}
    )


def _draw_query(
    data: st.DataObject, net: BayesianNetwork, *, min_evidence: int, max_evidence: int
) -> tuple[tuple[str, ...], list[str]]:
    """One or two query variables, and evidence variables among the others."""
    names = list(net.variables)
    queried = tuple(data.draw(st.lists(st.sampled_from(names), unique=True, min_size=1, max_size=2)))
    rest = [v for v in names if v not in queried]
    if not rest or len(rest) < min_evidence:
        return queried, []
    evidence = st.lists(st.sampled_from(rest), unique=True, min_size=min_evidence, max_size=max_evidence)
    return queried, data.draw(evidence)


@settings(derandomize=True, deadline=None, max_examples=120)
@given(data=st.data())
def test_variable_elimination_matches_enumeration(data: st.DataObject) -> None:
    net = data.draw(random_networks())
    queried, ev_vars = _draw_query(data, net, min_evidence=0, max_evidence=len(net.variables))
    names = list(net.variables)
    evidence = {v: data.draw(st.sampled_from(net.states[v])) for v in ev_vars}
    p_ev = sum(brute_force_joint_unnormalised(net, evidence))
    if p_ev <= 0.0:
        with pytest.raises(BayesNetError, match="probability 0"):
            net.query_joint(queried, evidence)
        return
    expected = brute_force_joint(net, queried, evidence)
    got = net.query_joint(queried, evidence)
    assert got.keys() == expected.keys()
    for k in expected:
        assert got[k] == pytest.approx(expected[k], abs=1e-9)
    assert net.probability_of_evidence(evidence) == pytest.approx(p_ev, rel=1e-9, abs=1e-300)
    # MPE: the chosen assignment attains the brute-force maximum.
    mpe = net.map_assignment(evidence)
    free = [v for v in names if v not in evidence]
    best = max(
        net.joint_probability({**evidence, **dict(zip(free, s))})
        for s in itertools.product(*(net.states[v] for v in free))
    )
    assert net.joint_probability({**evidence, **mpe}) == pytest.approx(best, rel=1e-9)


def brute_force_joint_unnormalised(net: BayesianNetwork, evidence: dict[str, str]) -> list[float]:
    names = net.variables
    out = []
    for states in itertools.product(*(net.states[v] for v in names)):
        a = dict(zip(names, states))
        if all(a[v] == s for v, s in evidence.items()):
            out.append(net.joint_probability(a))
    return out


@settings(derandomize=True, deadline=None, max_examples=60)
@given(net=random_networks())
def test_bif_round_trip_random_networks(net: BayesianNetwork) -> None:
    again = BayesianNetwork.from_bif(net.to_bif())
    assert again == net
    assert again.variables == net.variables


# ---------------------------------------------------------------------------------------------
# Parameter learning
# ---------------------------------------------------------------------------------------------


def test_fit_mle_counts() -> None:
    states = {"a": ("t", "f"), "b": ("t", "f")}
    parents = {"b": ("a",)}
    rows = [{"a": "t", "b": "t"}] * 3 + [{"a": "t", "b": "f"}] + [{"a": "f", "b": "f"}] * 4
    net = fit_mle(states, parents, rows)
    assert net.cpts["a"].tolist() == [0.5, 0.5]
    assert net.cpts["b"].tolist() == [[0.75, 0.25], [0.0, 1.0]]
    bdeu = fit_mle(states, parents, rows, prior="bdeu", equivalent_sample_size=4.0)
    # alpha per cell = 4 / (2 * 2) = 1 for b, 4 / 2 = 2 for a.
    assert bdeu.cpts["b"].tolist() == [[4 / 6, 2 / 6], [1 / 6, 5 / 6]]
    assert bdeu.cpts["a"].tolist() == [0.5, 0.5]


def test_fit_mle_unseen_parent_configuration_is_uniform_and_errors() -> None:
    net = _tiny()
    learned = net.fit_mle([{"a": "t", "b": "t"}])
    assert learned.cpts["b"].tolist() == [[1.0, 0.0], [0.5, 0.5]]
    with pytest.raises(BayesNetError, match="no value for variable 'b'"):
        net.fit_mle([{"a": "t"}])
    with pytest.raises(BayesNetError, match="unknown state 'x'"):
        net.fit_mle([{"a": "x", "b": "t"}])
    with pytest.raises(BayesNetError, match="unknown prior"):
        net.fit_mle([], prior="k2")  # type: ignore[arg-type]


def test_fit_mle_recovers_asia_from_samples() -> None:
    net = read_bif(ASIA)
    rng = np.random.default_rng(11)
    rows = []
    for _ in range(8_000):
        row: dict[str, str] = {}
        for v in net.order:
            p = net.cpts[v][tuple(net.states[u].index(row[u]) for u in net.parents[v])]
            row[v] = net.states[v][int(rng.choice(len(p), p=p))]
        rows.append(row)
    learned = net.fit_mle(rows, prior="bdeu", equivalent_sample_size=1.0)
    assert learned.cpts["smoke"][0] == pytest.approx(0.5, abs=0.02)
    assert learned.cpts["lung"][0, 0] == pytest.approx(0.1, abs=0.02)
    assert learned.query("lung")["yes"] == pytest.approx(0.055, abs=0.01)


def test_bif_table_with_parents_lists_variable_states_outermost() -> None:
    text = """variable a { type discrete [ 2 ] { t, f }; }
variable b { type discrete [ 3 ] { x, y, z }; }
probability ( a ) { table 0.25, 0.75; }
probability ( b | a ) { table 0.5, 0.1, 0.3, 0.2, 0.2, 0.7; }
"""
    net = BayesianNetwork.from_bif(text)
    assert net.cpts["b"].tolist() == [[0.5, 0.3, 0.2], [0.1, 0.2, 0.7]]


def test_order_cache_is_per_signature_not_per_state() -> None:
    net = read_bif(ASIA)
    net.query("lung", {"xray": "yes", "dysp": "yes"})
    net.query("lung", {"xray": "no", "dysp": "yes"})
    net.query("lung", {"dysp": "yes", "xray": "no"})
    assert len(net._plan_cache) == 1
    net.query("bronc", {"xray": "no"})
    assert len(net._plan_cache) == 2
    order = net.elimination_order(("lung",), {"xray": "yes", "dysp": "yes"})
    # Everything relevant except the query and the evidence is eliminated exactly once.
    assert sorted(order) == sorted({"asia", "tub", "smoke", "bronc", "either"})


def test_min_fill_prefers_leaves_of_a_chain() -> None:
    # A chain a -> b -> c -> d -> e queried at e: eliminating from the far end never fills in.
    states = {v: ("0", "1") for v in "abcde"}
    parents = {"b": ("a",), "c": ("b",), "d": ("c",), "e": ("d",)}
    cpts = {"a": [0.3, 0.7], **{v: [[0.9, 0.1], [0.4, 0.6]] for v in "bcde"}}
    net = BayesianNetwork(states, parents, cpts)
    assert net.elimination_order(("e",)) == ("a", "b", "c", "d")
    assert net.query("e")["0"] == pytest.approx(brute_force_joint(net, ("e",), {})[("0",)])


# ---------------------------------------------------------------------------------------------
# Pruning and the cached plans
# ---------------------------------------------------------------------------------------------


def _chain(zero_in_a: bool = False) -> BayesianNetwork:
    """a -> b -> c, plus d -> b; strictly positive unless `zero_in_a`."""
    states = {v: ("0", "1") for v in "abcd"}
    parents = {"b": ("a", "d"), "c": ("b",)}
    cpts = {
        "a": [1.0, 0.0] if zero_in_a else [0.3, 0.7],
        "d": [0.6, 0.4],
        "b": [[[0.9, 0.1], [0.5, 0.5]], [[0.2, 0.8], [0.35, 0.65]]],
        "c": [[0.25, 0.75], [0.8, 0.2]],
    }
    return BayesianNetwork(states, parents, cpts)


def test_bayes_ball_drops_evidence_blocked_by_other_evidence() -> None:
    net = _chain()
    # Given b, c is independent of a and d: the answer is c's CPT row, nothing is eliminated.
    assert net.elimination_order(("c",), {"a": "1", "b": "0", "d": "0"}) == ()
    plan = net._plan(frozenset("c"), frozenset("abd"), True)
    assert [owner for _, owner, _ in plan.reductions] == ["c"]
    assert net.query("c", {"a": "1", "b": "0", "d": "0"}) == {"0": 0.25, "1": 0.75}
    # b is a collider between a and d: observing it connects them, so b's CPT is needed, indexed
    # by d's value as well as b's (d's own CPT, a constant, is not).
    assert net.elimination_order(("a",), {"b": "1", "d": "0"}) == ()
    plan = net._plan(frozenset("a"), frozenset("bd"), True)
    assert [(owner, axes) for _, owner, axes in plan.reductions] == [("b", ((1, "d"), (2, "b")))]
    assert net.query("a", {"b": "1", "d": "0"}) == pytest.approx(
        {k[0]: p for k, p in brute_force_joint(net, ("a",), {"b": "1", "d": "0"}).items()}, abs=1e-15
    )
    # Without b observed, d tells nothing about a (and c, a barren descendant, drops out too).
    assert net.elimination_order(("a",), {"d": "1"}) == ()
    assert net.query("a", {"d": "1"}) == pytest.approx({"0": 0.3, "1": 0.7}, abs=1e-15)


def test_impossible_evidence_in_a_pruned_part_is_still_reported() -> None:
    # a = 1 is impossible; given b, a is d-separated from c, but a zero CPT outside the
    # requisite part keeps the whole ancestral set, so the impossibility is found.
    net = _chain(zero_in_a=True)
    with pytest.raises(BayesNetError, match="probability 0"):
        net.query("c", {"a": "1", "b": "0"})
    assert net.query("c", {"a": "0", "b": "0"}) == pytest.approx({"0": 0.25, "1": 0.75}, abs=1e-15)


def test_plan_is_reused_across_evidence_values_and_its_constants_stay_intact() -> None:
    net = read_bif(DATA / "alarm.bif")
    first = net.query("HYPOVOLEMIA", {"CVP": "HIGH", "BP": "LOW"})
    assert len(net._plan_cache) == 1
    others = [net.query("HYPOVOLEMIA", {"CVP": c, "BP": b}) for c in ("LOW", "NORMAL") for b in ("HIGH", "LOW")]
    assert len(net._plan_cache) == 1
    assert len({tuple(o.values()) for o in others}) == 4
    assert net.query("HYPOVOLEMIA", {"BP": "LOW", "CVP": "HIGH"}) == first
    prior = net.query("HYPOVOLEMIA")
    assert net.query("HYPOVOLEMIA") == prior  # fully constant plan: the cached array is not modified


@st.composite
def positive_networks(draw: st.DrawFn) -> BayesianNetwork:
    """Binary networks of 6-8 nodes with strictly positive CPTs (so Bayes-ball prunes freely)."""
    n = draw(st.integers(6, 8))
    names = [f"v{i}" for i in range(n)]
    parents = {
        v: tuple(draw(st.lists(st.sampled_from(names[:i]), unique=True, max_size=min(3, i)))) if i else ()
        for i, v in enumerate(names)
    }
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    cpts = {v: rng.dirichlet([0.8, 0.8], size=(2,) * len(parents[v]) or None) for v in names}
    return BayesianNetwork({v: ("s0", "s1") for v in names}, parents, cpts)


@settings(derandomize=True, deadline=None, max_examples=80)
@given(data=st.data())
def test_pruned_plans_match_enumeration_for_every_evidence_value(data: st.DataObject) -> None:
    net = data.draw(positive_networks())
    queried, ev_vars = _draw_query(data, net, min_evidence=1, max_evidence=4)
    # Every evidence value combination of one signature goes through the same cached plan.
    for values in itertools.product(("s0", "s1"), repeat=len(ev_vars)):
        evidence = dict(zip(ev_vars, values))
        expected = brute_force_joint(net, queried, evidence)
        got = net.query_joint(queried, evidence)
        for k in expected:
            assert got[k] == pytest.approx(expected[k], abs=1e-12)
    assert len(net._plan_cache) == 1


def test_plan_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    import node.predict.bayesnet as bayesnet

    monkeypatch.setattr(bayesnet, "PLAN_CACHE_SIZE", 2)
    net = read_bif(ASIA)
    for target in ("lung", "tub", "bronc"):
        net.query(target, {"xray": "yes"})
    assert [key[0] for key in net._plan_cache] == [frozenset({"tub"}), frozenset({"bronc"})]
    assert net.query("lung", {"xray": "yes"}) == pytest.approx(
        {k[0]: p for k, p in brute_force_joint(net, ("lung",), {"xray": "yes"}).items()}
    )
