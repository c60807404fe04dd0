"""Bayesian network exact-query speed: `BayesianNetwork.query` on the standard networks shipped in
tests/data (cancer 5 nodes, asia 8, child 20, alarm 37), beside pgmpy's VariableElimination on
the same queries when pgmpy imports (it is a benchmark baseline, never a dependency).

    .venv/bin/python bench/bench_bayesnet.py [--queries 200] [--rounds 5] [--seed 7]

Each network gets a fixed-seed set of queries: a random target variable and 1-3 other random
evidence variables whose states come from one forward sample of the network (so the evidence is
possible). Per query we time (wall clock, perf_counter, garbage collector off during each call):
  ours cold  - the first query of its (target, evidence variables) signature on a network whose
               plan cache is empty (pruning, elimination order and plan compilation included);
  ours warm  - the same query again, plan cached (median over --rounds repeats);
  pgmpy      - VariableElimination(model).query on the same query (median over --rounds repeats).
and report the median and 90th percentile over queries in microseconds, queries per second
(1 / mean warm time), the pgmpy / ours ratio of medians, and the largest difference between our
answers and pgmpy's (they must agree to 1e-9).

Targets (issue 5): alarm (37 nodes) median warm query with evidence < 1000 us; faster than pgmpy.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from node.predict.bayesnet import BayesianNetwork, read_bif  # noqa: E402

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
NETWORKS = ("cancer", "asia", "child", "alarm")

Query = tuple[str, dict[str, str]]


def forward_sample(net: BayesianNetwork, rng: np.random.Generator) -> dict[str, str]:
    """One joint sample in topological order."""
    idx: dict[str, int] = {}
    for v in net.order:
        row = net.cpts[v][tuple(idx[p] for p in net.parents[v])]
        idx[v] = int(rng.choice(len(row), p=row / row.sum()))  # BIF rows sum to 1 only to ~1e-6
    return {v: net.states[v][i] for v, i in idx.items()}


def make_queries(net: BayesianNetwork, count: int, seed: int) -> list[Query]:
    rng = np.random.default_rng(seed)
    names = list(net.variables)
    out: list[Query] = []
    for _ in range(count):
        sample = forward_sample(net, rng)
        target = names[int(rng.integers(len(names)))]
        others = [v for v in names if v != target]
        k = int(rng.integers(1, min(3, len(others)) + 1))
        chosen = rng.choice(len(others), size=k, replace=False)
        out.append((target, {others[int(i)]: sample[others[int(i)]] for i in chosen}))
    return out


def fresh(net: BayesianNetwork) -> BayesianNetwork:
    """A copy of `net` with empty caches."""
    return BayesianNetwork(net.states, net.parents, net.cpts, name=net.name)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """The garbage collector off while timing (as `timeit` does), after one full collection."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def time_once(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def median_times(queries: Sequence[Query], run: Callable[[Query], object], rounds: int) -> list[float]:
    """Per query, the median over `rounds` interleaved passes of its wall time (seconds)."""
    samples: list[list[float]] = [[] for _ in queries]
    for _ in range(rounds):
        for i, q in enumerate(queries):
            samples[i].append(time_once(lambda: run(q)))
    return [statistics.median(s) for s in samples]


def summary(label: str, secs: Sequence[float]) -> str:
    us = np.array(secs) * 1e6
    return (
        f"  {label:<10} median {np.median(us):9.1f} us  p90 {np.percentile(us, 90):9.1f} us  "
        f"{len(us) / np.sum(us) * 1e6:9.0f} queries/s"
    )


def load_pgmpy() -> tuple[Any, Any] | None:
    try:
        warnings.filterwarnings("ignore")
        logging.disable(logging.WARNING)
        from pgmpy.inference import VariableElimination  # type: ignore[import-not-found]
        from pgmpy.readwrite import BIFReader  # type: ignore[import-not-found]
    except ImportError:
        return None
    return (BIFReader, VariableElimination)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    pg = load_pgmpy()
    if pg is None:
        print("pgmpy: not installed")
    else:
        import pgmpy  # type: ignore[import-not-found]

        print(f"pgmpy {pgmpy.__version__} VariableElimination (default greedy order) as the baseline")
    print(f"{args.queries} queries per network (1-3 evidence variables), warm/pgmpy: median of "
          f"{args.rounds} rounds per query; numpy {np.__version__}")

    for name in NETWORKS:
        path = DATA / f"{name}.bif"
        net = read_bif(path)
        queries = make_queries(net, args.queries, args.seed)
        signatures = len({(t, frozenset(ev)) for t, ev in queries})
        print(f"{name}: {len(net.variables)} nodes, {sum(map(len, net.parents.values()))} edges, "
              f"{len(queries)} queries ({signatures} distinct signatures)")

        with gc_paused():
            cold = [time_once(lambda: fresh_net.query(t, ev))
                    for t, ev in queries for fresh_net in [fresh(net)]]
        for t, ev in queries:  # fill the plan cache, then time the warm path
            net.query(t, ev)
        with gc_paused():
            warm = median_times(queries, lambda q: net.query(q[0], q[1]), args.rounds)
        print(summary("ours cold", cold))
        print(summary("ours warm", warm))

        if pg is None:
            continue
        bif_reader, variable_elimination = pg
        ve = variable_elimination(bif_reader(str(path)).get_model())

        def pg_query(q: Query) -> Any:
            return ve.query([q[0]], evidence=q[1], show_progress=False)

        with gc_paused():
            theirs = median_times(queries, pg_query, args.rounds)
        print(summary("pgmpy", theirs))
        worst = 0.0
        for t, ev in queries:
            ours = net.query(t, ev)
            f = pg_query((t, ev))
            for s, p in zip(f.state_names[t], np.ravel(f.values)):
                worst = max(worst, abs(ours[s] - float(p)))
        ratio = np.median(theirs) / np.median(warm)
        cold_ratio = np.median(theirs) / np.median(cold)
        print(f"  ratio pgmpy/ours (medians): warm {ratio:.1f}x, cold {cold_ratio:.1f}x; "
              f"max |ours - pgmpy| = {worst:.1e} ({'agree' if worst <= 1e-9 else 'DISAGREE'} to 1e-9)")


if __name__ == "__main__":
    main()
