"""The PBFT protocol's own cost: committed requests per CPU-second, n = 4 in one process.

Network and signatures are excluded (messages are handed over as objects); the wire codec is
measured separately as a second line, since the daemon pays it on every message. The baseline in
the same run is the application alone: the same requests applied to one KVStore with no
replication, so the ratio is the price of agreement in CPU.

    .venv/bin/python bench/bench_pbft.py [--requests N]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import deque
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from protocols.pbft import (  # noqa: E402 - after the path fix-up
    Broadcast,
    Executed,
    KVStore,
    PbftConfig,
    Replica,
    Request,
    Send,
    SetTimer,
    decode_message,
    encode_message,
)
from protocols.pbft.app import put  # noqa: E402


def run(requests: int, batch: int, codec: bool) -> float:
    """Requests committed per CPU-second (all four replicas' work together)."""
    members = tuple(f"r{i}" for i in range(4))
    config = PbftConfig(members, max_batch=batch, batch_delay=0.001, checkpoint_interval=128, window=256)
    replicas = {m: Replica(m, config, KVStore()) for m in members}
    primary = config.primary(0)
    queue: deque[tuple[str, str, object]] = deque()
    timers: dict[tuple[str, str], float] = {}
    executed = 0
    now = 0.0

    def take(rid: str, effects: list) -> None:  # type: ignore[type-arg]
        nonlocal executed
        for e in effects:
            if isinstance(e, Send):
                queue.append((rid, e.to, e.message))
            elif isinstance(e, Broadcast):
                for m in members:
                    if m != rid:
                        queue.append((rid, m, e.message))
            elif isinstance(e, SetTimer):
                timers[(rid, e.key)] = e.at
            elif isinstance(e, Executed) and rid == primary:
                executed += len(e.batch)

    ops = [put(f"k{i % 1000}", f"v{i}".encode()) for i in range(requests)]
    start = time.process_time()
    sent = 0
    while executed < requests:
        # Keep the pipeline full: offer a window's worth of requests, then drain the queue.
        while sent < requests and sent - executed < batch * 8:
            req = Request(client_id=f"c{sent % 64}", timestamp=sent + 1, op=ops[sent])
            take(primary, replicas[primary].on_request(req, now))
            sent += 1
        while queue:
            src, dst, msg = queue.popleft()
            if codec:
                msg = decode_message(encode_message(msg))  # type: ignore[arg-type]
            take(dst, replicas[dst].on_message(src, msg, now))  # type: ignore[arg-type]
        # Let batch timers fire (virtual time; no waiting).
        now += config.batch_delay
        for (rid, key), at in sorted(timers.items(), key=lambda kv: kv[1]):
            if at <= now:
                del timers[(rid, key)]
                take(rid, replicas[rid].on_timer(key, now))
    return requests / (time.process_time() - start)


def baseline(requests: int) -> float:
    app = KVStore()
    ops = [put(f"k{i % 1000}", f"v{i}".encode()) for i in range(requests)]
    start = time.process_time()
    for op in ops:
        app.apply(op)
    return requests / (time.process_time() - start)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--requests", type=int, default=20_000)
    n = p.parse_args().requests
    base = baseline(n)
    for codec in (False, True):
        for batch in (1, 100):
            rate = run(n if batch > 1 else n // 4, batch, codec)
            what = "with wire codec" if codec else "objects only"
            print(
                f"pbft n=4 batch {batch:>3} ({what}): {rate:,.0f} committed requests per CPU-second "
                f"(target >= 50,000 at batch 100, objects only) | unreplicated KVStore {base:,.0f}/s | ratio {rate / base:.3f}"
            )


if __name__ == "__main__":
    main()
