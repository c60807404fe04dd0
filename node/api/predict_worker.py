"""The one way a predict.* handler computes: off the event loop, a bounded number at a time, with
whatever extreme input makes numpy raise or return turned into invalid params naming a field.

The computations (node/predict, CPU-bound numpy) run in worker threads, at most `WORKERS` at a
time, so the daemon's event loop (consensus timers, the network) never waits on a forecast; an
answer that came out non-finite (float64 overflow on finite but extreme input) is refused as
invalid params rather than failing to encode.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import trio

from node.api.predict_bounds import WORKERS, invalid

log = logging.getLogger("sovereign.predict")


@dataclass(frozen=True)
class Failure:
    """How one computation's failures are reported: node.predict's ValueErrors start with the
    argument's name, which `fields` maps to a params field (else `default`); `overflow` says
    what a non-finite result or an arithmetic error means to the caller."""

    default: str
    overflow: str
    fields: Mapping[str, str] = field(default_factory=dict)

    def field_of(self, message: str) -> str:
        word = re.split(r"[\s\[.(:=]", message, maxsplit=1)[0]
        return self.fields.get(word, self.default)


class Worker:
    """Runs node.predict computations in threads, `WORKERS` at a time."""

    def __init__(self, workers: int = WORKERS) -> None:
        self.limiter = trio.CapacityLimiter(workers)

    async def run(self, fn: Callable[[], dict[str, Any]], failure: Failure) -> dict[str, Any]:
        """`fn()` in a worker thread; its params have been checked, its failures are `failure`'s."""
        return await trio.to_thread.run_sync(_guarded, fn, failure, limiter=self.limiter)


def _guarded(fn: Callable[[], dict[str, Any]], failure: Failure) -> dict[str, Any]:
    import numpy as np

    # Overflow on extreme input is reported as an error below, not as warnings in the log.
    with np.errstate(all="ignore"):
        try:
            result = fn()
        except ValueError as exc:
            raise invalid(str(exc), failure.field_of(str(exc))) from None
        except (ArithmeticError, np.linalg.LinAlgError) as exc:
            # numpy and math on finite but extreme values (1e308 squared, exp(1e3)).
            log.warning("predictor arithmetic failed on extreme input: %r", exc)
            raise invalid(f"{failure.overflow} ({exc})", failure.default) from None
    if _non_finite(result):
        raise invalid(failure.overflow, failure.default)
    return result


def _non_finite(obj: Any) -> bool:
    if isinstance(obj, float):
        return not math.isfinite(obj)
    if isinstance(obj, dict):
        return any(_non_finite(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return any(_non_finite(v) for v in obj)
    return False
