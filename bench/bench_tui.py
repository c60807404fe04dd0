"""How fast `sovereign tui` comes up, and what a redraw costs, beside baselines in the same run.

    .venv/bin/python bench/bench_tui.py [--runs 5]

- Terminal start: `sovereign tui` launched in tmux (100x30) until the daemon's peer id is on the
  captured screen (connected, data loaded: the first *useful* frame), beside `sovereign status`
  (a CLI call to the same daemon, start to exit) and `sovereign tui` on a socket with no daemon
  until "disconnected" shows (the frame itself, without waiting for data).
- Redraw: one `refresh_views` with 100 peers, 50 batches and 2,000 events (in-process, headless),
  beside one `peers.list`-sized JSON decode, to put the UI's cost per redraw in proportion.

The polling of tmux adds up to POLL_S to each terminal figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from node.scaling.process import DaemonProcess  # noqa: E402
from tui.app import SovereignApp  # noqa: E402
from tui.state import DaemonState  # noqa: E402

POLL_S = 0.01


def tmux_until(root: Path, command: str, needle: str, timeout: float = 30.0) -> float:
    # A fresh tmux server per run: a socket whose server is still exiting refuses a new session.
    tmux = ["tmux", "-f", "/dev/null", "-S", tempfile.mktemp(prefix="tmux-", dir=root)]
    env = {**os.environ, "TERM": "xterm-256color"}
    start = time.monotonic()
    subprocess.run([*tmux, "new-session", "-d", "-x", "100", "-y", "30", command], check=True, env=env)
    try:
        while time.monotonic() - start < timeout:
            screen = subprocess.run([*tmux, "capture-pane", "-p"], capture_output=True, text=True).stdout
            if needle in screen:
                return time.monotonic() - start
            time.sleep(POLL_S)
        raise RuntimeError(f"{needle!r} never appeared on the screen")
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)


def cli_status(home: Path) -> float:
    start = time.monotonic()
    subprocess.run([sys.executable, "-m", "node", "--home", str(home), "status"], check=True, capture_output=True)
    return time.monotonic() - start


def big_state() -> DaemonState:
    s = DaemonState()
    peers = [
        {"peer_id": f"12D3KooW{i:044d}", "addrs": [f"/ip4/127.0.0.1/tcp/{40000 + i}"], "state": "alive",
         "connected": True, "last_seen_ago_s": 0.5, "latency_ms": 1.0, "version": "0.1.0",
         "capabilities": {"control": {"jsonrpc": "2.0"}, "federation": {"chain": "x"}}}
        for i in range(100)
    ]
    s.apply_status({"peer_id": "12D3KooWme", "listen_addrs": ["/ip4/127.0.0.1/tcp/1"], "peers": {"alive": 100}}, 0.0)
    s.apply_peers({"peers": peers})
    s.apply_federation({"role": "replica", "members": [p["peer_id"] for p in peers[:4]], "view": 0, "last_executed": 0})
    for i in range(2_000):
        s.apply_event({"topic": "federation.committed", "ts": 1, "data": {"seq": i + 1, "view": 0, "requests": 20}})
    return s


def redraw_cost(runs: int) -> tuple[float, float]:
    """(median ms per refresh_views, median ms to decode a 100-peer peers.list answer)."""
    state = big_state()
    raw = json.dumps({"peers": [vars(p) for p in state.peers.values()]})
    out: list[float] = []

    async def main() -> None:
        app = SovereignApp("/nonexistent", state=state, live=False)
        async with app.run_test(size=(100, 30)) as pilot:
            for tab in ("p", "f", "e", "o") * runs:
                await pilot.press(tab)
                start = time.perf_counter()
                app.refresh_views()
                out.append(time.perf_counter() - start)

    asyncio.run(main())
    decode = []
    for _ in range(runs * 4):
        start = time.perf_counter()
        json.loads(raw)
        decode.append(time.perf_counter() - start)
    return statistics.median(out) * 1000, statistics.median(decode) * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    if shutil.which("tmux") is None:
        sys.exit("bench_tui: needs tmux")
    root = Path(tempfile.mkdtemp(prefix="sovbt-", dir="/tmp"))
    daemon = DaemonProcess(root / "home")
    try:
        daemon.start()
        daemon.wait_ready()
        peer_id = daemon.call("node.id")["peer_id"]
        tui = f"{sys.executable} -m node --home {daemon.home} tui"
        nobody = f"{sys.executable} -m node --home {daemon.home} tui --socket {root}/none.sock"
        useful, frame, status = [], [], []
        for _ in range(args.runs):
            useful.append(tmux_until(root, tui, peer_id))
            frame.append(tmux_until(root, nobody, "disconnected"))
            status.append(cli_status(daemon.home))
        u, f, c = (statistics.median(x) for x in (useful, frame, status))
        print(f"# {os.cpu_count()} CPUs, python {sys.version.split()[0]}, {args.runs} runs each, medians")
        print(f"tui start to peer id on screen (tmux 100x30): {u * 1000:.0f} ms | `sovereign status` start to exit: "
              f"{c * 1000:.0f} ms | ratio {u / c:.2f}")
        print(f"tui start to first frame, no daemon (\"disconnected\" on screen): {f * 1000:.0f} ms | ratio to status {f / c:.2f}")
        ms, decode = redraw_cost(args.runs)
        print(f"redraw (refresh_views, 100 peers, 50 batches, 2,000 events): {ms:.2f} ms | decoding a 100-peer "
              f"peers.list answer: {decode:.3f} ms | ratio {ms / decode:.0f}")
    finally:
        daemon.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
