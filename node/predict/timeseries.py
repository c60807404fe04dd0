"""Univariate time-series forecasting: naive baselines, exponential smoothing, AR(p), ARIMA, auto.

Pure numpy/scipy, no I/O. Randomness (bootstrap intervals of multiplicative Holt-Winters) comes only from
a `numpy.random.Generator` made from the ``seed`` argument, so results are reproducible.

Methods (``forecast(..., method=...)``):

* ``"naive"``           last value; analytic interval ``sigma * sqrt(h)``.
* ``"seasonal_naive"``  value one period back; analytic ``sigma * sqrt(floor((h-1)/m) + 1)``.
* ``"drift"``           line through first and last value; ``sigma * sqrt(h * (1 + h/(n-1)))``.
* ``"ses"``             simple exponential smoothing; ``sigma * sqrt(1 + alpha^2 (h-1))``.
* ``"holt"`` / ``"holt_damped"`` (or ``damped=True``)  additive trend; analytic interval (below).
* ``"holt_winters"`` (``seasonal="additive"`` or ``"multiplicative"``), also spelled
  ``"holt_winters_additive"`` / ``"holt_winters_multiplicative"``; needs ``period``; analytic
  interval when additive, bootstrapped when multiplicative (below).
* ``"ar"``               AR(p) by least squares with intercept, p in 1..``max_p`` by AIC;
  analytic intervals from the MA(infinity) psi weights.
* ``"arima"``            ARIMA(p,d,q) with p, q <= 3, d <= 2 (`auto_arima`): d by repeated KPSS
  tests, (p, q) by AICc over the whole grid, each fitted by exact Gaussian maximum likelihood;
  analytic intervals from the psi weights of the integrated model; ``Forecast.method`` names
  the order, e.g. ``"arima(1,1,1)"``.
* ``"auto"``             rolling-origin cross-validation (MAE over a few origins) among the
  applicable methods (``"arima"`` only when every cross-validation prefix has at least 30
  points); ``Forecast.method`` names the method that was chosen.

Exponential-smoothing parameters are fitted by minimising the one-step SSE with bounded
L-BFGS-B from two starting points (a local search: it can stop in a local minimum; initial
states from a heuristic decomposition) over the usual region of R's
forecast::ets: alpha in [1e-4, 0.9999], error-correction trend coefficient alpha * beta with
beta (the smoothing beta of `_es_step`) in [1e-4, 0.9999], i.e. 0 < alpha*beta < alpha; gamma in
[1e-4, 0.9999] * (1 - alpha); phi in [0.8, 0.98].

ses, holt, holt_damped and additive holt_winters (damped or not) are linear in the innovations
(class 1 of Hyndman, Koehler, Ord & Snyder 2008, "Forecasting with Exponential Smoothing",
ch. 6): their analytic normal interval is ``sigma * sqrt(1 + sum_{j=1}^{h-1} c_j^2)`` with sigma
the rms of the one-step residuals and ``c_j = alpha + alpha*beta*(phi + ... + phi^j) +
gamma * [j % m == 0]`` (phi = 1 undamped: ``alpha*beta*j``; no trend / no season: those terms
are 0; ses: ``c_j = alpha``). c_j is the response of the (j+1)-step point forecast to a unit
one-step innovation in `_es_step`'s recursion. Multiplicative holt_winters has no closed form:
its intervals are quantiles of paths simulated from bootstrapped one-step residuals.

Degenerate input raises ``ValueError``: non 1-D, NaN/inf, horizon < 1, level outside (0, 1),
period < 2 or longer than half the series, too short for the method, multiplicative
seasonality on non-positive data. A *constant* series is accepted by naive, seasonal_naive,
drift, ses, holt and holt_winters (a flat line with a zero-width interval, since all
residuals are zero); ``"ar"`` rejects it (the regression is singular), and ``"arima"`` rejects
it and any series whose chosen differences are constant (zero innovation variance); ``"auto"``
returns the naive flat line for it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from scipy import linalg, optimize, signal, stats

from node.predict.checks import series as _series

__all__ = [
    "Forecast",
    "EsFit",
    "ArFit",
    "ArimaFit",
    "forecast",
    "fit_exponential_smoothing",
    "fit_ar",
    "fit_arima",
    "auto_arima",
    "arima_point",
    "arima_forecast",
    "kpss_statistic",
    "ndiffs",
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
    "arima",
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
    """A fitted exponential-smoothing model (the component form of `_es_step`).

    ``beta`` is the smoothing beta of ``b_t = beta (l_t - l_{t-1}) + (1 - beta) phi b_{t-1}``;
    the error-correction trend coefficient is ``alpha * beta`` (b_t = phi b_{t-1} + alpha beta e_t).
    ``gamma`` is both the smoothing and the error-correction seasonal coefficient
    (s_t = s_{t-m} + gamma e_t); ``alpha`` likewise (l_t = l_{t-1} + phi b_{t-1} + alpha e_t).

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
    return _series("series", y)  # type: ignore[arg-type]


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
        be = float(x[i])  # smoothing beta in (0, 1): error-correction beta alpha * be in (0, alpha)
        i += 1
    if seasonal is not None:
        g = float(x[i]) * (1 - a)  # gamma < 1 - alpha
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

    # the usual region of R's forecast::ets (bounds="usual"): alpha in [1e-4, 0.9999], the
    # error-correction beta (alpha * our smoothing beta) in (0, alpha), gamma in (0, 1 - alpha)
    bounds: list[tuple[float, float]] = [(1e-4, 0.9999)]
    if trend:
        bounds.append((1e-4, 0.9999))
    if seasonal is not None:
        bounds.append((1e-4, 0.9999))
    if damped:
        bounds.append((0.8, 0.98))

    # L-BFGS-B stops on an absolute gradient tolerance: on a series of values near 1e100 the
    # SSE (1e200) never gets there and the fit ran to its iteration cap (seconds for 20 points).
    # Measured in units of the series' own spread the objective has the same minimiser at any
    # scale; at the scale of everyday data (spread under 1e6) it is left as it was.
    spread = float(np.sum((arr - arr.mean()) ** 2)) if np.all(np.abs(arr) < 1e150) else np.inf
    unit = spread if spread > 1e12 else 1.0

    def sse(x: np.ndarray) -> float:
        a, be, g, phi = _unpack(x, trend, seasonal, damped)
        with np.errstate(all="ignore"):
            fitted, *_ = _es_filter(arr, a, be, g, phi, init, trend, seasonal, m)
            val = float(np.sum((arr - fitted) ** 2)) / unit
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


def _es_psi(fit: EsFit, h: int) -> np.ndarray:
    """Innovation weights c_0..c_{h-1} of a linear (additive-error, non-multiplicative) model.

    y_{n+k} = point_k + sum_{j<k} c_j e_{n+k-j}, so Var(k) = sigma^2 * sum_{j<k} c_j^2. From
    `_es_step` in error-correction form (e = y - yhat): l' = l + phi b + alpha e,
    b' = phi b + alpha beta e, s' = s + gamma e; a unit innovation therefore moves the forecast
    j steps later by c_j = alpha + alpha beta (phi + ... + phi^j) + gamma [j % m == 0], c_0 = 1
    (Hyndman et al. 2008, Table 6.1, with their beta = our alpha * beta).
    """
    if fit.seasonal == "multiplicative":
        raise ValueError("multiplicative Holt-Winters has no analytic innovation weights")
    j = np.arange(1, h, dtype=float)
    c = np.full(j.size, fit.alpha)
    if fit.has_trend:
        c += fit.alpha * fit.beta * np.cumsum(fit.phi**j)
    if fit.seasonal == "additive":
        c += fit.gamma * (np.arange(1, h) % fit.period == 0)
    return np.concatenate([[1.0], c])


def _es_simulate(fit: EsFit, h: int, rng: np.random.Generator, n_sims: int = _N_SIMS,
                 draws: np.ndarray | None = None) -> np.ndarray:
    """Paths (n_sims, h) driven by bootstrapped one-step residuals, or by the given ``draws`` (h, n_sims)."""
    resid = fit.residuals
    if draws is None:
        draws = rng.choice(resid, size=(h, n_sims), replace=True)
    else:
        draws = np.asarray(draws, dtype=float)
        if draws.shape[0] != h:
            raise ValueError(f"draws must have {h} rows, got shape {draws.shape}")
        n_sims = draws.shape[1]
    l = np.full(n_sims, fit.level)
    b = np.full(n_sims, fit.trend)
    m = fit.period
    s = np.tile(fit.season[:, None], (1, n_sims)) if m else np.empty((0, n_sims))
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
    if fit.seasonal != "multiplicative":
        # linear model: analytic normal interval (for ses, sigma * sqrt(1 + alpha^2 (h - 1)))
        sigma = _rms(fit.residuals)
        sd = sigma * np.sqrt(np.cumsum(_es_psi(fit, h) ** 2))
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


# ----------------------------------------------------------------------------- ARIMA(p, d, q)

_ARIMA_MAX_P = 3
_ARIMA_MAX_Q = 3
_ARIMA_MAX_D = 2
_ARIMA_BOUND = 5.0  # |tanh^-1 of a partial autocorrelation| <= 5: |pacf| <= 0.9999, keeps the filter finite
# KPSS level-stationarity test, 5% critical value (Kwiatkowski, Phillips, Schmidt & Shin 1992,
# table 1, eta_mu), the level R's forecast::ndiffs uses by default
_KPSS_CRIT_5PCT = 0.463


@dataclass(frozen=True)
class ArimaFit:
    """ARIMA(p, d, q) fitted by exact Gaussian maximum likelihood.

    With w_t = (1 - B)^d y_t (n = len(y) - d values):

        w_t - mean = sum_i phi[i] (w_{t-1-i} - mean) + e_t + sum_j theta[j] e_{t-1-j},  e ~ N(0, sigma2)

    ``mean`` is the level of y for d=0, the drift (mean step) for d=1, and 0 for d=2 or when
    ``include_mean`` is False. ``phi`` is stationary and ``theta`` invertible. ``sigma2`` is the
    maximum-likelihood innovation variance, ``aicc`` counts p + q + include_mean + 1 parameters
    on n observations. ``residuals`` are E[e_t | data] (the difference equation run from the
    presample state's posterior mean); ``state`` is E[s_n | data] for the innovations
    state-space form of `_arma_state` (K = max(p, q) values) and ``tail`` the last value of
    y, (1 - B) y, ..., (1 - B)^(d-1) y: together they give the forecasts.
    """

    p: int
    d: int
    q: int
    phi: np.ndarray
    theta: np.ndarray
    mean: float
    include_mean: bool
    sigma2: float
    loglik: float
    aicc: float
    residuals: np.ndarray
    n: int
    state: np.ndarray
    tail: np.ndarray


def _pacf_to_coefs(r: np.ndarray) -> np.ndarray:
    """Durbin-Levinson: partial autocorrelations in (-1, 1) -> coefficients a of a stationary AR
    (x_t = sum a_i x_{t-i} + e_t). Every point of the open cube maps to a stationary polynomial,
    which is why the optimiser works on tanh^-1 of these (as R's arima and statsmodels do)."""
    a: list[float] = []
    for rk in r:  # at most 3 terms: plain floats beat numpy calls here (the likelihood's inner loop)
        rk = float(rk)
        a = [a[j] - rk * a[-1 - j] for j in range(len(a))] + [rk]
    return np.array(a)


def _coefs_to_pacf(a: np.ndarray) -> np.ndarray | None:
    """Inverse of `_pacf_to_coefs`; None when ``a`` is not stationary."""
    a = np.asarray(a, dtype=float).copy()
    r = np.empty(a.size)
    for k in range(a.size - 1, -1, -1):
        rk = float(a[k])
        if not abs(rk) < 1.0:
            return None
        r[k] = rk
        a = (a[:k] + rk * a[:k][::-1]) / (1.0 - rk * rk)
    return r


def _unpack_arma(x: np.ndarray, p: int, q: int) -> tuple[np.ndarray, np.ndarray]:
    phi = _pacf_to_coefs(np.tanh(x[:p]))
    theta = -_pacf_to_coefs(np.tanh(x[p:p + q]))  # 1 + sum theta z^j = 1 - sum a z^j: invertible
    return phi, theta


def _pack_arma(phi: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Unconstrained start for (phi, theta); a non-stationary / non-invertible part starts at zero."""
    parts = []
    for coefs in (phi, -theta):
        r = _coefs_to_pacf(coefs)
        if r is None or np.any(np.abs(r) > 0.99):
            r = np.zeros(coefs.size)
        parts.append(np.arctanh(r))
    return np.concatenate(parts)


def _arma_state(phi: np.ndarray, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Innovations state-space form of a unit-variance ARMA, state dimension K = max(p, q):

        w_t = e_t + s_{t-1}[0],   s_t = T s_{t-1} + c e_t,   c_i = phi_{i+1} + theta_{i+1},

    T the companion matrix with phi in its first column, so s_{t-1}[0] = E[w_t | past] and the
    forecasts are mean + (T^(j-1) s_n)[0]. Returns (T, Omega), Omega = T Omega T' + c c' the
    stationary covariance of s (a K^2 x K^2 linear solve, K <= 3).
    """
    p, q = phi.size, theta.size
    K = max(p, q)
    T = np.zeros((K, K))
    T[:p, 0] = phi
    T[np.arange(K - 1), np.arange(1, K)] = 1.0
    c = np.zeros(K)
    c[:p] += phi
    c[:q] += theta
    kron = (T[:, None, :, None] * T[None, :, None, :]).reshape(K * K, K * K)  # np.kron(T, T), without its overhead
    omega = np.linalg.solve(np.eye(K * K) - kron, np.outer(c, c).ravel()).reshape(K, K)
    return T, (omega + omega.T) / 2.0


@dataclass(frozen=True)
class _ArmaLik:
    loglik: float
    mu: float
    sigma2: float
    resid: np.ndarray
    state: np.ndarray


def _arma_loglik(w: np.ndarray, phi: np.ndarray, theta: np.ndarray, include_mean: bool,
                 full: bool = False) -> _ArmaLik:
    """Exact Gaussian log-likelihood of the ARMA on ``w``, mean (GLS) and sigma2 profiled out.

    Why not a Kalman loop: given the presample state s_0 the innovations are the ARMA difference
    equation e = (phi(B) / theta(B)) (w - mu), one `scipy.signal.lfilter` call whose initial
    condition is -s_0; the result is linear in s_0, e = e_cond + H u with s_0 = L u,
    Omega = L L', u ~ N(0, sigma2 I), and the map from the innovations to w has unit Jacobian.
    Integrating u out gives exactly the Kalman filter's likelihood,

        -2 log L = n log(2 pi sigma2) + log det(I + H'H) + e_cond' (I + H H')^-1 e_cond / sigma2,

    with (I + H H')^-1 applied through Woodbury (K x K). One filter call over the columns
    [w, 1, H] replaces n Python-level Kalman steps. e_cond is linear in mu, so the GLS mean is
    closed-form too. With ``full`` also the posterior-mean residuals E[e | w] and the forecast
    state E[s_n | w] (after the last observation).
    """
    n = w.size
    p, q = phi.size, theta.size
    K = max(p, q)
    m = 2 if include_mean else 1
    X = np.zeros((n, m + K))
    X[:, 0] = w
    if include_mean:
        X[:, 1] = 1.0
    if K:
        T, omega = _arma_state(phi, theta)
        lam, V = np.linalg.eigh(omega)
        L = V * np.sqrt(np.clip(lam, 0.0, None))  # Omega = L L', also when Omega is singular
        zi = np.zeros((K, m + K))
        zi[:, m:] = -L  # the filter's state is -s
        E, zf = signal.lfilter(np.concatenate([[1.0], -phi]), np.concatenate([[1.0], theta]), X, axis=0, zi=zi)
    else:
        E, zf = X, np.zeros((0, m))
    R, H = E[:, :m], E[:, m:]
    A = np.eye(K) + H.T @ H
    chol = np.linalg.cholesky(A)
    logdet = 2.0 * float(np.sum(np.log(np.diag(chol))))
    HtR = H.T @ R
    AiHtR = np.linalg.solve(A, HtR) if K else HtR
    gram = R.T @ R - HtR.T @ AiHtR  # e' (I + H H')^-1 e for the columns [w, 1]
    mu = float(gram[0, 1] / gram[1, 1]) if include_mean else 0.0
    S = float(gram[0, 0] - mu * gram[0, 1]) if include_mean else float(gram[0, 0])
    sigma2 = S / n
    loglik = -0.5 * (n * (np.log(2 * np.pi * sigma2) + 1.0) + logdet)
    resid = state = np.empty(0)
    if full:
        coef = np.array([1.0, -mu])[:m]
        u = -(AiHtR @ coef)  # E[u | w]
        resid = R @ coef + H @ u
        state = -(zf[:, :m] @ coef + zf[:, m:] @ u) if K else np.empty(0)
    return _ArmaLik(loglik=float(loglik), mu=mu, sigma2=sigma2, resid=resid, state=state)


def _hannan_rissanen(w: np.ndarray, p: int, q: int) -> tuple[np.ndarray, np.ndarray]:
    """Two-stage least-squares ARMA estimate (Hannan & Rissanen 1982): a long AR gives residual
    estimates, then w_t is regressed on its p lags and q lagged residuals. The start of the ML
    search, so the optimiser begins near the optimum rather than at zero."""
    n = w.size
    x = w - w.mean()
    e = np.zeros(n)
    start = p
    if q > 0:
        # the long AR by Yule-Walker (Levinson, no BLAS): a least-squares fit with ~10 log10(n)
        # columns costs tens of milliseconds on a busy multi-threaded OpenBLAS
        m = min(max(p + q, int(round(10 * np.log10(n)))), (n - 1) // 3)
        acov = np.array([x[: n - k] @ x[k:] for k in range(m + 1)]) / n
        if acov[0] <= 0:
            return np.zeros(p), np.zeros(q)
        a = linalg.solve_toeplitz(acov[:m], acov[1:m + 1])
        e[m:] = signal.lfilter(np.concatenate([[1.0], -a]), [1.0], x)[m:]
        start = m + q
    if n - start <= p + q:
        return np.zeros(p), np.zeros(q)
    X = np.column_stack([x[start - i: n - i] for i in range(1, p + 1)]
                        + [e[start - j: n - j] for j in range(1, q + 1)])
    try:
        coef = np.linalg.solve(X.T @ X, X.T @ x[start:])  # at most 6 columns: normal equations
    except np.linalg.LinAlgError:
        return np.zeros(p), np.zeros(q)
    return coef[:p], coef[p:]


def _difference(y: np.ndarray, d: int) -> tuple[np.ndarray, np.ndarray]:
    """(1 - B)^d y and the last value of each of y, (1 - B) y, ..., (1 - B)^(d-1) y."""
    tail = []
    w = y
    for _ in range(d):
        tail.append(float(w[-1]))
        w = np.diff(w)
    return w, np.array(tail)


def _arima_need(p: int, d: int, q: int) -> int:
    # at least 8 differenced points, and twice the ARMA coefficients plus a few for the mean,
    # sigma2 and a positive AICc denominator
    return d + max(8, 2 * (p + q) + 4)


def _check_order(p: int, d: int, q: int) -> None:
    for name, val, hi in (("p", p, _ARIMA_MAX_P), ("d", d, _ARIMA_MAX_D), ("q", q, _ARIMA_MAX_Q)):
        if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or not 0 <= val <= hi:
            raise ValueError(f"ARIMA order {name} must be an integer in 0..{hi}, got {val!r}")


def fit_arima(y: object, p: int, d: int, q: int, *, include_mean: bool | None = None) -> ArimaFit:
    """ARIMA(p, d, q) by exact Gaussian maximum likelihood of the ARMA on (1 - B)^d y.

    The likelihood is exact, not conditional: the presample state is integrated out under its
    stationary distribution (`_arma_loglik`, equal to the Kalman filter's likelihood). The mean
    and sigma2 are profiled out in closed form; (phi, theta) are optimised by BFGS over tanh^-1
    of their partial autocorrelations, so every candidate is stationary and invertible, starting
    from the Hannan-Rissanen estimate.

    ``include_mean`` defaults to the convention of R's forecast::auto.arima: a mean for d=0, a
    drift for d=1 (a constant in the differenced series), none for d=2 (a constant there is a
    quadratic trend, refused). Raises ValueError on an order outside p, q in 0..3, d in 0..2,
    a series too short for the order, or a constant differenced series.
    """
    arr = _as_series(y)
    _check_order(p, d, q)
    p, d, q = int(p), int(d), int(q)
    if include_mean is None:
        include_mean = d < 2
    include_mean = bool(include_mean)
    if include_mean and d == 2:
        raise ValueError("ARIMA with d=2 cannot include a constant (it would be a quadratic trend)")
    name = f"arima({p},{d},{q})"
    _need(arr.size, _arima_need(p, d, q), name)
    w, tail = _difference(arr, d)
    if np.ptp(w) == 0:
        what = "series" if d == 0 else f"series differenced {d} time(s)"
        raise ValueError(f"constant {what}: ARIMA cannot be fitted (zero innovation variance)")
    n = w.size
    # work on a standardised copy: the optimiser then sees O(1) numbers whatever the data's scale
    center = float(np.mean(w)) if include_mean else 0.0
    scale = float(np.sqrt(np.mean((w - center) ** 2)))
    ws = (w - center) / scale

    x = np.empty(0)
    if p + q:
        phi0, theta0 = _hannan_rissanen(ws, p, q)
        x0 = _pack_arma(phi0, theta0)

        def nll(x: np.ndarray) -> float:
            phi, theta = _unpack_arma(x, p, q)
            with np.errstate(all="ignore"):
                try:
                    val = -_arma_loglik(ws, phi, theta, include_mean).loglik / n
                except np.linalg.LinAlgError:
                    return 1e10
            return val if np.isfinite(val) else 1e10

        # BFGS on the unconstrained transform, as R's arima; the clip keeps |pacf| <= 0.9999. Not
        # L-BFGS-B: its per-iteration BLAS calls cost milliseconds on a busy multi-threaded
        # OpenBLAS, more than the likelihood itself. At most 100 iterations (R's optim default):
        # only fits wandering along the boundary (over-parametrised orders) need more.
        res = optimize.minimize(lambda x: nll(np.clip(x, -_ARIMA_BOUND, _ARIMA_BOUND)), x0, method="BFGS",
                                options={"gtol": 1e-4, "maxiter": 100})
        x = np.clip(res.x, -_ARIMA_BOUND, _ARIMA_BOUND)
    phi, theta = _unpack_arma(x, p, q)
    lik = _arma_loglik(ws, phi, theta, include_mean, full=True)
    loglik, mu, sigma2 = lik.loglik, lik.mu, lik.sigma2
    if not (np.isfinite(loglik) and sigma2 > 0):
        raise ValueError(f"{name}: the likelihood is degenerate for this series")
    loglik -= n * np.log(scale)  # Jacobian of the standardisation
    k = p + q + int(include_mean) + 1
    aicc = -2.0 * loglik + 2.0 * k + (2.0 * k * (k + 1) / (n - k - 1) if n - k - 1 > 0 else np.inf)
    return ArimaFit(p=p, d=d, q=q, phi=phi, theta=theta, mean=center + scale * mu, include_mean=include_mean,
                    sigma2=sigma2 * scale**2, loglik=float(loglik), aicc=float(aicc), residuals=lik.resid * scale,
                    n=n, state=lik.state * scale, tail=tail)


def kpss_statistic(y: object) -> float:
    """KPSS statistic for level stationarity (Kwiatkowski et al. 1992) with the Bartlett
    long-run variance at the "short" lag truncation floor(4 (n/100)^(1/4)) of urca::ur.kpss,
    as R's forecast::ndiffs computes it. Large values reject stationarity."""
    arr = _as_series(y)
    n = arr.size
    _need(n, 3, "kpss")
    e = arr - arr.mean()
    s = np.cumsum(e)
    lags = min(int(4 * (n / 100.0) ** 0.25), n - 1)
    lrv = float(e @ e) / n
    for lag in range(1, lags + 1):
        lrv += 2.0 * (1.0 - lag / (lags + 1.0)) * float(e[lag:] @ e[:-lag]) / n
    if lrv <= 0:
        raise ValueError("constant series: KPSS statistic undefined")
    return float(s @ s) / (n * n * lrv)


def ndiffs(y: object, max_d: int = _ARIMA_MAX_D) -> int:
    """Order of differencing: difference while the KPSS test rejects level stationarity at 5%
    (statistic > 0.463), at most ``max_d`` times; stop at a constant series (R's ndiffs rule)."""
    x = _as_series(y)
    d = 0
    while d < max_d and x.size >= 8 and np.ptp(x) > 0 and kpss_statistic(x) > _KPSS_CRIT_5PCT:
        x = np.diff(x)
        d += 1
    return d


def _near_unit_root(fit: ArimaFit) -> bool:
    """An AR or MA root within 1.01 of the unit circle. auto.arima drops such fits: the optimum
    sits on the stationarity/invertibility boundary (typically an over-parametrised model whose
    MA part cancels noise the AR part overfits), and its AICc is not to be trusted."""
    for poly in (np.concatenate([[1.0], -fit.phi]), np.concatenate([[1.0], fit.theta])):
        poly = np.trim_zeros(poly, "b")
        if poly.size > 1 and np.min(np.abs(np.roots(poly[::-1]))) < 1.01:
            return True
    return False


def auto_arima(y: object, d: int | None = None, max_p: int = _ARIMA_MAX_P, max_q: int = _ARIMA_MAX_Q) -> ArimaFit:
    """Order choice as R's auto.arima (non-stepwise): d by `ndiffs` unless given, then every
    (p, q) with p <= max_p, q <= max_q the series is long enough for, with the default constant
    of `fit_arima`, by AICc; finally the chosen order is refitted with the constant toggled
    (for d < 2) and kept if that lowers the AICc. Fits that fail, and fits with an AR or MA root
    within 1.01 of the unit circle (as auto.arima), are skipped."""
    arr = _as_series(y)
    _check_order(max_p, 0, max_q)
    if d is None:
        d = ndiffs(arr)
    _check_order(0, d, 0)
    best: ArimaFit | None = None
    errors: list[str] = []
    for p in range(max_p + 1):
        for q in range(max_q + 1):
            if arr.size < _arima_need(p, d, q):
                continue
            try:
                fit = fit_arima(arr, p, d, q)
            except (ValueError, np.linalg.LinAlgError) as exc:
                errors.append(str(exc))
                continue
            if _near_unit_root(fit):
                continue
            if best is None or fit.aicc < best.aicc:
                best = fit
    if best is None:
        _need(arr.size, _arima_need(0, d, 0), f"arima(0,{d},0)")
        raise ValueError(errors[0] if errors else "no ARIMA model could be fitted to this series")
    if d < 2:
        try:
            alt = fit_arima(arr, best.p, d, best.q, include_mean=not best.include_mean)
            if alt.aicc < best.aicc and not _near_unit_root(alt):
                best = alt
        except (ValueError, np.linalg.LinAlgError):
            pass
    return best


def _arima_psi(fit: ArimaFit, h: int) -> np.ndarray:
    """psi weights of the integrated model: theta(B) / (phi(B) (1 - B)^d) = sum psi_j B^j."""
    ar_poly = np.concatenate([[1.0], -fit.phi])
    for _ in range(fit.d):
        ar_poly = np.convolve(ar_poly, [1.0, -1.0])
    phi_star = -ar_poly[1:]
    psi = np.zeros(h)
    psi[0] = 1.0
    for j in range(1, h):
        acc = fit.theta[j - 1] if j <= fit.q else 0.0
        for i in range(1, min(j, phi_star.size) + 1):
            acc += phi_star[i - 1] * psi[j - i]
        psi[j] = acc
    return psi


def arima_point(fit: ArimaFit, h: int) -> np.ndarray:
    """Point forecasts for steps 1..h: the ARMA state propagated by T (the recursion
    E[w_{n+j}] = mean + sum phi_i (E[w_{n+j-i}] - mean) + sum theta_k e_{n+j-k}), then
    integrated d times from the last observed levels."""
    w = np.full(h, fit.mean)
    if fit.state.size:
        T, _ = _arma_state(fit.phi, fit.theta)
        s = fit.state.copy()
        for j in range(h):
            w[j] += s[0]
            s = T @ s
    for level0 in fit.tail[::-1]:
        w = level0 + np.cumsum(w)
    return w


def arima_forecast(fit: ArimaFit, horizon: int, level: float = 0.9) -> Forecast:
    """Forecast of a fitted ARIMA: `arima_point` with the analytic normal interval
    Var(h) = sigma2 * sum_{j<h} psi_j^2 (parameters taken as known)."""
    if isinstance(horizon, bool) or int(horizon) != horizon or horizon < 1:
        raise ValueError(f"horizon must be an integer >= 1, got {horizon!r}")
    if not 0.0 < float(level) < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    h = int(horizon)
    mean = arima_point(fit, h)
    sd = np.sqrt(fit.sigma2 * np.cumsum(_arima_psi(fit, h) ** 2))
    return _normal(mean, sd, float(level), f"arima({fit.p},{fit.d},{fit.q})")


def _arima(y: np.ndarray, h: int, level: float) -> Forecast:
    _need(y.size, _arima_need(0, 0, 0), "arima")
    return arima_forecast(auto_arima(y), h, level)


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
    if method == "arima":
        return _arima(y, h, level)
    raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")


def _candidates(y: np.ndarray, m: int | None) -> list[str]:
    cands = ["naive", "drift", "ses", "holt", "holt_damped", "ar", "arima"]
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
    "arima": lambda m: 30,  # an order search on fewer points is mostly noise, and it is the slowest candidate
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
    holt_winters, ``max_p`` to ar, ``n_origins`` to auto, ``seed`` to the bootstrap intervals
    (multiplicative holt_winters only).
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
