"""Scenarios: named bear/base/bull/stress paths from simulations, historical bootstrap scenarios,
user-defined shocks, and small moment-matched scenario trees.

Pure numpy, no I/O, no clock. Randomness only through `seed` (passed to
`node.predict.montecarlo`), so the same seed gives the same scenarios.

Conventions
-----------
* A `Scenario` is one price path of `horizon + 1` values (column 0 is the starting price) with
  a probability; a `ScenarioSet` holds scenarios whose probabilities sum to 1 (validated).
* `named_scenarios` sorts simulated paths by terminal value and cuts them into probability-mass
  buckets, lowest first (default bear 20%, base 60%, bull 20%). Each named scenario is the
  *median path* of its bucket: the path whose terminal value is the bucket's median terminal
  value (a real simulated path, not a pointwise median). "stress" is the path at the
  `stress_quantile` quantile of terminal values (default 1%); its probability is the quantile
  itself and is taken out of the lowest bucket (bear), whose median is then computed over the
  remaining paths of that bucket (mass from `stress_quantile` up to the bear cut).
* Shocks (`apply_shock`) change the price level from step k on: {"multiply": 0.8} multiplies
  path[k:] by 0.8 (a 20% drop at step k that persists), {"add": -5} adds -5 to path[k:].
* `scenario_tree` is a non-recombining tree: every node has `branching` children (3 =
  trinomial, 2 = binomial) whose log-returns have exactly the GBM mean (mu - sigma^2/2) dt and
  variance sigma^2 dt. The trinomial uses the 3-point Gauss-Hermite rule (offsets 0, +-sqrt(3 v),
  probabilities 2/3, 1/6, 1/6), so E[S_T] matches s0 exp(mu T) to O(sigma^6 dt^3) per step;
  the binomial (offsets +-sqrt(v), probabilities 1/2) to O(sigma^4 dt^2) per step.
  `match="mean"` instead matches E[S_k] = s0 exp(mu k dt) exactly (same log variance).
  `ScenarioTree.paths()` / `.to_scenario_set()` turn the leaves into a ScenarioSet (for shocks).
* `model_tree` is a non-recombining tree driven by a fitted `node.predict.timeseries` model on
  the series' own (additive) scale: every node's children are the model's one-step-ahead
  conditional mean *given that node's path* plus Gauss-Hermite offsets of the model's one-step
  residual sd, and the model's state is updated with the child's value (refit-free). For linear
  models the level-k mean equals the k-step point forecast and the level-k variance equals the
  model's k-step predictive variance; see `model_tree` for what is exact and what is not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Literal, Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike

from node.predict.montecarlo import bootstrap_returns, simulate_gbm
from node.predict import timeseries as _ts
from node.predict.checks import finite as _finite, positive as _positive, positive_int as _positive_int

__all__ = [
    "DEFAULT_PROBABILITIES",
    "GbmFit",
    "MAX_MODEL_TREE_NODES",
    "ModelTree",
    "Scenario",
    "ScenarioSet",
    "ScenarioTree",
    "apply_shock",
    "expected_value",
    "fit_gbm",
    "from_prices",
    "historical_bootstrap",
    "model_tree",
    "named_scenarios",
    "scenario_tree",
]


DEFAULT_PROBABILITIES: Mapping[str, float] = {"bear": 0.2, "base": 0.6, "bull": 0.2}
PROBABILITY_TOL = 1e-9
MAX_TREE_NODES = 2_000_000
MAX_MODEL_TREE_NODES = 3**12  # leaves of a model tree (531,441): each node carries the model's state
MAX_MODEL_TREE_STATE = 20_000_000  # floats of model state at the widest level (seasonal buffers)
_LOG_MAX = math.log(np.finfo(np.float64).max)


# ---------------------------------------------------------------------------------------------
# argument checks


def _prices(prices: ArrayLike, minimum: int = 3) -> np.ndarray:
    p = np.asarray(prices, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"prices must be one-dimensional, got shape {p.shape}")
    if p.size < minimum:
        raise ValueError(f"prices needs at least {minimum} values, got {p.size}")
    if not np.all(np.isfinite(p)):
        raise ValueError("prices contains NaN or infinite values")
    if np.any(p <= 0):
        raise ValueError("prices must be strictly positive (log returns are taken)")
    return p


def _frozen(a: np.ndarray) -> np.ndarray:
    out = np.array(a, dtype=np.float64, copy=True)
    out.setflags(write=False)
    return out


# ---------------------------------------------------------------------------------------------
# scenarios


@dataclass(frozen=True, eq=False)
class Scenario:
    """One named price path (read-only copy, length horizon + 1) with its probability.

    Equality compares name, probability, terminal and the path values (arrays compared
    element-wise); scenarios are not hashable.
    """

    name: str
    probability: float
    path: np.ndarray
    terminal: float

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"scenario name must be a non-empty string, got {self.name!r}")
        p = _finite("probability", self.probability)
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"probability of {self.name!r} must be in [0, 1], got {p}")
        path = np.asarray(self.path, dtype=np.float64)
        if path.ndim != 1 or path.size < 1:
            raise ValueError(f"path of {self.name!r} must be a non-empty 1-D array, got shape {path.shape}")
        if not np.all(np.isfinite(path)):
            raise ValueError(f"path of {self.name!r} contains NaN or infinite values")
        object.__setattr__(self, "probability", p)
        object.__setattr__(self, "path", _frozen(path))
        object.__setattr__(self, "terminal", _finite("terminal", self.terminal))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Scenario):
            return NotImplemented
        return (
            self.name == other.name
            and self.probability == other.probability
            and self.terminal == other.terminal
            and np.array_equal(self.path, other.path)
        )

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True)
class ScenarioSet:
    """Scenarios over `horizon` steps (paths of horizon + 1 values), probabilities summing to 1."""

    scenarios: tuple[Scenario, ...]
    horizon: int
    meta: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        scen = tuple(self.scenarios)
        if not scen:
            raise ValueError("a ScenarioSet needs at least one scenario")
        if not all(isinstance(s, Scenario) for s in scen):
            raise ValueError("scenarios must all be Scenario instances")
        horizon = self.horizon
        if isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)) or horizon < 0:
            raise ValueError(f"horizon must be a non-negative integer, got {horizon!r}")
        names = [s.name for s in scen]
        if len(set(names)) != len(names):
            raise ValueError(f"scenario names must be unique, got {names}")
        for s in scen:
            if s.path.size != horizon + 1:
                raise ValueError(f"path of {s.name!r} has {s.path.size} values, expected horizon + 1 = {horizon + 1}")
        total = math.fsum(s.probability for s in scen)
        if abs(total - 1.0) > PROBABILITY_TOL * max(1, len(scen)):
            raise ValueError(f"scenario probabilities must sum to 1, got {total}")
        object.__setattr__(self, "scenarios", scen)
        object.__setattr__(self, "horizon", int(horizon))
        object.__setattr__(self, "meta", dict(self.meta))

    def __getitem__(self, name: str) -> Scenario:
        for s in self.scenarios:
            if s.name == name:
                return s
        raise KeyError(name)

    def __len__(self) -> int:
        return len(self.scenarios)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.scenarios)

    @property
    def probabilities(self) -> np.ndarray:
        return np.array([s.probability for s in self.scenarios])

    @property
    def terminals(self) -> np.ndarray:
        return np.array([s.terminal for s in self.scenarios])

    def expected_terminal(self) -> float:
        """Probability-weighted terminal value."""
        return float(self.probabilities @ self.terminals)


def _check_probabilities(probabilities: Mapping[str, float]) -> dict[str, float]:
    if not isinstance(probabilities, Mapping) or not probabilities:
        raise ValueError("probabilities must be a non-empty mapping name -> probability")
    out: dict[str, float] = {}
    for name, p in probabilities.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"scenario names must be non-empty strings, got {name!r}")
        v = _finite(f"probability of {name!r}", p)
        if v <= 0:
            raise ValueError(f"probability of {name!r} must be > 0, got {v}")
        out[name] = v
    total = math.fsum(out.values())
    if abs(total - 1.0) > PROBABILITY_TOL * len(out):
        raise ValueError(f"probabilities must sum to 1, got {total}")
    return out


def named_scenarios(
    samples_terminal_or_paths: ArrayLike,
    probabilities: Mapping[str, float] | None = None,
    stress_quantile: float | None = 0.01,
    *,
    stress_name: str = "stress",
) -> ScenarioSet:
    """Bucketed median scenarios from simulated paths (n, steps + 1) or terminal values (n,).

    Paths are sorted by terminal value and split into consecutive probability-mass buckets in
    the order of `probabilities` (lowest terminal values first; default bear 0.2, base 0.6,
    bull 0.2). Each scenario is the bucket's median path (the path whose terminal value is the
    bucket median) with the bucket's probability. Unless `stress_quantile` is None or 0, a
    `stress_name` scenario is added: the path at the `stress_quantile` quantile of terminal
    values, with probability `stress_quantile` taken out of the first (lowest) bucket, so
    `stress_quantile` must be smaller than that bucket's probability. With 1-D input the
    "paths" are single values and the set has horizon 0.
    """
    probs = _check_probabilities(DEFAULT_PROBABILITIES if probabilities is None else probabilities)
    a = np.asarray(samples_terminal_or_paths, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(f"samples must be 1-D terminal values or 2-D paths (n, steps + 1), got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError("samples contain NaN or infinite values")
    n = a.shape[0]
    q = 0.0 if stress_quantile is None else _finite("stress_quantile", stress_quantile)
    first = next(iter(probs))
    if q < 0 or q >= probs[first]:
        raise ValueError(f"stress_quantile must be in [0, {probs[first]}) (the {first!r} probability), got {q}")
    if stress_name in probs and q > 0:
        raise ValueError(f"stress_name {stress_name!r} clashes with a bucket name")
    buckets = len(probs) + (1 if q > 0 else 0)
    # Each bucket needs at least one path; ask for a comfortable number so medians mean something.
    min_paths = max(buckets, math.ceil(1.0 / min(list(probs.values()) + ([q] if q > 0 else []))))
    if n < min_paths:
        raise ValueError(f"need at least {min_paths} samples for these buckets, got {n}")

    order = np.argsort(a[:, -1], kind="stable")  # rows are picked through it: no sorted copy of the paths
    horizon = a.shape[1] - 1
    scenarios: list[Scenario] = []
    if q > 0:
        idx = min(n - 1, max(0, int(math.floor(q * (n - 1) + 0.5))))
        path = a[order[idx]]
        scenarios.append(Scenario(stress_name, q, path, float(path[-1])))
    cum = 0.0
    start = 0
    names = list(probs)
    for i, name in enumerate(names):
        cum += probs[name]
        stop = n if i == len(names) - 1 else int(round(cum * n))
        lo = start
        if i == 0 and q > 0:
            lo = min(max(start, int(math.ceil(q * n))), stop - 1)
        if stop <= lo:
            raise ValueError(f"bucket {name!r} is empty with {n} samples; pass more samples")
        mid = lo + (stop - lo - 1) // 2
        path = a[order[mid]]
        p = probs[name] - (q if i == 0 else 0.0)
        scenarios.append(Scenario(name, p, path, float(path[-1])))
        start = stop
    return ScenarioSet(tuple(scenarios), horizon)


# ---------------------------------------------------------------------------------------------
# from price history


@dataclass(frozen=True)
class GbmFit:
    """GBM parameters per unit time fitted from log returns: mu (drift of S) and sigma."""

    mu: float
    sigma: float
    dt: float
    n_returns: int


def fit_gbm(prices: ArrayLike, dt: float = 1.0) -> GbmFit:
    """Fit GBM drift and volatility from the log returns of `prices` sampled every `dt`.

    sigma^2 = var(r, ddof=1) / dt and mu = mean(r) / dt + sigma^2 / 2, so that the log-return
    drift (mu - sigma^2/2) dt equals the sample mean of the log returns.
    """
    p = _prices(prices)
    dt = _positive("dt", dt)
    r = np.diff(np.log(p))
    sigma2 = float(r.var(ddof=1)) / dt
    mu = float(r.mean()) / dt + 0.5 * sigma2
    return GbmFit(mu, math.sqrt(sigma2), dt, int(r.size))


def from_prices(
    prices: ArrayLike,
    horizon_steps: int,
    paths: int = 10_000,
    seed: int | None = 0,
    *,
    dt: float = 1.0,
    probabilities: Mapping[str, float] | None = None,
    stress_quantile: float | None = 0.01,
    antithetic: bool = False,
) -> ScenarioSet:
    """Named scenarios (see `named_scenarios`) from GBM paths fitted to `prices`.

    Fits mu and sigma with `fit_gbm`, simulates `paths` paths of `horizon_steps` steps of `dt`
    starting at the last price, and buckets them. The fitted values are in the set's `meta`
    ("mu", "sigma", "s0", "dt").
    """
    p = _prices(prices)
    horizon_steps = _positive_int("horizon_steps", horizon_steps)
    paths = _positive_int("paths", paths)
    fit = fit_gbm(p, dt)
    sims = simulate_gbm(
        float(p[-1]), fit.mu, fit.sigma, horizon_steps * fit.dt, horizon_steps, paths, seed, antithetic=antithetic
    )
    out = named_scenarios(sims, probabilities, stress_quantile)
    return ScenarioSet(out.scenarios, out.horizon, {"mu": fit.mu, "sigma": fit.sigma, "s0": float(p[-1]), "dt": fit.dt})


def historical_bootstrap(
    prices: ArrayLike,
    horizon_steps: int,
    n_scenarios: int,
    seed: int | None = 0,
    *,
    block: int = 5,
) -> ScenarioSet:
    """`n_scenarios` equally likely price paths from a block bootstrap of historical log returns.

    Uses `montecarlo.bootstrap_returns` (circular blocks of `block` returns, capped at the
    number of returns) and starts every path at the last price. Names are "bootstrap_0", ...
    """
    p = _prices(prices)
    horizon_steps = _positive_int("horizon_steps", horizon_steps)
    n_scenarios = _positive_int("n_scenarios", n_scenarios)
    block = _positive_int("block", block)
    r = np.diff(np.log(p))
    cum = bootstrap_returns(r, horizon_steps, n_scenarios, block=min(block, r.size), seed=seed)
    paths = p[-1] * np.exp(cum)
    prob = 1.0 / n_scenarios
    scen = tuple(Scenario(f"bootstrap_{i}", prob, paths[i], float(paths[i, -1])) for i in range(n_scenarios))
    return ScenarioSet(scen, horizon_steps)


# ---------------------------------------------------------------------------------------------
# shocks


def apply_shock(
    scenario_set: ScenarioSet,
    shock: Mapping[str, float],
    step: int,
    names: Sequence[str] | None = None,
) -> ScenarioSet:
    """A new set with `shock` applied from step `step` on (path[step:]), to `names` or all.

    `shock` is {"multiply": f} (path[step:] *= f, f finite and >= 0) or {"add": c}
    (path[step:] += c). Probabilities are unchanged; terminals are recomputed. 0 <= step <= horizon.
    """
    if not isinstance(scenario_set, ScenarioSet):
        raise ValueError("scenario_set must be a ScenarioSet")
    if not isinstance(shock, Mapping) or len(shock) != 1:
        raise ValueError(f"shock must be a mapping with exactly one of 'multiply' or 'add', got {shock!r}")
    (kind, value), = shock.items()
    value = _finite(f"shock {kind!r}", value)
    if kind == "multiply":
        if value < 0:
            raise ValueError(f"a multiply shock must be >= 0, got {value}")
    elif kind != "add":
        raise ValueError(f"shock kind must be 'multiply' or 'add', got {kind!r}")
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)):
        raise ValueError(f"step must be an integer, got {step!r}")
    if not 0 <= step <= scenario_set.horizon:
        raise ValueError(f"step must be in [0, {scenario_set.horizon}], got {step}")
    targets = set(scenario_set.names if names is None else names)
    unknown = targets - set(scenario_set.names)
    if unknown:
        raise ValueError(f"unknown scenario names: {sorted(unknown)}")
    out = []
    for s in scenario_set.scenarios:
        if s.name not in targets:
            out.append(s)
            continue
        path = np.array(s.path)
        if kind == "multiply":
            path[step:] *= value
        else:
            path[step:] += value
        out.append(Scenario(s.name, s.probability, path, float(path[-1])))
    return ScenarioSet(tuple(out), scenario_set.horizon, scenario_set.meta)


# ---------------------------------------------------------------------------------------------
# scenario trees


class _Levels:
    """What every scenario tree shares: `values[k]` and `probabilities[k]` are the nodes of level
    k (k = 0..steps), and the parent of node i at level k + 1 is node i // branching at level k.
    Subclasses are frozen dataclasses with those fields; `_key` names the rest of what makes two
    trees equal, `_meta` what their leaves' ScenarioSet carries."""

    values: tuple[np.ndarray, ...]
    probabilities: tuple[np.ndarray, ...]
    branching: int
    steps: int

    def _key(self) -> tuple[object, ...]:
        raise NotImplementedError

    def _meta(self) -> dict[str, float]:
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, _Levels)
        return self._key() == other._key() and all(
            np.array_equal(a, b) for a, b in zip(self.values + self.probabilities, other.values + other.probabilities)
        )

    __hash__ = None  # type: ignore[assignment]

    def leaves(self) -> tuple[np.ndarray, np.ndarray]:
        """(values, probabilities) of the terminal nodes."""
        return self.values[-1], self.probabilities[-1]

    def expected_value(self, step: int | None = None) -> float:
        return expected_value(self, step)

    def variance(self, step: int | None = None) -> float:
        """Probability-weighted variance of the node values at level `step` (default: the leaves)."""
        k = self.steps if step is None else step
        m = expected_value(self, k)
        return float(self.probabilities[k] @ (self.values[k] - m) ** 2)

    def paths(self) -> np.ndarray:
        """Every root-to-leaf path, shape (branching**steps, steps + 1), in leaf order."""
        return _tree_paths(self.values, self.branching, self.steps)

    def to_scenario_set(self, prefix: str = "leaf_") -> ScenarioSet:
        """The leaves as a ScenarioSet (path = root-to-leaf path, probability = leaf probability)."""
        paths = self.paths()
        probs = self.probabilities[-1]
        scen = tuple(
            Scenario(f"{prefix}{i}", float(probs[i]), paths[i], float(paths[i, -1])) for i in range(paths.shape[0])
        )
        return ScenarioSet(scen, self.steps, self._meta())


@dataclass(frozen=True, eq=False)
class ScenarioTree(_Levels):
    """A non-recombining tree: level k has branching**k nodes (k = 0..steps).

    `values[k][i]` is the price at node i of level k and `probabilities[k][i]` the probability of
    reaching it; the parent of node i at level k + 1 is node i // branching at level k.
    """

    values: tuple[np.ndarray, ...]
    probabilities: tuple[np.ndarray, ...]
    branching: int
    steps: int
    dt: float
    s0: float
    mu: float
    sigma: float

    def _key(self) -> tuple[object, ...]:
        return (self.branching, self.steps, self.dt, self.s0, self.mu, self.sigma)

    def _meta(self) -> dict[str, float]:
        return {"mu": self.mu, "sigma": self.sigma, "s0": self.s0, "dt": self.dt}

    def log_return_moments(self, step: int | None = None) -> tuple[float, float]:
        """Mean and variance of log(S_k / s0) at level `step` (default: the leaves)."""
        k = self.steps if step is None else step
        v, p = self.values[k], self.probabilities[k]
        x = np.log(v / self.s0)
        m = float(p @ x)
        return m, float(p @ (x - m) ** 2)


def _tree_paths(values: tuple[np.ndarray, ...], branching: int, steps: int) -> np.ndarray:
    n = branching**steps
    out = np.empty((n, steps + 1))
    leaf = np.arange(n)
    for k in range(steps + 1):
        out[:, k] = values[k][leaf // branching ** (steps - k)]
    return out


def expected_value(tree: _Levels, step: int | None = None) -> float:
    """Probability-weighted node value at level `step` (default: the leaves)."""
    if not isinstance(tree, _Levels):
        raise ValueError("tree must be a ScenarioTree or a ModelTree")
    k = tree.steps if step is None else step
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k <= tree.steps:
        raise ValueError(f"step must be an integer in [0, {tree.steps}], got {step!r}")
    return float(tree.probabilities[k] @ tree.values[k])


def scenario_tree(
    s0: float,
    mu: float,
    sigma: float,
    steps: int,
    branching: int = 3,
    dt: float = 1.0,
    *,
    max_nodes: int = MAX_TREE_NODES,
    rtol: float = 1e-2,
    match: Literal["log", "mean"] = "log",
) -> ScenarioTree:
    """GBM scenario tree, trinomial (branching=3) or binomial (branching=2), `steps` levels.

    Log-return offsets per step are moment-matched to GBM: mean (mu - sigma^2/2) dt and variance
    sigma^2 dt exactly (see module docstring). Raises ValueError when the tree would have more
    than `max_nodes` leaves, or when its leaf probabilities fail to sum to 1 or its expected
    terminal value misses s0 exp(mu T) by more than `rtol` relative (sigma^2 dt too large for
    the discrete approximation; for daily-scale parameters the error is far below 1e-6).

    match="mean" instead shifts the per-step log drift so that E[S_{k}] = s0 exp(mu k dt)
    exactly at every level (log-return variance stays sigma^2 dt; the log mean then differs from
    (mu - sigma^2/2) dt by a term of order sigma^4 dt^2).
    """
    s0 = _positive("s0", s0)
    mu = _finite("mu", mu)
    sigma = _finite("sigma", sigma)
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    steps = _positive_int("steps", steps)
    dt = _positive("dt", dt)
    if branching not in (2, 3) or isinstance(branching, bool):
        raise ValueError(f"branching must be 2 (binomial) or 3 (trinomial), got {branching!r}")
    max_nodes = _positive_int("max_nodes", max_nodes)
    rtol = _positive("rtol", rtol)
    if branching**steps > max_nodes:
        raise ValueError(f"{branching}**{steps} leaves exceed max_nodes={max_nodes}")

    if match not in ("log", "mean"):
        raise ValueError(f"match must be 'log' or 'mean', got {match!r}")

    v = sigma * sigma * dt
    if branching == 3:
        h = math.sqrt(3.0 * v)
        centred = np.array([-h, 0.0, h])
        child_p = np.array([1.0 / 6.0, 2.0 / 3.0, 1.0 / 6.0])
    else:
        h = math.sqrt(v)
        centred = np.array([-h, h])
        child_p = np.array([0.5, 0.5])
    # Finite but extreme parameters (prices spanning 1e-308..1e308 fit sigma ~ 1e3) overflow
    # float64 here: say so rather than carry inf into the tree or raise OverflowError.
    with np.errstate(over="ignore", invalid="ignore"):
        if match == "log":
            m = (mu - 0.5 * sigma * sigma) * dt
        else:
            m = mu * dt - math.log(float(child_p @ np.exp(centred)))
        growth = np.exp(centred + m)
        values = [np.array([s0])]
        probs = [np.array([1.0])]
        for _ in range(steps):
            values.append(np.outer(values[-1], growth).ravel())
            probs.append(np.outer(probs[-1], child_p).ravel())
    log_target = math.log(s0) + mu * steps * dt
    if not (math.isfinite(m) and all(np.all(np.isfinite(a)) for a in values)) or log_target > _LOG_MAX:
        raise ValueError(
            f"the tree's values overflow float64 (mu={mu}, sigma={sigma} over {steps} steps of {dt}): "
            "the prices are too extreme for a GBM tree"
        )
    for a in values + probs:
        a.setflags(write=False)
    tree = ScenarioTree(tuple(values), tuple(probs), branching, steps, dt, s0, mu, sigma)

    total = float(probs[-1].sum())
    if abs(total - 1.0) > 1e-9:
        raise ValueError(f"leaf probabilities sum to {total}, not 1")
    target = s0 * math.exp(mu * steps * dt)
    ev = expected_value(tree)
    if abs(ev - target) > rtol * target:
        raise ValueError(
            f"expected terminal value {ev} misses s0*exp(mu*T) = {target} (sigma^2 dt = {v} too large for this tree)"
        )
    return tree


# ---------------------------------------------------------------------------------------------
# scenario trees driven by a fitted time-series model


@dataclass(frozen=True, eq=False)
class ModelTree(_Levels):
    """A non-recombining tree of a fitted time-series model's outcomes: level k has
    branching**k nodes (k = 0..steps); level 0 is the last observation.

    `values[k][i]` is the series value at node i of level k (same additive scale as the series),
    `probabilities[k][i]` the probability of reaching it; the parent of node i at level k + 1
    is node i // branching at level k. `method` is the fitted model (as `forecast` names it,
    e.g. "ar(2)"), `sigma` the one-step innovation sd the offsets are scaled by, `forecast`
    the model's own `Forecast` over the same horizon (point forecast and interval), and
    `mean_gap` the largest |E_tree[y_k] - forecast.mean[k-1]| over the levels (rounding only for
    the linear models, see `model_tree`). `linear` is False only for multiplicative seasonality.
    """

    values: tuple[np.ndarray, ...]
    probabilities: tuple[np.ndarray, ...]
    branching: int
    steps: int
    method: str
    sigma: float
    forecast: _ts.Forecast
    mean_gap: float
    linear: bool

    def _key(self) -> tuple[object, ...]:
        return (self.branching, self.steps, self.method, self.sigma)

    def _meta(self) -> dict[str, float]:
        return {"sigma": self.sigma, "y0": float(self.values[0][0])}


State = dict[str, np.ndarray]  # every array's last axis indexes the nodes of one level


@dataclass(frozen=True)
class _Recursion:
    """A fitted model as a one-step recursion, vectorised over the nodes of a level."""

    state: State
    mean: Callable[[State, int], np.ndarray]  # (state, step j) -> one-step conditional mean per node
    update: Callable[[State, np.ndarray, int], State]  # (state, value per node, step j) -> new state
    sigma: float
    linear: bool


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x * x))) if x.size else 0.0


def _recursion(y: np.ndarray, name: str, period: int | None, max_p: int) -> _Recursion:
    """The recursion of the model `forecast` fitted under `name` (its Forecast.method)."""
    n = y.size
    if name == "naive":
        return _Recursion(
            {"last": y[-1:].copy()}, lambda s, j: s["last"], lambda s, v, j: {"last": v}, _rms(np.diff(y)), True
        )
    if name == "drift":
        slope = float((y[-1] - y[0]) / (n - 1))
        sigma = math.sqrt(float(np.sum((np.diff(y) - slope) ** 2)) / (n - 2))
        return _Recursion(
            {"last": y[-1:].copy()}, lambda s, j: s["last"] + slope, lambda s, v, j: {"last": v}, sigma, True
        )
    if name == "seasonal_naive":
        assert period is not None
        m = period

        def sn_update(s: State, v: np.ndarray, j: int) -> State:
            buf = s["buf"].copy()
            buf[j % m] = v
            return {"buf": buf}

        return _Recursion(
            {"buf": y[-m:, None].copy()}, lambda s, j: s["buf"][j % m], sn_update, _rms(y[m:] - y[:-m]), True
        )
    if name.startswith("ar(") or name == "ar":
        fit = _ts.fit_ar(y, max_p)
        coefs, c, p = fit.coefs, fit.intercept, fit.p

        def ar_update(s: State, v: np.ndarray, j: int) -> State:
            return {"hist": np.vstack([v[None, :], s["hist"][:-1]])}

        return _Recursion(
            {"hist": y[::-1][:p, None].copy()},  # hist[0] is the most recent value
            lambda s, j: c + coefs @ s["hist"],
            ar_update,
            math.sqrt(fit.sigma2),
            True,
        )
    if name.startswith("arima("):
        return _arima_recursion(y, name)
    es_kwargs: dict[str, dict[str, object]] = {
        "ses": {},
        "holt": {"trend": True},
        "holt_damped": {"trend": True, "damped": True},
        "holt_winters_additive": {"trend": True, "seasonal": "additive", "period": period},
        "holt_winters_multiplicative": {"trend": True, "seasonal": "multiplicative", "period": period},
    }
    if name not in es_kwargs:
        raise ValueError(f"no scenario-tree recursion for the model {name!r}")
    es = _ts.fit_exponential_smoothing(y, **es_kwargs[name])  # type: ignore[arg-type]
    m = es.period

    def es_mean(s: State, j: int) -> np.ndarray:
        base = s["l"] + es.phi * s["b"] if es.has_trend else s["l"]
        if es.seasonal is None:
            return base
        # the buffer is indexed so that row j % m holds the factor for step j + 1 (as in _es_simulate)
        return base + s["s"][j % m] if es.seasonal == "additive" else base * s["s"][j % m]

    def es_update(s: State, v: np.ndarray, j: int) -> State:
        seas = s["s"].copy()
        _, level, trend = _ts._es_step(  # noqa: SLF001 - the very update the model was fitted with
            s["l"], s["b"], seas, j % m if m else 0, v, es.alpha, es.beta, es.gamma, es.phi, es.has_trend, es.seasonal
        )
        return {"l": level, "b": trend, "s": seas}

    state: State = {
        "l": np.array([es.level]),
        "b": np.array([es.trend]),
        "s": es.season[:, None].copy() if m else np.empty((0, 1)),
    }
    return _Recursion(state, es_mean, es_update, _rms(es.residuals), es.seasonal != "multiplicative")


def _arima_recursion(y: np.ndarray, name: str) -> _Recursion:
    """ARIMA in its innovations state-space form (`timeseries._arma_state`): per node, the ARMA
    state s (E[w_next] = mean + s[0] for the differenced series w) and the tail y, (1-B)y, ...
    that integrates w back to y. A realised value v has innovation e = v - E[y_next], the same
    for w and y, and moves the state to T s + c e."""
    fit = _ts.auto_arima(y)  # deterministic: the very fit `forecast` made under this name
    if f"arima({fit.p},{fit.d},{fit.q})" != name:
        raise ValueError(f"refitting {name} gave arima({fit.p},{fit.d},{fit.q}); no tree for it")
    K = max(fit.p, fit.q)
    # the model's own state form; white noise (p = q = 0) has no state at all
    T = _ts._arma_state(fit.phi, fit.theta)[0] if K else np.zeros((0, 0))  # noqa: SLF001
    c = np.zeros(K)
    c[: fit.p] += fit.phi
    c[: fit.q] += fit.theta

    def arima_mean(s: State, j: int) -> np.ndarray:
        value = np.full(s["s"].shape[-1], fit.mean)
        if s["s"].shape[0]:
            value = value + s["s"][0]
        for k in range(fit.d - 1, -1, -1):  # integrate: (1-B)^k y_next = (1-B)^k y_n + (1-B)^(k+1) y_next
            value = s["tail"][k] + value
        return value

    def arima_update(s: State, v: np.ndarray, j: int) -> State:
        e = v - arima_mean(s, j)
        tail = np.empty_like(s["tail"])
        if fit.d:
            tail[0] = v
            for k in range(1, fit.d):
                tail[k] = tail[k - 1] - s["tail"][k - 1]
        return {"s": T @ s["s"] + c[:, None] * e[None, :], "tail": tail}

    state: State = {"s": fit.state[:, None].copy(), "tail": fit.tail[:, None].copy()}
    return _Recursion(state, arima_mean, arima_update, math.sqrt(fit.sigma2), True)


def model_tree(
    y: ArrayLike,
    steps: int,
    branching: int = 3,
    period: int | None = None,
    method: str = "auto",
    *,
    level: float = 0.9,
    max_p: int = 8,
    n_origins: int = 3,
    seed: int = 0,
    max_nodes: int = MAX_MODEL_TREE_NODES,
) -> ModelTree:
    """Scenario tree over `steps` steps driven by a fitted `node.predict.timeseries` model.

    The model is chosen and fitted exactly as `forecast(y, steps, period, method, level, ...)`
    does (method "auto" picks by the same cross-validation, so the tree uses the model that
    forecast would report; `ModelTree.method` names it). The fitted model is then run as a
    one-step recursion, without refitting: at every node the children are

        y_child = E[y_{t+1} | the node's path] + sigma * z_i,  with probability w_i,

    where the conditional mean comes from the model's state (AR lags, ARIMA state and
    integration tail, smoothing level / trend / seasonal buffer, last value, ...) updated along
    that node's own path, and (z_i, w_i) is
    the 3-point Gauss-Hermite rule (0, +-sqrt(3); 2/3, 1/6, 1/6) for branching=3 or (+-1; 1/2)
    for branching=2: mean 0, variance 1 (and kurtosis 3 for the trinomial). Values are on the
    series' own additive scale (no log), level 0 is y[-1].

    sigma is the model's one-step residual sd as `forecast` uses it: rms of the first
    differences (naive), of the lag-`period` differences (seasonal_naive), the drift
    regression's sd (drift), sqrt of the AR residual variance (ar), sqrt of the ARIMA
    maximum-likelihood innovation variance (arima), rms of the one-step
    residuals (ses, holt, holt_damped, holt_winters_*).

    What is exact (up to floating-point rounding), for every model but multiplicative
    Holt-Winters (all of these are linear in the innovations):
      * level-k expected value == the model's k-step point forecast `forecast.mean[k-1]`;
      * level-k variance == sigma^2 * sum_{j<k} psi_j^2, the model's k-step predictive variance
        with homoscedastic innovations. This is the very variance behind `forecast`'s
        intervals for naive, seasonal_naive, ses, holt, holt_damped, additive holt_winters
        (analytic ETS variances, psi_j = the innovation weights c_j), ar and arima.
    What is approximated:
      * drift: `forecast`'s interval also carries the slope's estimation error (a factor
        1 + k/(n-1) on the variance); the tree treats the fitted slope as known.
      * holt_winters_multiplicative: `forecast`'s intervals are quantiles of paths driven by
        bootstrapped residuals; the tree uses zero-mean innovations with the residuals' rms as
        sd (the bootstrap's second moment), so its spread is close to but not equal to the
        bootstrap interval, and it does not reproduce residual skew.
      * Tails: a tree has only branching**k distinct outcomes per level; the trinomial matches
        the normal's moments up to the 5th per step, not its quantiles.
      * holt_winters_multiplicative: the recursion is nonlinear (divides by level and seasonal
        factor), so level-k means equal the point forecast only for k <= period and differ
        from it afterwards by a second-order term (`ModelTree.mean_gap` reports the largest
        gap; `linear` is False).

    No parameter uncertainty is modelled (the fitted coefficients are taken as known).

    Raises ValueError on: a bad series or a series too short for the method (as `forecast`
    does), steps < 1, branching not 2 or 3, an unknown method, more than `max_nodes` leaves
    (default 3**12), a seasonal state larger than MAX_MODEL_TREE_STATE floats, or a tree whose
    values overflow (e.g. a multiplicative model dividing by a level that reached 0).
    """
    arr = _ts._as_series(y)  # noqa: SLF001 - the same validation as forecast()
    steps = _positive_int("steps", steps)
    if branching not in (2, 3) or isinstance(branching, bool):
        raise ValueError(f"branching must be 2 (binomial) or 3 (trinomial), got {branching!r}")
    max_nodes = _positive_int("max_nodes", max_nodes)
    if branching**steps > max_nodes:
        raise ValueError(f"{branching}**{steps} leaves exceed max_nodes={max_nodes}")
    if not isinstance(method, str) or method not in _ts.METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(_ts.METHODS)}")
    period = _ts._check_period(period, arr.size)  # noqa: SLF001 - an int >= 2, at most half the series, or None
    if period is not None and period * branching ** (steps - 1) > MAX_MODEL_TREE_STATE:
        raise ValueError(
            f"a seasonal state of {period} x {branching}**{steps - 1} values exceeds {MAX_MODEL_TREE_STATE}; use fewer steps"
        )

    fc = _ts.forecast(arr, steps, period, method, level, max_p=max_p, n_origins=n_origins, seed=seed)
    rec = _recursion(arr, fc.method, period, max_p)

    if branching == 3:
        z = np.array([-math.sqrt(3.0), 0.0, math.sqrt(3.0)])
        child_p = np.array([1.0 / 6.0, 2.0 / 3.0, 1.0 / 6.0])
    else:
        z = np.array([-1.0, 1.0])
        child_p = np.array([0.5, 0.5])
    offsets = rec.sigma * z

    values = [np.array([float(arr[-1])])]
    probs = [np.array([1.0])]
    state = rec.state
    with np.errstate(all="ignore"):
        for j in range(steps):
            mean = np.asarray(rec.mean(state, j), dtype=np.float64)
            children = (mean[:, None] + offsets[None, :]).ravel()
            if not np.all(np.isfinite(children)):
                raise ValueError(f"the {fc.method} recursion overflowed at step {j + 1}; this model cannot drive a tree here")
            values.append(children)
            probs.append(np.outer(probs[-1], child_p).ravel())
            if j + 1 < steps:  # the leaves need no state
                state = rec.update({k: np.repeat(v, branching, axis=-1) for k, v in state.items()}, children, j)
    for a in values + probs:
        a.setflags(write=False)

    total = float(probs[-1].sum())
    if abs(total - 1.0) > 1e-9:
        raise ValueError(f"leaf probabilities sum to {total}, not 1")
    tree_means = np.array([float(probs[k] @ values[k]) for k in range(1, steps + 1)])
    gap = float(np.max(np.abs(tree_means - fc.mean)))
    return ModelTree(tuple(values), tuple(probs), branching, steps, fc.method, rec.sigma, fc, gap, rec.linear)
