"""Forecast combination over the methods of :mod:`node.predict.timeseries`, plus sMAPE/MASE scoring.

``ensemble_forecast`` fits several member methods and averages their point forecasts.

Weights (``weighting=``):

* ``"inverse_error"`` (default) - rolling-origin cross-validation: from each of the last
  ``n_origins`` origins ``o = n - horizon * k`` (k = 1..n_origins, origins with fewer than 4
  points before them are dropped) every member forecasts ``horizon`` steps from ``y[:o]`` and
  is scored by the mean absolute error over all those steps (same test points for every
  member). ``w_i = (1 / MAE_i) / sum_j (1 / MAE_j)``; an MAE is floored at
  ``1e-12 * (1 + mean|y|)`` so a perfect member gets (almost) all the weight.
* ``"mean"`` - equal weights ``1 / k``.

A member that cannot be fitted (too short, no period, non-positive data for multiplicative
seasonality, constant series for ``ar``, ...) at the full series or, for ``"inverse_error"``,
at any CV origin, is skipped. If no member remains, ``ValueError``.

Combined interval rule. With member means ``f_i``, bounds ``[l_i, u_i]`` and weights ``w_i``,
the combined mean is ``f = sum w_i f_i``; the member bounds are combined the same way,
``L = sum w_i l_i``, ``U = sum w_i u_i`` (so ``L <= f <= U``), and the between-member spread
``s = sqrt(sum w_i (f_i - f)^2)`` is added in quadrature on each side::

    lower = f - sqrt((f - L)^2 + (z s)^2)
    upper = f + sqrt((U - f)^2 + (z s)^2),     z = Phi^{-1}(0.5 + level / 2)

so the interval is never narrower than the weighted member interval and widens when the
members disagree (model uncertainty treated as an extra, independent error source).

``evaluate`` holds out the last ``horizon`` points, forecasts them from the rest with every
method and with the ensemble, and reports

* sMAPE = 200/h * sum |f - a| / (|a| + |f|)   (a term with ``|a| + |f| = 0`` counts 0), in %;
* MASE  = mean|f - a| / mean|y_t - y_{t-m}| over the training part, ``m = period`` if given
  else 1 (in-sample seasonal-naive / naive one-step MAE).
"""
from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist
from typing import Sequence

import numpy as np

from node.predict.timeseries import METHODS, Forecast, forecast

__all__ = [
    "EnsembleForecast",
    "ensemble_forecast",
    "evaluate",
    "smape",
    "mase",
    "default_methods",
]

_SEASONAL = ("seasonal_naive", "holt_winters", "holt_winters_additive", "holt_winters_multiplicative")
_MIN_ORIGIN = 4


@dataclass(frozen=True)
class EnsembleForecast:
    """Combined point forecast and ``level`` interval; ``members``/``weights`` aligned."""

    mean: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    level: float
    members: tuple[str, ...]
    weights: tuple[float, ...]


def default_methods(period: int | None) -> list[str]:
    """Members used when ``methods`` is None."""
    out = ["naive", "drift", "ses", "holt_damped", "ar"]
    if period is not None:
        out += ["seasonal_naive", "holt_winters_additive"]
    return out


def _as_series(y: object) -> np.ndarray:
    arr = np.asarray(y, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"series must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError("series is empty")
    if not np.all(np.isfinite(arr)):
        raise ValueError("series contains NaN or inf")
    return arr


def _check_horizon(horizon: object) -> int:
    if isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)) or horizon < 1:
        raise ValueError(f"horizon must be an integer >= 1, got {horizon!r}")
    return int(horizon)


def _check_level(level: object) -> float:
    try:
        lv = float(level)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"level must be a number in (0, 1), got {level!r}") from None
    if not 0.0 < lv < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    return lv


def _check_methods(methods: Sequence[str] | None, period: int | None) -> list[str]:
    if methods is None:
        return default_methods(period)
    if isinstance(methods, str):
        raise ValueError("methods must be a sequence of method names, not a string")
    names = list(dict.fromkeys(methods))  # de-duplicate, keep order
    if not names:
        raise ValueError("methods is empty")
    for name in names:
        if name == "auto":
            raise ValueError("'auto' cannot be an ensemble member (it is itself a selection)")
        if name not in _KNOWN:
            raise ValueError(f"unknown method {name!r}")
    return names


_KNOWN = frozenset(METHODS)


def _member(y: np.ndarray, h: int, period: int | None, name: str, level: float) -> Forecast:
    """One member forecast; non-seasonal members ignore a period the prefix is too short for."""
    m = period
    if m is not None and name not in _SEASONAL and m > y.size // 2:
        m = None
    fc = forecast(y, h, period=m, method=name, level=level)
    if not (np.all(np.isfinite(fc.mean)) and np.all(np.isfinite(fc.lower)) and np.all(np.isfinite(fc.upper))):
        raise ValueError(f"{name} produced a non-finite forecast")
    return fc


def _cv_origins(n: int, h: int, n_origins: int) -> list[int]:
    return [o for o in (n - h * k for k in range(1, n_origins + 1)) if o >= _MIN_ORIGIN]


def ensemble_forecast(y: object, horizon: int, period: int | None = None, methods: Sequence[str] | None = None,
                      weighting: str = "inverse_error", level: float = 0.9, n_origins: int = 3) -> EnsembleForecast:
    """Weighted combination of member forecasts (see the module docstring for the rules)."""
    arr = _as_series(y)
    h = _check_horizon(horizon)
    lv = _check_level(level)
    if weighting not in ("inverse_error", "mean"):
        raise ValueError(f"weighting must be 'inverse_error' or 'mean', got {weighting!r}")
    if isinstance(n_origins, bool) or not isinstance(n_origins, (int, np.integer)) or n_origins < 1:
        raise ValueError(f"n_origins must be an integer >= 1, got {n_origins!r}")
    names = _check_methods(methods, period)

    origins = _cv_origins(arr.size, h, int(n_origins)) if weighting == "inverse_error" else []
    if weighting == "inverse_error" and not origins:
        raise ValueError(f"series of length {arr.size} too short for cross-validation at horizon {h}")

    fits: dict[str, Forecast] = {}
    maes: dict[str, float] = {}
    for name in names:
        try:
            fc = _member(arr, h, period, name, lv)
            if weighting == "inverse_error":
                errs = [np.abs(_member(arr[:o], h, period, name, lv).mean - arr[o: o + h]) for o in origins]
                mae = float(np.mean(np.concatenate(errs)))
                if not np.isfinite(mae):
                    continue
                maes[name] = mae
        except (ValueError, np.linalg.LinAlgError):
            continue
        fits[name] = fc
    if not fits:
        raise ValueError(f"no member method could be fitted to this series (tried {', '.join(names)})")

    members = tuple(fits)
    if weighting == "mean":
        w = np.full(len(members), 1.0 / len(members))
    else:
        floor = 1e-12 * (1.0 + float(np.mean(np.abs(arr))))
        inv = np.array([1.0 / max(maes[k], floor) for k in members])
        w = inv / inv.sum()

    means = np.array([fits[k].mean for k in members])
    lows = np.array([fits[k].lower for k in members])
    ups = np.array([fits[k].upper for k in members])
    mean = w @ means
    lo_w = np.minimum(w @ lows, mean)
    up_w = np.maximum(w @ ups, mean)
    spread = np.sqrt(w @ (means - mean) ** 2)
    z = NormalDist().inv_cdf(0.5 + lv / 2.0)
    lower = mean - np.sqrt((mean - lo_w) ** 2 + (z * spread) ** 2)
    upper = mean + np.sqrt((up_w - mean) ** 2 + (z * spread) ** 2)
    return EnsembleForecast(mean=mean, lower=lower, upper=upper, level=lv, members=members,
                            weights=tuple(float(v) for v in w))


# ----------------------------------------------------------------------------- accuracy


def smape(actual: object, pred: object) -> float:
    """Symmetric MAPE in percent (0..200); a term with |a| + |f| = 0 counts as 0."""
    a = np.asarray(actual, dtype=float)
    f = np.asarray(pred, dtype=float)
    if a.shape != f.shape or a.size == 0:
        raise ValueError("actual and pred must be non-empty and the same shape")
    den = np.abs(a) + np.abs(f)
    num = np.abs(f - a)
    terms = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    return float(200.0 * np.mean(terms))


def mase(actual: object, pred: object, train: object, period: int | None = None) -> float:
    """Mean absolute scaled error; scale = in-sample MAE of the lag-m naive on ``train`` (m = period or 1)."""
    a = np.asarray(actual, dtype=float)
    f = np.asarray(pred, dtype=float)
    tr = np.asarray(train, dtype=float)
    if a.shape != f.shape or a.size == 0:
        raise ValueError("actual and pred must be non-empty and the same shape")
    m = int(period) if period else 1
    if tr.size <= m:
        raise ValueError(f"training series too short for MASE with lag {m}")
    scale = float(np.mean(np.abs(tr[m:] - tr[:-m])))
    if scale == 0.0:
        raise ValueError("MASE undefined: the training series has zero naive error")
    return float(np.mean(np.abs(f - a)) / scale)


def evaluate(y: object, horizon: int, period: int | None = None,
             methods: Sequence[str] | None = None, weighting: str = "inverse_error",
             n_origins: int = 3) -> dict[str, dict[str, float]]:
    """Hold out the last ``horizon`` points; score each method and the ensemble (key ``"ensemble"``).

    Returns ``{name: {"smape": ..., "mase": ...}}``; members that cannot fit the training part
    are left out (the ensemble skips them too).
    """
    arr = _as_series(y)
    h = _check_horizon(horizon)
    names = _check_methods(methods, period)
    if arr.size <= h + 1:
        raise ValueError(f"series of length {arr.size} too short to hold out {h} points")
    train, test = arr[:-h], arr[-h:]
    out: dict[str, dict[str, float]] = {}
    for name in names:
        try:
            fc = _member(train, h, period, name, 0.9)
        except (ValueError, np.linalg.LinAlgError):
            continue
        out[name] = {"smape": smape(test, fc.mean), "mase": mase(test, fc.mean, train, period)}
    ens = ensemble_forecast(train, h, period, names, weighting=weighting, n_origins=n_origins)
    out["ensemble"] = {"smape": smape(test, ens.mean), "mase": mase(test, ens.mean, train, period)}
    return out
