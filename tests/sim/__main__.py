"""python -m tests.sim --scenario NAME|all --replicas N --seeds COUNT [--first-seed S] [--trace]

One summary line per scenario: seeds run, safety violations, liveness failures. Exit status 1 on
any failure. Each failure prints the seed, the violations and the last events, and replays exactly
with --seeds 1 --first-seed SEED.
"""

from __future__ import annotations

import argparse
import sys
import time

from tests.sim.runner import RunResult
from tests.sim.scenarios import SCENARIOS, replica_features


def run_one(name: str, n: int, seed: int, trace_len: int = 60, always_trace: bool = False) -> RunResult:
    sim = SCENARIOS[name].build(n, seed, trace_len=trace_len)
    sim.always_trace = always_trace
    return sim.run()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.sim", description=__doc__.split("\n")[0])
    ap.add_argument("--scenario", default="all", help="a scenario name or 'all': " + ", ".join(SCENARIOS))
    ap.add_argument("--replicas", type=int, default=4, help="n = 3f+1 (default 4)")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--trace", action="store_true", help="print the whole trace of every run, failed or not")
    ap.add_argument("--trace-len", type=int, default=None, help="events kept for a trace (default 60; all with --trace)")
    ap.add_argument("--show", type=int, default=3, help="failures printed in full per scenario")
    ap.add_argument("--force", action="store_true", help="with 'all', also run scenarios the replica does not support yet")
    args = ap.parse_args(argv)

    features = replica_features()
    if args.scenario == "all":
        names = list(SCENARIOS)
    elif args.scenario in SCENARIOS:
        names = [args.scenario]
    else:
        ap.error(f"unknown scenario {args.scenario!r}; known: {', '.join(SCENARIOS)}")
    failed = False
    for name in names:
        sc = SCENARIOS[name]
        missing = sorted(set(sc.requires) - features)
        if missing and args.scenario == "all" and not args.force:
            print(f"{name:<20} n={args.replicas} skipped: replica lacks {', '.join(missing)}")
            continue
        t0 = time.process_time()
        safety = liveness = shown = accusing = 0
        worst = 0.0
        stats = []
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            trace_len = args.trace_len or (10**7 if args.trace else 60)
            res = run_one(name, args.replicas, seed, trace_len=trace_len, always_trace=args.trace)
            if res.ok:
                stats.append(res.stats)
            accusing += bool(res.stats.get("false_evidence"))
            worst = max(worst, res.stats.get("max_wait_after_heal", 0.0))
            safety += bool(res.safety)
            liveness += bool(res.liveness) and not res.safety
            if not res.ok and shown < args.show:
                shown += 1
                print(res.report(), file=sys.stderr)
            elif args.trace:
                print(f"seed {seed}: ok; faults: {'; '.join(res.faults) or 'none'}; {res.stats}", file=sys.stderr)
                print("\n".join("    " + t for t in res.trace), file=sys.stderr)
        failed |= bool(safety or liveness)
        note = f" (replica lacks {', '.join(missing)})" if missing else ""
        print(f"{name:<20} n={args.replicas} seeds={args.seeds} safety_violations={safety} "
              f"liveness_failures={liveness} false_accusations={accusing} max_wait_after_heal={worst:.2f}s "
              f"cpu={time.process_time() - t0:.1f}s{note}")
        for warning in sc.expect(stats):
            print(f"{'':<20} warning: {warning}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
