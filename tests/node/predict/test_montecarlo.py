"""Monte Carlo: prices against closed forms, variance reduction, risk measures, bounded memory."""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest
from scipy.stats import norm

from node.predict import montecarlo as mc
from node.predict.montecarlo import (
    Estimate,
    bootstrap_returns,
    control_variate,
    cvar,
    estimate,
    mean_payoff_gbm,
    simulate_gbm,
    simulate_jump_diffusion,
    var,
)


def bs_price(s0: float, k: float, r: float, sigma: float, t: float, call: bool) -> float:
    d1 = (math.log(s0 / k) + (r + 0.5 * sigma**2) * t) / (sigma * math.sqrt(t))
    d2 = d1 - sigma * math.sqrt(t)
    if call:
        return s0 * norm.cdf(d1) - k * math.exp(-r * t) * norm.cdf(d2)
    return k * math.exp(-r * t) * norm.cdf(-d2) - s0 * norm.cdf(-d1)


def geometric_asian_call(s0: float, k: float, r: float, sigma: float, t: float, n: int) -> float:
    """Discretely monitored (at t/n, 2t/n, ..., t) geometric-average Asian call."""
    m = math.log(s0) + (r - 0.5 * sigma**2) * t * (n + 1) / (2 * n)
    v = sigma**2 * t * (n + 1) * (2 * n + 1) / (6 * n * n)
    d2 = (m - math.log(k)) / math.sqrt(v)
    d1 = d2 + math.sqrt(v)
    return math.exp(-r * t) * (math.exp(m + 0.5 * v) * norm.cdf(d1) - k * norm.cdf(d2))


def within(est: Estimate, truth: float, sigmas: float = 3.0) -> bool:
    return abs(est.mean - truth) <= sigmas * est.stderr


# ----------------------------------------------------------------------------- pricing


@pytest.mark.parametrize(
    "s0,k,r,sigma,t,seed",
    [
        (100.0, 100.0, 0.05, 0.2, 1.0, 1),
        (100.0, 120.0, 0.03, 0.35, 2.0, 2),
        (50.0, 40.0, 0.00, 0.1, 0.5, 3),
        (10.0, 11.0, 0.08, 0.6, 0.25, 4),
    ],
)
def test_european_call_and_put_match_black_scholes(s0, k, r, sigma, t, seed):
    paths = simulate_gbm(s0, r, sigma, t, 4, 200_000, seed=seed)
    assert paths.shape == (200_000, 5)
    assert np.all(paths[:, 0] == s0)
    st = paths[:, -1]
    disc = math.exp(-r * t)
    call = estimate(disc * np.maximum(st - k, 0.0))
    put = estimate(disc * np.maximum(k - st, 0.0))
    assert within(call, bs_price(s0, k, r, sigma, t, True)), (call, bs_price(s0, k, r, sigma, t, True))
    assert within(put, bs_price(s0, k, r, sigma, t, False)), (put, bs_price(s0, k, r, sigma, t, False))
    assert call.low < call.mean < call.high


def test_geometric_asian_call_matches_closed_form():
    s0, k, r, sigma, t, n = 100.0, 95.0, 0.04, 0.3, 1.0, 12
    paths = simulate_gbm(s0, r, sigma, t, n, 200_000, seed=7)
    geo = np.exp(np.log(paths[:, 1:]).mean(axis=1))
    est = estimate(math.exp(-r * t) * np.maximum(geo - k, 0.0))
    assert within(est, geometric_asian_call(s0, k, r, sigma, t, n)), (est, geometric_asian_call(s0, k, r, sigma, t, n))


def test_gbm_log_increments_have_the_exact_moments():
    mu, sigma, t, steps = 0.1, 0.25, 2.0, 8
    paths = simulate_gbm(1.0, mu, sigma, t, steps, 100_000, seed=11)
    inc = np.diff(np.log(paths), axis=1)
    dt = t / steps
    assert abs(inc.mean() - (mu - 0.5 * sigma**2) * dt) < 4 * sigma * math.sqrt(dt) / math.sqrt(inc.size)
    assert abs(inc.std() / (sigma * math.sqrt(dt)) - 1) < 0.01
    # independent steps
    assert abs(np.corrcoef(inc[:, 0], inc[:, 1])[0, 1]) < 0.02


def test_zero_sigma_is_deterministic_growth():
    paths = simulate_gbm(2.0, 0.1, 0.0, 1.0, 10, 3, seed=0)
    np.testing.assert_allclose(paths, np.tile(2.0 * np.exp(0.1 * np.linspace(0, 1, 11)), (3, 1)))


def test_jump_diffusion_is_compensated_and_prices_like_merton():
    s0, r, sigma, lam, jm, js, t, k = 100.0, 0.05, 0.2, 0.8, -0.1, 0.15, 1.0, 100.0
    paths = simulate_jump_diffusion(s0, r, sigma, lam, jm, js, t, 20, 100_000, seed=5)
    assert paths.shape == (100_000, 21)
    st = paths[:, -1]
    assert within(estimate(st), s0 * math.exp(r * t))
    # Merton (1976) series: Poisson mixture of Black-Scholes prices.
    kappa = math.exp(jm + 0.5 * js**2) - 1
    lam2 = lam * (1 + kappa)
    price = 0.0
    for j in range(60):
        sig_j = math.sqrt(sigma**2 + j * js**2 / t)
        r_j = r - lam * kappa + j * (jm + 0.5 * js**2) / t
        w = math.exp(-lam2 * t) * (lam2 * t) ** j / math.factorial(j)
        price += w * bs_price(s0, k, r_j, sig_j, t, True)
    call = estimate(math.exp(-r * t) * np.maximum(st - k, 0.0))
    assert within(call, price), (call, price)


def test_jump_diffusion_without_jumps_is_gbm_in_distribution():
    a = simulate_jump_diffusion(1.0, 0.05, 0.2, 0.0, 0.0, 0.1, 1.0, 1, 100_000, seed=3)[:, -1]
    assert within(estimate(a), math.exp(0.05))
    assert abs(np.log(a).std() - 0.2) < 0.003


# ----------------------------------------------------------------------------- bootstrap


def test_bootstrap_returns_resamples_history_in_blocks():
    hist = np.arange(1.0, 11.0) / 100  # distinct, ordered
    out = bootstrap_returns(hist, 7, 500, block=3, seed=9)
    assert out.shape == (500, 8)
    assert np.all(out[:, 0] == 0)
    steps = np.diff(out, axis=1)
    assert np.all(np.isin(np.round(steps, 12), np.round(hist, 12)))
    # within a block, consecutive (circular) observations follow each other
    pos = np.rint(steps * 100).astype(int) - 1
    assert np.all((pos[:, 1] - pos[:, 0]) % 10 == 1)
    assert np.all((pos[:, 2] - pos[:, 1]) % 10 == 1)
    # every observation gets drawn (circular blocks reach the ends too)
    assert set(pos.ravel()) == set(range(10))


def test_bootstrap_mean_matches_history():
    rng = np.random.default_rng(0)
    hist = rng.normal(0.001, 0.02, 1000)
    out = bootstrap_returns(hist, 20, 20_000, block=5, seed=1)
    assert abs(out[:, -1].mean() - 20 * hist.mean()) < 4 * 0.02 * math.sqrt(20) / math.sqrt(20_000)


def test_bootstrap_rejects_block_longer_than_history():
    with pytest.raises(ValueError, match="block"):
        bootstrap_returns([0.1, 0.2], 5, 10, block=3)


# ----------------------------------------------------------------------------- variance reduction


def test_antithetic_reduces_stderr_and_stays_unbiased():
    s0, k, r, sigma, t = 100.0, 100.0, 0.05, 0.2, 1.0
    n = 100_000
    disc = math.exp(-r * t)
    plain = estimate(disc * np.maximum(simulate_gbm(s0, r, sigma, t, 1, n, seed=21)[:, -1] - k, 0))
    anti = simulate_gbm(s0, r, sigma, t, 1, n, seed=21, antithetic=True)[:, -1]
    pay = disc * np.maximum(anti - k, 0)
    pairs = estimate(0.5 * (pay[: n // 2] + pay[n // 2 :]))
    truth = bs_price(s0, k, r, sigma, t, True)
    assert within(pairs, truth)
    assert pairs.stderr < 0.8 * plain.stderr, (pairs.stderr, plain.stderr)
    # the mirrored half really is the negated normals
    logs = np.log(anti / s0)
    drift = r - 0.5 * sigma**2
    np.testing.assert_allclose(logs[: n // 2] - drift, -(logs[n // 2 :] - drift), atol=1e-12)


def test_antithetic_with_odd_paths_drops_the_last_mirror():
    a = simulate_gbm(1.0, 0.0, 0.3, 1.0, 3, 5, seed=4, antithetic=True)
    b = simulate_gbm(1.0, 0.0, 0.3, 1.0, 3, 6, seed=4, antithetic=True)
    assert a.shape == (5, 4)
    np.testing.assert_array_equal(a, b[:5])


def test_control_variate_reduces_stderr():
    s0, k, r, sigma, t = 100.0, 105.0, 0.05, 0.25, 1.0
    st = simulate_gbm(s0, r, sigma, t, 1, 100_000, seed=31)[:, -1]
    disc = math.exp(-r * t)
    y = disc * np.maximum(st - k, 0)
    plain = estimate(y)
    cv = control_variate(y, disc * st, s0)  # E[e^{-rT} S_T] = s0
    truth = bs_price(s0, k, r, sigma, t, True)
    assert within(cv, truth), (cv, truth)
    assert cv.stderr < 0.5 * plain.stderr, (cv.stderr, plain.stderr)


def test_control_variate_for_arithmetic_asian_with_geometric_control():
    s0, k, r, sigma, t, n = 100.0, 100.0, 0.05, 0.2, 1.0, 12
    paths = simulate_gbm(s0, r, sigma, t, n, 50_000, seed=41)
    disc = math.exp(-r * t)
    arith = disc * np.maximum(paths[:, 1:].mean(axis=1) - k, 0)
    geo = disc * np.maximum(np.exp(np.log(paths[:, 1:]).mean(axis=1)) - k, 0)
    cv = control_variate(arith, geo, geometric_asian_call(s0, k, r, sigma, t, n))
    assert cv.stderr < 0.1 * estimate(arith).stderr
    assert cv.mean > geometric_asian_call(s0, k, r, sigma, t, n)  # AM >= GM


def test_estimate_interval():
    e = estimate([1.0, 2.0, 3.0, 4.0], level=0.9)
    assert e.mean == 2.5
    assert e.stderr == pytest.approx(np.std([1, 2, 3, 4], ddof=1) / 2)
    assert e.high - e.mean == pytest.approx(norm.ppf(0.95) * e.stderr)
    assert e.mean - e.low == pytest.approx(e.high - e.mean)
    assert e.n == 4 and e.level == 0.9
    with pytest.raises(Exception):
        e.mean = 3.0  # frozen


# ----------------------------------------------------------------------------- risk


@pytest.mark.parametrize("level", [0.9, 0.95, 0.99])
def test_var_cvar_of_normal_losses(level):
    m, s = 0.01, 0.02
    losses = np.random.default_rng(5).normal(m, s, 1_000_000)
    z = norm.ppf(level)
    assert var(losses, level) == pytest.approx(m + s * z, abs=0.02 * s)
    assert cvar(losses, level) == pytest.approx(m + s * norm.pdf(z) / (1 - level), abs=0.02 * s)
    assert cvar(losses, level) >= var(losses, level)


def test_var_of_returns_negates():
    returns = np.random.default_rng(6).normal(0.0005, 0.01, 500_000)
    assert var(returns, 0.99, kind="return") == pytest.approx(-0.0005 + 0.01 * norm.ppf(0.99), abs=3e-4)
    assert var(returns, 0.99, kind="return") == var(-returns, 0.99)
    assert cvar(returns, 0.99, kind="return") == cvar(-returns, 0.99)
    assert var(returns, 0.99, kind="return") > 0  # a loss is positive


# ----------------------------------------------------------------------------- bounded memory


def call_payoff(k: float):
    return lambda p: np.maximum(p[:, -1] - k, 0.0)


@pytest.mark.parametrize("antithetic", [False, True])
def test_chunked_mean_payoff_equals_unchunked(antithetic):
    args = (100.0, 0.05, 0.2, 1.0, 50, 10_000)
    pay = call_payoff(100.0)
    whole = mean_payoff_gbm(pay, *args, seed=13, antithetic=antithetic)
    small = mc.gbm_chunk_paths(50, 100_000, antithetic)
    assert small < 10_000 // 10  # really chunked: many chunks
    chunked = mean_payoff_gbm(pay, *args, seed=13, antithetic=antithetic, max_bytes=100_000)
    assert chunked.n == whole.n
    assert chunked.mean == pytest.approx(whole.mean, rel=1e-12)
    assert chunked.stderr == pytest.approx(whole.stderr, rel=1e-9)
    v = pay(simulate_gbm(*args, seed=13, antithetic=antithetic))
    ref = estimate(0.5 * (v[:5000] + v[5000:]) if antithetic else v)
    assert whole.mean == pytest.approx(ref.mean, rel=1e-12)
    assert whole.stderr == pytest.approx(ref.stderr, rel=1e-9)


def test_mean_payoff_prices_a_call():
    s0, k, r, sigma, t = 100.0, 110.0, 0.02, 0.3, 1.0
    est = mean_payoff_gbm(lambda p: math.exp(-r * t) * np.maximum(p[:, -1] - k, 0), s0, r, sigma, t, 2, 200_000,
                          seed=17, antithetic=True, max_bytes=1 << 20)
    assert within(est, bs_price(s0, k, r, sigma, t, True))


def test_mean_payoff_peak_memory_stays_under_max_bytes():
    max_bytes = 4 * 2**20
    steps, paths = 250, 20_000  # 5e6 path-steps: 40 MB a single array if unchunked
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        est = mean_payoff_gbm(call_payoff(100.0), 100.0, 0.05, 0.2, 1.0, steps, paths, seed=1, max_bytes=max_bytes)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert est.n == paths
    assert peak <= 1.1 * max_bytes, peak
    # and the unchunked simulation would not have fit
    assert paths * (steps + 1) * 8 > 5 * max_bytes


def test_chunk_sizes_for_a_billion_path_steps_fit_the_default_budget():
    steps, paths = 1000, 1_000_000  # 1e9 path-steps
    chunk = mc.gbm_chunk_paths(steps, mc.DEFAULT_MAX_BYTES)
    assert chunk < paths
    assert chunk * (steps + 1) * 8 * 3 <= mc.DEFAULT_MAX_BYTES
    with pytest.raises(ValueError, match="max_bytes"):
        mc.gbm_chunk_paths(steps, 1000)


# ----------------------------------------------------------------------------- reproducibility


def test_same_seed_same_paths():
    for f, args in [
        (simulate_gbm, (100.0, 0.05, 0.2, 1.0, 10, 100)),
        (simulate_jump_diffusion, (100.0, 0.05, 0.2, 1.0, -0.1, 0.1, 1.0, 10, 100)),
        (bootstrap_returns, (np.linspace(-0.02, 0.02, 30), 10, 100)),
    ]:
        a, b, c = f(*args, seed=42), f(*args, seed=42), f(*args, seed=43)
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)
    g1, g2 = np.random.default_rng(8), np.random.default_rng(8)
    np.testing.assert_array_equal(simulate_gbm(1.0, 0.0, 0.2, 1.0, 5, 10, rng=g1), simulate_gbm(1.0, 0.0, 0.2, 1.0, 5, 10, rng=g2))
    pay = call_payoff(100.0)
    assert mean_payoff_gbm(pay, 100.0, 0.05, 0.2, 1.0, 5, 1000, seed=3) == mean_payoff_gbm(pay, 100.0, 0.05, 0.2, 1.0, 5, 1000, seed=3)


# ----------------------------------------------------------------------------- bad inputs

GBM = dict(s0=100.0, mu=0.05, sigma=0.2, horizon=1.0, steps=10, paths=100)


@pytest.mark.parametrize(
    "change,message",
    [
        (dict(paths=0), "paths must be a positive integer"),
        (dict(paths=-5), "paths must be a positive integer"),
        (dict(steps=0), "steps must be a positive integer"),
        (dict(steps=2.5), "steps must be an integer"),
        (dict(horizon=0.0), "horizon must be > 0"),
        (dict(horizon=-1.0), "horizon must be > 0"),
        (dict(sigma=-0.1), "sigma must be >= 0"),
        (dict(s0=0.0), "s0 must be > 0"),
        (dict(mu=float("nan")), "mu must be finite"),
        (dict(sigma=float("inf")), "sigma must be finite"),
        (dict(s0=float("-inf")), "s0 must be finite"),
    ],
)
def test_simulate_gbm_rejects_bad_arguments(change, message):
    with pytest.raises(ValueError, match=message):
        simulate_gbm(**{**GBM, **change})


def test_other_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="level must be in the open interval"):
        estimate([1.0, 2.0], level=1.0)
    with pytest.raises(ValueError, match="level must be in the open interval"):
        var([1.0, 2.0], level=0.0)
    with pytest.raises(ValueError, match="level must be in the open interval"):
        cvar([1.0, 2.0], level=1.5)
    with pytest.raises(ValueError, match="NaN or infinite"):
        estimate([1.0, float("nan")])
    with pytest.raises(ValueError, match="NaN or infinite"):
        var([1.0, float("inf")])
    with pytest.raises(ValueError, match="NaN or infinite"):
        bootstrap_returns([0.1, float("nan")], 3, 3, block=1)
    with pytest.raises(ValueError, match="at least 2"):
        estimate([1.0])
    with pytest.raises(ValueError, match="kind"):
        var([1.0, 2.0], kind="profit")
    with pytest.raises(ValueError, match="zero variance"):
        control_variate([1.0, 2.0, 3.0], [1.0, 1.0, 1.0], 1.0)
    with pytest.raises(ValueError, match="same length"):
        control_variate([1.0, 2.0, 3.0], [1.0, 2.0, 3.0, 4.0], 1.0)
    with pytest.raises(ValueError, match="lam must be >= 0"):
        simulate_jump_diffusion(1.0, 0.0, 0.2, -1.0, 0.0, 0.1, 1.0, 5, 5)
    with pytest.raises(ValueError, match="jump_sigma must be >= 0"):
        simulate_jump_diffusion(1.0, 0.0, 0.2, 1.0, 0.0, -0.1, 1.0, 5, 5)
    with pytest.raises(ValueError, match="horizon_steps must be a positive integer"):
        bootstrap_returns([0.1, 0.2], 0, 5, block=1)
    with pytest.raises(ValueError, match="seed or rng"):
        simulate_gbm(1.0, 0.0, 0.2, 1.0, 5, 5, seed=1, rng=np.random.default_rng(1))
    with pytest.raises(ValueError, match="even number of paths"):
        mean_payoff_gbm(call_payoff(1.0), 1.0, 0.0, 0.2, 1.0, 5, 11, seed=1, antithetic=True)
    with pytest.raises(ValueError, match="one value per path"):
        mean_payoff_gbm(lambda p: p, 1.0, 0.0, 0.2, 1.0, 5, 10, seed=1)
