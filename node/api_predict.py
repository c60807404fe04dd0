"""The predictor's control methods: predict.forecast, predict.simulate, predict.scenarios,
predict.bn.load, predict.bn.query.

Every input is hostile: the work market hands the predictor networks and series from remote
peers. So each handler checks its params against the bounds below before any thread or numpy
(ranges, finiteness, sizes: a -32602 naming the field), the computations (node/predict, CPU-bound
numpy) run in worker threads, at most `WORKERS` at a time, so the daemon's event loop (consensus
timers, the network) never waits on a forecast, and an answer that came out non-finite (float64
overflow on finite but extreme input) is refused as invalid params rather than failing to encode.
A script that wants a billion path-steps imports node.predict itself.

Bayesian networks live in the node's home (`bn/<name>.bif`), in the format bnlearn and pgmpy use,
stored as given (at most `MAX_BIF` characters, written atomically off the event loop) rather than
expanded: a `default` row can stand for millions of entries. What a network and a query may cost
is bounded by node.predict.bayesnet.LIMITS (variables, states, parents, CPT entries, the factors
of a query's elimination plan), on load and again when a query re-reads the stored file.
numpy and scipy are imported on the first call, not at start-up: they would add about 0.4 s and
40 MB to every daemon, most of which never forecast anything.
"""

from __future__ import annotations

import logging
import math
import os
import re
import tempfile
import typing
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from typing import TYPE_CHECKING

import trio

from node.control import ControlServer
from node.rpc import CALL_FAILED, INVALID_PARAMS, RpcError

if TYPE_CHECKING:
    from node.predict.bayesnet import BayesianNetwork

log = logging.getLogger("sovereign.predict")

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


def _invalid(message: str, field: str | None = None, **data: Any) -> RpcError:
    payload = {"field": field, **data} if field else (data or None)
    return RpcError(INVALID_PARAMS, message, payload)


def _floats(values: Any) -> list[float]:
    return [float(x) for x in values]


# -- checks of params, before any thread or numpy ---------------------------------------------


def _real(value: float, field: str, low: float = -MAX_ABS, high: float = MAX_ABS) -> float:
    """A finite float in [low, high] (NaN and inf never arrive over JSON, but a script may call in)."""
    if not (math.isfinite(value) and low <= value <= high):
        raise _invalid(f"{field} must be a finite number in [{low:g}, {high:g}], got {value!r}", field)
    return value


def _positive(value: float, field: str, high: float = MAX_ABS) -> float:
    if not (math.isfinite(value) and 0.0 < value <= high):
        raise _invalid(f"{field} must be a finite number in (0, {high:g}], got {value!r}", field)
    return value


def _level(value: float) -> float:
    if not 0.0 < value < 1.0:  # also NaN
        raise _invalid(f"level must be in the open interval (0, 1), got {value!r}", "level")
    return value


def _int_in(value: int, field: str, low: int, high: int) -> int:
    if not low <= value <= high:
        shown = value if abs(value) < 10**30 else f"{'-' if value < 0 else ''}{len(str(abs(value)))}-digit integer"
        raise _invalid(f"{field} must be in {low:,}..{high:,}, got {shown}", field)
    return value


def _seed(value: int | None) -> int | None:
    return None if value is None else _int_in(value, "seed", 0, MAX_SEED - 1)


def _series(values: list[float], field: str, minimum: int = 1) -> list[float]:
    if not minimum <= len(values) <= MAX_SERIES:
        raise _invalid(f"{field} must have {minimum}..{MAX_SERIES:,} values, got {len(values):,}", field)
    for i, v in enumerate(values):
        if not (math.isfinite(v) and -MAX_ABS <= v <= MAX_ABS):
            raise _invalid(f"{field}[{i}] must be a finite number in [-{MAX_ABS:g}, {MAX_ABS:g}], got {v!r}", field)
    return values


def _field_of(message: str, fields: Mapping[str, str], default: str) -> str:
    """The field a library ValueError is about: node.predict's checks start with the argument's name."""
    word = re.split(r"[\s\[.(:=]", message, maxsplit=1)[0]
    return fields.get(word, default)


def _non_finite(obj: Any) -> bool:
    if isinstance(obj, float):
        return not math.isfinite(obj)
    if isinstance(obj, dict):
        return any(_non_finite(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return any(_non_finite(v) for v in obj)
    return False


class _Worker:
    """Runs node.predict computations in threads, `WORKERS` at a time, and turns what extreme
    input makes them raise or return into invalid params naming a field."""

    def __init__(self) -> None:
        self.limiter = trio.CapacityLimiter(WORKERS)

    async def run(self, fn: Callable[[], dict[str, Any]], fields: Mapping[str, str], default: str,
                  overflow: str) -> dict[str, Any]:
        def guarded() -> dict[str, Any]:
            import numpy as np

            # Overflow on extreme input is reported as an error below, not as warnings in the log.
            with np.errstate(all="ignore"):
                try:
                    result = fn()
                except ValueError as exc:
                    raise _invalid(str(exc), _field_of(str(exc), fields, default)) from None
                except (ArithmeticError, np.linalg.LinAlgError) as exc:
                    # numpy and math on finite but extreme values (1e308 squared, exp(1e3)).
                    log.warning("predictor arithmetic failed on extreme input: %r", exc)
                    raise _invalid(f"{overflow} ({exc})", default) from None
            if _non_finite(result):
                raise _invalid(overflow, default)
            return result

        return await trio.to_thread.run_sync(guarded, limiter=self.limiter)


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
    worker = _Worker()
    # One thread at a time reads or queries networks: a network's plan cache is not thread-safe.
    bn_limiter = trio.CapacityLimiter(1)
    # name -> (file mtime, size, network), least recently used first
    networks: OrderedDict[str, tuple[float, int, BayesianNetwork]] = OrderedDict()

    async def predict_forecast(p: ForecastParams) -> dict[str, Any]:
        """Forecast a series `horizon` steps ahead with prediction intervals at `level`; method
        "auto" picks by rolling-origin cross-validation (the answer names the method chosen)."""
        y = _series(p.y, "y")
        _int_in(p.horizon, "horizon", 1, MAX_HORIZON)
        if p.period is not None:
            _int_in(p.period, "period", 2, MAX_SERIES)
        _level(p.level)

        def run() -> dict[str, Any]:
            import numpy as np

            from node.predict.timeseries import forecast

            f = forecast(np.asarray(y, dtype=float), p.horizon, period=p.period, method=p.method, level=p.level)
            return {"method": f.method, "level": f.level, "mean": _floats(f.mean), "lower": _floats(f.lower),
                    "upper": _floats(f.upper)}

        return await worker.run(run, {"period": "period", "level": "level", "horizon": "horizon", "method": "method"},
                                "y", "the forecast overflows float64: the values of y are too extreme for this method")

    async def predict_simulate(p: SimulateParams) -> dict[str, Any]:
        """Simulate geometric Brownian motion (exact log-normal steps, seeded) and summarise the
        terminal value: mean with its confidence interval at `level`, quantiles, and the VaR and
        CVaR of the loss s0 - S_T at `level`."""
        _positive(p.s0, "s0")
        _real(p.mu, "mu")
        _real(p.sigma, "sigma", 0.0)
        _positive(p.horizon, "horizon")
        _int_in(p.steps, "steps", 1, MAX_STEPS)
        _int_in(p.paths, "paths", 2, MAX_PATHS)
        if p.paths * p.steps > MAX_PATH_STEPS:
            raise _invalid(f"paths * steps must be at most {MAX_PATH_STEPS:,} through the control socket", "paths")
        seed = _seed(p.seed)
        _level(p.level)
        overflow = "the simulated prices overflow float64: exp of mu*horizon and sigma*sqrt(horizon) is too large"

        def run() -> dict[str, Any]:
            import numpy as np

            from node.predict.montecarlo import cvar, estimate, gbm_terminal, var

            terminal = gbm_terminal(p.s0, p.mu, p.sigma, p.horizon, p.steps, p.paths, seed=seed)
            if not np.all(np.isfinite(terminal)):
                raise ValueError(overflow)
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

        return await worker.run(run, {}, "mu", overflow)

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
        prices = _series(p.prices, "prices")
        seed = _seed(p.seed)
        if p.tree is not None:
            return await _scenario_tree(prices, _tree_spec(p, p.tree))
        if p.horizon_steps is None:
            raise _invalid("missing required field 'horizon_steps' (or give a tree)", "horizon_steps")
        horizon_steps = _int_in(p.horizon_steps, "horizon_steps", 1, MAX_HORIZON)
        _int_in(p.paths, "paths", 1, MAX_SCENARIO_PATH_STEPS)
        if p.paths * horizon_steps > MAX_SCENARIO_PATH_STEPS:
            raise _invalid(f"paths * horizon_steps must be at most {MAX_SCENARIO_PATH_STEPS:,}", "paths")
        if (p.shock_step is None) != (p.shock_multiply is None):
            raise _invalid("give shock_step and shock_multiply together", "shock_step")
        if p.shock_step is not None and p.shock_multiply is not None:
            _int_in(p.shock_step, "shock_step", 0, horizon_steps)
            _real(p.shock_multiply, "shock_multiply", 0.0)

        def run() -> dict[str, Any]:
            from node.predict.scenarios import apply_shock, from_prices

            sset = from_prices(prices, horizon_steps, paths=p.paths, seed=seed)
            if p.shock_step is not None and p.shock_multiply is not None:  # given together (checked above)
                sset = apply_shock(sset, {"multiply": p.shock_multiply}, p.shock_step)
            return {
                "horizon_steps": horizon_steps,
                "scenarios": [
                    {"name": sc.name, "probability": sc.probability, "terminal": float(sc.terminal), "path": _floats(sc.path)}
                    for sc in sset.scenarios
                ],
                "fitted": {k: float(v) for k, v in sset.meta.items() if isinstance(v, (int, float))},
            }

        return await worker.run(run, {"need": "paths", "step": "shock_step", "shock": "shock_multiply"}, "prices",
                                "the scenarios overflow float64: the prices are too extreme")

    async def _scenario_tree(prices: list[float], spec: _TreeSpec) -> dict[str, Any]:
        def run() -> dict[str, Any]:
            import numpy as np

            from node.predict.scenarios import fit_gbm, model_tree, scenario_tree

            out: dict[str, Any] = {"requested": spec.model, "branching": spec.branching, "steps": spec.steps,
                                   "leaves": spec.branching**spec.steps}
            if spec.model == "gbm":
                fit = fit_gbm(prices)
                g = scenario_tree(prices[-1], fit.mu, fit.sigma, spec.steps, spec.branching, fit.dt)
                out.update(model="gbm", fitted={"mu": fit.mu, "sigma": fit.sigma, "s0": g.s0, "dt": fit.dt},
                           levels=_tree_levels(g.values, g.probabilities))
            else:
                t = model_tree(np.asarray(prices, dtype=float), spec.steps, spec.branching, spec.period, spec.model)
                f = t.forecast
                out.update(
                    model=t.method,
                    fitted={"sigma": t.sigma, "mean_gap": t.mean_gap, "linear": t.linear},
                    forecast={"level": f.level, "mean": _floats(f.mean), "lower": _floats(f.lower),
                              "upper": _floats(f.upper)},
                    levels=_tree_levels(t.values, t.probabilities),
                )
            return {"horizon_steps": spec.steps, "tree": out}

        return await worker.run(run, {"prices": "prices", "series": "prices"}, "tree",
                                "the scenario tree overflows float64: the prices are too extreme for this model")

    def _check_name(name: str) -> str:
        if not NAME.fullmatch(name):
            raise _invalid("name must be 1..64 letters, digits, '_' or '-'", "name")
        return name

    def _bn_error(exc: Exception, field: str) -> RpcError:
        from node.predict.bayesnet import LimitError

        if isinstance(exc, LimitError):
            return _invalid(str(exc), field, limit=exc.limit, value=exc.value)
        return _invalid(str(exc), field)

    def _store(name: str, text: str) -> None:
        """Write bn/<name>.bif atomically: a crash leaves the old file or the new one, never half."""
        bn_dir.mkdir(mode=0o700, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=bn_dir)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, bn_dir / f"{name}.bif")
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    async def predict_bn_load(p: BnLoadParams) -> dict[str, Any]:
        """Store a Bayesian network (BIF text, as bnlearn/pgmpy/GeNIe write it) under `name` in
        the node's home, after checking it (a malformed file is refused with its line number, one
        over node.predict.bayesnet.LIMITS with the limit it exceeds)."""
        from node.predict.bayesnet import BayesianNetwork, BayesNetError

        name = _check_name(p.name)
        if len(p.bif) > MAX_BIF:
            raise _invalid(f"a BIF text of at most {MAX_BIF:,} characters, got {len(p.bif):,}", "bif",
                           limit="MAX_BIF", value=MAX_BIF)
        try:
            p.bif.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise _invalid(f"bif is not valid Unicode text: {exc.reason} at character {exc.start}", "bif") from None

        def load() -> BayesianNetwork:
            try:
                net = BayesianNetwork.from_bif(p.bif)
            except BayesNetError as exc:
                raise _bn_error(exc, "bif") from None
            try:
                _store(name, p.bif)  # as given: its size is bounded, the expanded tables' is not
            except OSError as exc:
                raise RpcError(CALL_FAILED, f"could not store network {name!r}: {exc.strerror or exc}") from None
            networks.pop(name, None)  # here, under bn_limiter, like every use of the cache
            return net

        net = await trio.to_thread.run_sync(load, limiter=bn_limiter)
        return {"name": name, "variables": {v: list(net.states[v]) for v in net.states}}

    def _read_stored(name: str) -> BayesianNetwork:
        """The network stored under `name`, from the cache while the file is unchanged (a thread)."""
        from node.predict.bayesnet import BayesianNetwork, BayesNetError

        path = bn_dir / f"{name}.bif"
        try:
            st = path.stat()
        except FileNotFoundError:
            raise RpcError(CALL_FAILED, f"no network named {name!r}; load it with predict.bn.load", {"name": name}) from None
        cached = networks.get(name)
        if cached is not None and cached[:2] == (st.st_mtime, st.st_size):
            networks.move_to_end(name)
            return cached[2]
        # The stored file is parsed under the same bounds as a load: it may be older than them,
        # or edited in the home.
        if st.st_size > MAX_STORED_BIF:
            raise RpcError(CALL_FAILED, f"stored network {name!r} is {st.st_size:,} bytes, over {MAX_STORED_BIF:,}; "
                           "load it again", {"name": name})
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read(MAX_STORED_BIF + 1)
            net = BayesianNetwork.from_bif(text)
        except (BayesNetError, OSError, UnicodeDecodeError) as exc:
            raise RpcError(CALL_FAILED, f"stored network {name!r} is unreadable: {exc}", {"name": name}) from None
        networks[name] = (st.st_mtime, st.st_size, net)
        while len(networks) > MAX_CACHED_NETWORKS:
            networks.popitem(last=False)
        return net

    async def predict_bn_query(p: BnQueryParams) -> dict[str, Any]:
        """P(variable | evidence) by exact inference (variable elimination) on a stored network;
        a query whose elimination plan exceeds the factor limits is refused before it runs."""
        from node.predict.bayesnet import BayesNetError

        name = _check_name(p.name)
        evidence = p.evidence or {}

        def query() -> dict[str, float]:
            net = _read_stored(name)
            if p.variable not in net.states:
                raise _invalid(f"unknown variable {p.variable[:200]!r} in network {name!r}", "variable")
            try:
                return net.query(p.variable, evidence=evidence)
            except BayesNetError as exc:
                raise _bn_error(exc, "evidence") from None

        dist = await trio.to_thread.run_sync(query, limiter=bn_limiter)
        return {"variable": p.variable, "evidence": evidence, "distribution": {k: float(v) for k, v in dist.items()}}

    server.register("predict.forecast", predict_forecast, ForecastParams)
    server.register("predict.simulate", predict_simulate, SimulateParams)
    server.register("predict.scenarios", predict_scenarios, ScenariosParams)
    server.register("predict.bn.load", predict_bn_load, BnLoadParams)
    server.register("predict.bn.query", predict_bn_query, BnQueryParams)


__all__ = ["register_predict"]
