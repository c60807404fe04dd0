"""predict.*: forecasts, Monte Carlo, scenarios and scenario trees (here), Bayesian networks
(predict.bn.*, in predict_bn).

Each handler checks its params (node.api.predict_bounds), then hands one computation to the
shared worker (node.api.predict_worker), which runs it in a thread and maps its failures.
numpy and scipy are imported on the first call, not at start-up: they would add about 0.4 s and
40 MB to every daemon, most of which never forecast anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from node.api import predict_bn
from node.api import predict_bounds as check
from node.api.context import Method, register_methods
from node.api.predict_bounds import (
    FORECAST_METHODS,
    MAX_HORIZON,
    MAX_PATH_STEPS,
    MAX_PATHS,
    MAX_SCENARIO_PATH_STEPS,
    MAX_SERIES,
    MAX_STEPS,
    floats,
    invalid,
)
from node.api.predict_tree import FAILURE as TREE_FAILURE
from node.api.predict_tree import compute_tree, tree_spec
from node.api.predict_worker import Failure, Worker
from node.control import ControlServer


@dataclass(frozen=True)
class ForecastParams:
    y: list[float]
    horizon: int
    period: int | None = None
    method: FORECAST_METHODS = "auto"
    level: float = 0.9


@dataclass(frozen=True)
class SimulateParams:
    s0: float
    mu: float
    sigma: float
    horizon: float
    steps: int
    paths: int
    seed: int | None = None
    level: float = 0.95


@dataclass(frozen=True)
class ScenariosParams:
    prices: list[float]
    horizon_steps: int | None = None  # required unless `tree` gives its steps
    paths: int = 10_000
    seed: int | None = 0
    shock_step: int | None = None
    shock_multiply: float | None = None
    # {"steps": k, "branching": 2 | 3, "model": "gbm" | a forecast method | "auto", "period": m}
    tree: dict[str, Any] | None = None


FORECAST_FAILURE = Failure("y", "the forecast overflows float64: the values of y are too extreme for this method",
                           {"period": "period", "level": "level", "horizon": "horizon", "method": "method"})
SIMULATE_FAILURE = Failure(
    "mu", "the simulated prices overflow float64: exp of mu*horizon and sigma*sqrt(horizon) is too large")
SCENARIOS_FAILURE = Failure("prices", "the scenarios overflow float64: the prices are too extreme",
                            {"need": "paths", "step": "shock_step", "shock": "shock_multiply"})


async def predict_forecast(worker: Worker, p: ForecastParams) -> dict[str, Any]:
    """Forecast a series `horizon` steps ahead with prediction intervals at `level`; method
    "auto" picks by rolling-origin cross-validation (the answer names the method chosen)."""
    y = check.series(p.y, "y")
    check.int_in(p.horizon, "horizon", 1, MAX_HORIZON)
    if p.period is not None:
        check.int_in(p.period, "period", 2, MAX_SERIES)
    check.level(p.level)
    return await worker.run(partial(_forecast, p, y), FORECAST_FAILURE)


def _forecast(p: ForecastParams, y: list[float]) -> dict[str, Any]:
    import numpy as np

    from node.predict.timeseries import forecast

    f = forecast(np.asarray(y, dtype=float), p.horizon, period=p.period, method=p.method, level=p.level)
    return {"method": f.method, "level": f.level, "mean": floats(f.mean), "lower": floats(f.lower),
            "upper": floats(f.upper)}


async def predict_simulate(worker: Worker, p: SimulateParams) -> dict[str, Any]:
    """Simulate geometric Brownian motion (exact log-normal steps, seeded) and summarise the
    terminal value: mean with its confidence interval at `level`, quantiles, and the VaR and
    CVaR of the loss s0 - S_T at `level`."""
    check.positive(p.s0, "s0")
    check.real(p.mu, "mu")
    check.real(p.sigma, "sigma", 0.0)
    check.positive(p.horizon, "horizon")
    check.int_in(p.steps, "steps", 1, MAX_STEPS)
    check.int_in(p.paths, "paths", 2, MAX_PATHS)
    if p.paths * p.steps > MAX_PATH_STEPS:
        raise invalid(f"paths * steps must be at most {MAX_PATH_STEPS:,} through the control socket", "paths")
    seed = check.seed(p.seed)
    check.level(p.level)
    return await worker.run(partial(_simulate, p, seed), SIMULATE_FAILURE)


def _simulate(p: SimulateParams, seed: int | None) -> dict[str, Any]:
    import numpy as np

    from node.predict.montecarlo import cvar, estimate, gbm_terminal, var

    terminal = gbm_terminal(p.s0, p.mu, p.sigma, p.horizon, p.steps, p.paths, seed=seed)
    if not np.all(np.isfinite(terminal)):
        raise ValueError(SIMULATE_FAILURE.overflow)
    est = estimate(terminal, level=p.level)
    qs = np.quantile(terminal, [0.05, 0.25, 0.5, 0.75, 0.95])
    losses = p.s0 - terminal
    return {
        "terminal": {"mean": est.mean, "stderr": est.stderr, "low": est.low, "high": est.high},
        "quantiles": dict(zip(("p05", "p25", "p50", "p75", "p95"), floats(qs))),
        "var": float(var(losses, p.level)),
        "cvar": float(cvar(losses, p.level)),
        "paths": p.paths,
        "steps": p.steps,
    }


async def predict_scenarios(worker: Worker, p: ScenariosParams) -> dict[str, Any]:
    """Named scenarios (stress, bear, base, bull) with probabilities, from GBM fitted to a
    price history and simulated `horizon_steps` ahead; optionally with a user shock (prices
    multiplied by `shock_multiply` from step `shock_step` on).

    With `tree` = {"steps": k, "branching": 2|3, "model": m, "period": p} (all optional but
    steps, which may come from horizon_steps instead; branching 3, model "auto"), a
    non-recombining scenario tree instead: model "gbm" is the moment-matched GBM tree fitted
    to the prices' log returns; any forecast method (or "auto") fits that model to the series
    and branches on its one-step conditional outcomes along every node's path, so level k's
    expected value is the model's k-step point forecast. At most 3**8 leaves. The answer
    gives every level's values and probabilities with its expected value, sd, min and max."""
    prices = check.series(p.prices, "prices")
    seed = check.seed(p.seed)
    if p.tree is not None:
        shocked = p.shock_step is not None or p.shock_multiply is not None
        spec = tree_spec(p.tree, p.horizon_steps, shocked)
        return await worker.run(partial(compute_tree, prices, spec), TREE_FAILURE)
    if p.horizon_steps is None:
        raise invalid("missing required field 'horizon_steps' (or give a tree)", "horizon_steps")
    horizon_steps = check.int_in(p.horizon_steps, "horizon_steps", 1, MAX_HORIZON)
    check.int_in(p.paths, "paths", 1, MAX_SCENARIO_PATH_STEPS)
    if p.paths * horizon_steps > MAX_SCENARIO_PATH_STEPS:
        raise invalid(f"paths * horizon_steps must be at most {MAX_SCENARIO_PATH_STEPS:,}", "paths")
    if (p.shock_step is None) != (p.shock_multiply is None):
        raise invalid("give shock_step and shock_multiply together", "shock_step")
    if p.shock_step is not None and p.shock_multiply is not None:
        check.int_in(p.shock_step, "shock_step", 0, horizon_steps)
        check.real(p.shock_multiply, "shock_multiply", 0.0)
    return await worker.run(partial(_scenarios, p, prices, horizon_steps, seed), SCENARIOS_FAILURE)


def _scenarios(p: ScenariosParams, prices: list[float], horizon_steps: int, seed: int | None) -> dict[str, Any]:
    from node.predict.scenarios import apply_shock, from_prices

    sset = from_prices(prices, horizon_steps, paths=p.paths, seed=seed)
    if p.shock_step is not None and p.shock_multiply is not None:  # given together (checked above)
        sset = apply_shock(sset, {"multiply": p.shock_multiply}, p.shock_step)
    return {
        "horizon_steps": horizon_steps,
        "scenarios": [
            {"name": sc.name, "probability": sc.probability, "terminal": float(sc.terminal), "path": floats(sc.path)}
            for sc in sset.scenarios
        ],
        "fitted": {k: float(v) for k, v in sset.meta.items() if isinstance(v, (int, float))},
    }


METHODS: tuple[Method[Worker], ...] = (
    Method("predict.forecast", predict_forecast, ForecastParams),
    Method("predict.simulate", predict_simulate, SimulateParams),
    Method("predict.scenarios", predict_scenarios, ScenariosParams),
)


def register_predict(server: ControlServer, home: Path) -> None:
    """Every predict.* method: the computations share one worker; networks live in home/bn."""
    register_methods(server, Worker(), METHODS)
    register_methods(server, predict_bn.NetworkStore(home / "bn"), predict_bn.METHODS)

