"""The `tree` option of predict.scenarios: its check (before any thread or numpy) and the
computation of a non-recombining scenario tree (in a worker thread)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from node.api.predict_bounds import MAX_TREE_LEAVES, TREE_MODELS, floats, invalid
from node.api.predict_worker import Failure

TREE_OPTIONS = ("steps", "branching", "model", "period")
FAILURE = Failure("tree", "the scenario tree overflows float64: the prices are too extreme for this model",
                  {"prices": "prices", "series": "prices"})


@dataclass(frozen=True)
class TreeSpec:
    steps: int
    branching: int
    model: str
    period: int | None


def tree_spec(tree: dict[str, Any], horizon_steps: int | None, shocked: bool) -> TreeSpec:
    """Check the `tree` option of predict.scenarios (before any thread or numpy)."""
    unknown = sorted(set(tree) - set(TREE_OPTIONS))
    if unknown:
        raise invalid(f"unknown tree option {unknown[0]!r}; the options are {', '.join(TREE_OPTIONS)}", "tree")
    if shocked:
        raise invalid("shocks apply to the named scenarios, not to a tree", "shock_step")
    steps = _int_option(tree, "steps")
    if steps is None:
        steps = horizon_steps
    elif horizon_steps is not None and horizon_steps != steps:
        raise invalid(f"tree.steps ({steps}) and horizon_steps ({horizon_steps}) disagree; give one", "tree")
    if steps is None:
        raise invalid("a tree needs tree.steps (or horizon_steps)", "tree")
    branching = _int_option(tree, "branching")
    branching = 3 if branching is None else branching
    if branching not in (2, 3):
        raise invalid(f"tree.branching must be 2 (binomial) or 3 (trinomial), got {branching}", "tree")
    if not 1 <= steps or branching**min(steps, 64) > MAX_TREE_LEAVES:
        raise invalid(
            f"tree.steps must be >= 1 and branching**steps at most {MAX_TREE_LEAVES:,} leaves (3**8) through the "
            f"control socket, got {branching}**{steps}", "tree")
    model = tree.get("model", "auto")
    if model not in TREE_MODELS:
        raise invalid(f"tree.model must be one of {', '.join(TREE_MODELS)}, got {model!r}", "tree")
    period = _int_option(tree, "period")
    if period is not None and model == "gbm":
        raise invalid("tree.period applies to the forecast models, not to gbm", "tree")
    return TreeSpec(steps, branching, model, period)


def _int_option(tree: dict[str, Any], key: str) -> int | None:
    v = tree.get(key)
    if v is not None and (type(v) is not int):
        raise invalid(f"tree.{key} must be an integer, got {v!r}", "tree")
    return v


def compute_tree(prices: list[float], spec: TreeSpec) -> dict[str, Any]:
    """The tree's answer (in a worker thread: numpy)."""
    import numpy as np

    from node.predict.scenarios import fit_gbm, model_tree, scenario_tree

    out: dict[str, Any] = {"requested": spec.model, "branching": spec.branching, "steps": spec.steps,
                           "leaves": spec.branching**spec.steps}
    if spec.model == "gbm":
        fit = fit_gbm(prices)
        g = scenario_tree(prices[-1], fit.mu, fit.sigma, spec.steps, spec.branching, fit.dt)
        out.update(model="gbm", fitted={"mu": fit.mu, "sigma": fit.sigma, "s0": g.s0, "dt": fit.dt},
                   levels=_levels(g.values, g.probabilities))
    else:
        t = model_tree(np.asarray(prices, dtype=float), spec.steps, spec.branching, spec.period, spec.model)
        f = t.forecast
        out.update(
            model=t.method,
            fitted={"sigma": t.sigma, "mean_gap": t.mean_gap, "linear": t.linear},
            forecast={"level": f.level, "mean": floats(f.mean), "lower": floats(f.lower), "upper": floats(f.upper)},
            levels=_levels(t.values, t.probabilities),
        )
    return {"horizon_steps": spec.steps, "tree": out}


def _levels(values: Any, probabilities: Any) -> list[dict[str, Any]]:
    """Per level: node values and probabilities, expected value, sd, min and max."""
    out = []
    for k, (v, pr) in enumerate(zip(values, probabilities)):
        mean = float(pr @ v)
        out.append({
            "step": k, "nodes": len(v), "expected": mean, "sd": float(pr @ (v - mean) ** 2) ** 0.5,
            "min": float(v.min()), "max": float(v.max()), "values": floats(v), "probabilities": floats(pr),
        })
    return out
