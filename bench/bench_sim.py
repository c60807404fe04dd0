"""Simulator speed: seeds per minute for `--scenario all` at n = 4 (one seed = one run of every
supported scenario), on one core, beside a baseline measured in the same run: the same replicas
and clients driven by a bare FIFO loop (no wire encoding, no network model, no checkers), which is
the floor any simulator of this replica pays.

    .venv/bin/python bench/bench_sim.py [--seeds 20] [--replicas 4]

Target (issue 3): >= 10,000 seeds per hour.
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.sim lives in the repo, not the package

from protocols.pbft import app as kv  # noqa: E402
from protocols.pbft import effects as fx  # noqa: E402
from protocols.pbft.app import KVStore  # noqa: E402
from protocols.pbft.config import PbftConfig  # noqa: E402
from protocols.pbft.messages import Request  # noqa: E402
from protocols.pbft.replica import Replica  # noqa: E402
from tests.sim.scenarios import SCENARIOS, replica_features  # noqa: E402


def bare_normal_load(n: int, requests: int) -> int:
    """The `normal` scenario's load (3 closed-loop clients), messages delivered FIFO at once,
    timers ignored (nothing is lost, so none is needed). Returns requests completed."""
    members = tuple(f"r{i}" for i in range(n))
    cfg = PbftConfig(members=members, checkpoint_interval=8, window=16, max_batch=4, batch_delay=0.0, request_timeout=0.25)
    reps = {m: Replica(m, cfg, KVStore()) for m in members}
    queue: collections.deque = collections.deque()
    done = 0
    ts = {f"c{i}": 1 for i in range(3)}
    votes: dict[tuple[str, int], set[str]] = {}
    timers: list[tuple[str, str]] = []

    def run(src: str, effects: list) -> None:
        for e in effects:
            t = type(e)
            if t is fx.Broadcast:
                for m in members:
                    if m != src:
                        queue.append((m, src, e.message))
            elif t is fx.Send:
                queue.append((e.to, src, e.message))
            elif t is fx.SendReply:
                queue.append((e.client_id, src, e.reply))
            elif t is fx.SetTimer and e.key == "batch":
                timers.append((src, e.key))

    def submit(c: str) -> None:
        run(members[0], reps[members[0]].on_request(Request(c, ts[c], kv.put("k", b"v")), 0.0))

    for c in ts:
        submit(c)
    while queue or timers:
        if not queue:
            src, key = timers.pop(0)
            run(src, reps[src].on_timer(key, 0.0))
            continue
        dst, src, msg = queue.popleft()
        if dst in reps:
            run(dst, reps[dst].on_message(src, msg, 0.0))
            continue
        vote = (dst, msg.timestamp)
        if msg.timestamp == ts[dst]:
            votes.setdefault(vote, set()).add(src)
            if len(votes[vote]) == cfg.f + 1:
                done += 1
                ts[dst] += 1
                if done + 3 <= requests:
                    submit(dst)
    return done


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--replicas", type=int, default=4)
    args = ap.parse_args()
    features = replica_features()
    names = [name for name, sc in SCENARIOS.items() if sc.supported(features)]
    per_scenario: dict[str, float] = {}
    runs = failures = 0
    t0 = time.process_time()
    for name in names:
        s0 = time.process_time()
        for seed in range(args.seeds):
            res = SCENARIOS[name].build(args.replicas, seed).run()
            runs += 1
            failures += not res.ok
        per_scenario[name] = (time.process_time() - s0) / args.seeds
    total = time.process_time() - t0
    per_all_seed = total / args.seeds
    print(f"scenarios: {len(names)} supported of {len(SCENARIOS)}; n={args.replicas}; {args.seeds} seeds each; "
          f"{failures} failed runs")
    for name, t in sorted(per_scenario.items(), key=lambda kv: -kv[1]):
        print(f"  {name:<20} {t * 1000:7.1f} ms CPU per seed")
    print(f"all: {60 / per_all_seed:,.0f} seeds/minute = {3600 / per_all_seed:,.0f} seeds/hour on one core "
          f"(target 10,000/hour); {runs / total * 60:,.0f} scenario runs/minute")

    # Baseline: the bare protocol on the `normal` load, per completed request, vs the sim's.
    ops = 3 * 8
    b0 = time.process_time()
    reps = 0
    while time.process_time() - b0 < 1.0:
        assert bare_normal_load(args.replicas, ops) == ops
        reps += 1
    bare = (time.process_time() - b0) / reps
    sim = per_scenario.get("normal", float("nan"))
    print(f"baseline: bare FIFO driver {bare * 1000:.1f} ms per `normal` load ({ops} requests); "
          f"the simulator {sim * 1000:.1f} ms, ratio {sim / bare:.2f}x")


if __name__ == "__main__":
    main()
