"""The predictor's control methods: predict.forecast, predict.simulate, predict.scenarios,
predict.bn.load, predict.bn.query.

The computations (node/predict) are CPU-bound numpy; each call runs in a worker thread so the
daemon's event loop (consensus timers, the network) never waits on a forecast. Sizes are capped
for the control API: a script that wants a billion path-steps imports node.predict itself.
Bayesian networks live in the node's home (`bn/<name>.bif`), in the format bnlearn and pgmpy use.
numpy and scipy are imported on the first call, not at start-up: they would add about 0.4 s and
40 MB to every daemon, most of which never forecast anything.
"""

from __future__ import annotations

import os
import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from typing import TYPE_CHECKING

import trio

from node.control import ControlServer
from node.rpc import CALL_FAILED, INVALID_PARAMS, RpcError

if TYPE_CHECKING:
    from node.predict.bayesnet import BayesianNetwork

MAX_SERIES = 100_000
MAX_HORIZON = 10_000
MAX_PATH_STEPS = 20_000_000  # per predict.simulate call (about 160 MB of float64 at the peak)
MAX_BIF = 512 * 1024
MAX_TREE_LEAVES = 3**8  # 6,561 leaves, 9,841 nodes: a scenario tree through the control socket
TREE_OPTIONS = ("steps", "branching", "model", "period")
NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
METHODS = Literal[
    "auto", "naive", "seasonal_naive", "drift", "ses", "holt", "holt_damped", "holt_winters",
    "holt_winters_additive", "holt_winters_multiplicative", "ar", "arima",
]
TREE_MODELS = ("gbm", *typing.get_args(METHODS))


@dataclass(frozen=True)
class ForecastParams:
    y: list[float]
    horizon: int
    period: int | None = None
    method: METHODS = "auto"
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


@dataclass(frozen=True)
class _TreeSpec:
    steps: int
    branching: int
    model: str
    period: int | None


@dataclass(frozen=True)
class BnLoadParams:
    name: str
    bif: str


@dataclass(frozen=True)
class BnQueryParams:
    name: str
    variable: str
    evidence: dict[str, str] | None = None


def _invalid(message: str, field: str | None = None) -> RpcError:
    return RpcError(INVALID_PARAMS, message, {"field": field} if field else None)


def _floats(values: Any) -> list[float]:
    return [float(x) for x in values]


def _int_option(tree: dict[str, Any], key: str) -> int | None:
    v = tree.get(key)
    if v is not None and (type(v) is not int):
        raise _invalid(f"tree.{key} must be an integer, got {v!r}", "tree")
    return v


def _tree_spec(p: ScenariosParams, tree: dict[str, Any]) -> _TreeSpec:
    """Check the `tree` option of predict.scenarios (before any thread or numpy)."""
    unknown = sorted(set(tree) - set(TREE_OPTIONS))
    if unknown:
        raise _invalid(f"unknown tree option {unknown[0]!r}; the options are {', '.join(TREE_OPTIONS)}", "tree")
    if p.shock_step is not None or p.shock_multiply is not None:
        raise _invalid("shocks apply to the named scenarios, not to a tree", "shock_step")
    steps = _int_option(tree, "steps")
    if steps is None:
        steps = p.horizon_steps
    elif p.horizon_steps is not None and p.horizon_steps != steps:
        raise _invalid(f"tree.steps ({steps}) and horizon_steps ({p.horizon_steps}) disagree; give one", "tree")
    if steps is None:
        raise _invalid("a tree needs tree.steps (or horizon_steps)", "tree")
    branching = _int_option(tree, "branching")
    branching = 3 if branching is None else branching
    if branching not in (2, 3):
        raise _invalid(f"tree.branching must be 2 (binomial) or 3 (trinomial), got {branching}", "tree")
    if not 1 <= steps or branching**min(steps, 64) > MAX_TREE_LEAVES:
        raise _invalid(
            f"tree.steps must be >= 1 and branching**steps at most {MAX_TREE_LEAVES:,} leaves (3**8) through the "
            f"control socket, got {branching}**{steps}", "tree")
    model = tree.get("model", "auto")
    if model not in TREE_MODELS:
        raise _invalid(f"tree.model must be one of {', '.join(TREE_MODELS)}, got {model!r}", "tree")
    period = _int_option(tree, "period")
    if period is not None and model == "gbm":
        raise _invalid("tree.period applies to the forecast models, not to gbm", "tree")
    return _TreeSpec(steps, branching, model, period)


def _tree_levels(values: Any, probabilities: Any) -> list[dict[str, Any]]:
    """Per level: node values and probabilities, expected value, sd, min and max."""
    out = []
    for k, (v, pr) in enumerate(zip(values, probabilities)):
        mean = float(pr @ v)
        out.append({
            "step": k, "nodes": len(v), "expected": mean, "sd": float(pr @ (v - mean) ** 2) ** 0.5,
            "min": float(v.min()), "max": float(v.max()), "values": _floats(v), "probabilities": _floats(pr),
        })
    return out


def register_predict(server: ControlServer, home: Path) -> None:
    bn_dir = home / "bn"
    networks: dict[str, tuple[float, BayesianNetwork]] = {}  # name -> (file mtime, network)

    async def predict_forecast(p: ForecastParams) -> dict[str, Any]:
        """Forecast a series `horizon` steps ahead with prediction intervals at `level`; method
        "auto" picks by rolling-origin cross-validation (the answer names the method chosen)."""
        if len(p.y) > MAX_SERIES:
            raise _invalid(f"at most {MAX_SERIES} values", "y")
        if not 1 <= p.horizon <= MAX_HORIZON:
            raise _invalid(f"horizon must be in 1..{MAX_HORIZON}", "horizon")
        def run() -> Any:
            import numpy as np

            from node.predict.timeseries import forecast

            return forecast(np.asarray(p.y, dtype=float), p.horizon, period=p.period, method=p.method, level=p.level)

        try:
            f = await trio.to_thread.run_sync(run)
        except ValueError as exc:
            raise _invalid(str(exc)) from None
        return {"method": f.method, "level": f.level, "mean": _floats(f.mean), "lower": _floats(f.lower), "upper": _floats(f.upper)}

    async def predict_simulate(p: SimulateParams) -> dict[str, Any]:
        """Simulate geometric Brownian motion (exact log-normal steps, seeded) and summarise the
        terminal value: mean with its confidence interval at `level`, quantiles, and the VaR and
        CVaR of the loss s0 - S_T at `level`."""
        if not 0 < p.paths * max(p.steps, 1) <= MAX_PATH_STEPS:
            raise _invalid(f"paths * steps must be in 1..{MAX_PATH_STEPS:,} through the control socket", "paths")

        def run() -> dict[str, Any]:
            import numpy as np

            from node.predict.montecarlo import cvar, estimate, simulate_gbm, var

            paths = simulate_gbm(p.s0, p.mu, p.sigma, p.horizon, p.steps, p.paths, seed=p.seed)
            terminal = paths[:, -1]
            est = estimate(terminal, level=p.level)
            qs = np.quantile(terminal, [0.05, 0.25, 0.5, 0.75, 0.95])
            losses = p.s0 - terminal
            return {
                "terminal": {"mean": est.mean, "stderr": est.stderr, "low": est.low, "high": est.high},
                "quantiles": dict(zip(("p05", "p25", "p50", "p75", "p95"), _floats(qs))),
                "var": float(var(losses, p.level)),
                "cvar": float(cvar(losses, p.level)),
                "paths": p.paths,
                "steps": p.steps,
            }

        try:
            return await trio.to_thread.run_sync(run)
        except ValueError as exc:
            raise _invalid(str(exc)) from None

    async def predict_scenarios(p: ScenariosParams) -> dict[str, Any]:
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
        if len(p.prices) > MAX_SERIES:
            raise _invalid(f"at most {MAX_SERIES} prices", "prices")
        if p.tree is not None:
            return await _scenario_tree(p, _tree_spec(p, p.tree))
        if p.horizon_steps is None:
            raise _invalid("missing required field 'horizon_steps' (or give a tree)", "horizon_steps")
        if not 0 < p.paths * max(p.horizon_steps, 1) <= MAX_PATH_STEPS:
            raise _invalid(f"paths * horizon_steps must be in 1..{MAX_PATH_STEPS:,}", "paths")
        if (p.shock_step is None) != (p.shock_multiply is None):
            raise _invalid("give shock_step and shock_multiply together", "shock_step")

        horizon_steps = p.horizon_steps

        def run() -> dict[str, Any]:
            from node.predict.scenarios import apply_shock, from_prices

            sset = from_prices(p.prices, horizon_steps, paths=p.paths, seed=p.seed)
            if p.shock_step is not None and p.shock_multiply is not None:  # given together (checked above)
                sset = apply_shock(sset, {"multiply": p.shock_multiply}, p.shock_step)
            return {
                "horizon_steps": p.horizon_steps,
                "scenarios": [
                    {"name": sc.name, "probability": sc.probability, "terminal": float(sc.terminal), "path": _floats(sc.path)}
                    for sc in sset.scenarios
                ],
                "fitted": {k: float(v) for k, v in sset.meta.items() if isinstance(v, (int, float))},
            }

        try:
            return await trio.to_thread.run_sync(run)
        except ValueError as exc:
            raise _invalid(str(exc)) from None

    async def _scenario_tree(p: ScenariosParams, spec: _TreeSpec) -> dict[str, Any]:
        def run() -> dict[str, Any]:
            import numpy as np

            from node.predict.scenarios import fit_gbm, model_tree, scenario_tree

            out: dict[str, Any] = {"requested": spec.model, "branching": spec.branching, "steps": spec.steps,
                                   "leaves": spec.branching**spec.steps}
            if spec.model == "gbm":
                fit = fit_gbm(p.prices)
                g = scenario_tree(p.prices[-1], fit.mu, fit.sigma, spec.steps, spec.branching, fit.dt)
                out.update(model="gbm", fitted={"mu": fit.mu, "sigma": fit.sigma, "s0": g.s0, "dt": fit.dt},
                           levels=_tree_levels(g.values, g.probabilities))
                return out
            t = model_tree(np.asarray(p.prices, dtype=float), spec.steps, spec.branching, spec.period, spec.model)
            f = t.forecast
            out.update(
                model=t.method,
                fitted={"sigma": t.sigma, "mean_gap": t.mean_gap, "linear": t.linear},
                forecast={"level": f.level, "mean": _floats(f.mean), "lower": _floats(f.lower), "upper": _floats(f.upper)},
                levels=_tree_levels(t.values, t.probabilities),
            )
            return out

        try:
            tree = await trio.to_thread.run_sync(run)
        except ValueError as exc:
            raise _invalid(str(exc), "tree") from None
        return {"horizon_steps": spec.steps, "tree": tree}

    def _check_name(name: str) -> str:
        if not NAME.fullmatch(name):
            raise _invalid("name must be 1..64 letters, digits, '_' or '-'", "name")
        return name

    async def predict_bn_load(p: BnLoadParams) -> dict[str, Any]:
        """Store a Bayesian network (BIF text, as bnlearn/pgmpy/GeNIe write it) under `name` in
        the node's home, after checking it (a malformed file is refused with its line number)."""
        name = _check_name(p.name)
        if len(p.bif) > MAX_BIF:
            raise _invalid(f"a BIF text of at most {MAX_BIF} characters", "bif")
        from node.predict.bayesnet import BayesianNetwork, BayesNetError

        try:
            net = await trio.to_thread.run_sync(BayesianNetwork.from_bif, p.bif)
        except BayesNetError as exc:
            raise _invalid(str(exc), "bif") from None
        bn_dir.mkdir(mode=0o700, exist_ok=True)
        path = bn_dir / f"{name}.bif"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(net.to_bif())
        os.replace(tmp, path)
        networks.pop(name, None)
        return {"name": name, "variables": {v: list(net.states[v]) for v in net.states}}

    async def predict_bn_query(p: BnQueryParams) -> dict[str, Any]:
        """P(variable | evidence) by exact inference (variable elimination) on a stored network."""
        from node.predict.bayesnet import BayesianNetwork, BayesNetError

        name = _check_name(p.name)
        path = bn_dir / f"{name}.bif"
        try:
            mtime = path.stat().st_mtime
        except FileNotFoundError:
            raise RpcError(CALL_FAILED, f"no network named {name!r}; load it with predict.bn.load", {"name": name}) from None
        cached = networks.get(name)
        if cached is None or cached[0] != mtime:
            try:
                net = await trio.to_thread.run_sync(BayesianNetwork.from_bif, path.read_text())
            except BayesNetError as exc:
                raise RpcError(CALL_FAILED, f"stored network {name!r} is unreadable: {exc}") from None
            networks[name] = (mtime, net)
        net = networks[name][1]
        try:
            dist = await trio.to_thread.run_sync(lambda: net.query(p.variable, evidence=p.evidence or {}))
        except BayesNetError as exc:
            raise _invalid(str(exc)) from None
        return {"variable": p.variable, "evidence": p.evidence or {}, "distribution": {k: float(v) for k, v in dist.items()}}

    server.register("predict.forecast", predict_forecast, ForecastParams)
    server.register("predict.simulate", predict_simulate, SimulateParams)
    server.register("predict.scenarios", predict_scenarios, ScenariosParams)
    server.register("predict.bn.load", predict_bn_load, BnLoadParams)
    server.register("predict.bn.query", predict_bn_query, BnQueryParams)


__all__ = ["register_predict"]
