"""`sovereign demo`: N daemons on 127.0.0.1, bootstrapped to the first, until Ctrl-C."""

from __future__ import annotations

import json
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from node.scaling.process import DaemonProcess


def _alive_counts(nodes: list[DaemonProcess]) -> list[int]:
    counts = []
    for n in nodes:
        try:
            peers = n.call("peers.list", timeout=5)["peers"]
        except Exception:  # noqa: BLE001 - a node still starting just counts as seeing no one
            counts.append(0)
            continue
        counts.append(sum(1 for p in peers if p["state"] == "alive"))
    return counts


def _table(nodes: list[DaemonProcess], ids: list[str], addrs: list[str]) -> str:
    counts = _alive_counts(nodes)
    lines = [f"{'#':>2}  {'PEER ID':<52}  {'SEES':>4}  ADDRESS"]
    for i, n in enumerate(nodes):
        lines.append(f"{i:>2}  {ids[i]:<52}  {counts[i]:>4}  {addrs[i]}")
    return "\n".join(lines)


def run_demo(count: int, directory: Path | None, timeout: float, *, as_json: bool = False) -> int:
    root = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="sovereign-demo-"))
    nodes: list[DaemonProcess] = []
    # Our children run in their own sessions, so Ctrl-C reaches only us; we stop them, in order,
    # so none is left behind. SIGTERM is treated like Ctrl-C.
    def on_signal(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, on_signal)
    try:
        first = DaemonProcess(root / "node-0")
        nodes.append(first)
        first.start()
        first.wait_ready()
        boot = first.call("node.id")["addrs"][0]
        for i in range(1, count):
            nodes.append(DaemonProcess(root / f"node-{i}", bootstrap=[boot]))
            nodes[-1].start()
        for n in nodes[1:]:
            n.wait_ready()
        ids, addrs = [], []
        for n in nodes:
            r = n.call("node.id")
            ids.append(r["peer_id"])
            addrs.append(r["addrs"][0])
        start = time.monotonic()
        while min(_alive_counts(nodes)) < count - 1:
            if time.monotonic() - start > timeout:
                print(_table(nodes, ids, addrs))
                print(f"not all {count} nodes saw each other within {timeout:g} s; logs in {root}")
                return 1
            time.sleep(0.1)  # polling a condition in an interactive tool, not a test
        took = time.monotonic() - start
        if as_json:
            print(json.dumps({"nodes": [{"peer_id": i, "addr": a} for i, a in zip(ids, addrs)], "meshed_s": took}))
        else:
            print(_table(nodes, ids, addrs))
            print(f"\nall {count} nodes see each other ({took:.2f} s after the last was ready); homes in {root}")
            cli = Path(sys.executable).with_name("sovereign")
            print(f"try:  {cli} --home {root / 'node-0'} peers        (Ctrl-C stops them all)")
        while True:
            time.sleep(5)
            if any(n.poll() is not None for n in nodes):
                print("a daemon exited unexpectedly:")
                for n in nodes:
                    if n.poll() is not None:
                        print(n.home, n.log_tail(10))
                return 1
            if not as_json:
                print(time.strftime("%H:%M:%S"), "alive peers seen by each node:", _alive_counts(nodes))
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGTERM, old)
        for n in reversed(nodes):
            n.stop()
        if directory is None:
            shutil.rmtree(root, ignore_errors=True)
        if not as_json:
            print("stopped", len(nodes), "daemons")
