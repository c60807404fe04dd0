"""Deterministic tests for node.predict.ensemble (fixed seeds, no randomness elsewhere)."""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from node.predict.ensemble import EnsembleForecast, ensemble_forecast, evaluate, mase, smape

M = 12
H = 12


def _trend_season(seed: int, n: int = 120) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 10 + 0.3 * t + 4 * np.sin(2 * np.pi * t / M) + rng.normal(0, 1.0, n)


def _random_walk(seed: int, n: int = 100) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 50 + np.cumsum(rng.normal(0, 1, n))


def _ar1(seed: int, n: int = 150, phi: float = 0.7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    e = rng.normal(0, 1, n)
    x = np.zeros(n)
    for i in range(1, n):
        x[i] = phi * x[i - 1] + e[i]
    return 20 + x


SERIES: dict[str, tuple[np.ndarray, int | None]] = {
    **{f"trend_season_{s}": (_trend_season(10 + s), M) for s in range(3)},
    **{f"random_walk_{s}": (_random_walk(20 + s), None) for s in range(3)},
    **{f"ar1_{s}": (_ar1(30 + s), None) for s in range(3)},
}


@pytest.fixture(scope="module")
def scores() -> dict[str, dict[str, dict[str, float]]]:
    return {name: evaluate(y, H, m) for name, (y, m) in SERIES.items()}


def test_ensemble_beats_member_average_on_most_series(scores: dict) -> None:
    # threshold: ensemble MASE < mean of its members' MASE on at least 7 of the 9 series
    wins = 0
    for res in scores.values():
        members = [v["mase"] for k, v in res.items() if k != "ensemble"]
        wins += res["ensemble"]["mase"] < np.mean(members)
    assert wins >= 7


def test_ensemble_never_far_worse_than_best_member(scores: dict) -> None:
    # threshold: ensemble MASE <= 2.5 x the best member's MASE (best chosen with hindsight) on every series,
    # and never worse than the worst member
    for name, res in scores.items():
        members = [v["mase"] for k, v in res.items() if k != "ensemble"]
        ens = res["ensemble"]["mase"]
        assert ens <= 2.5 * min(members), name
        assert ens <= max(members), name


def test_inverse_error_weighting_beats_equal_weights_on_most_series(scores: dict) -> None:
    # threshold: the CV-weighted ensemble's MASE <= the equal-weight ensemble's on at least 7 of 9 series
    wins = 0
    for name, (y, m) in SERIES.items():
        eq = evaluate(y, H, m, weighting="mean")["ensemble"]["mase"]
        wins += scores[name]["ensemble"]["mase"] <= eq
    assert wins >= 7


def test_interval_coverage_on_held_out_tails() -> None:
    # threshold: the nominal 90% interval covers >= 80% of the 9 x 12 held-out points overall
    hits = []
    for y, m in SERIES.values():
        ens = ensemble_forecast(y[:-H], H, m)
        tail = y[-H:]
        hits.append((tail >= ens.lower) & (tail <= ens.upper))
    assert np.mean(np.concatenate(hits)) >= 0.8


def test_evaluate_reports_all_members_and_ensemble(scores: dict) -> None:
    res = scores["trend_season_0"]
    assert set(res) == {"naive", "drift", "ses", "holt_damped", "ar", "seasonal_naive",
                        "holt_winters_additive", "holt_winters_multiplicative", "ensemble"}
    for v in res.values():
        assert set(v) == {"smape", "mase"}
        assert 0.0 <= v["smape"] <= 200.0 and v["mase"] >= 0.0
    assert set(scores["ar1_0"]) == {"naive", "drift", "ses", "holt_damped", "ar", "ensemble"}


def test_forecast_shape_frozen_and_weights_sum_to_one() -> None:
    y = _trend_season(10)
    ens = ensemble_forecast(y, H, period=M)
    assert isinstance(ens, EnsembleForecast)
    assert ens.mean.shape == ens.lower.shape == ens.upper.shape == (H,)
    # every fitted member is listed (weight 0 outside the top_k = 2 groups)
    assert len(ens.members) == len(ens.weights) == len(ens.cv_scores) == 8
    assert sum(ens.weights) == pytest.approx(1.0)
    assert all(w >= 0 for w in ens.weights)
    weighted_groups = [g for g in ens.groups if any(ens.weights[ens.members.index(k)] > 0 for k in g)]
    assert len(weighted_groups) == 2 and list(ens.groups[:2]) == weighted_groups
    assert sorted(k for g in ens.groups for k in g) == sorted(ens.members)
    assert ens.level == 0.9
    with pytest.raises(Exception):
        ens.level = 0.5  # type: ignore[misc]


def test_weights_favour_member_with_lower_cv_error() -> None:
    # on a strongly seasonal series Holt-Winters' CV error is far below naive's
    y = _trend_season(11)
    ens = ensemble_forecast(y, H, period=M, methods=["naive", "holt_winters_additive"])
    w = dict(zip(ens.members, ens.weights))
    assert w["holt_winters_additive"] > 0.7 > w["naive"]
    # AR(1) data: ar beats drift
    ens2 = ensemble_forecast(_ar1(30), H, methods=["drift", "ar"])
    w2 = dict(zip(ens2.members, ens2.weights))
    assert w2["ar"] > w2["drift"]


def test_perfect_member_takes_all_weight() -> None:
    # a linear series: drift is exact (MSE 0 -> floored), naive is not -> drift takes ~all weight
    y = 3.0 + 0.5 * np.arange(40)
    ens = ensemble_forecast(y, 4, methods=["naive", "drift"])
    w = dict(zip(ens.members, ens.weights))
    assert w["drift"] > 1 - 1e-9
    np.testing.assert_allclose(ens.mean, 3.0 + 0.5 * np.arange(40, 44), atol=1e-9)


def test_mean_mode_equal_weights() -> None:
    y = _random_walk(20)
    ens = ensemble_forecast(y, 6, methods=["naive", "drift", "ses"], weighting="mean")
    assert ens.weights == pytest.approx((1 / 3, 1 / 3, 1 / 3))
    assert ens.members == ("naive", "drift", "ses")
    assert ens.groups == () and all(np.isnan(v) for v in ens.cv_scores)
    # near-duplicates are not merged in the plain mean: naive and ses both count
    np.testing.assert_allclose(ens.mean, np.mean([ensemble_forecast(y, 6, methods=[k], weighting="mean").mean
                                                  for k in ens.members], axis=0))


def test_interval_is_weighted_average_of_member_bounds() -> None:
    y = _trend_season(12)
    ens = ensemble_forecast(y, H, period=M, level=0.8)
    assert np.all(ens.lower <= ens.mean) and np.all(ens.mean <= ens.upper)
    assert ens.level == 0.8
    from node.predict.timeseries import forecast

    fcs = [forecast(y, H, period=M, method=k, level=0.8) for k in ens.members]
    w = np.array(ens.weights)
    np.testing.assert_allclose(ens.mean, w @ np.array([f.mean for f in fcs]), rtol=1e-12)
    np.testing.assert_allclose(ens.lower, w @ np.array([f.lower for f in fcs]), rtol=1e-12)
    np.testing.assert_allclose(ens.upper, w @ np.array([f.upper for f in fcs]), rtol=1e-12)
    # a wider level gives a wider interval
    wide = ensemble_forecast(y, H, period=M, level=0.95)
    assert np.all(wide.upper - wide.lower >= ens.upper - ens.lower - 1e-9)


def test_unfittable_members_are_skipped() -> None:
    y = _random_walk(21)  # no period: seasonal methods cannot fit
    ens = ensemble_forecast(y, 6, methods=["seasonal_naive", "holt_winters_additive", "naive", "ses"])
    assert ens.members == ("naive", "ses")
    # constant series: ar is skipped, the rest give a flat line
    ens2 = ensemble_forecast(np.full(30, 5.0), 3, methods=["ar", "naive", "drift"])
    assert "ar" not in ens2.members
    np.testing.assert_allclose(ens2.mean, 5.0)
    # seasonal data crossing zero: the default holt_winters_multiplicative member is skipped
    ens3 = ensemble_forecast(_trend_season(16) - 30.0, H, period=M)
    assert "holt_winters_multiplicative" not in ens3.members and "holt_winters_additive" in ens3.members


def test_cv_scores_are_relative_to_naive() -> None:
    y = _trend_season(13)
    ens = ensemble_forecast(y, H, period=M)
    scores = dict(zip(ens.members, ens.cv_scores))
    assert scores["naive"] == pytest.approx(1.0)  # naive against itself
    assert scores["holt_winters_additive"] < 0.2 < scores["drift"]


def test_duplicates_share_one_vote() -> None:
    # holt_winters (additive by default) and holt_winters_additive are the same model: one group,
    # and together they get exactly the weight holt_winters_additive gets alone
    t = np.arange(96)
    y = 10 + 0.3 * t + 4 * np.sin(2 * np.pi * t / M) + np.random.default_rng(11).normal(0, 1.0, 96)
    alone = ensemble_forecast(y, 24, period=M, methods=["holt_winters_additive", "naive", "drift"], top_k=3)
    dup = ensemble_forecast(y, 24, period=M, methods=["holt_winters", "holt_winters_additive", "naive", "drift"],
                            top_k=3)
    wa, wd = dict(zip(alone.members, alone.weights)), dict(zip(dup.members, dup.weights))
    assert ("holt_winters", "holt_winters_additive") in dup.groups
    assert wd["holt_winters"] == pytest.approx(wd["holt_winters_additive"])
    assert wd["holt_winters"] + wd["holt_winters_additive"] == pytest.approx(wa["holt_winters_additive"])
    assert wd["naive"] == pytest.approx(wa["naive"]) and wd["drift"] == pytest.approx(wa["drift"])
    np.testing.assert_allclose(dup.mean, alone.mean)
    # the same for the near-duplicates naive / ses on a random walk (ses fits alpha ~ 1)
    rw = _random_walk(20)
    e3 = ensemble_forecast(rw, 6, methods=["naive", "ses", "ar"])
    e2 = ensemble_forecast(rw, 6, methods=["naive", "ar"])
    w3, w2 = dict(zip(e3.members, e3.weights)), dict(zip(e2.members, e2.weights))
    assert any(set(g) == {"naive", "ses"} for g in e3.groups)
    assert w3["ar"] == pytest.approx(w2["ar"], rel=1e-3)
    # dup_tol = 0: only identical CV forecasts are merged
    e0 = ensemble_forecast(rw, 6, methods=["naive", "ses", "ar"], dup_tol=0.0, top_k=3)
    assert len(e0.groups) == 3


def test_member_failing_at_one_cv_origin_is_kept() -> None:
    # n = 96, h = 24: CV origins 72, 48, 24; Holt-Winters needs 2 * 12 + 2 = 26 points, so it cannot
    # be fitted at origin 24 - it is scored on the other two and, on this seasonal series, leads
    t = np.arange(96)
    y = 10 + 0.3 * t + 4 * np.sin(2 * np.pi * t / M) + np.random.default_rng(11).normal(0, 1.0, 96)
    ens = ensemble_forecast(y, 24, period=M)
    w = dict(zip(ens.members, ens.weights))
    assert "holt_winters_additive" in ens.members
    assert ens.groups[0] == ("holt_winters_additive",)
    assert w["holt_winters_additive"] == max(w.values()) > 0.5


def test_member_failing_at_every_cv_origin_is_dropped() -> None:
    # n = 30, h = 6: CV origins 24, 18, 12 are all too short for Holt-Winters (26); the full series is not
    y = _trend_season(14, n=30)
    ens = ensemble_forecast(y, 6, period=M, methods=["holt_winters_additive", "naive", "drift"])
    assert ens.members == ("naive", "drift")
    # weighting="mean" needs no CV, so there it is a member
    assert "holt_winters_additive" in ensemble_forecast(y, 6, period=M, methods=["holt_winters_additive", "naive"],
                                                        weighting="mean").members


def test_top_k_trims_and_weights_by_inverse_score() -> None:
    y = _trend_season(15)
    one = ensemble_forecast(y, H, period=M, top_k=1)
    assert sum(w > 0 for w in one.weights) == len(one.groups[0])
    everyone = ensemble_forecast(y, H, period=M, top_k=99, dup_tol=0.0)
    assert all(w > 0 for w in everyone.weights)
    # dup_tol = 0 and no identical members: singleton groups, w_i proportional to 1 / score_i
    assert all(len(g) == 1 for g in everyone.groups)
    inv = 1 / np.array(everyone.cv_scores)
    np.testing.assert_allclose(everyone.weights, inv / inv.sum(), rtol=1e-12)
    s = dict(zip(everyone.members, everyone.cv_scores))
    w = dict(zip(everyone.members, everyone.weights))
    assert w["holt_winters_additive"] / w["naive"] == pytest.approx(s["naive"] / s["holt_winters_additive"])


@pytest.mark.parametrize("kwargs", [
    {"methods": ["seasonal_naive"]},            # no member can fit (no period)
    {"methods": []},
    {"methods": ["bogus"]},
    {"methods": ["auto"]},
    {"methods": "naive"},
    {"weighting": "median"},
    {"level": 1.0},
    {"level": 0.0},
    {"n_origins": 0},
    {"top_k": 0},
    {"top_k": 1.5},
    {"dup_tol": -0.1},
    {"dup_tol": float("nan")},
    {"dup_tol": "x"},
    {"horizon": 0},
])
def test_value_errors(kwargs: dict) -> None:
    args: dict[str, Any] = {"y": _random_walk(22), "horizon": 5}
    args.update(kwargs)
    with pytest.raises(ValueError):
        ensemble_forecast(**args)


def test_value_errors_bad_series() -> None:
    with pytest.raises(ValueError):
        ensemble_forecast(np.array([1.0, np.nan, 2.0, 3.0]), 1)
    with pytest.raises(ValueError):
        ensemble_forecast(np.ones((3, 3)), 1)
    with pytest.raises(ValueError):
        ensemble_forecast(np.arange(5.0), 3)  # too short for any CV origin
    with pytest.raises(ValueError):
        evaluate(np.arange(5.0), 5)


def test_smape_and_mase_values() -> None:
    assert smape([1.0, 2.0], [1.0, 2.0]) == 0.0
    assert smape([0.0], [0.0]) == 0.0
    assert smape([1.0], [3.0]) == pytest.approx(100.0)
    assert smape([0.0], [1.0]) == pytest.approx(200.0)
    train = np.array([1.0, 2.0, 4.0, 7.0])  # naive one-step MAE = (1 + 2 + 3) / 3 = 2
    assert mase([10.0, 10.0], [11.0, 7.0], train) == pytest.approx(1.0)
    train_s = np.array([1.0, 5.0, 2.0, 7.0])  # lag-2 MAE = (1 + 2) / 2 = 1.5
    assert mase([0.0], [3.0], train_s, period=2) == pytest.approx(2.0)
    with pytest.raises(ValueError):
        mase([1.0], [1.0], np.ones(5))
    with pytest.raises(ValueError):
        smape([1.0, 2.0], [1.0])
