"""node.predict.bayesnet bounds what a network and a query may cost before expanding anything
(issue 11, item 2): every limit of `Limits` is refused with a LimitError naming it."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.predict import bayesnet
from node.predict.bayesnet import LIMITS, BayesianNetwork, LimitError, Limits, read_bif

from .hostile_bif import all_pairs, one_default_row

DATA = Path(__file__).resolve().parents[2] / "data"


def refused(text: str, limit: str) -> LimitError:
    with pytest.raises(LimitError) as info:
        BayesianNetwork.from_bif(text)
    assert info.value.limit == limit and f"{limit}={getattr(LIMITS, limit):,}" in str(info.value)
    return info.value


@pytest.mark.parametrize("parents", [18, 21])
def test_a_default_row_over_many_parents_is_refused_before_expanding(parents: int) -> None:
    # The files: 2 KB of text that expanded to a 2**22-entry table (159 MB written).
    text = one_default_row(parents)
    assert len(text) < 2100
    err = refused(text, "parents")
    assert f"variable 'x' has {parents} parents" in str(err) and err.line is not None


def test_table_entries_bound_the_product_of_cardinalities() -> None:
    # 12 parents is within the parents limit, but 4**13 entries are not within table_entries.
    err = refused(one_default_row(12, states=4), "table_entries")
    assert "the CPT of 'x'" in str(err)
    BayesianNetwork.from_bif(one_default_row(12))  # 2**13 entries: fine


def test_total_entries_bound_the_sum_over_tables() -> None:
    # Five tables of 4**9 = 262,144 entries each: each within table_entries, 1.3 million in all.
    lines = ["network t {", "}"]
    four = "{ a, b, c, d }"
    names = [f"p{i}" for i in range(8)] + [f"x{j}" for j in range(5)]
    lines += [f"variable {v} {{ type discrete [ 4 ] {four}; }}" for v in names]
    lines += [f"probability ( p{i} ) {{ table 0.25, 0.25, 0.25, 0.25; }}" for i in range(8)]
    parents = ", ".join(f"p{i}" for i in range(8))
    lines += [f"probability ( x{j} | {parents} ) {{ default 0.25, 0.25, 0.25, 0.25; }}" for j in range(5)]
    refused("\n".join(lines), "total_entries")


def test_states_and_variables_are_bounded() -> None:
    many = LIMITS.states + 1
    err = refused(f"variable v {{ type discrete [ {many} ] {{ {', '.join(f's{i}' for i in range(many))} }}; }}", "states")
    assert err.line == 1
    # The count is checked before the states are read, so a huge declared count costs nothing.
    refused("variable v { type discrete [ 999999999999 ] { a }; }", "states")
    lines = [f"variable v{i} {{ type discrete [ 1 ] {{ s }}; }}" for i in range(LIMITS.variables + 1)]
    refused("\n".join(lines), "variables")


def test_the_constructor_and_fit_mle_apply_the_same_limits() -> None:
    small = Limits(variables=2, states=3, parents=1, table_entries=8, total_entries=12)
    two = ("a", "b")
    with pytest.raises(LimitError, match="variables=2"):
        BayesianNetwork({v: two for v in "xyz"}, {}, {v: [0.5, 0.5] for v in "xyz"}, limits=small)
    with pytest.raises(LimitError, match="states=3"):
        BayesianNetwork({"x": ("a", "b", "c", "d")}, {}, {"x": [0.25] * 4}, limits=small)
    with pytest.raises(LimitError, match="parents=1"):
        bayesnet.fit_mle({"x": two, "y": two, "z": two}, {"z": ("x", "y")}, [], limits=Limits(parents=1))
    with pytest.raises(LimitError, match="table_entries"):
        bayesnet.fit_mle({"x": ("a", "b", "c"), "y": ("a", "b", "c")}, {"y": ("x",)}, [], limits=small)


def test_a_query_whose_plan_forms_a_huge_factor_is_refused_before_it_runs() -> None:
    # Every table has at most 8 entries; the evidence couples 40 roots: a 2**40 factor.
    text, evidence = all_pairs(40)
    net = BayesianNetwork.from_bif(text)
    with pytest.raises(LimitError) as info:
        net.query("r0", evidence)
    assert info.value.limit == "factor_entries" and "factor_entries=4,194,304" in str(info.value)
    assert not net._plan_cache  # nothing was compiled, let alone run
    with pytest.raises(LimitError, match="factor_entries"):
        net.map_assignment(evidence)
    # Without the evidence the roots are independent and the query is cheap.
    assert net.query("r0") == pytest.approx({"y": 0.5, "n": 0.5})
    small_text, small_evidence = all_pairs(8)
    assert BayesianNetwork.from_bif(small_text).query("r0", small_evidence)["y"] > 0.5


def test_query_entries_and_the_answer_are_bounded_too() -> None:
    alarm = read_bif(DATA / "alarm.bif")
    tight = BayesianNetwork(alarm.states, alarm.parents, alarm.cpts, limits=Limits(query_entries=50))
    with pytest.raises(LimitError, match="query_entries=50"):
        tight.query("HR", {"BP": "LOW"})
    asia = read_bif(DATA / "asia.bif")
    narrow = BayesianNetwork(asia.states, asia.parents, asia.cpts, limits=Limits(factor_entries=16))
    with pytest.raises(LimitError, match="the answer over the 5 query variables"):
        narrow.query_joint(["asia", "tub", "smoke", "lung", "bronc"])


@pytest.mark.parametrize("name", ["asia", "cancer", "child", "alarm"])
def test_the_shipped_networks_are_well_within_the_limits(name: str) -> None:
    net = read_bif(DATA / f"{name}.bif")
    assert net.limits == LIMITS
    tight = BayesianNetwork(net.states, net.parents, net.cpts, limits=Limits(factor_entries=256, query_entries=4096))
    last = net.variables[-1]
    observed = {v: net.states[v][0] for v in net.variables[: len(net.variables) // 2] if v != last}
    for v in net.variables:
        tight.query(v)
    tight.query(last, observed)


def test_the_plan_cache_is_bounded_in_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bayesnet, "PLAN_CACHE_BYTES", 64)
    net = read_bif(DATA / "alarm.bif")
    for v in net.variables:
        net.query(v)
        assert net._plan_cache_bytes <= 64
        assert net._plan_cache_bytes == sum(p.nbytes for p in net._plan_cache.values())
