"""Scenarios: named bucket scenarios, fitting from prices, bootstrap, shocks, GBM and model trees."""

from __future__ import annotations

import math

import numpy as np
import pytest

from node.predict.montecarlo import simulate_gbm
from node.predict.scenarios import (
    ModelTree,
    Scenario,
    ScenarioSet,
    apply_shock,
    expected_value,
    fit_gbm,
    from_prices,
    historical_bootstrap,
    model_tree,
    named_scenarios,
    scenario_tree,
)
from node.predict.timeseries import fit_ar, forecast


@pytest.fixture(scope="module")
def gbm_paths() -> np.ndarray:
    return simulate_gbm(100.0, 0.05, 0.2, 1.0, 50, 20_000, seed=7)


@pytest.fixture(scope="module")
def named(gbm_paths: np.ndarray) -> ScenarioSet:
    return named_scenarios(gbm_paths)


def _synthetic_prices(mu: float, sigma: float, n: int, seed: int) -> np.ndarray:
    return simulate_gbm(50.0, mu, sigma, float(n), n, 1, seed=seed)[0]


# ---------------------------------------------------------------------------------------------
# named scenarios


def test_named_probabilities_sum_to_one(named: ScenarioSet) -> None:
    assert named.names == ("stress", "bear", "base", "bull")
    assert math.isclose(named.probabilities.sum(), 1.0, abs_tol=1e-12)
    assert named["stress"].probability == pytest.approx(0.01)
    assert named["bear"].probability == pytest.approx(0.19)
    assert named["base"].probability == pytest.approx(0.6)
    assert named["bull"].probability == pytest.approx(0.2)


def test_named_ordering_and_stress(named: ScenarioSet, gbm_paths: np.ndarray) -> None:
    t = {s.name: s.terminal for s in named.scenarios}
    assert t["stress"] < t["bear"] < t["base"] < t["bull"]
    terminals = gbm_paths[:, -1]
    assert t["stress"] == pytest.approx(np.quantile(terminals, 0.01), rel=1e-3)
    assert t["base"] == pytest.approx(np.median(terminals), rel=1e-3)
    # bear is the median of the (0.01, 0.2] mass, bull of the top 20%
    assert t["bear"] == pytest.approx(np.quantile(terminals, 0.105), rel=2e-3)
    assert t["bull"] == pytest.approx(np.quantile(terminals, 0.9), rel=2e-3)


def test_named_paths_are_real_simulated_paths(named: ScenarioSet, gbm_paths: np.ndarray) -> None:
    assert named.horizon == 50
    for s in named.scenarios:
        assert s.path.shape == (51,)
        assert s.path[0] == 100.0
        assert s.terminal == s.path[-1]
        assert np.any(np.all(gbm_paths == s.path, axis=1))
        assert not s.path.flags.writeable


def test_named_custom_buckets_and_no_stress(gbm_paths: np.ndarray) -> None:
    probs = {"crash": 0.1, "down": 0.2, "flat": 0.4, "up": 0.2, "boom": 0.1}
    s = named_scenarios(gbm_paths, probs, stress_quantile=None)
    assert s.names == tuple(probs)
    assert np.all(np.diff(s.terminals) > 0)
    assert math.isclose(s.probabilities.sum(), 1.0)


def test_named_from_terminal_values() -> None:
    x = np.arange(1000.0)
    s = named_scenarios(x)
    assert s.horizon == 0
    assert s["stress"].terminal == 10.0
    assert s["bear"].terminal < s["base"].terminal < s["bull"].terminal
    assert s["base"].terminal == pytest.approx(499.5, abs=1)


def test_named_is_deterministic() -> None:
    a = named_scenarios(simulate_gbm(1.0, 0.0, 0.3, 1.0, 10, 2000, seed=3))
    b = named_scenarios(simulate_gbm(1.0, 0.0, 0.3, 1.0, 10, 2000, seed=3))
    for x, y in zip(a.scenarios, b.scenarios):
        assert np.array_equal(x.path, y.path)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"probabilities": {"bear": 0.3, "base": 0.6, "bull": 0.2}},  # sums to 1.1
        {"probabilities": {"bear": 0.0, "base": 0.8, "bull": 0.2}},
        {"probabilities": {}},
        {"probabilities": {"bear": float("nan"), "base": 0.8, "bull": 0.2}},
        {"stress_quantile": 0.2},  # not below the bear probability
        {"stress_quantile": -0.01},
        {"probabilities": {"stress": 0.2, "base": 0.8}},  # name clash
    ],
)
def test_named_bad_arguments(gbm_paths: np.ndarray, kwargs: dict) -> None:
    with pytest.raises(ValueError):
        named_scenarios(gbm_paths, **kwargs)


def test_named_bad_samples() -> None:
    with pytest.raises(ValueError):
        named_scenarios(np.ones((2, 3, 4)))
    with pytest.raises(ValueError):
        named_scenarios(np.array([1.0, np.nan] * 100))
    with pytest.raises(ValueError):
        named_scenarios(np.arange(10.0))  # too few for a 1% stress bucket


# ---------------------------------------------------------------------------------------------
# scenario containers


def test_scenario_set_validation() -> None:
    a = Scenario("a", 0.5, np.array([1.0, 2.0]), 2.0)
    b = Scenario("b", 0.4, np.array([1.0, 0.5]), 0.5)
    with pytest.raises(ValueError, match="sum to 1"):
        ScenarioSet((a, b), 1)
    with pytest.raises(ValueError, match="unique"):
        ScenarioSet((a, Scenario("a", 0.5, np.array([1.0, 3.0]), 3.0)), 1)
    with pytest.raises(ValueError, match="horizon"):
        ScenarioSet((a, Scenario("b", 0.5, np.array([1.0, 3.0]), 3.0)), 2)
    with pytest.raises(ValueError):
        ScenarioSet((), 1)
    with pytest.raises(ValueError):
        Scenario("x", 1.5, np.array([1.0]), 1.0)
    with pytest.raises(ValueError):
        Scenario("", 0.5, np.array([1.0]), 1.0)
    with pytest.raises(ValueError):
        Scenario("x", 0.5, np.array([np.inf]), 1.0)
    ok = ScenarioSet((a, Scenario("b", 0.5, np.array([1.0, 3.0]), 3.0)), 1)
    assert ok.expected_terminal() == pytest.approx(2.5)
    with pytest.raises(KeyError):
        ok["zzz"]


def test_equality_compares_values() -> None:
    a = Scenario("a", 1.0, np.array([1.0, 2.0]), 2.0)
    assert a == Scenario("a", 1.0, np.array([1.0, 2.0]), 2.0)
    assert a != Scenario("a", 1.0, np.array([1.0, 2.5]), 2.0)
    assert ScenarioSet((a,), 1) == ScenarioSet((Scenario("a", 1.0, np.array([1.0, 2.0]), 2.0),), 1)
    assert scenario_tree(1.0, 0.0, 0.1, 2) == scenario_tree(1.0, 0.0, 0.1, 2)
    assert scenario_tree(1.0, 0.0, 0.1, 2) != scenario_tree(1.0, 0.0, 0.2, 2)


# ---------------------------------------------------------------------------------------------
# from prices / bootstrap


def test_fit_gbm_recovers_parameters() -> None:
    mu, sigma = 0.0004, 0.015
    prices = _synthetic_prices(mu, sigma, 20_000, seed=11)
    fit = fit_gbm(prices)
    assert fit.sigma == pytest.approx(sigma, rel=0.03)
    # drift standard error is sigma / sqrt(n) ~ 1e-4
    assert abs(fit.mu - mu) < 3.5 * sigma / math.sqrt(20_000)


def test_from_prices_recovers_drift_and_vol() -> None:
    mu, sigma = 0.0005, 0.02
    prices = _synthetic_prices(mu, sigma, 10_000, seed=5)
    s = from_prices(prices, horizon_steps=20, paths=20_000, seed=1)
    assert s.meta["sigma"] == pytest.approx(sigma, rel=0.05)
    assert abs(s.meta["mu"] - mu) < 4 * sigma / math.sqrt(10_000)
    s0 = prices[-1]
    assert s.meta["s0"] == s0
    assert s.names == ("stress", "bear", "base", "bull")
    assert all(sc.path[0] == pytest.approx(s0) for sc in s.scenarios)
    t = s.terminals
    assert np.all(np.diff(t) > 0)
    fit_mu, fit_sigma = s.meta["mu"], s.meta["sigma"]
    median = s0 * math.exp((fit_mu - 0.5 * fit_sigma**2) * 20)
    assert s["base"].terminal == pytest.approx(median, rel=0.01)
    # the 1% stress quantile of a log-normal terminal
    q01 = s0 * math.exp((fit_mu - 0.5 * fit_sigma**2) * 20 - 2.326 * fit_sigma * math.sqrt(20))
    assert s["stress"].terminal == pytest.approx(q01, rel=0.02)


def test_from_prices_is_seeded() -> None:
    prices = _synthetic_prices(0.0, 0.01, 500, seed=2)
    a = from_prices(prices, 10, paths=1000, seed=4)
    b = from_prices(prices, 10, paths=1000, seed=4)
    c = from_prices(prices, 10, paths=1000, seed=5)
    assert np.array_equal(a.terminals, b.terminals)
    assert not np.array_equal(a.terminals, c.terminals)


@pytest.mark.parametrize(
    "prices",
    [np.array([1.0, 2.0]), np.array([1.0, -2.0, 3.0, 4.0]), np.array([1.0, np.nan, 2.0, 3.0]), np.ones((3, 3))],
)
def test_from_prices_bad_prices(prices: np.ndarray) -> None:
    with pytest.raises(ValueError):
        from_prices(prices, 5, paths=200)
    with pytest.raises(ValueError):
        historical_bootstrap(prices, 5, 10)


def test_from_prices_bad_horizon() -> None:
    prices = _synthetic_prices(0.0, 0.01, 100, seed=2)
    for h in (0, -1, 2.5, True):
        with pytest.raises(ValueError):
            from_prices(prices, h, paths=200)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            historical_bootstrap(prices, h, 10)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        from_prices(prices, 5, paths=0)
    with pytest.raises(ValueError):
        historical_bootstrap(prices, 5, 0)
    with pytest.raises(ValueError):
        from_prices(prices, 5, dt=0.0)


def test_historical_bootstrap() -> None:
    prices = _synthetic_prices(0.0, 0.01, 300, seed=9)
    s = historical_bootstrap(prices, horizon_steps=15, n_scenarios=40, seed=3)
    assert len(s) == 40 and s.horizon == 15
    assert np.allclose(s.probabilities, 1 / 40)
    assert math.isclose(s.probabilities.sum(), 1.0)
    returns = np.diff(np.log(prices))
    for sc in s.scenarios:
        assert sc.path[0] == pytest.approx(prices[-1])
        steps = np.diff(np.log(sc.path))
        # every step is one of the historical log returns
        assert np.all(np.min(np.abs(steps[:, None] - returns[None, :]), axis=1) < 1e-12)
    again = historical_bootstrap(prices, 15, 40, seed=3)
    assert np.array_equal(s.terminals, again.terminals)
    short = historical_bootstrap(prices[:4], 6, 5, seed=0)  # block capped at 3 returns
    assert short.horizon == 6


# ---------------------------------------------------------------------------------------------
# shocks


def _simple_set() -> ScenarioSet:
    a = Scenario("low", 0.5, np.array([10.0, 9.0, 8.0, 7.0]), 7.0)
    b = Scenario("high", 0.5, np.array([10.0, 11.0, 12.0, 13.0]), 13.0)
    return ScenarioSet((a, b), 3)


def test_shock_multiply_at_step() -> None:
    s = _simple_set()
    out = apply_shock(s, {"multiply": 0.5}, step=2)
    assert np.allclose(out["low"].path, [10.0, 9.0, 4.0, 3.5])
    assert np.allclose(out["high"].path, [10.0, 11.0, 6.0, 6.5])
    assert out["low"].terminal == 3.5 and out["high"].terminal == 6.5
    # original untouched, probabilities unchanged
    assert np.allclose(s["low"].path, [10.0, 9.0, 8.0, 7.0])
    assert np.array_equal(out.probabilities, s.probabilities)


def test_shock_add_selected_names_and_chain() -> None:
    s = _simple_set()
    out = apply_shock(s, {"add": -5}, step=1, names=["high"])
    assert np.allclose(out["high"].path, [10.0, 6.0, 7.0, 8.0])
    assert np.array_equal(out["low"].path, s["low"].path)
    out2 = apply_shock(out, {"add": 1}, step=3)
    assert out2["low"].terminal == 8.0 and out2["high"].terminal == 9.0
    at0 = apply_shock(s, {"multiply": 2}, step=0)
    assert np.allclose(at0["low"].path, 2 * s["low"].path)


def test_shock_on_named_scenarios(named: ScenarioSet) -> None:
    out = apply_shock(named, {"multiply": 0.8}, step=10)
    for a, b in zip(named.scenarios, out.scenarios):
        assert np.array_equal(a.path[:10], b.path[:10])
        assert np.allclose(b.path[10:], 0.8 * a.path[10:])
    assert out.expected_terminal() == pytest.approx(0.8 * named.expected_terminal())


@pytest.mark.parametrize(
    "shock, step",
    [
        ({"multiply": 0.8}, 4),
        ({"multiply": 0.8}, -1),
        ({"multiply": 0.8}, 1.5),
        ({"multiply": -0.1}, 1),
        ({"add": float("inf")}, 1),
        ({"divide": 2}, 1),
        ({"multiply": 0.8, "add": 1}, 1),
        ({}, 1),
        ({"add": "x"}, 1),
    ],
)
def test_shock_bad_inputs(shock: dict, step: object) -> None:
    with pytest.raises(ValueError):
        apply_shock(_simple_set(), shock, step)  # type: ignore[arg-type]


def test_shock_unknown_name() -> None:
    with pytest.raises(ValueError, match="unknown"):
        apply_shock(_simple_set(), {"add": 1}, 1, names=["nope"])


# ---------------------------------------------------------------------------------------------
# trees


@pytest.mark.parametrize("branching", [2, 3])
def test_tree_moments_match_gbm(branching: int) -> None:
    s0, mu, sigma, steps, dt = 100.0, 0.0004, 0.02, 6, 1.0
    tree = scenario_tree(s0, mu, sigma, steps, branching=branching, dt=dt)
    values, probs = tree.leaves()
    assert values.shape == (branching**steps,) == probs.shape
    assert math.isclose(probs.sum(), 1.0, abs_tol=1e-12)
    T = steps * dt
    m, v = tree.log_return_moments()
    assert m == pytest.approx((mu - 0.5 * sigma**2) * T, rel=1e-10)
    assert v == pytest.approx(sigma**2 * T, rel=1e-10)
    assert expected_value(tree) == pytest.approx(s0 * math.exp(mu * T), rel=1e-6)
    for k in range(steps + 1):
        assert math.isclose(tree.probabilities[k].sum(), 1.0, abs_tol=1e-12)
        assert tree.expected_value(k) == pytest.approx(s0 * math.exp(mu * k * dt), rel=1e-6)


def test_tree_trinomial_structure() -> None:
    tree = scenario_tree(10.0, 0.05, 0.2, 3, dt=0.25)
    assert tree.branching == 3 and tree.steps == 3
    assert [len(v) for v in tree.values] == [1, 3, 9, 27]
    # parent of node i at level k+1 is i // 3: each child is the parent times one step factor
    ratios = tree.values[2] / np.repeat(tree.values[1], 3)
    assert np.allclose(ratios.reshape(3, 3), ratios[:3])
    assert np.allclose(tree.probabilities[1], [1 / 6, 2 / 3, 1 / 6])
    # trinomial kurtosis matches the normal (Gauss-Hermite): E[(x-m)^4] = 3 v^2
    x = np.log(tree.values[1] / 10.0)
    m = tree.probabilities[1] @ x
    v = 0.04 * 0.25
    assert tree.probabilities[1] @ (x - m) ** 4 == pytest.approx(3 * v * v)
    assert expected_value(tree) == pytest.approx(10.0 * math.exp(0.05 * 0.75), rel=1e-6)
    assert not tree.values[1].flags.writeable


@pytest.mark.parametrize("branching", [2, 3])
def test_tree_mean_matching_is_exact(branching: int) -> None:
    s0, mu, sigma, steps = 100.0, 0.08, 0.3, 5
    tree = scenario_tree(s0, mu, sigma, steps, branching=branching, match="mean")
    for k in range(steps + 1):
        assert tree.expected_value(k) == pytest.approx(s0 * math.exp(mu * k), rel=1e-12)
    m, v = tree.log_return_moments()
    assert v == pytest.approx(sigma**2 * steps, rel=1e-10)
    assert m == pytest.approx((mu - 0.5 * sigma**2) * steps, abs=0.01)
    with pytest.raises(ValueError):
        scenario_tree(s0, mu, sigma, steps, match="median")  # type: ignore[arg-type]


def test_tree_paths_and_scenario_set() -> None:
    tree = scenario_tree(10.0, 0.01, 0.05, 3, branching=2)
    paths = tree.paths()
    assert paths.shape == (8, 4)
    assert np.all(paths[:, 0] == 10.0)
    assert np.array_equal(paths[:, -1], tree.leaves()[0])
    assert np.array_equal(paths[:, 1], np.repeat(tree.values[1], 4))
    s = tree.to_scenario_set()
    assert len(s) == 8 and s.horizon == 3
    assert math.isclose(s.probabilities.sum(), 1.0)
    assert s.expected_terminal() == pytest.approx(expected_value(tree))
    shocked = apply_shock(s, {"multiply": 0.9}, step=2)
    assert shocked.expected_terminal() == pytest.approx(0.9 * expected_value(tree))


def test_tree_zero_vol_is_deterministic() -> None:
    tree = scenario_tree(5.0, 0.1, 0.0, 4, branching=2)
    assert np.allclose(tree.leaves()[0], 5.0 * math.exp(0.4))


@pytest.mark.parametrize(
    "args, kwargs",
    [
        ((0.0, 0.0, 0.2, 3), {}),
        ((100.0, 0.0, -0.2, 3), {}),
        ((100.0, float("nan"), 0.2, 3), {}),
        ((100.0, 0.0, 0.2, 0), {}),
        ((100.0, 0.0, 0.2, 3), {"branching": 4}),
        ((100.0, 0.0, 0.2, 3), {"branching": 1}),
        ((100.0, 0.0, 0.2, 3), {"dt": 0.0}),
        ((100.0, 0.0, 0.2, 30), {}),  # 3**30 leaves
        ((100.0, 0.0, 3.0, 5), {"branching": 2}),  # sigma^2 dt far too large: E[S_T] way off
    ],
)
def test_tree_bad_inputs(args: tuple, kwargs: dict) -> None:
    with pytest.raises(ValueError):
        scenario_tree(*args, **kwargs)


def test_expected_value_bad_inputs() -> None:
    tree = scenario_tree(1.0, 0.0, 0.1, 2)
    with pytest.raises(ValueError):
        expected_value(tree, 3)
    with pytest.raises(ValueError):
        expected_value("tree")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# model-driven trees


def _ar1(n: int, c: float, phi: float, sd: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y = np.empty(n)
    y[0] = c / (1 - phi)
    for t in range(1, n):
        y[t] = c + phi * y[t - 1] + sd * rng.standard_normal()
    return y


def _seasonal(n: int, period: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 20.0 + 0.05 * t + 3.0 * np.sin(2 * np.pi * t / period) + 0.5 * rng.standard_normal(n)


def _normal_sd(f: object) -> np.ndarray:
    """The sd behind a Forecast's normal interval: (upper - lower) / (2 z)."""
    from scipy import stats

    z = stats.norm.ppf(0.5 + f.level / 2)  # type: ignore[attr-defined]
    return (f.upper - f.lower) / (2 * z)  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def ar_series() -> np.ndarray:
    return _ar1(400, 2.0, 0.7, 1.5, seed=11)


@pytest.mark.parametrize("branching", [2, 3])
@pytest.mark.parametrize("method", ["naive", "drift", "ses", "holt", "holt_damped", "ar", "auto"])
def test_model_tree_mean_is_the_point_forecast(ar_series: np.ndarray, method: str, branching: int) -> None:
    steps = 5
    tree = model_tree(ar_series, steps, branching, method=method)
    f = forecast(ar_series, steps, method=method)
    assert tree.method == f.method and tree.linear
    assert np.array_equal(tree.forecast.mean, f.mean)
    assert tree.values[0][0] == ar_series[-1] and tree.expected_value(0) == ar_series[-1]
    for k in range(steps + 1):
        assert tree.values[k].shape == (branching**k,) == tree.probabilities[k].shape
        assert math.isclose(tree.probabilities[k].sum(), 1.0, abs_tol=1e-12)
    for k in range(1, steps + 1):
        assert tree.expected_value(k) == pytest.approx(f.mean[k - 1], rel=1e-12, abs=1e-9)
    assert tree.mean_gap < 1e-9


@pytest.mark.parametrize("method", ["seasonal_naive", "holt_winters", "holt_winters_additive", "auto"])
def test_model_tree_seasonal_mean_is_the_point_forecast(method: str) -> None:
    y = _seasonal(96, 12, seed=5)
    tree = model_tree(y, 8, 3, period=12, method=method)
    f = forecast(y, 8, period=12, method=method)
    assert tree.method == f.method
    for k in range(1, 9):
        assert tree.expected_value(k) == pytest.approx(f.mean[k - 1], rel=1e-12, abs=1e-9)


def test_model_tree_multiplicative_is_exact_within_a_season_then_close() -> None:
    y = _seasonal(96, 4, seed=6)
    tree = model_tree(y, 9, 2, period=4, method="holt_winters_multiplicative")
    assert not tree.linear
    mean = tree.forecast.mean
    for k in range(1, 5):  # k <= period: the seasonal factors used are not yet updated
        assert tree.expected_value(k) == pytest.approx(mean[k - 1], rel=1e-12)
    for k in range(5, 10):  # a second-order gap after one season, small against the spread
        assert abs(tree.expected_value(k) - mean[k - 1]) < 0.05 * math.sqrt(tree.variance(k))
    assert tree.mean_gap == pytest.approx(max(abs(tree.expected_value(k) - mean[k - 1]) for k in range(1, 10)))


@pytest.mark.parametrize("branching", [2, 3])
def test_model_tree_random_walk_variance(branching: int) -> None:
    rng = np.random.default_rng(3)
    sd = 2.0
    y = 50.0 + np.cumsum(sd * rng.standard_normal(2000))
    tree = model_tree(y, 6, branching, method="naive")
    sigma = float(np.sqrt(np.mean(np.diff(y) ** 2)))
    assert tree.sigma == pytest.approx(sigma) and sigma == pytest.approx(sd, rel=0.05)
    fsd = _normal_sd(tree.forecast)
    for k in range(1, 7):
        assert tree.expected_value(k) == pytest.approx(y[-1], rel=1e-12)
        assert tree.variance(k) == pytest.approx(sigma**2 * k, rel=1e-10)  # exactly the model's
        assert math.sqrt(tree.variance(k)) == pytest.approx(fsd[k - 1], rel=1e-9)
        assert tree.variance(k) == pytest.approx(sd**2 * k, rel=0.1)  # and near the truth


def test_model_tree_ar1_variance(ar_series: np.ndarray) -> None:
    tree = model_tree(ar_series, 6, 3, method="ar", max_p=1)
    fit = fit_ar(ar_series, max_p=1)
    assert tree.method == "ar(1)" and fit.p == 1
    phi = float(fit.coefs[0])
    assert phi == pytest.approx(0.7, abs=0.08)
    fsd = _normal_sd(tree.forecast)
    for k in range(1, 7):
        expected = fit.sigma2 * sum(phi ** (2 * j) for j in range(k))
        assert tree.variance(k) == pytest.approx(expected, rel=1e-10)
        assert math.sqrt(tree.variance(k)) == pytest.approx(fsd[k - 1], rel=1e-9)
        # the conditional mean decays towards c / (1 - phi) along every path
        assert tree.expected_value(k) == pytest.approx(
            fit.intercept / (1 - phi) + phi**k * (ar_series[-1] - fit.intercept / (1 - phi)), rel=1e-10
        )
    # children follow their own parent's path: each trinomial family is centred on c + phi * parent
    parents = np.repeat(tree.values[2], 3)
    centred = tree.values[3] - (fit.intercept + phi * parents)
    assert np.allclose(centred.reshape(-1, 3), centred[:3])
    assert np.allclose(centred[:3], [-math.sqrt(3) * tree.sigma, 0.0, math.sqrt(3) * tree.sigma])


def test_model_tree_spread_equals_analytic_es_intervals() -> None:
    # holt, holt_damped and additive Holt-Winters have analytic intervals with the tree's sigma and
    # recursion, so the level-k variance is the forecast's variance (period 4 with 7 steps also
    # exercises the seasonal term of the innovation weights)
    for y, period, steps in ((_seasonal(120, 12, seed=9), 12, 8), (_seasonal(60, 4, seed=9), 4, 7)):
        for method in ("holt", "holt_damped", "holt_winters_additive"):
            tree = model_tree(y, steps, 3, period=period, method=method)
            assert tree.method == method
            tree_sd = np.array([math.sqrt(tree.variance(k)) for k in range(1, steps + 1)])
            assert np.allclose(tree_sd, _normal_sd(tree.forecast), rtol=1e-9, atol=0), (method, period)
            sds = [tree.variance(k) for k in range(1, steps + 1)]
            assert all(a < b for a, b in zip(sds, sds[1:]))  # the spread grows with the horizon


def test_model_tree_paths_and_scenario_set(ar_series: np.ndarray) -> None:
    tree = model_tree(ar_series, 3, 2, method="ar", max_p=1)
    assert isinstance(tree, ModelTree)
    paths = tree.paths()
    assert paths.shape == (8, 4) and np.all(paths[:, 0] == ar_series[-1])
    assert np.array_equal(paths[:, -1], tree.leaves()[0])
    s = tree.to_scenario_set()
    assert len(s) == 8 and s.horizon == 3
    assert s.expected_terminal() == pytest.approx(expected_value(tree))
    assert not tree.values[2].flags.writeable
    assert model_tree(ar_series, 3, 2, method="ar", max_p=1) == tree
    assert expected_value(tree, 2) == tree.expected_value(2)


def test_model_tree_integral_float_period() -> None:
    y = _seasonal(48, 4, seed=2)
    assert model_tree(y, 5, 2, period=4.0, method="seasonal_naive") == model_tree(  # type: ignore[arg-type]
        y, 5, 2, period=4, method="seasonal_naive"
    )


def test_model_tree_constant_series_is_flat() -> None:
    tree = model_tree(np.full(30, 4.0), 3, method="auto")
    assert tree.method == "naive" and tree.sigma == 0.0
    assert np.all(tree.values[3] == 4.0)


@pytest.mark.parametrize(
    "args, kwargs, match",
    [
        (([1.0, 2.0, float("nan"), 4.0], 3), {}, "NaN"),
        (([[1.0, 2.0], [3.0, 4.0]], 3), {}, "1-D"),
        ((list(range(40)), 0), {}, "steps"),
        ((list(range(40)), 2.5), {}, "steps"),
        ((list(range(40)), 3), {"branching": 4}, "branching"),
        ((list(range(40)), 3), {"branching": True}, "branching"),
        ((list(range(40)), 13), {}, "max_nodes"),  # 3**13 leaves
        ((list(range(40)), 5), {"max_nodes": 100}, "max_nodes"),
        ((list(range(40)), 3), {"method": "gbm"}, "unknown method"),
        ((list(range(40)), 3), {"method": "holt_winters"}, "period"),
        ((list(range(40)), 3), {"method": "seasonal_naive", "period": 30}, "period"),
        (([1.0, 2.0, 3.0], 3), {"method": "ar"}, "too short"),
        ((list(range(40)), 3), {"level": 1.5}, "level"),
        ((list(range(40)), 3), {"method": "seasonal_naive", "period": 4.5}, "period"),
        ((list(range(40)), 3), {"method": "seasonal_naive", "period": "4"}, "period"),
        ((list(range(40)), 3), {"method": "seasonal_naive", "period": 1}, "period"),
    ],
)
def test_model_tree_bad_inputs(args: tuple, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        model_tree(*args, **kwargs)


def _arma(n: int, phi: float, theta: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    e = rng.standard_normal(n + 100)
    w = np.zeros(n + 100)
    for t in range(1, n + 100):
        w[t] = phi * w[t - 1] + e[t] + theta * e[t - 1]
    return w[100:]


@pytest.mark.parametrize(
    "y",
    [
        _arma(150, 0.5, 0.8, 1) + 5.0,  # d = 0, a mean
        np.cumsum(_arma(200, 0.3, 0.0, 2) + 0.2) + 50.0,  # d = 1, a drift
        np.cumsum(np.cumsum(np.random.default_rng(3).standard_normal(120) * 0.1)) + 10.0,  # d = 2
    ],
    ids=["d0", "d1", "d2"],
)
@pytest.mark.parametrize("branching", [2, 3])
def test_model_tree_arima_matches_its_forecast_exactly(y: np.ndarray, branching: int) -> None:
    """The ARIMA recursion (state space plus integration tail) gives the forecast's mean and its
    analytic predictive variance at every level, for every d."""
    tree = model_tree(y, 4, branching, method="arima")
    assert tree.method.startswith("arima(") and tree.linear
    fsd = _normal_sd(tree.forecast)
    for k in range(1, 5):
        assert tree.expected_value(k) == pytest.approx(tree.forecast.mean[k - 1], rel=1e-12)
        assert math.sqrt(tree.variance(k)) == pytest.approx(fsd[k - 1], rel=1e-9)
    assert tree.mean_gap < 1e-9 * max(1.0, float(np.max(np.abs(y))))
