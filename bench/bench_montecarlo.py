"""Monte Carlo speed: path-steps per second of `simulate_gbm`, beside baselines measured in the
same run: a minimal hand-written numpy GBM kernel (the floor any vectorised GBM pays: normals,
scale, cumsum, exp) and a pure-Python loop (small size, for scale). Also the chunked
`mean_payoff_gbm` rate and its tracemalloc peak under a small byte budget.

    .venv/bin/python bench/bench_montecarlo.py [--paths 20000] [--steps 250] [--repeat 5]

Target: simulate_gbm >= 0.8x the hand-written numpy kernel.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from node.predict.montecarlo import mean_payoff_gbm, simulate_gbm  # noqa: E402

S0, MU, SIGMA, T = 100.0, 0.05, 0.2, 1.0


def numpy_kernel(paths: int, steps: int, seed: int) -> np.ndarray:
    """The minimal numpy GBM: what anyone would write by hand."""
    rng = np.random.default_rng(seed)
    dt = T / steps
    z = rng.standard_normal((paths, steps))
    inc = (MU - 0.5 * SIGMA**2) * dt + SIGMA * math.sqrt(dt) * z
    out = np.empty((paths, steps + 1))
    out[:, 0] = 0.0
    np.cumsum(inc, axis=1, out=out[:, 1:])
    return S0 * np.exp(out)


def python_loop(paths: int, steps: int, seed: int) -> list[list[float]]:
    rnd = random.Random(seed)
    dt = T / steps
    drift, vol = (MU - 0.5 * SIGMA**2) * dt, SIGMA * math.sqrt(dt)
    out = []
    for _ in range(paths):
        s = S0
        row = [s]
        for _ in range(steps):
            s *= math.exp(drift + vol * rnd.gauss(0.0, 1.0))
            row.append(s)
        out.append(row)
    return out


def best_seconds(fn: Callable[[int], object], repeat: int) -> float:
    """Best of `repeat` CPU-time runs (robust to other load on the machine)."""
    best = math.inf
    for i in range(repeat):
        t0 = time.process_time()
        fn(i)
        best = min(best, time.process_time() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--paths", type=int, default=20_000)
    ap.add_argument("--steps", type=int, default=250)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    p, n, r = args.paths, args.steps, args.repeat
    work = p * n

    # interleave so that both see the same machine state; warm once each
    simulate_gbm(S0, MU, SIGMA, T, n, p, seed=0)
    numpy_kernel(p, n, 0)
    ours = best_seconds(lambda i: simulate_gbm(S0, MU, SIGMA, T, n, p, seed=i), r)
    hand = best_seconds(lambda i: numpy_kernel(p, n, i), r)
    ours = min(ours, best_seconds(lambda i: simulate_gbm(S0, MU, SIGMA, T, n, p, seed=i), r))
    hand = min(hand, best_seconds(lambda i: numpy_kernel(p, n, i), r))
    anti = best_seconds(lambda i: simulate_gbm(S0, MU, SIGMA, T, n, p, seed=i, antithetic=True), r)

    small_p, small_n = 200, 250
    loop = best_seconds(lambda i: python_loop(small_p, small_n, i), 3)
    loop_rate = small_p * small_n / loop

    print(f"simulate_gbm: {p:,} paths x {n} steps; best of {2 * r} CPU runs")
    print(f"  simulate_gbm            {work / ours / 1e6:8.1f} M path-steps/s  ({ours * 1000:7.1f} ms)")
    print(f"  simulate_gbm antithetic {work / anti / 1e6:8.1f} M path-steps/s  ({anti * 1000:7.1f} ms)")
    print(f"  hand numpy kernel       {work / hand / 1e6:8.1f} M path-steps/s  ({hand * 1000:7.1f} ms)")
    print(f"  pure-Python loop        {loop_rate / 1e6:8.2f} M path-steps/s  ({small_p} x {small_n})")
    print(f"ratio simulate_gbm / hand numpy kernel: {hand / ours:.2f}x (target >= 0.8); "
          f"vs pure Python: {work / ours / loop_rate:,.0f}x")

    # bounded memory: the chunked payoff mean over 10x the work under a 32 MB budget
    budget = 32 * 2**20
    big_p = 10 * p
    pay = lambda a: np.maximum(a[:, -1] - S0, 0.0)  # noqa: E731
    tracemalloc.start()
    t0 = time.process_time()
    est = mean_payoff_gbm(pay, S0, MU, SIGMA, T, n, big_p, seed=1, max_bytes=budget)
    secs = time.process_time() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"mean_payoff_gbm: {big_p * n / 1e9:.2f}e9 path-steps in {secs:.2f} s CPU "
          f"({big_p * n / secs / 1e6:.1f} M path-steps/s, tracemalloc on); peak {peak / 2**20:.1f} MB "
          f"(budget {budget / 2**20:.0f} MB; unchunked {big_p * (n + 1) * 8 / 2**20:,.0f} MB a single array); "
          f"mean payoff {est.mean:.4f} +- {est.stderr:.4f}")


if __name__ == "__main__":
    main()
