"""Monte Carlo: price paths (GBM, Merton jump diffusion, block bootstrap), estimates with
confidence intervals, variance reduction (antithetic variates, control variates), VaR and CVaR,
and a chunked GBM payoff mean whose memory stays bounded however many path-steps it runs.

Pure numpy (normal quantiles from the standard library's NormalDist): no I/O, no clock.
Randomness comes only from a `numpy.random.Generator`, either passed as `rng` or made from
`seed` (same seed, same arrays).

Sign convention for risk: a *loss* is positive. `var` and `cvar` take losses by default
(`kind="loss"`); pass `kind="return"` to hand them returns/P&L, which are negated first. Both
return a positive number for a loss (e.g. VaR 0.05 means a 5% loss at the given level).
"""

from __future__ import annotations

import math
from statistics import NormalDist
from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np
from numpy.typing import ArrayLike

from node.predict.checks import finite as _finite, level as _level, non_negative as _non_negative
from node.predict.checks import positive as _positive, positive_int as _positive_int, series as _samples

__all__ = [
    "Estimate",
    "bootstrap_returns",
    "control_variate",
    "cvar",
    "estimate",
    "gbm_terminal",
    "mean_payoff_gbm",
    "simulate_gbm",
    "simulate_jump_diffusion",
    "var",
]


DEFAULT_MAX_BYTES = 512 * 2**20
_FLOAT_BYTES = 8
# Live float64 arrays per path-step while a chunk is simulated: the normals and the paths (plus
# slack for what a payoff allocates on top of the paths it receives).
_ARRAYS_PER_STEP = 3


# ---------------------------------------------------------------------------------------------
# argument checks: node/predict/checks.py


def _generator(seed: int | None, rng: np.random.Generator | None) -> np.random.Generator:
    if rng is not None:
        if seed is not None:
            raise ValueError("pass either seed or rng, not both")
        if not isinstance(rng, np.random.Generator):
            raise ValueError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        return rng
    return np.random.default_rng(seed)


# ---------------------------------------------------------------------------------------------
# path simulation


def simulate_gbm(
    s0: float,
    mu: float,
    sigma: float,
    horizon: float,
    steps: int,
    paths: int,
    seed: int | None = None,
    *,
    antithetic: bool = False,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Geometric Brownian motion paths, shape (paths, steps + 1); column 0 is s0.

    Exact log-normal stepping: S_{t+dt} = S_t exp((mu - sigma^2/2) dt + sigma sqrt(dt) Z).
    With `antithetic`, rows [0, ceil(paths/2)) use normals Z and the following rows use -Z
    (row h + i mirrors row i, h = ceil(paths/2); for odd `paths` the last mirror is dropped).
    """
    s0, mu, sigma, horizon, steps, paths = _gbm_args(s0, mu, sigma, horizon, steps, paths)
    gen = _generator(seed, rng)
    return _gbm(gen, s0, mu, sigma, horizon, steps, paths, antithetic)


def _gbm_args(
    s0: float, mu: float, sigma: float, horizon: float, steps: int, paths: int
) -> tuple[float, float, float, float, int, int]:
    return (
        _positive("s0", s0), _finite("mu", mu), _non_negative("sigma", sigma), _positive("horizon", horizon),
        _positive_int("steps", steps), _positive_int("paths", paths),
    )


def _gbm(
    gen: np.random.Generator, s0: float, mu: float, sigma: float, horizon: float, steps: int, paths: int, antithetic: bool
) -> np.ndarray:
    dt = horizon / steps
    drift = (mu - 0.5 * sigma * sigma) * dt
    vol = sigma * math.sqrt(dt)
    fresh = (paths + 1) // 2 if antithetic else paths
    z = gen.standard_normal((fresh, steps))
    z *= vol
    np.cumsum(z, axis=1, out=z)  # the diffusion part of the log price, per step
    out = np.empty((paths, steps + 1))
    out[:, 0] = 0.0
    ramp = drift * np.arange(1, steps + 1)  # the drift part: drift * k at step k
    np.add(z, ramp, out=out[:fresh, 1:])
    if antithetic:
        np.subtract(ramp, z[: paths - fresh], out=out[fresh:, 1:])
    del z
    np.exp(out, out=out)
    out *= s0
    return out


def gbm_terminal(
    s0: float,
    mu: float,
    sigma: float,
    horizon: float,
    steps: int,
    paths: int,
    seed: int | None = None,
    *,
    rng: np.random.Generator | None = None,
    max_bytes: int = 64 * 2**20,
) -> np.ndarray:
    """The terminal values of `simulate_gbm(...)`, shape (paths,), simulated a chunk of paths at
    a time so that memory stays about `max_bytes` plus the answer, however many steps a path has.

    Chunks of rows come from one generator stream in row order, which is the order in which
    `simulate_gbm` draws its normals: for the same seed the values are exactly those of
    `simulate_gbm(...)[:, -1]`.
    """
    s0, mu, sigma, horizon, steps, paths = _gbm_args(s0, mu, sigma, horizon, steps, paths)
    chunk = gbm_chunk_paths(steps, max_bytes)
    gen = _generator(seed, rng)
    out = np.empty(paths)
    for start in range(0, paths, chunk):
        n = min(chunk, paths - start)
        out[start : start + n] = _gbm(gen, s0, mu, sigma, horizon, steps, n, False)[:, -1]
    return out


def simulate_jump_diffusion(
    s0: float,
    mu: float,
    sigma: float,
    lam: float,
    jump_mu: float,
    jump_sigma: float,
    horizon: float,
    steps: int,
    paths: int,
    seed: int | None = None,
    *,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Merton jump-diffusion paths, shape (paths, steps + 1); column 0 is s0.

    Jumps arrive as a Poisson process of rate `lam` per unit time; each multiplies the price by
    exp(Y), Y ~ N(jump_mu, jump_sigma^2). The drift is compensated, so E[S_T] = s0 exp(mu T)
    (with mu = r the discounted price is a martingale under the pricing measure).
    """
    s0 = _positive("s0", s0)
    mu = _finite("mu", mu)
    sigma = _non_negative("sigma", sigma)
    lam = _non_negative("lam", lam)
    jump_mu = _finite("jump_mu", jump_mu)
    jump_sigma = _non_negative("jump_sigma", jump_sigma)
    horizon = _positive("horizon", horizon)
    steps = _positive_int("steps", steps)
    paths = _positive_int("paths", paths)
    gen = _generator(seed, rng)

    dt = horizon / steps
    kappa = math.expm1(jump_mu + 0.5 * jump_sigma * jump_sigma)  # E[exp(Y)] - 1
    drift = (mu - 0.5 * sigma * sigma - lam * kappa) * dt
    log_inc = gen.standard_normal((paths, steps))
    log_inc *= sigma * math.sqrt(dt)
    log_inc += drift
    counts = gen.poisson(lam * dt, size=(paths, steps))
    # The sum of N iid N(jump_mu, jump_sigma^2) is N(N jump_mu, N jump_sigma^2).
    jumps = gen.standard_normal((paths, steps))
    jumps *= jump_sigma * np.sqrt(counts)
    jumps += jump_mu * counts
    log_inc += jumps
    del jumps, counts
    out = np.empty((paths, steps + 1))
    out[:, 0] = 0.0
    np.cumsum(log_inc, axis=1, out=out[:, 1:])
    np.exp(out, out=out)
    out *= s0
    return out


def bootstrap_returns(
    returns: ArrayLike,
    horizon_steps: int,
    paths: int,
    block: int = 5,
    seed: int | None = None,
    *,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Cumulative log returns by circular block bootstrap of historical log returns.

    Returns shape (paths, horizon_steps + 1), column 0 zero and column k the summed log return
    over the first k resampled steps (multiply exp(...) by a price to get price paths). Each path
    joins blocks of `block` consecutive observations starting at uniform random positions,
    wrapping around the end of the history, which keeps short-range dependence (volatility
    clustering) that an iid resample would destroy. block=1 is the plain iid bootstrap.
    """
    r = _samples("returns", returns)
    horizon_steps = _positive_int("horizon_steps", horizon_steps)
    paths = _positive_int("paths", paths)
    block = _positive_int("block", block)
    if block > r.size:
        raise ValueError(f"block ({block}) cannot exceed the number of returns ({r.size})")
    gen = _generator(seed, rng)

    blocks = -(-horizon_steps // block)
    starts = gen.integers(0, r.size, size=(paths, blocks))
    idx = (starts[:, :, None] + np.arange(block)).reshape(paths, blocks * block)[:, :horizon_steps]
    idx %= r.size
    out = np.empty((paths, horizon_steps + 1))
    out[:, 0] = 0.0
    np.cumsum(r[idx], axis=1, out=out[:, 1:])
    return out


# ---------------------------------------------------------------------------------------------
# estimates


@dataclass(frozen=True)
class Estimate:
    """A Monte Carlo mean with its standard error and a normal-approximation confidence interval."""

    mean: float
    stderr: float
    low: float
    high: float
    n: int = 0
    level: float = 0.95


def _z(level: float) -> float:
    return NormalDist().inv_cdf(0.5 + 0.5 * level)  # Wichura AS241, full double precision


def _from_moments(mean: float, variance: float, n: int, level: float) -> Estimate:
    se = math.sqrt(max(variance, 0.0) / n)
    half = _z(level) * se
    return Estimate(mean, se, mean - half, mean + half, n, level)


def estimate(samples: ArrayLike, level: float = 0.95) -> Estimate:
    """Sample mean, standard error std/sqrt(n) (ddof=1) and the two-sided `level` CI."""
    level = _level(level)
    x = _samples("samples", samples, minimum=2)
    return _from_moments(float(x.mean()), float(x.var(ddof=1)), x.size, level)


def control_variate(samples: ArrayLike, control: ArrayLike, control_mean: float, level: float = 0.95) -> Estimate:
    """Control-variate estimate of E[samples] given a correlated `control` with known mean.

    Uses the optimal coefficient beta = Cov(Y, X) / Var(X) (estimated from the same sample)
    and returns `estimate(Y - beta (X - control_mean))`.
    """
    level = _level(level)
    y = _samples("samples", samples, minimum=3)
    x = _samples("control", control, minimum=3)
    if x.shape != y.shape:
        raise ValueError(f"samples and control must have the same length, got {y.size} and {x.size}")
    control_mean = _finite("control_mean", control_mean)
    xc = x - x.mean()
    sxx = float(xc @ xc)
    if sxx == 0.0:
        raise ValueError("control has zero variance; it cannot reduce variance")
    beta = float(xc @ (y - y.mean())) / sxx
    return estimate(y - beta * (x - control_mean), level)


# ---------------------------------------------------------------------------------------------
# risk


def _losses(samples: ArrayLike, kind: str) -> np.ndarray:
    x = _samples("samples", samples)
    if kind == "loss":
        return x
    if kind == "return":
        return -x
    raise ValueError(f"kind must be 'loss' or 'return', got {kind!r}")


def var(samples: ArrayLike, level: float = 0.95, *, kind: Literal["loss", "return"] = "loss") -> float:
    """Value at risk: the `level` quantile of the loss distribution (loss positive).

    kind="loss": samples are losses (positive = money lost). kind="return": samples are
    returns/P&L (positive = gain) and are negated. VaR_0.95 = 0.1 means a loss larger than 0.1
    happens with probability about 5%.
    """
    level = _level(level)
    return float(np.quantile(_losses(samples, kind), level))


def cvar(samples: ArrayLike, level: float = 0.95, *, kind: Literal["loss", "return"] = "loss") -> float:
    """Conditional value at risk (expected shortfall): the mean loss at or beyond VaR at `level`.

    Same sign convention as `var` (loss positive); cvar >= var always.
    """
    level = _level(level)
    losses = _losses(samples, kind)
    threshold = float(np.quantile(losses, level))
    return float(losses[losses >= threshold].mean())


# ---------------------------------------------------------------------------------------------
# bounded-memory GBM expectations


def gbm_chunk_paths(steps: int, max_bytes: int, antithetic: bool = False) -> int:
    """How many GBM paths of `steps` steps one chunk may hold within `max_bytes`."""
    steps = _positive_int("steps", steps)
    max_bytes = _positive_int("max_bytes", max_bytes)
    per_path = _ARRAYS_PER_STEP * _FLOAT_BYTES * (steps + 1)
    n = max_bytes // per_path
    if antithetic:
        n -= n % 2
    if n < (2 if antithetic else 1):
        raise ValueError(f"max_bytes={max_bytes} cannot hold even one path of {steps} steps ({per_path} bytes a path)")
    return int(n)


def mean_payoff_gbm(
    payoff: Callable[[np.ndarray], np.ndarray],
    s0: float,
    mu: float,
    sigma: float,
    horizon: float,
    steps: int,
    paths: int,
    seed: int | None = None,
    *,
    antithetic: bool = False,
    rng: np.random.Generator | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    level: float = 0.95,
) -> Estimate:
    """Estimate E[payoff(path)] over GBM paths, simulating at most about `max_bytes` at a time.

    `payoff` maps an array of paths, shape (n, steps + 1), to one value per path, shape (n,).
    Paths are drawn in chunks from one generator stream, so the estimate does not depend on the
    chunk size: for the same seed it equals `estimate(payoff(simulate_gbm(...)))` up to rounding
    (with `antithetic`, the stderr is that of the antithetic pair means, and `paths` must be even;
    chunks keep each pair together). Moments are merged per chunk (Chan et al.), so
    paths * steps of 10^9 and more runs in constant memory. Discounting is the payoff's business.
    """
    if not callable(payoff):
        raise ValueError("payoff must be callable")
    s0 = _positive("s0", s0)
    mu = _finite("mu", mu)
    sigma = _non_negative("sigma", sigma)
    horizon = _positive("horizon", horizon)
    steps = _positive_int("steps", steps)
    paths = _positive_int("paths", paths)
    level = _level(level)
    if antithetic and paths % 2:
        raise ValueError(f"antithetic mean_payoff_gbm needs an even number of paths, got {paths}")
    units = paths // 2 if antithetic else paths  # independent samples: pair means or paths
    if units < 2:
        raise ValueError(f"need at least 2 independent samples, got {units}")
    chunk = gbm_chunk_paths(steps, max_bytes, antithetic)
    gen = _generator(seed, rng)

    count, mean, m2 = 0, 0.0, 0.0
    done = 0
    while done < paths:
        n = min(chunk, paths - done)
        block = _gbm(gen, s0, mu, sigma, horizon, steps, n, antithetic)
        values = np.asarray(payoff(block), dtype=np.float64)
        del block
        if values.shape != (n,):
            raise ValueError(f"payoff must return one value per path, shape ({n},), got {values.shape}")
        if not np.all(np.isfinite(values)):
            raise ValueError("payoff returned NaN or infinite values")
        if antithetic:
            values = 0.5 * (values[: n // 2] + values[n // 2 :])
        k = values.size
        k_mean = float(values.mean())
        k_m2 = float(((values - k_mean) ** 2).sum())
        total = count + k
        delta = k_mean - mean
        mean += delta * k / total
        m2 += k_m2 + delta * delta * count * k / total
        count = total
        done += n
    return _from_moments(mean, m2 / (count - 1), count, level)
