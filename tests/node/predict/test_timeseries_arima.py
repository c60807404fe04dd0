"""ARIMA(p, d, q) in node.predict.timeseries: parameter recovery on simulated series, the exact
likelihood against an independent Kalman filter, the choice of d, interval coverage, the
forecast recursion by hand, bad input. Deterministic: fixed seeds, derandomized hypothesis."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.predict.timeseries import (
    METHODS,
    ArimaFit,
    arima_forecast,
    auto_arima,
    fit_arima,
    forecast,
    kpss_statistic,
    ndiffs,
)


def _simulate(n: int, phi: list[float], theta: list[float], d: int = 0, mean: float = 0.0, sd: float = 1.0,
              seed: int = 0, burn: int = 300) -> np.ndarray:
    """ARIMA(p, d, q): the ARMA (with mean) on the d-th differences, a burn-in to forget the start."""
    rng = np.random.default_rng(seed)
    e = sd * rng.standard_normal(n + burn)
    w = np.zeros(n + burn)
    for t in range(n + burn):
        ar = sum(phi[i] * w[t - 1 - i] for i in range(len(phi)) if t - 1 - i >= 0)
        ma = sum(theta[j] * e[t - 1 - j] for j in range(len(theta)) if t - 1 - j >= 0)
        w[t] = ar + e[t] + ma
    y = w[burn:] + mean
    for _ in range(d):
        y = np.cumsum(y)
    return y


def _kalman_loglik(w: np.ndarray, phi: np.ndarray, theta: np.ndarray, mu: float, sigma2: float) -> float:
    """Reference exact Gaussian log-likelihood: a plain Kalman filter over Harvey's state-space form,
    started at the stationary state covariance (independent of the module's implementation)."""
    p, q = phi.size, theta.size
    r = max(p, q + 1)
    T = np.zeros((r, r))
    T[:p, 0] = phi
    T[np.arange(r - 1), np.arange(1, r)] = 1.0
    R = np.zeros(r)
    R[0] = 1.0
    R[1:q + 1] = theta
    RR = sigma2 * np.outer(R, R)
    P = np.linalg.solve(np.eye(r * r) - np.kron(T, T), RR.ravel()).reshape(r, r)
    a = np.zeros(r)
    ll = 0.0
    for x in w - mu:
        f = P[0, 0]
        v = x - a[0]
        ll -= 0.5 * (np.log(2 * np.pi * f) + v * v / f)
        K = P[:, 0] / f
        a = T @ (a + K * v)
        P = T @ (P - np.outer(K, P[0])) @ T.T + RR
    return ll


# ----------------------------------------------------------------------------- parameter recovery


def test_arma11_recovers_parameters() -> None:
    y = _simulate(800, [0.6], [0.3], mean=2.0, seed=1)
    fit = fit_arima(y, 1, 0, 1)
    assert isinstance(fit, ArimaFit) and (fit.p, fit.d, fit.q) == (1, 0, 1) and fit.include_mean
    # asymptotic se of phi and theta here is about 0.04; 0.1 is 2.5 se
    assert fit.phi[0] == pytest.approx(0.6, abs=0.1)
    assert fit.theta[0] == pytest.approx(0.3, abs=0.1)
    # se of the mean: sigma (1 + theta) / (1 - phi) / sqrt(n) = 0.11
    assert fit.mean == pytest.approx(2.0, abs=0.35)
    assert fit.sigma2 == pytest.approx(1.0, abs=0.1)
    assert fit.n == 800 and fit.residuals.shape == (800,)


def test_arima011_recovers_theta_and_no_drift() -> None:
    y = _simulate(600, [], [-0.4], d=1, sd=2.0, seed=2)
    fit = fit_arima(y, 0, 1, 1)
    assert fit.include_mean  # drift by default for d=1
    assert fit.theta[0] == pytest.approx(-0.4, abs=0.1)
    assert fit.mean == pytest.approx(0.0, abs=3 * 2.0 * 0.6 / np.sqrt(600))  # drift se = sigma (1 + theta) / sqrt(n)
    assert fit.sigma2 == pytest.approx(4.0, rel=0.1)
    assert fit.n == 599


def test_arima210_recovers_phi_and_drift() -> None:
    y = _simulate(700, [0.5, -0.3], [], d=1, mean=0.5, seed=3)
    fit = fit_arima(y, 2, 1, 0)
    assert np.allclose(fit.phi, [0.5, -0.3], atol=0.1)
    assert fit.theta.size == 0
    assert fit.mean == pytest.approx(0.5, abs=3 / (0.8 * np.sqrt(700)))  # se = sigma / (1 - sum phi) / sqrt(n)
    assert fit.sigma2 == pytest.approx(1.0, abs=0.1)


def test_fit_is_stationary_and_invertible() -> None:
    y = _simulate(300, [0.8], [-0.7], seed=4)
    for p, q in [(1, 1), (2, 2), (3, 3), (0, 3), (3, 0)]:
        fit = fit_arima(y, p, 0, q)
        ar_roots = np.roots(np.concatenate([[1.0], -fit.phi])[::-1]) if p else np.array([2.0])
        ma_roots = np.roots(np.concatenate([[1.0], fit.theta])[::-1]) if q else np.array([2.0])
        assert np.all(np.abs(ar_roots) > 1.0) and np.all(np.abs(ma_roots) > 1.0)


# ----------------------------------------------------------------------------- the likelihood


@pytest.mark.parametrize("order", [(1, 0, 1), (2, 0, 2), (0, 0, 3), (3, 0, 0), (0, 0, 0), (1, 1, 2), (0, 2, 1),
                                   (2, 1, 0)])
def test_loglik_is_the_exact_kalman_likelihood_at_a_local_maximum(order: tuple[int, int, int]) -> None:
    p, d, q = order
    y = _simulate(250, [0.5, -0.2], [0.4], d=min(d, 1), mean=1.0, seed=5)
    fit = fit_arima(y, p, d, q)
    w = np.diff(y, d)
    ll = _kalman_loglik(w, fit.phi, fit.theta, fit.mean, fit.sigma2)
    assert fit.loglik == pytest.approx(ll, abs=1e-8)
    k = p + q + int(fit.include_mean) + 1
    assert fit.aicc == pytest.approx(-2 * ll + 2 * k + 2 * k * (k + 1) / (fit.n - k - 1))
    # no small move of one coefficient, the mean or sigma2 raises the likelihood
    rng = np.random.default_rng(0)
    for _ in range(6):
        phi = fit.phi + rng.normal(0, 0.01, p)
        theta = fit.theta + rng.normal(0, 0.01, q)
        mu = fit.mean + (rng.normal(0, 0.01) if fit.include_mean else 0.0)
        assert _kalman_loglik(w, phi, theta, mu, fit.sigma2 * (1 + rng.normal(0, 0.01))) <= fit.loglik + 1e-6


def test_default_constant_convention_and_override() -> None:
    y = _simulate(200, [0.3], [], d=2, seed=6)
    assert fit_arima(y, 1, 2, 0).include_mean is False
    assert fit_arima(y, 1, 2, 0).mean == 0.0
    assert fit_arima(np.diff(y), 1, 1, 0).include_mean is True
    assert fit_arima(np.diff(y, 2), 1, 0, 0).include_mean is True
    no_drift = fit_arima(np.diff(y), 1, 1, 0, include_mean=False)
    assert no_drift.include_mean is False and no_drift.mean == 0.0
    with pytest.raises(ValueError, match="quadratic"):
        fit_arima(y, 1, 2, 0, include_mean=True)


# ----------------------------------------------------------------------------- order choice


def test_ndiffs_random_walk_vs_stationary_ar1() -> None:
    walk = np.cumsum(np.random.default_rng(7).standard_normal(400))
    ar1 = _simulate(400, [0.5], [], seed=8)
    assert ndiffs(walk) == 1 and ndiffs(ar1) == 0
    assert ndiffs(np.cumsum(walk)) == 2
    assert kpss_statistic(ar1) < 0.463 < kpss_statistic(walk)
    assert auto_arima(walk).d == 1 and auto_arima(ar1).d == 0


def test_auto_arima_picks_a_small_sensible_order() -> None:
    y = _simulate(600, [0.7], [], mean=3.0, seed=9)
    fit = auto_arima(y)
    assert (fit.p, fit.d, fit.q) == (1, 0, 0)
    assert fit.phi[0] == pytest.approx(0.7, abs=0.1)
    y = _simulate(400, [], [-0.5], d=1, seed=10)
    fit = auto_arima(y)
    assert fit.d == 1
    assert not fit.include_mean  # no drift in the data: dropping the constant lowers the AICc
    # the search is exhaustive: nothing on the grid (with either constant) has a lower AICc
    # among the fits it accepts (no AR / MA root within 1.01 of the unit circle)
    for p in range(4):
        for q in range(4):
            for mean in (True, False):
                other = fit_arima(y, p, 1, q, include_mean=mean)
                roots = [np.abs(np.roots(np.concatenate([[1.0], -other.phi])[::-1])),
                         np.abs(np.roots(np.concatenate([[1.0], other.theta])[::-1]))]
                if all(np.all(r >= 1.01) for r in roots) and (mean == fit.include_mean or (p, q) == (fit.p, fit.q)):
                    assert fit.aicc <= other.aicc + 1e-9
    assert auto_arima(y, d=0).d == 0


def test_forecast_method_arima_names_the_order() -> None:
    assert "arima" in METHODS
    y = _simulate(300, [0.6], [], mean=10.0, seed=11)
    fc = forecast(y, 12, method="arima")
    fit = auto_arima(y)
    assert fc.method == f"arima({fit.p},{fit.d},{fit.q})"
    assert np.array_equal(fc.mean, arima_forecast(fit, 12).mean)
    assert fc.mean.shape == fc.lower.shape == fc.upper.shape == (12,)
    assert np.all(np.diff(fc.upper - fc.lower) >= -1e-12)  # widths never shrink


def test_auto_has_arima_among_its_candidates_when_the_series_is_long_enough() -> None:
    y = _simulate(150, [0.5], [0.8], mean=5.0, seed=1)
    assert forecast(y, 3).method == "arima(1,0,1)"  # rolling-origin CV prefers it on this ARMA(1,1)
    short = forecast(y[:25], 3)  # every CV prefix under 30 points: no order search there
    assert not short.method.startswith("arima")


# ----------------------------------------------------------------------------- forecasts and intervals


def test_forecast_equals_the_hand_recursion_on_a_tiny_example() -> None:
    y = np.array([10.0, 10.8, 11.1, 12.5, 12.2, 13.4, 14.9, 14.1, 15.3, 16.8, 16.2, 17.9, 18.1, 19.6, 19.0, 20.7])
    fit = fit_arima(y, 1, 1, 1)
    w = np.diff(y)
    phi, theta, mu, e = fit.phi[0], fit.theta[0], fit.mean, fit.residuals
    # the residuals obey the ARMA difference equation
    for t in range(1, w.size):
        assert e[t] == pytest.approx(w[t] - mu - phi * (w[t - 1] - mu) - theta * e[t - 1], abs=1e-9)
    w1 = mu + phi * (w[-1] - mu) + theta * e[-1]
    w2 = mu + phi * (w1 - mu)
    w3 = mu + phi * (w2 - mu)
    expected = y[-1] + np.cumsum([w1, w2, w3])
    fc = arima_forecast(fit, 3, level=0.8)
    assert np.allclose(fc.mean, expected, atol=1e-9)
    # psi weights of (1 - phi B)(1 - B) y = (1 + theta B) e: psi_1 = 1 + phi + theta, psi_2 = (1 + phi) psi_1 - phi
    psi1 = 1 + phi + theta
    psi2 = (1 + phi) * psi1 - phi
    sd = np.sqrt(fit.sigma2 * np.cumsum([1.0, psi1**2, psi2**2]))
    assert np.allclose((fc.upper - fc.lower) / 2, 1.2815515655446004 * sd)
    assert np.allclose((fc.upper + fc.lower) / 2, fc.mean)


def test_d2_forecast_integrates_twice() -> None:
    y = _simulate(150, [0.4], [], d=2, seed=12)
    fit = fit_arima(y, 1, 2, 0)
    w = np.diff(y, 2)
    w_hat = [fit.phi[0] * w[-1]]
    for _ in range(3):
        w_hat.append(fit.phi[0] * w_hat[-1])
    dy = (y[-1] - y[-2]) + np.cumsum(w_hat)
    assert np.allclose(arima_forecast(fit, 4).mean, y[-1] + np.cumsum(dy))


def _coverage(phi: list[float], theta: list[float], d: int, order: tuple[int, int, int], reps: int, n: int,
              h: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    hits = total = 0
    for _ in range(reps):
        y = _simulate(n + h, phi, theta, d=d, seed=int(rng.integers(2**31)), burn=100)
        fc = arima_forecast(fit_arima(y[:n], *order), h, level=0.9)
        fut = y[n:]
        hits += int(np.sum((fc.lower <= fut) & (fut <= fc.upper)))
        total += h
    return hits / total


def test_interval_coverage_arima110() -> None:
    cov = _coverage([0.5], [], 1, (1, 1, 0), reps=200, n=150, h=6, seed=13)
    assert 0.85 <= cov <= 0.95


def test_interval_coverage_arma11() -> None:
    cov = _coverage([0.6], [0.3], 0, (1, 0, 1), reps=200, n=150, h=6, seed=14)
    assert 0.85 <= cov <= 0.95


def test_interval_coverage_with_order_search() -> None:
    rng = np.random.default_rng(15)
    hits = total = 0
    for _ in range(15):
        y = _simulate(106, [0.5], [], d=1, seed=int(rng.integers(2**31)), burn=100)
        fc = forecast(y[:100], 6, method="arima", level=0.9)
        hits += int(np.sum((fc.lower <= y[100:]) & (y[100:] <= fc.upper)))
        total += 6
    assert 0.75 <= hits / total <= 0.99  # 90 points: a loose check that the search keeps the intervals honest


# ----------------------------------------------------------------------------- bad input


def test_bad_input_raises_clear_value_errors() -> None:
    y = _simulate(100, [0.5], [], seed=16)
    with pytest.raises(ValueError, match="d must be an integer in 0..2"):
        fit_arima(y, 1, 3, 0)
    with pytest.raises(ValueError, match="p must be an integer in 0..3"):
        fit_arima(y, 4, 0, 0)
    with pytest.raises(ValueError, match="q must be an integer in 0..3"):
        fit_arima(y, 0, 0, -1)
    with pytest.raises(ValueError, match="p must be an integer"):
        fit_arima(y, 1.5, 0, 0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="too short for arima\\(3,1,3\\)"):
        fit_arima(y[:15], 3, 1, 3)
    with pytest.raises(ValueError, match="too short"):
        forecast(y[:5], 2, method="arima")
    bad = y.copy()
    bad[10] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fit_arima(bad, 1, 0, 0)
    with pytest.raises(ValueError, match="NaN"):
        forecast(bad, 2, method="arima")
    with pytest.raises(ValueError, match="constant series"):
        fit_arima(np.full(50, 2.0), 1, 0, 0)
    with pytest.raises(ValueError, match="constant series"):
        forecast(np.full(50, 2.0), 3, method="arima")
    with pytest.raises(ValueError, match="constant"):  # an exact line: its first differences are constant
        forecast(3.0 + 0.5 * np.arange(50), 3, method="arima")
    with pytest.raises(ValueError, match="1-D"):
        fit_arima(np.ones((10, 3)), 0, 0, 0)
    fit = fit_arima(y, 1, 0, 0)
    with pytest.raises(ValueError, match="horizon"):
        arima_forecast(fit, 0)
    with pytest.raises(ValueError, match="level"):
        arima_forecast(fit, 3, level=1.0)


# ----------------------------------------------------------------------------- property


@st.composite
def _series(draw: st.DrawFn) -> np.ndarray:
    """A 'reasonable' series: an AR(1)-ish stationary or integrated path (possibly with a trend and
    a seasonal wiggle) at an arbitrary offset and scale, or raw drawn values with some spread."""
    n = draw(st.integers(10, 120))
    if draw(st.booleans()):
        values = draw(st.lists(st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False), min_size=n,
                               max_size=n))
        y = np.array(values)
        y = y + 1e-3 * np.sin(np.arange(n))  # ties and exact lines are not "reasonable"
        return y
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    phi = draw(st.floats(-0.95, 0.95))
    e = rng.standard_normal(n)
    x = np.zeros(n)
    for t in range(1, n):
        x[t] = phi * x[t - 1] + e[t]
    if draw(st.booleans()):
        x = np.cumsum(x)
    steps = np.arange(n)
    x = x + draw(st.floats(-2.0, 2.0)) * steps + draw(st.floats(0.0, 5.0)) * np.sin(2 * np.pi * steps / 7)
    return draw(st.sampled_from([1e-6, 1.0, 1e6])) * x + draw(st.floats(-1e6, 1e6))


@settings(derandomize=True, max_examples=25, deadline=None)
@given(y=_series(), h=st.integers(1, 24), level=st.floats(0.5, 0.99))
def test_forecast_is_finite_and_ordered(y: np.ndarray, h: int, level: float) -> None:
    fc = forecast(y, h, method="arima", level=level)
    assert fc.mean.shape == (h,) and fc.method.startswith("arima(")
    assert np.all(np.isfinite(fc.mean)) and np.all(np.isfinite(fc.lower)) and np.all(np.isfinite(fc.upper))
    assert np.all(fc.lower <= fc.mean) and np.all(fc.mean <= fc.upper)
