"""Univariate time-series forecasting: naive baselines, exponential smoothing, AR(p), auto.

Pure numpy/scipy, no I/O. Randomness (bootstrap prediction intervals) comes only from
a `numpy.random.Generator` made from the ``seed`` argument, so results are reproducible.

Methods (``forecast(..., method=...)``):

* ``"naive"``           last value; analytic interval ``sigma * sqrt(h)``.
* ``"seasonal_naive"``  value one period back; analytic ``sigma * sqrt(floor((h-1)/m) + 1)``.
* ``"drift"``           line through first and last value; ``sigma * sqrt(h * (1 + h/(n-1)))``.
* ``"ses"``             simple exponential smoothing; ``sigma * sqrt(1 + alpha^2 (h-1))``.
* ``"holt"`` / ``"holt_damped"`` (or ``damped=True``)  additive trend.
* ``"holt_winters"`` (``seasonal="additive"`` or ``"multiplicative"``), also spelled
  ``"holt_winters_additive"`` / ``"holt_winters_multiplicative"``; needs ``period``.
* ``"ar"``               AR(p) by least squares with intercept, p in 1..``max_p`` by AIC;
  analytic intervals from the MA(infinity) psi weights.
* ``"auto"``             rolling-origin cross-validation (MAE over a few origins) among the
  applicable methods; ``Forecast.method`` names the method that was chosen.

Exponential-smoothing parameters are fitted by minimising the one-step SSE with bounded
L-BFGS-B (initial states from a heuristic decomposition); holt/holt_winters intervals are
simulated from bootstrapped one-step residuals.

Degenerate input raises ``ValueError``: non 1-D, NaN/inf, horizon < 1, level outside (0, 1),
period < 2 or longer than half the series, too short for the method, multiplicative
seasonality on non-positive data. A *constant* series is accepted by naive, seasonal_naive,
drift, ses, holt and holt_winters (a flat line with a zero-width interval, since all
residuals are zero); ``"ar"`` rejects it (the regression is singular); ``"auto"`` returns
the naive flat line for it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from scipy import optimize, stats

__all__ = [
    "Forecast",
    "EsFit",
    "ArFit",
    "forecast",
    "fit_exponential_smoothing",
    "fit_ar",
    "METHODS",
]

METHODS = (
    "naive",
    "seasonal_naive",
    "drift",
    "ses",
    "holt",
    "holt_damped",
    "holt_winters",
    "holt_winters_additive",
    "holt_winters_multiplicative",
    "ar",
    "auto",
)

_N_SIMS = 2000


@dataclass(frozen=True)
class Forecast:
    """Point forecast ``mean`` with a central ``level`` prediction interval [lower, upper]."""

    mean: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    method: str
    level: float


@dataclass(frozen=True)
class EsFit:
    """A fitted exponential-smoothing model (error-correction form).

    ``season`` holds the seasonal factors for the next ``period`` steps after the end of
    the series (additive offsets or multiplicative ratios); empty when non-seasonal.
    """

    alpha: float
    beta: float
    gamma: float
    phi: float
    level: float
    trend: float
    season: np.ndarray
    fitted: np.ndarray
    residuals: np.ndarray
    sse: float
    has_trend: bool
    seasonal: str | None
    period: int


@dataclass(frozen=True)
class ArFit:
    """AR(p): y_t = intercept + sum_i coefs[i] * y_{t-1-i} + e_t, e ~ (0, sigma2)."""

    intercept: float
    coefs: np.ndarray
    sigma2: float
    p: int
    aic: float
    residuals: np.ndarray


# ----------------------------------------------------------------------------- validation


def _as_series(y: object) -> np.ndarray:
    arr = np.asarray(y, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"series must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError("series is empty")
    if not np.all(np.isfinite(arr)):
        raise ValueError("series contains NaN or inf")
    return arr


def _check_period(period: int | None, n: int) -> int | None:
    if period is None:
        return None
    if isinstance(period, bool) or int(period) != period:
        raise ValueError(f"period must be an integer, got {period!r}")
    period = int(period)
    if period < 2:
        raise ValueError(f"period must be >= 2, got {period}")
    if period > n // 2:
        raise ValueError(f"period {period} too long for a series of length {n} (need two full cycles)")
    return period


def _need(n: int, minimum: int, method: str) -> None:
    if n < minimum:
        raise ValueError(f"series too short for {method}: need at least {minimum} points, got {n}")


def _z(level: float) -> float:
    return float(stats.norm.ppf(0.5 + level / 2.0))


def _normal(mean: np.ndarray, sd: np.ndarray, level: float, method: str) -> Forecast:
    z = _z(level)
    return Forecast(mean=mean, lower=mean - z * sd, upper=mean + z * sd, method=method, level=level)


def _rms(resid: np.ndarray) -> float:
    return float(np.sqrt(np.mean(resid**2))) if resid.size else 0.0


# ----------------------------------------------------------------------------- baselines


def _naive(y: np.ndarray, h: int, level: float) -> Forecast:
    _need(y.size, 2, "naive")
    sigma = _rms(np.diff(y))
    steps = np.arange(1, h + 1)
    return _normal(np.full(h, y[-1]), sigma * np.sqrt(steps), level, "naive")


def _seasonal_naive(y: np.ndarray, h: int, m: int | None, level: float) -> Forecast:
    if m is None:
        raise ValueError("seasonal_naive needs a period")
    _need(y.size, m + 1, "seasonal_naive")
    sigma = _rms(y[m:] - y[:-m])
    steps = np.arange(1, h + 1)
    last = y[-m:]
    mean = last[(steps - 1) % m]
    k = (steps - 1) // m
    return _normal(mean.astype(float), sigma * np.sqrt(k + 1.0), level, "seasonal_naive")


def _drift(y: np.ndarray, h: int, level: float) -> Forecast:
    n = y.size
    _need(n, 3, "drift")
    slope = (y[-1] - y[0]) / (n - 1)
    resid = np.diff(y) - slope
    sigma = float(np.sqrt(np.sum(resid**2) / (n - 2)))
    steps = np.arange(1, h + 1, dtype=float)
    mean = y[-1] + slope * steps
    return _normal(mean, sigma * np.sqrt(steps * (1.0 + steps / (n - 1))), level, "drift")


# ----------------------------------------------------------------------------- exponential smoothing


def _es_init(y: np.ndarray, has_trend: bool, seasonal: str | None, m: int) -> tuple[float, float, list[float]]:
    """Heuristic initial states (level, trend, seasonal buffer) for the time before y[0]."""
    if seasonal is None:
        k = min(y.size, 10)
        if has_trend and k >= 2:
            t = np.arange(k, dtype=float)
            slope, intercept = np.polyfit(t, y[:k], 1)
            return float(intercept - slope), float(slope), []
        return float(y[0]), 0.0, []
    cycles = min(y.size // m, 4)
    seg = y[: cycles * m]
    t = np.arange(seg.size, dtype=float)
    slope, intercept = np.polyfit(t, seg, 1)
    trend_line = intercept + slope * t
    if seasonal == "additive":
        s = (seg - trend_line).reshape(cycles, m).mean(axis=0)
        s = s - s.mean()
    else:
        s = (seg / trend_line).reshape(cycles, m).mean(axis=0)
        s = s / s.mean()
    if not has_trend:
        slope = 0.0
        intercept = float(np.mean(seg))
    return float(intercept - slope), float(slope), [float(v) for v in s]


def _es_step(l: Any, b: Any, s: Any, idx: int, y: Any, a: float, be: float, g: float, phi: float,
             has_trend: bool, seasonal: str | None) -> tuple[Any, Any, Any]:
    """One error-correction update; works on floats (``s`` a list) or on arrays of paths (``s`` (m, paths)).

    Returns (one-step forecast, new level, new trend); updates ``s[idx]`` in place.
    """
    base = l + phi * b if has_trend else l
    if seasonal is None:
        yhat = base
        l_new = a * y + (1 - a) * base
    elif seasonal == "additive":
        sc = s[idx]
        yhat = base + sc
        l_new = a * (y - sc) + (1 - a) * base
        s[idx] = g * (y - base) + (1 - g) * sc
    else:
        sc = s[idx]
        yhat = base * sc
        l_new = a * (y / sc) + (1 - a) * base
        s[idx] = g * (y / base) + (1 - g) * sc
    b_new = be * (l_new - l) + (1 - be) * phi * b if has_trend else b
    return yhat, l_new, b_new


def _es_filter(y: np.ndarray, a: float, be: float, g: float, phi: float, init: tuple[float, float, list[float]],
               has_trend: bool, seasonal: str | None, m: int) -> tuple[np.ndarray, float, float, list[float]]:
    l, b, s0 = init
    s = list(s0)
    fitted = np.empty(y.size)
    for t in range(y.size):
        yhat, l, b = _es_step(l, b, s, t % m if m else 0, float(y[t]), a, be, g, phi, has_trend, seasonal)
        fitted[t] = yhat
    return fitted, l, b, s


def _unpack(x: np.ndarray, has_trend: bool, seasonal: str | None, damped: bool) -> tuple[float, float, float, float]:
    a = float(x[0])
    i = 1
    be = g = 0.0
    phi = 1.0
    if has_trend:
        be = float(x[i]) * a  # beta <= alpha
        i += 1
    if seasonal is not None:
        g = float(x[i]) * (1 - a)  # gamma <= 1 - alpha
        i += 1
    if damped:
        phi = float(x[i])
    return a, be, g, phi


def fit_exponential_smoothing(y: object, trend: bool = False, damped: bool = False, seasonal: str | None = None,
                              period: int | None = None) -> EsFit:
    """Fit SES / Holt (optionally damped) / Holt-Winters by minimising the one-step SSE."""
    arr = _as_series(y)
    n = arr.size
    if seasonal not in (None, "additive", "multiplicative"):
        raise ValueError(f"seasonal must be None, 'additive' or 'multiplicative', got {seasonal!r}")
    if damped and not trend:
        raise ValueError("damped needs a trend")
    m = 0
    if seasonal is not None:
        if period is None:
            raise ValueError("holt_winters needs a period")
        m = _check_period(period, n) or 0
        _need(n, 2 * m + 2, "holt_winters")
        if seasonal == "multiplicative" and np.any(arr <= 0):
            raise ValueError("multiplicative seasonality needs strictly positive data")
    else:
        _need(n, 4 if trend else 3, "holt" if trend else "ses")
    init = _es_init(arr, trend, seasonal, m)
    if seasonal == "multiplicative" and min(init[2]) <= 0:
        raise ValueError("multiplicative seasonality: non-positive initial seasonal factors")

    bounds: list[tuple[float, float]] = [(1e-4, 0.9999)]
    if trend:
        bounds.append((0.0, 1.0))
    if seasonal is not None:
        bounds.append((0.0, 1.0))
    if damped:
        bounds.append((0.8, 0.98))

    def sse(x: np.ndarray) -> float:
        a, be, g, phi = _unpack(x, trend, seasonal, damped)
        with np.errstate(all="ignore"):
            fitted, *_ = _es_filter(arr, a, be, g, phi, init, trend, seasonal, m)
            val = float(np.sum((arr - fitted) ** 2))
        return val if np.isfinite(val) else 1e300

    best: optimize.OptimizeResult | None = None
    for a0 in (0.2, 0.6):
        x0 = [a0] + [0.1] * (int(trend) + int(seasonal is not None)) + ([0.95] if damped else [])
        res = optimize.minimize(sse, np.array(x0), method="L-BFGS-B", bounds=bounds)
        if best is None or res.fun < best.fun:
            best = res
    assert best is not None
    a, be, g, phi = _unpack(best.x, trend, seasonal, damped)
    fitted, l, b, s = _es_filter(arr, a, be, g, phi, init, trend, seasonal, m)
    if not np.all(np.isfinite(fitted)):
        raise ValueError("exponential smoothing diverged on this series")
    season = np.array([s[(n + j) % m] for j in range(m)]) if m else np.empty(0)
    resid = arr - fitted
    return EsFit(alpha=a, beta=be, gamma=g, phi=phi, level=float(l), trend=float(b), season=season,
                 fitted=fitted, residuals=resid, sse=float(np.sum(resid**2)), has_trend=trend,
                 seasonal=seasonal, period=m)


def _es_point(fit: EsFit, h: int) -> np.ndarray:
    steps = np.arange(1, h + 1)
    if fit.has_trend:
        damp = np.cumsum(fit.phi ** steps.astype(float))
        base = fit.level + damp * fit.trend
    else:
        base = np.full(h, fit.level)
    if fit.seasonal is None:
        return base
    sc = fit.season[(steps - 1) % fit.period]
    return base + sc if fit.seasonal == "additive" else base * sc


def _es_simulate(fit: EsFit, h: int, rng: np.random.Generator, n_sims: int = _N_SIMS) -> np.ndarray:
    """Paths (n_sims, h) driven by bootstrapped one-step residuals."""
    resid = fit.residuals
    l = np.full(n_sims, fit.level)
    b = np.full(n_sims, fit.trend)
    m = fit.period
    s = np.tile(fit.season[:, None], (1, n_sims)) if m else np.empty((0, n_sims))
    draws = rng.choice(resid, size=(h, n_sims), replace=True)
    out = np.empty((n_sims, h))
    for j in range(h):
        # the buffer is re-indexed so that row j % m is the factor for step j + 1
        base = l + fit.phi * b if fit.has_trend else l
        if fit.seasonal is None:
            yhat = base
        elif fit.seasonal == "additive":
            yhat = base + s[j % m]
        else:
            yhat = base * s[j % m]
        yj = yhat + draws[j]
        _, l, b = _es_step(l, b, s, j % m if m else 0, yj, fit.alpha, fit.beta, fit.gamma, fit.phi,
                           fit.has_trend, fit.seasonal)
        out[:, j] = yj
    return out


def _es_forecast(y: np.ndarray, h: int, level: float, seed: int, name: str, **kw: object) -> Forecast:
    fit = fit_exponential_smoothing(y, **kw)  # type: ignore[arg-type]
    mean = _es_point(fit, h)
    if name == "ses":
        sigma = _rms(fit.residuals)
        sd = sigma * np.sqrt(1.0 + fit.alpha**2 * np.arange(h))
        return _normal(mean, sd, level, name)
    paths = _es_simulate(fit, h, np.random.default_rng(seed))
    lo_q, hi_q = 0.5 - level / 2.0, 0.5 + level / 2.0
    lower = np.quantile(paths, lo_q, axis=0)
    upper = np.quantile(paths, hi_q, axis=0)
    # keep the interval around the point forecast even if the bootstrap is skewed
    lower = np.minimum(lower, mean)
    upper = np.maximum(upper, mean)
    return Forecast(mean=mean, lower=lower, upper=upper, method=name, level=level)


# ----------------------------------------------------------------------------- AR(p)


def fit_ar(y: object, max_p: int = 8) -> ArFit:
    """AR(p) with intercept by least squares; p in 1..max_p chosen by AIC on a common sample."""
    arr = _as_series(y)
    n = arr.size
    _need(n, 8, "ar")
    if np.ptp(arr) == 0:
        raise ValueError("constant series: AR cannot be fitted")
    pmax = max(1, min(int(max_p), (n - 2) // 4))
    target = arr[pmax:]
    nobs = target.size
    best: ArFit | None = None
    for p in range(1, pmax + 1):
        X = np.column_stack([np.ones(nobs)] + [arr[pmax - i: n - i] for i in range(1, p + 1)])
        coef, _, rank, _ = np.linalg.lstsq(X, target, rcond=None)
        if rank < X.shape[1]:
            continue
        resid = target - X @ coef
        rss = float(resid @ resid)
        sigma2_ml = max(rss / nobs, 1e-300)
        aic = nobs * np.log(sigma2_ml) + 2 * (p + 2)
        if best is None or aic < best.aic:
            sigma2 = rss / max(nobs - p - 1, 1)
            best = ArFit(intercept=float(coef[0]), coefs=coef[1:].copy(), sigma2=sigma2, p=p, aic=float(aic),
                         residuals=resid)
    if best is None:
        raise ValueError("AR regression is singular for this series")
    return best


def _ar(y: np.ndarray, h: int, level: float, max_p: int) -> Forecast:
    fit = fit_ar(y, max_p)
    p = fit.p
    hist = list(y[-p:])
    mean = np.empty(h)
    for j in range(h):
        val = fit.intercept + sum(fit.coefs[i] * hist[-1 - i] for i in range(p))
        mean[j] = val
        hist.append(val)
    psi = np.zeros(h)
    psi[0] = 1.0
    for j in range(1, h):
        psi[j] = sum(fit.coefs[i] * psi[j - 1 - i] for i in range(min(p, j)))
    sd = np.sqrt(fit.sigma2 * np.cumsum(psi**2))
    return _normal(mean, sd, level, f"ar({p})")


# ----------------------------------------------------------------------------- dispatch


def _dispatch(y: np.ndarray, h: int, m: int | None, method: str, level: float, seed: int, damped: bool,
              seasonal: str, max_p: int) -> Forecast:
    if method == "naive":
        return _naive(y, h, level)
    if method == "seasonal_naive":
        return _seasonal_naive(y, h, m, level)
    if method == "drift":
        return _drift(y, h, level)
    if method == "ses":
        return _es_forecast(y, h, level, seed, "ses")
    if method in ("holt", "holt_damped"):
        d = damped or method == "holt_damped"
        return _es_forecast(y, h, level, seed, "holt_damped" if d else "holt", trend=True, damped=d)
    if method in ("holt_winters", "holt_winters_additive", "holt_winters_multiplicative"):
        kind = {"holt_winters_additive": "additive", "holt_winters_multiplicative": "multiplicative"}.get(
            method, seasonal)
        if kind not in ("additive", "multiplicative"):
            raise ValueError(f"seasonal must be 'additive' or 'multiplicative', got {kind!r}")
        if m is None:
            raise ValueError("holt_winters needs a period")
        name = f"holt_winters_{kind}" + ("_damped" if damped else "")
        return _es_forecast(y, h, level, seed, name, trend=True, damped=damped,
                            seasonal=kind, period=m)
    if method == "ar":
        return _ar(y, h, level, max_p)
    raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")


def _candidates(y: np.ndarray, m: int | None) -> list[str]:
    cands = ["naive", "drift", "ses", "holt", "holt_damped", "ar"]
    if m is not None:
        cands += ["seasonal_naive", "holt_winters_additive"]
        if np.all(y > 0):
            cands.append("holt_winters_multiplicative")
    return cands


_MIN_LEN: dict[str, Callable[[int], int]] = {
    "naive": lambda m: 2,
    "drift": lambda m: 3,
    "ses": lambda m: 3,
    "holt": lambda m: 4,
    "holt_damped": lambda m: 4,
    "ar": lambda m: 16,
    "seasonal_naive": lambda m: m + 1,
    "holt_winters_additive": lambda m: 2 * m + 2,
    "holt_winters_multiplicative": lambda m: 2 * m + 2,
}


def _auto(y: np.ndarray, h: int, m: int | None, level: float, seed: int, max_p: int, n_origins: int) -> Forecast:
    n = y.size
    if np.ptp(y) == 0:
        return _naive(y, h, level)  # flat line, zero-width interval (raises if n < 2)
    # forecast h_cv steps (the horizon, capped at one season and a quarter of the data) from
    # n_origins non-overlapping origins at the end of the series; score = mean absolute error
    h_cv = max(1, min(h, m if m else h, n // 4))
    origins = [n - h_cv * (k + 1) for k in range(n_origins)]
    origins = [o for o in origins if o >= 4]
    scores: dict[str, float] = {}
    for name in _candidates(y, m):
        need = _MIN_LEN[name](m or 0)
        if m is not None and name in ("seasonal_naive", "holt_winters_additive", "holt_winters_multiplicative"):
            need = max(need, 2 * m)  # the training prefix must hold two full cycles
        # a method is only compared if it can be scored at every origin (same test points for all)
        if not origins or min(origins) < need:
            continue
        usable = origins
        errs = []
        try:
            for o in usable:
                fc = _dispatch(y[:o], h_cv, m, name, level, seed, False, "additive", max_p)
                errs.append(np.mean(np.abs(fc.mean - y[o: o + h_cv])))
        except (ValueError, np.linalg.LinAlgError):
            continue
        score = float(np.mean(errs))
        if np.isfinite(score):
            scores[name] = score
    if not scores:
        return _naive(y, h, level)
    best = min(scores, key=lambda k: scores[k])  # dict order breaks ties: simpler methods first
    return _dispatch(y, h, m, best, level, seed, False, "additive", max_p)


def forecast(y: object, horizon: int, period: int | None = None, method: str = "auto", level: float = 0.9, *,
             damped: bool = False, seasonal: str = "additive", seed: int = 0, max_p: int = 8,
             n_origins: int = 3) -> Forecast:
    """Forecast ``horizon`` steps of the 1-D series ``y`` with a central ``level`` interval.

    ``period`` is the seasonal period (needed by seasonal_naive / holt_winters; used by auto to
    add the seasonal candidates). ``damped`` applies to holt/holt_winters, ``seasonal`` to
    holt_winters, ``max_p`` to ar, ``n_origins`` to auto, ``seed`` to bootstrap intervals.
    """
    arr = _as_series(y)
    if isinstance(horizon, bool) or int(horizon) != horizon or horizon < 1:
        raise ValueError(f"horizon must be an integer >= 1, got {horizon!r}")
    h = int(horizon)
    try:
        level = float(level)
    except (TypeError, ValueError):
        raise ValueError(f"level must be a number in (0, 1), got {level!r}") from None
    if not 0.0 < level < 1.0:  # also rejects NaN
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    m = _check_period(period, arr.size)
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    if max_p < 1:
        raise ValueError(f"max_p must be >= 1, got {max_p}")
    if method == "auto":
        if n_origins < 1:
            raise ValueError(f"n_origins must be >= 1, got {n_origins}")
        return _auto(arr, h, m, level, seed, max_p, n_origins)
    return _dispatch(arr, h, m, method, level, seed, damped, seasonal, max_p)
