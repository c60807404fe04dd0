"""Discovery at scale: N daemon processes on 127.0.0.1, bootstrapped to the first.

Measures, for each N: the time from the last daemon's READY until every node lists every other
as alive, and the time from `kill -9` of one node until every survivor lists it dead. The
baseline is the configured failure detector itself: dead cannot be declared before `dead_after`
seconds of silence, so the detection figure is also printed as a ratio to that timeout.

    .venv/bin/python bench/bench_discovery.py [--nodes 8 16]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import threading
import tempfile
import time
from pathlib import Path

from node.scaling.process import DaemonProcess

DEAD_AFTER = 3.0


def states(node: DaemonProcess) -> dict[str, str]:
    return {p["peer_id"]: p["state"] for p in node.call("peers.list", timeout=10)["peers"]}


def wait(pred, timeout: float) -> float:  # type: ignore[no-untyped-def]
    start = time.monotonic()
    while not pred():
        if time.monotonic() - start > timeout:
            raise TimeoutError
        time.sleep(0.02)
    return time.monotonic()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(n: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="sovbench-", dir="/tmp"))
    nodes: list[DaemonProcess] = []
    try:
        first = DaemonProcess(root / "n0")
        nodes.append(first)
        first.start()
        first.wait_ready(60)
        boot = first.call("node.id")["addrs"][0]
        for i in range(1, n):
            nodes.append(DaemonProcess(root / f"n{i}", bootstrap=[boot]))
        for node in nodes[1:]:
            node.start()
        for node in nodes[1:]:
            node.wait_ready(120)
        last_ready = max(node.ready_at for node in nodes)
        ids = [node.call("node.id")["peer_id"] for node in nodes]

        def meshed() -> bool:
            return all(
                sum(1 for s in states(node).values() if s == "alive") == n - 1 for node in nodes
            )

        try:
            meshed_at = wait(meshed, 120)
        except TimeoutError:
            counts = [sum(1 for s in states(node).values() if s == "alive") for node in nodes]
            raise SystemExit(f"n={n}: no full mesh after 120 s; alive peers seen per node: {counts}; logs in {root}")
        time.sleep(3)  # let the federation idle before reading memory and CPU
        rss = [rss_mb(node.pid) for node in nodes]
        cpu0 = [cpu_s(node.pid) for node in nodes]
        time.sleep(5)
        cpu = [(cpu_s(node.pid) - c) / 5 * 100 for node, c in zip(nodes, cpu0)]

        # Detection is timed by the survivors themselves: each reports `peer.left` with its
        # own wall-clock timestamp, so polling delays of this harness do not count.
        victim = nodes[-1]
        survivors = nodes[:-1]
        left_ms: dict[int, int] = {}
        subscribed = threading.Barrier(len(survivors) + 1)

        def watch(i: int, node: DaemonProcess) -> None:
            with node.client(timeout=30) as client:
                events = client.subscribe(["peer.left"], timeout=30)
                subscribed.wait()
                for event in events:
                    if event["data"]["peer_id"] == ids[-1]:
                        left_ms[i] = event["ts"]
                        return

        threads = [threading.Thread(target=watch, args=(i, node)) for i, node in enumerate(survivors)]
        for t in threads:
            t.start()
        subscribed.wait()
        killed_ms = time.time_ns() // 1_000_000
        victim.kill()
        for t in threads:
            t.join(60)
        if len(left_ms) < len(survivors):
            raise SystemExit(f"n={n}: only {len(left_ms)} of {len(survivors)} survivors reported the death")
        detect = (max(left_ms.values()) - killed_ms) / 1000
        median_detect = (statistics.median(left_ms.values()) - killed_ms) / 1000
        print(
            f"discovery n={n}: full mesh {meshed_at - last_ready:.2f} s after last READY "
            f"(target <= 3 s) | dead everywhere {detect:.2f} s after kill -9 "
            f"(median survivor {median_detect:.2f} s; target <= 3 s; dead_after {DEAD_AFTER:g} s, "
            f"ratio {detect / DEAD_AFTER:.2f}) | "
            f"idle RSS median {statistics.median(rss):.1f} MB max {max(rss):.1f} MB | "
            f"idle CPU per daemon median {statistics.median(cpu):.1f}% of a core, all {sum(cpu):.0f}% "
            f"of {os.cpu_count()} cores"
        )
    finally:
        for node in reversed(nodes):
            node.stop()
        if sys.exc_info()[0] is None:
            shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--nodes", type=int, nargs="+", default=[8, 16])
    for n in p.parse_args().nodes:
        run(n)


if __name__ == "__main__":
    main()
