"""What a predict.* call may ask for, and the checks of its params against it.

Every input is hostile: the work market hands the predictor networks and series from remote
peers. So each handler checks its params against these bounds before any thread or numpy
(ranges, finiteness, sizes: a -32602 naming the field). A script that wants a billion
path-steps imports node.predict itself.
"""

from __future__ import annotations

import math
import typing
from typing import Any, Literal

from node.rpc import INVALID_PARAMS, RpcError

MAX_SERIES = 10_000  # values of a series (y, prices): "auto" cross-validates on it, ~10 s at this size
MAX_HORIZON = 10_000  # forecast horizon and scenario horizon_steps
MAX_ABS = 1e100  # |value| of any series value, price, s0 or shock: squares and sums stay finite
MAX_STEPS = 100_000  # steps of one simulated path
MAX_PATHS = 1_000_000  # paths of predict.simulate (their terminal values are kept: 8 MB)
MAX_PATH_STEPS = 20_000_000  # per predict.simulate call, simulated in chunks of about 64 MB
MAX_SCENARIO_PATH_STEPS = 5_000_000  # per predict.scenarios call: every path is kept (40 MB)
MAX_SEED = 2**128
MAX_BIF = 512 * 1024
MAX_STORED_BIF = 4 * MAX_BIF  # bytes of a stored file (UTF-8 of at most MAX_BIF characters)
MAX_CACHED_NETWORKS = 8  # parsed networks kept in memory, least recently used dropped first
WORKERS = 2  # predictor computations running at once; more calls wait their turn
MAX_TREE_LEAVES = 3**8  # 6,561 leaves, 9,841 nodes: a scenario tree through the control socket
FORECAST_METHODS = Literal[
    "auto", "naive", "seasonal_naive", "drift", "ses", "holt", "holt_damped", "holt_winters",
    "holt_winters_additive", "holt_winters_multiplicative", "ar", "arima",
]
TREE_MODELS = ("gbm", *typing.get_args(FORECAST_METHODS))


def invalid(message: str, field: str | None = None, **data: Any) -> RpcError:
    payload = {"field": field, **data} if field else (data or None)
    return RpcError(INVALID_PARAMS, message, payload)


def real(value: float, field: str, low: float = -MAX_ABS, high: float = MAX_ABS) -> float:
    """A finite float in [low, high] (NaN and inf never arrive over JSON, but a script may call in)."""
    if not (math.isfinite(value) and low <= value <= high):
        raise invalid(f"{field} must be a finite number in [{low:g}, {high:g}], got {value!r}", field)
    return value


def positive(value: float, field: str, high: float = MAX_ABS) -> float:
    if not (math.isfinite(value) and 0.0 < value <= high):
        raise invalid(f"{field} must be a finite number in (0, {high:g}], got {value!r}", field)
    return value


def level(value: float) -> float:
    if not 0.0 < value < 1.0:  # also NaN
        raise invalid(f"level must be in the open interval (0, 1), got {value!r}", "level")
    return value


def int_in(value: int, field: str, low: int, high: int) -> int:
    if not low <= value <= high:
        shown = value if abs(value) < 10**30 else f"{'-' if value < 0 else ''}{len(str(abs(value)))}-digit integer"
        raise invalid(f"{field} must be in {low:,}..{high:,}, got {shown}", field)
    return value


def seed(value: int | None) -> int | None:
    return None if value is None else int_in(value, "seed", 0, MAX_SEED - 1)


def series(values: list[float], field: str, minimum: int = 1) -> list[float]:
    if not minimum <= len(values) <= MAX_SERIES:
        raise invalid(f"{field} must have {minimum}..{MAX_SERIES:,} values, got {len(values):,}", field)
    for i, v in enumerate(values):
        if not (math.isfinite(v) and -MAX_ABS <= v <= MAX_ABS):
            raise invalid(f"{field}[{i}] must be a finite number in [-{MAX_ABS:g}, {MAX_ABS:g}], got {v!r}", field)
    return values


def floats(values: Any) -> list[float]:
    return [float(x) for x in values]
