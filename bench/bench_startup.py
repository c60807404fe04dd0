"""Start-to-READY and idle RSS of one daemon, beside `python -c "import libp2p"` in the same run.

    .venv/bin/python bench/bench_startup.py [--runs 5]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from node.scaling.process import DaemonProcess


def import_time() -> float:
    """Process start until `import libp2p` has finished (not until the interpreter has torn
    down again, which READY does not include either)."""
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-c", "import libp2p; print('ok', flush=True)"], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"ok\n"
    took = time.monotonic() - start
    proc.wait()
    return took


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def daemon_ready(root: Path, i: int) -> tuple[float, float, float]:
    """(start to READY, idle RSS in MB, SIGTERM to exit) of one daemon."""
    node = DaemonProcess(root / f"n{i}")
    node.start()
    try:
        ready = node.wait_ready(60)
        time.sleep(2)  # idle a moment: RSS after start-up allocations settle
        rss = rss_mb(node.pid)
        start = time.monotonic()
        code = node.stop(timeout=10)
        stop = time.monotonic() - start
        assert code == 0, node.log_tail()
        return ready, rss, stop
    finally:
        node.stop()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=5)
    runs = p.parse_args().runs
    root = Path(tempfile.mkdtemp(prefix="sovstart-", dir="/tmp"))
    try:
        daemon_ready(root, -1)  # warm the page cache and create nothing we then measure
        imports, readies, rss, stops = [], [], [], []
        for i in range(runs):
            imports.append(import_time())
            r, m, s = daemon_ready(root, i)
            readies.append(r)
            rss.append(m)
            stops.append(s)
        imp, rdy = statistics.median(imports), statistics.median(readies)
        print(
            f"startup: READY median {rdy:.3f} s (target <= 1.5 s) | bare `import libp2p` {imp:.3f} s | "
            f"ratio {rdy / imp:.2f} (target <= 1.6) | idle RSS median {statistics.median(rss):.1f} MB (target <= 90 MB) | "
            f"SIGTERM to exit median {statistics.median(stops):.3f} s max {max(stops):.3f} s (target <= 2 s)"
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
