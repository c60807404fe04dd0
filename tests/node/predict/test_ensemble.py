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
                        "holt_winters_additive", "ensemble"}
    for v in res.values():
        assert set(v) == {"smape", "mase"}
        assert 0.0 <= v["smape"] <= 200.0 and v["mase"] >= 0.0
    assert set(scores["ar1_0"]) == {"naive", "drift", "ses", "holt_damped", "ar", "ensemble"}


def test_forecast_shape_frozen_and_weights_sum_to_one() -> None:
    y = _trend_season(10)
    ens = ensemble_forecast(y, H, period=M)
    assert isinstance(ens, EnsembleForecast)
    assert ens.mean.shape == ens.lower.shape == ens.upper.shape == (H,)
    assert len(ens.members) == len(ens.weights) == 7
    assert sum(ens.weights) == pytest.approx(1.0)
    assert all(w > 0 for w in ens.weights)
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


def test_weights_follow_inverse_mae_exactly() -> None:
    # a linear series: drift is exact (MAE 0 -> floored), naive is not -> drift takes ~all weight
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


def test_interval_contains_mean_and_widens_with_disagreement() -> None:
    y = _trend_season(12)
    ens = ensemble_forecast(y, H, period=M, level=0.8)
    assert np.all(ens.lower <= ens.mean) and np.all(ens.mean <= ens.upper)
    assert ens.level == 0.8
    # the combined interval is at least as wide as the weighted member interval
    from node.predict.timeseries import forecast

    fcs = [forecast(y, H, period=M, method=k, level=0.8) for k in ens.members]
    w = np.array(ens.weights)
    lo_w = w @ np.array([f.lower for f in fcs])
    up_w = w @ np.array([f.upper for f in fcs])
    assert np.all(ens.lower <= lo_w + 1e-9) and np.all(ens.upper >= up_w - 1e-9)
    assert np.any(ens.upper - ens.lower > up_w - lo_w + 1e-6)  # members disagree here


def test_unfittable_members_are_skipped() -> None:
    y = _random_walk(21)  # no period: seasonal methods cannot fit
    ens = ensemble_forecast(y, 6, methods=["seasonal_naive", "holt_winters_additive", "naive", "ses"])
    assert ens.members == ("naive", "ses")
    # constant series: ar is skipped, the rest give a flat line
    ens2 = ensemble_forecast(np.full(30, 5.0), 3, methods=["ar", "naive", "drift"])
    assert "ar" not in ens2.members
    np.testing.assert_allclose(ens2.mean, 5.0)


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
