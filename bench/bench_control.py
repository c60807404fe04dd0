"""Control socket throughput and latency, against a bare trio line-echo server in the same run.

    .venv/bin/python bench/bench_control.py [--seconds N] [--rounds R]

Three servers run in their own processes (so the load generator is not on their trio loop):
- control: a real ControlServer with a `node.status` method returning a small dict;
- daemon: a whole `sovereign daemon` (libp2p host and discovery running) answering `node.status`;
- echo: the floor for any line protocol on trio: read lines from a Unix socket, `send_all` each
  line back, no JSON at all.
One client process (this one: a single-threaded selector loop, no GIL contention between client
threads) drives both the same two ways:
- pipelined: one connection, 64 requests kept in flight;
- 8 clients: 8 connections, each making sequential calls (one in flight per connection).
Latency is measured per call from send to receipt of its answer; with 64 in flight it includes the
queueing behind the other 63. Measurements alternate between the servers over several rounds so
drift in machine load hits both alike; results are pooled over rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from node.scaling.process import DaemonProcess  # noqa: E402 - after the path fix-up

WARMUP = 0.3
REQUEST = b'{"jsonrpc":"2.0","id":%d,"method":"node.status"}\n'


# --------------------------------------------------------------------------------------------
# Servers (each runs in a child process started with --serve)


def serve_control(path: str) -> None:
    import trio

    from node.control import ControlServer

    started = time.monotonic()

    async def status() -> dict[str, object]:
        return {
            "version": "0.1.0",
            "pid": os.getpid(),
            "uptime": round(time.monotonic() - started, 3),
            "addrs": ["/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWBench", "/ip4/10.0.0.2/tcp/4001/p2p/12D3KooWBench"],
            "peers": 7,
        }

    async def main() -> None:
        server = ControlServer(Path(path))
        server.register("node.status", status)
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve)
            print("ready", flush=True)

    trio.run(main)


def serve_echo(path: str) -> None:
    import trio

    async def echo(stream: trio.SocketStream) -> None:
        buf = b""
        try:
            while data := await stream.receive_some(1 << 16):
                *lines, buf = (buf + data).split(b"\n")
                for line in lines:
                    await stream.send_all(line + b"\n")
        except trio.BrokenResourceError:
            pass

    async def main() -> None:
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        await sock.bind(path)
        sock.listen(128)
        print("ready", flush=True)
        await trio.serve_listeners(echo, [trio.SocketListener(sock)])

    trio.run(main)


def start_server(kind: str, path: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", kind, "--socket", path], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        proc.kill()
        raise RuntimeError(f"{kind} server failed to start")
    return proc


# --------------------------------------------------------------------------------------------
# Load generator


@dataclass(frozen=True)
class Result:
    calls: int
    seconds: float
    latencies_ms: list[float]
    server_cpu: float  # CPU seconds the server process used while measured
    client_cpu: float

    @property
    def server_us_per_call(self) -> float:
        return self.server_cpu / self.calls * 1e6

    @property
    def rate(self) -> float:
        return self.calls / self.seconds

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def pool(results: list[Result]) -> Result:
    return Result(
        sum(r.calls for r in results),
        sum(r.seconds for r in results),
        [x for r in results for x in r.latencies_ms],
        sum(r.server_cpu for r in results),
        sum(r.client_cpu for r in results),
    )


def cpu_seconds(pid: int) -> float:
    """user + system CPU time of a process (Linux /proc): robust to other load on the machine."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def drive(path: str, server_pid: int, connections: int, window: int, seconds: float) -> Result:
    """Keep `window` calls in flight on each of `connections` connections for `seconds`."""
    sel = selectors.DefaultSelector()
    socks = []
    sent_at: dict[int, int] = {}
    next_id = 0
    perf = time.perf_counter_ns
    for _ in range(connections):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        socks.append(s)
        sel.register(s, selectors.EVENT_READ, [b"", len(socks) - 1])  # [partial line, index]
        batch = []
        for _ in range(window):
            sent_at[next_id] = perf()
            batch.append(REQUEST % next_id)
            next_id += 1
        s.sendall(b"".join(batch))

    start = perf()
    measure_from = start + int(WARMUP * 1e9)
    stop = measure_from + int(seconds * 1e9)
    latencies: list[float] = []
    calls = 0
    now = start
    cpu_from: tuple[float, float] | None = None
    while now < stop:
        if cpu_from is None and now >= measure_from:
            cpu_from = (cpu_seconds(server_pid), time.process_time())
        for key, _ in sel.select(timeout=5):
            conn = socks[key.data[1]]
            state = key.data
            data = conn.recv(1 << 16)
            if not data:
                raise RuntimeError("server closed the connection")
            *lines, state[0] = (state[0] + data).split(b"\n")
            now = perf()
            batch = []
            for line in lines:
                msg = json.loads(line)
                if "error" in msg:
                    raise RuntimeError(f"error response: {msg}")
                began = sent_at.pop(msg["id"])
                if now >= measure_from:
                    latencies.append((now - began) / 1e6)
                    calls += 1
                sent_at[next_id] = now
                batch.append(REQUEST % next_id)
                next_id += 1
            if batch:
                conn.sendall(b"".join(batch))
    assert cpu_from is not None
    server_cpu, client_cpu = cpu_seconds(server_pid) - cpu_from[0], time.process_time() - cpu_from[1]
    for s in socks:
        sel.unregister(s)
        s.close()
    sel.close()
    return Result(calls, (now - measure_from) / 1e9, latencies, server_cpu, client_cpu)


def describe(r: Result) -> str:
    return f"{r.rate:,.0f} calls/s p50 {r.pct(0.5):.2f} ms p99 {r.pct(0.99):.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0, help="measured seconds per run (default 2)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per server (default 3)")
    parser.add_argument("--inflight", type=int, default=64)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--serve", choices=["control", "echo"], help=argparse.SUPPRESS)
    parser.add_argument("--socket", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve == "control":
        return serve_control(args.socket)
    if args.serve == "echo":
        return serve_echo(args.socket)

    tmp = tempfile.mkdtemp(prefix="sov-bench-", dir="/tmp")
    paths = {"control": os.path.join(tmp, "control.sock"), "echo": os.path.join(tmp, "echo.sock")}
    procs = {kind: start_server(kind, path) for kind, path in paths.items()}
    # And a whole daemon (libp2p host, discovery loops) answering its real `node.status`.
    daemon = DaemonProcess(Path(tmp) / "daemon")
    daemon.start()
    daemon.wait_ready()
    paths["daemon"] = str(daemon.socket_path)
    pids = {**{kind: proc.pid for kind, proc in procs.items()}, "daemon": daemon.pid}
    modes = {
        "pipelined": (1, args.inflight, f"1 connection, {args.inflight} in flight"),
        "8 clients": (args.clients, 1, f"{args.clients} connections, sequential calls"),
    }
    results: dict[tuple[str, str], list[Result]] = {}
    try:
        for _ in range(args.rounds):
            for mode, (conns, window, _) in modes.items():
                for kind, path in paths.items():
                    r = drive(path, pids[kind], conns, window, args.seconds)
                    results.setdefault((kind, mode), []).append(r)
    finally:
        for proc in procs.values():
            proc.terminate()
            proc.wait()
        daemon.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    load = os.getloadavg()
    print(
        f"# {os.cpu_count()} CPUs, load average {load[0]:.1f}; {args.rounds} rounds x {args.seconds:g} s per "
        f"measurement; python {sys.version.split()[0]}"
    )
    for mode, (_, _, what) in modes.items():
        control, echo = pool(results[("control", mode)]), pool(results[("echo", mode)])
        spread = [f"{r.rate:,.0f}" for r in results[("control", mode)]]
        print(
            f"control {mode}: {describe(control)} | echo baseline {echo.rate:,.0f}/s "
            f"p50 {echo.pct(0.5):.2f} ms | ratio {control.rate / echo.rate:.2f}"
        )
        print(
            f"  ({what}; control per round {', '.join(spread)}; server CPU per call: control "
            f"{control.server_us_per_call:.1f} us, echo {echo.server_us_per_call:.1f} us, CPU ratio "
            f"{echo.server_us_per_call / control.server_us_per_call:.2f}; client CPU per call "
            f"{control.client_cpu / control.calls * 1e6:.1f} us)"
        )
        real = pool(results[("daemon", mode)])
        print(
            f"real daemon node.status {mode}: {describe(real)} | ratio to echo {real.rate / echo.rate:.2f}"
        )
    best = max(pool(results[("control", m)]).rate for m in modes)
    seq = pool(results[("control", "8 clients")])
    ratios = [pool(results[("control", m)]).rate / pool(results[("echo", m)]).rate for m in modes]
    print(
        f"targets: >= 5,000 calls/s {'met' if best >= 5000 else 'MISSED'} ({best:,.0f}); "
        f"p50 <= 1 ms (8 clients) {'met' if seq.pct(0.5) <= 1 else 'MISSED'} ({seq.pct(0.5):.2f} ms); "
        f">= 0.3 of echo {'met' if min(ratios) >= 0.3 else 'MISSED'} (min ratio {min(ratios):.2f})"
    )


if __name__ == "__main__":
    main()
