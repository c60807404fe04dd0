"""Argument checks shared by the predictor's modules: each returns the value, converted, or
raises ValueError naming the argument."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike


def finite(name: str, x: float) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a real number, got {x!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v}")
    return v


def positive(name: str, x: float) -> float:
    v = finite(name, x)
    if v <= 0:
        raise ValueError(f"{name} must be > 0, got {v}")
    return v


def non_negative(name: str, x: float) -> float:
    v = finite(name, x)
    if v < 0:
        raise ValueError(f"{name} must be >= 0, got {v}")
    return v


def positive_int(name: str, x: int) -> int:
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {x!r}")
    if x <= 0:
        raise ValueError(f"{name} must be a positive integer, got {x}")
    return int(x)


def level(value: float) -> float:
    v = finite("level", value)
    if not 0.0 < v < 1.0:
        raise ValueError(f"level must be in the open interval (0, 1), got {v}")
    return v


def series(name: str, x: ArrayLike, minimum: int = 1) -> np.ndarray:
    """A 1-D float64 array of at least `minimum` finite values."""
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
    if a.size < minimum:
        raise ValueError(f"{name} needs at least {minimum} values, got {a.size}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return a

