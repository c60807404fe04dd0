"""The federation end to end: committed transfers through real daemons, against one unreplicated
daemon and the raw libp2p stream in the same run, and recovery from the primary's `kill -9`.

    .venv/bin/python bench/bench_federation.py [--seconds N] [--recoveries R]

What runs:
- 4 replica daemons on 127.0.0.1 (temp homes from `create_federation_homes`), bootstrapped to the
  first. One load process per node (multiprocessing, so the load generator's CPU is not in this
  process's GIL) submits `ledger.transfer` over that node's control socket: pipelined JSON-RPC on
  one connection. Latency is submit -> receipt, i.e. the answer to `ledger.transfer`, which comes
  once f+1 replicas have replied with the same receipt.
  * saturation: closed loop, K requests kept in flight per node; K is raised until throughput
    stops growing (< 5% more) and the best step is reported;
  * 1,000 tx/s offered: open loop, paced (250 tx/s per node), latency from the scheduled send
    time (so a stalled system cannot hide its backlog); if it cannot keep up, lower rates are
    tried and the highest sustained one is reported.
- Baseline: 1 daemon whose genesis names a committee of one (same code path: PBFT with f = 0,
  no replication), the same load processes all on its socket, the same sweep and the same
  1,000 tx/s open loop.
- The raw one-way message rate of one libp2p stream between two processes (two `open_network`
  hosts, `serve_frames` counting, `open_frame_stream(...).send_many` pushing 200-byte frames,
  64 per write as the PBFT links do, and one per write), against the same frames over a bare TCP
  socket between two processes.
- Recovery: 4 fresh replicas with SOVEREIGN_REQUEST_TIMEOUT=1.0 under a steady open-loop load;
  `kill -9` of the primary (as `federation.status` names it); recovery is the time from the kill
  to the first receipt of a transfer submitted after the kill (such a transfer can only be
  ordered in a new view: the old primary is dead). Client-side ack timestamps (CLOCK_MONOTONIC,
  shared by all processes). Repeated on a fresh federation each time; median and max; the ratio
  is to the request timeout (a view change cannot start before it).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import selectors
import shutil
import socket
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from node.federation.homes import create_federation_homes  # noqa: E402 - after the path fix-up
from node.scaling.process import DaemonProcess  # noqa: E402

REQUEST = b'{"jsonrpc":"2.0","id":%d,"method":"ledger.transfer","params":{"to":"%s","amount":1,"timeout":60}}\n'
REPLICAS = 4
OFFERED = 1000.0
WARMUP = 1.0
SWEEP = (8, 32, 64, 128)  # in flight per load process (a daemon's client has 64 lanes)
RECOVERY_TIMEOUT = 1.0
RECOVERY_RATE = 50.0  # tx/s offered per node during the recovery runs
KILL_AFTER = 2.0
AFTER_KILL = 7.0
FRAME_BYTES = 200
STREAM_PROTOCOL = "/sovereign/bench-frames/1"


# --------------------------------------------------------------------------------------------
# Load processes: one per node, driven over a pipe by the bench


@dataclass
class LoadResult:
    acks: int = 0  # receipts whose ack falls in the measured window (closed) / scheduled in it (open)
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    refused: int = 0
    backlog: int = 0  # still unanswered when the measured window ended (open loop)
    unanswered: int = 0  # scheduled in the window and still unanswered after the drain (open loop)
    answered_in_window: int = 0  # receipts that arrived within the window (open loop throughput)
    records: list[tuple[float, float, bool]] = field(default_factory=list)  # (sent, acked, ok): recovery
    cpu: float = 0.0
    note: str = ""


def _run_load(path: str, to: str, cmd: dict[str, Any]) -> LoadResult:
    """One measurement on one connection. cmd: mode ("closed" | "open" | "record"), inflight or
    rate, start_at (CLOCK_MONOTONIC), warmup, seconds."""
    mode = cmd["mode"]
    start_at, warmup, seconds = cmd["start_at"], cmd["warmup"], cmd["seconds"]
    measure_from = start_at + warmup
    stop = measure_from + seconds
    res = LoadResult(seconds=seconds)
    to_b = to.encode()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    s.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(s, selectors.EVENT_READ)
    sent_at: dict[int, float] = {}
    next_id = 0
    buf = b""
    out = bytearray()
    now = time.monotonic
    cpu0 = time.process_time()
    while now() < start_at:
        time.sleep(min(0.01, max(0.0, start_at - now())))

    def send(ids_times: list[float]) -> None:
        nonlocal next_id
        for t in ids_times:
            sent_at[next_id] = t
            out.extend(REQUEST % (next_id, to_b))
            next_id += 1

    if mode == "closed":
        send([now()] * cmd["inflight"])
    rate = cmd.get("rate", 0.0)
    sched_n = 0
    drain_until = None
    closed = False
    while True:
        t = now()
        if drain_until is None and t >= stop:
            drain_until = t + cmd.get("drain", 15.0)
            res.backlog = len(sent_at)
        if drain_until is not None and (not sent_at or t >= drain_until):
            break
        if mode in ("open", "record") and drain_until is None:
            due = []
            while start_at + sched_n / rate <= t:
                due.append(start_at + sched_n / rate)
                sched_n += 1
            if due:
                send(due)
        if out:
            try:
                n = s.send(out)
                del out[:n]
            except BlockingIOError:
                pass
            except OSError:
                closed = True
                break
        if mode in ("open", "record") and drain_until is None:
            timeout = max(0.0, start_at + sched_n / rate - now())
        else:
            timeout = 0.05
        events = sel.select(timeout=min(timeout, 0.05) if not out else 0)
        if not events:
            continue
        try:
            data = s.recv(1 << 18)
        except BlockingIOError:
            continue
        except OSError:
            data = b""
        if not data:
            closed = True
            break
        *lines, buf = (buf + data).split(b"\n")
        t = now()
        for line in lines:
            msg = json.loads(line)
            began = sent_at.pop(msg["id"])
            ok = "result" in msg
            if mode == "record":
                res.records.append((began, t, ok))
                continue
            if ok and measure_from <= t < stop:
                res.answered_in_window += 1
            counted = (measure_from <= t < stop) if mode == "closed" else (measure_from <= began < stop)
            if not counted:
                continue
            if not ok:
                res.errors += 1
                continue
            res.acks += 1
            res.latencies_ms.append((t - began) * 1000)
            if msg["result"]["status"] != "applied":
                res.refused += 1
        if mode == "closed" and drain_until is None:
            # Keep the window full: requests answered outside the measured window refill too.
            missing = cmd["inflight"] - len(sent_at)
            if missing > 0:
                send([t] * missing)
    if closed and mode != "record":
        res.note = "connection closed by the daemon"
    res.unanswered = sum(1 for b in sent_at.values() if measure_from <= b < stop)
    res.cpu = time.process_time() - cpu0
    sel.close()
    s.close()
    return res


def load_worker(conn: Any, path: str, to: str) -> None:
    while True:
        cmd = conn.recv()
        if cmd is None:
            return
        try:
            conn.send(_run_load(path, to, cmd))
        except Exception as exc:  # noqa: BLE001 - reported to the bench, which fails loudly
            conn.send(RuntimeError(f"load on {path}: {type(exc).__name__}: {exc}"))


class Load:
    """One load process per socket path (several may point at the same daemon)."""

    def __init__(self, paths: list[str], to: str) -> None:
        ctx = mp.get_context("fork")
        self.pipes, self.procs = [], []
        for path in paths:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=load_worker, args=(child, path, to), daemon=True)
            proc.start()
            self.pipes.append(parent)
            self.procs.append(proc)

    def start(self, **cmd: Any) -> float:
        cmd.setdefault("warmup", WARMUP)
        cmd["start_at"] = time.monotonic() + 0.2
        for p in self.pipes:
            p.send(cmd)
        return cmd["start_at"]

    def results(self) -> list[LoadResult]:
        out = []
        for p in self.pipes:
            r = p.recv()
            if isinstance(r, Exception):
                raise r
            out.append(r)
        return out

    def run(self, **cmd: Any) -> list[LoadResult]:
        self.start(**cmd)
        return self.results()

    def close(self) -> None:
        for p in self.pipes:
            try:
                p.send(None)
            except OSError:
                pass
        for proc in self.procs:
            proc.join(2)
            if proc.is_alive():
                proc.kill()
                proc.join()


@dataclass
class Step:
    label: str
    rate: float  # committed tx/s
    latencies_ms: list[float]
    errors: int
    refused: int
    backlog: int
    client_cpu: float
    unanswered: int = 0

    def pct(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def describe(self) -> str:
        extra = []
        if self.errors:
            extra.append(f"{self.errors} errors")
        if self.refused:
            extra.append(f"{self.refused} refused")
        if self.unanswered:
            extra.append(f"{self.unanswered} never answered")
        lat = f"p50 {self.pct(0.5):.1f} ms p99 {self.pct(0.99):.1f} ms" if self.latencies_ms else "no receipts"
        return f"{self.rate:,.0f} tx/s {lat}" + (f" ({', '.join(extra)})" if extra else "")


def pooled(label: str, results: list[LoadResult], seconds: float, *, by_arrival: bool = False) -> Step:
    return Step(
        label,
        sum(r.answered_in_window if by_arrival else r.acks for r in results) / seconds,
        [x for r in results for x in r.latencies_ms],
        sum(r.errors for r in results),
        sum(r.refused for r in results),
        sum(r.backlog for r in results),
        sum(r.cpu for r in results),
        sum(r.unanswered for r in results),
    )


def saturate(load: Load, seconds: float, settle: Any) -> tuple[Step, list[Step]]:
    steps: list[Step] = []
    best: Step | None = None
    for k in SWEEP:
        settle()
        step = pooled(f"K={k}", load.run(mode="closed", inflight=k, seconds=seconds), seconds)
        steps.append(step)
        if best is not None and step.rate < best.rate * 1.05:
            if step.rate > best.rate:
                best = step
            break
        best = step
    assert best is not None
    return best, steps


def sustained(step: Step, offered: float) -> bool:
    """Receipts kept pace with the offered rate, none was lost, and no backlog built up."""
    return step.rate >= 0.95 * offered and step.unanswered == 0 and step.errors == 0 and step.pct(0.5) < 1000


def open_loop(load: Load, rate: float, seconds: float, settle: Any) -> Step:
    settle()
    results = load.run(mode="open", rate=rate / len(load.pipes), seconds=seconds, drain=5.0)
    return pooled(f"{rate:,.0f}/s", results, seconds, by_arrival=True)


def probe_lower(load: Load, offered: float, seconds: float, best_rate: float, settle: Any) -> Step:
    """Fractions of min(offered, closed-loop best), ascending, up to the first not sustained (an
    overloaded federation can take long to recover, so nothing is measured after a failure):
    the highest sustained step, or the first step if none was."""
    top = min(offered, best_rate)
    found: Step | None = None
    for fraction in (0.25, 0.5, 0.75):
        step = open_loop(load, round(top * fraction, -1) or 10.0, seconds, settle)
        if not sustained(step, step_rate(step)):
            return found or step
        found = step
    assert found is not None
    return found


def step_rate(step: Step) -> float:
    return float(step.label.split("/")[0].replace(",", ""))


# --------------------------------------------------------------------------------------------
# Federations of daemons


class StartFailed(Exception):
    pass


STARTS_FAILED: list[str] = []  # fresh federations whose first transfers did not commit (retried once)


def started(root: Path, count: int, env: dict[str, str] | None = None) -> "Federation":
    for attempt in range(3):
        fed = Federation(root / f"try{attempt}", count, env=env)
        try:
            fed.start()
            return fed
        except StartFailed as exc:
            fed.stop()
            STARTS_FAILED.append(str(exc))
            if attempt == 2:
                raise
        except BaseException:
            fed.stop()
            raise
    raise AssertionError("unreachable")


class Federation:
    def __init__(self, root: Path, count: int, *, env: dict[str, str] | None = None) -> None:
        self.root = root
        self.homes, self.ids, _ = create_federation_homes(root, count, chain_id="bench", members=count)
        self.nodes: list[DaemonProcess] = []
        self.env = {**os.environ, **(env or {})}

    def start(self) -> None:
        first = DaemonProcess(self.homes[0], env=self.env)
        self.nodes.append(first)
        first.start()
        first.wait_ready(60)
        boot = first.call("node.id")["addrs"][0]
        for home in self.homes[1:]:
            node = DaemonProcess(home, bootstrap=[boot], env=self.env)
            self.nodes.append(node)
            node.start()
        for node in self.nodes[1:]:
            node.wait_ready(60)
        # Every node sees every other alive before the first transfer (else the first requests race
        # the dials, and the primary may time itself out alone).
        deadline = time.monotonic() + 30
        while len(self.nodes) > 1 and time.monotonic() < deadline:
            alive = [
                sum(1 for p in n.call("peers.list")["peers"] if p["state"] == "alive") for n in self.nodes
            ]
            if min(alive) >= len(self.nodes) - 1:
                break
            time.sleep(0.05)
        # One transfer from each node, in turn: links open, every replica has executed something.
        for i, node in enumerate(self.nodes):
            try:
                r = node.call("ledger.transfer", {"to": self.ids[0], "amount": 1, "timeout": 30}, timeout=40)
            except Exception as exc:
                try:
                    views: Any = [n.call("federation.status")["view"] for n in self.nodes]
                except Exception:  # noqa: BLE001 - only for the message
                    views = "?"
                raise StartFailed(f"node {i}: first transfer failed: {exc}; views {views}") from None
            assert r["status"] == "applied", r

    def settle(self, timeout: float = 10.0) -> None:
        """Wait until no node's client holds a transaction (what a previous step left behind)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(n.call("federation.status")["client_in_flight"] == 0 for n in self.nodes):
                return
            time.sleep(0.1)

    def stop(self) -> None:
        for node in reversed(self.nodes):
            node.stop()


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure_federation(root: Path, count: int, to: str, seconds: float) -> dict[str, Any]:
    """The closed-loop sweep on one fresh federation, the open-loop runs on another (a sweep that
    overloads the federation into view changes must not decide the open-loop figures)."""
    out: dict[str, Any] = {}
    for phase in ("sweep", "open", "lower"):
        if phase == "lower" and sustained(out["paced"], OFFERED):
            break
        fed = started(root / phase, count)
        load = None
        try:
            paths = [str(n.socket_path) for n in fed.nodes]
            paths = (paths * REPLICAS)[:REPLICAS]  # the same number of load processes either way
            load = Load(paths, to)
            if phase == "sweep":
                pids = [n.pid for n in fed.nodes]
                cpu0 = sum(cpu_seconds(p) for p in pids)
                t0 = time.monotonic()
                out["best"], out["steps"] = saturate(load, seconds, fed.settle)
                out["daemon_cores"] = (sum(cpu_seconds(p) for p in pids) - cpu0) / (time.monotonic() - t0)
                out["view_sweep"] = fed.nodes[0].call("federation.status")["view"]
            elif phase == "open":
                out["paced"] = open_loop(load, OFFERED, seconds, fed.settle)
                # Does the federation get back to idle after the open-loop run (all receipts in)?
                t0 = time.monotonic()
                fed.settle(15.0)
                out["view_open"] = fed.nodes[0].call("federation.status")["view"]
                left = sum(n.call("federation.status")["client_in_flight"] for n in fed.nodes)
                out["after"] = (left, time.monotonic() - t0)
            else:  # not sustained: on a third fresh federation, which lower rate is
                out["fallback"] = probe_lower(load, OFFERED, seconds, out["best"].rate, fed.settle)
        finally:
            if load is not None:
                load.close()
            fed.stop()
    return out


def recovery_run(root: Path, to: str) -> dict[str, Any]:
    fed = started(root, REPLICAS, env={"SOVEREIGN_REQUEST_TIMEOUT": str(RECOVERY_TIMEOUT)})
    load = None
    try:
        status = fed.nodes[0].call("federation.status")
        primary = fed.ids.index(status["primary"])
        before = status["last_executed"]
        load = Load([str(n.socket_path) for n in fed.nodes], to)
        start_at = load.start(mode="record", rate=RECOVERY_RATE, warmup=0.0, seconds=KILL_AFTER + AFTER_KILL, drain=10.0)
        time.sleep(max(0.0, start_at + KILL_AFTER - time.monotonic()))
        killed_at = time.monotonic()
        fed.nodes[primary].kill()
        results = load.results()
        survivor = fed.nodes[(primary + 1) % REPLICAS]
        after = survivor.call("federation.status")
        acks_after = sorted(a for r in results for (s, a, ok) in r.records if ok and s >= killed_at)
        before_kill = sum(1 for r in results for (s, a, ok) in r.records if ok and a < killed_at)
        return {
            "recovery": (acks_after[0] - killed_at) if acks_after else float("inf"),
            "view": (status["view"], after["view"]),
            "executed": (before, after["last_executed"]),
            "acks_before_kill": before_kill,
            "acks_after_kill": len(acks_after),
        }
    finally:
        if load is not None:
            load.close()
        fed.stop()


# --------------------------------------------------------------------------------------------
# One libp2p stream vs one TCP socket, two processes each


class _Window:
    """Counts frames at the receiver over [first frame + WARMUP, + seconds]: the sender may
    write faster than the receiver reads (py-libp2p buffers the excess), so only the receiving
    end tells the one-way rate."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.count = 0
        self.first = 0.0
        self.start_count = -1
        self.rate: float | None = None

    def add(self, n: int) -> None:
        t = time.monotonic()
        if not self.first:
            self.first = t
        if self.start_count < 0 and t >= self.first + WARMUP:
            self.start_count = self.count
            self.start = t
        self.count += n
        if self.start_count >= 0 and t >= self.start + self.seconds and self.rate is None:
            self.rate = (self.count - n - self.start_count) / (t - self.start)


def libp2p_receiver(q: Any, seconds: float) -> None:
    import trio

    from keys.identity import Identity
    from node.discovery import CardBook
    from node.network import open_network

    async def main() -> None:
        me = Identity.generate()
        book = CardBook(me, "bench", {})
        async with open_network(me, ["/ip4/127.0.0.1/tcp/0"], book) as net:
            book.addrs = tuple(net.listen_addrs())
            window = _Window(seconds)
            done = trio.Event()

            def on_frame(peer_id: str, data: bytes) -> None:
                window.add(1)
                if window.rate is not None:
                    done.set()

            net.serve_frames(STREAM_PROTOCOL, on_frame, 1 << 20)
            q.put(net.listen_addrs()[0])
            await done.wait()
            q.put(window.rate)
            await trio.sleep(0.2)

    trio.run(main)


def libp2p_sender(addr: str, batch: int, seconds: float) -> None:
    import trio

    from keys.identity import Identity
    from node.discovery import CardBook
    from node.network import open_network

    async def main() -> None:
        me = Identity.generate()
        book = CardBook(me, "bench", {})
        async with open_network(me, ["/ip4/127.0.0.1/tcp/0"], book) as net:
            book.addrs = tuple(net.listen_addrs())
            peer = await net.connect(addr)
            stream = await net.open_frame_stream(peer, STREAM_PROTOCOL)
            frames = [os.urandom(FRAME_BYTES) for _ in range(batch)]
            t0 = time.monotonic()
            while time.monotonic() < t0 + 2 * (WARMUP + seconds) + 10:  # killed once the receiver has its figure
                await stream.send_many(frames)
                await trio.sleep(0)

    trio.run(main)


def tcp_receiver(q: Any, seconds: float) -> None:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    q.put(srv.getsockname()[1])
    conn, _ = srv.accept()
    window = _Window(seconds)
    buf = b""
    while window.rate is None:
        data = conn.recv(1 << 18)
        if not data:
            return
        buf += data
        pos = n = 0
        while len(buf) - pos >= 4:
            size = int.from_bytes(buf[pos : pos + 4], "big")
            if len(buf) - pos - 4 < size:
                break
            body = buf[pos + 4 : pos + 4 + size]  # noqa: F841 - the copy a frame handler gets
            pos += 4 + size
            n += 1
        buf = buf[pos:]
        window.add(n)
    q.put(window.rate)
    conn.close()


def tcp_sender(port: int, batch: int, seconds: float) -> None:
    s = socket.create_connection(("127.0.0.1", port))
    frames = [os.urandom(FRAME_BYTES) for _ in range(batch)]
    t0 = time.monotonic()
    try:
        while time.monotonic() < t0 + 2 * (WARMUP + seconds) + 10:
            s.sendall(b"".join(len(d).to_bytes(4, "big") + d for d in frames))
    except OSError:
        pass
    s.close()


def stream_rate(kind: str, batch: int, seconds: float) -> float:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    receiver = ctx.Process(
        target=libp2p_receiver if kind == "libp2p" else tcp_receiver, args=(q, seconds), daemon=True
    )
    receiver.start()
    sender = None
    try:
        addr = q.get(timeout=60)
        sender = ctx.Process(target=libp2p_sender if kind == "libp2p" else tcp_sender, args=(addr, batch, seconds), daemon=True)
        sender.start()
        return float(q.get(timeout=seconds + 60))
    finally:
        for proc in (sender, receiver):
            if proc is not None:
                if proc is sender:
                    proc.kill()
                proc.join(3)
                if proc.is_alive():
                    proc.kill()
                    proc.join()


# --------------------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per load step (default 3)")
    parser.add_argument("--recoveries", type=int, default=3, help="kill -9 runs (default 3)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["replicated", "unreplicated", "stream", "recovery"])
    args = parser.parse_args()

    from keys.identity import Identity

    to = Identity.generate().peer_id  # every transfer goes to this (new) account
    tmp = Path(tempfile.mkdtemp(prefix="sovbf-", dir="/tmp"))
    began = time.monotonic()
    out: dict[str, Any] = {}
    failed: dict[str, str] = {}
    load_at_start = os.getloadavg()[0]

    def phase(name: str, fn: Any) -> None:
        if name in args.skip:
            return
        try:
            out[name] = fn()
        except Exception as exc:  # noqa: BLE001 - one failed phase must not hide the others' figures
            failed[name] = f"{type(exc).__name__}: {exc}"

    def recoveries() -> list[dict[str, Any]]:
        runs = []
        for i in range(args.recoveries):
            try:
                runs.append(recovery_run(tmp / f"rec{i}", to))
            except StartFailed as exc:
                failed[f"recovery run {i + 1}"] = f"no fresh federation committed its first transfers: {exc}"
        return runs

    try:
        phase("replicated", lambda: measure_federation(tmp / "rep", REPLICAS, to, args.seconds))
        phase("unreplicated", lambda: measure_federation(tmp / "one", 1, to, args.seconds))
        phase("stream", lambda: {
            (kind, batch): stream_rate(kind, batch, args.seconds) for kind in ("libp2p", "tcp") for batch in (64, 1)
        })
        phase("recovery", recoveries)
        if not out.get("recovery"):
            out.pop("recovery", None)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    load = os.getloadavg()
    print(
        f"# {os.cpu_count()} CPUs, load average {load_at_start:.1f} at start, {load[0]:.1f} at the end; "
        f"{args.seconds:g} s per load step after "
        f"{WARMUP:g} s warm-up; python {sys.version.split()[0]}; whole run {time.monotonic() - began:.0f} s"
    )
    rep, one = out.get("replicated"), out.get("unreplicated")
    if rep is not None:
        best: Step = rep["best"]
        sweep = ", ".join(f"{s.label} {s.rate:,.0f}" for s in rep["steps"])
        base = f" | unreplicated {one['best'].rate:,.0f} tx/s, ratio {best.rate / one['best'].rate:.2f}" if one else ""
        print(
            f"federation n={REPLICAS} saturation: {best.describe()} at {best.label} in flight per node x {REPLICAS} "
            f"nodes{base} (target >= 5,000 tx/s: {verdict(best.rate >= 5000)})"
        )
        print(
            f"  (sweep, committed tx/s: {sweep}; daemons used {rep['daemon_cores']:.2f} of {os.cpu_count()} cores; "
            f"load processes {best.client_cpu / args.seconds:.2f} cores; PBFT view after the sweep "
            f"{rep['view_sweep']}; on a fresh federation, view after the {OFFERED:,.0f}/s open loop {rep['view_open']}; then "
            + (f"every receipt was in {rep['after'][1]:.1f} s later)" if rep["after"][0] == 0 else
               f"{rep['after'][0]} transfers were still uncommitted {rep['after'][1]:.0f} s later)")
        )
        p: Step = rep["paced"]
        base = ""
        if one:
            q: Step = one["paced"]
            ratio = f"{p.pct(0.5) / q.pct(0.5):.2f}" if p.latencies_ms and q.latencies_ms else "n/a"
            base = f" | unreplicated at {OFFERED:,.0f}/s: {q.describe()}, p50 ratio {ratio}"
        if sustained(p, OFFERED):
            print(
                f"federation n={REPLICAS} at {OFFERED:,.0f} tx/s offered (open loop): {p.describe()}{base} "
                f"(target p50 <= 50 ms: {verdict(p.pct(0.5) <= 50)})"
            )
        else:
            fb: Step | None = rep.get("fallback")
            print(
                f"federation n={REPLICAS} at {OFFERED:,.0f} tx/s offered (open loop): NOT SUSTAINED: {p.describe()}, "
                f"{p.backlog} awaiting receipts when the window closed{base} (target p50 <= 50 ms: MISSED)"
            )
            if fb is not None:
                ok = sustained(fb, step_rate(fb))
                print(
                    f"  {'highest sustained' if ok else 'lowest'} open-loop rate tried (on a fresh federation: 1/4, 1/2, "
                    f"3/4 of min({OFFERED:,.0f}, closed-loop best), ascending): {fb.label} offered -> {fb.describe()}"
                    f"{'' if ok else ' (NOT sustained either)'}"
                )
    if one is not None:
        b1: Step = one["best"]
        sweep = ", ".join(f"{s.label} {s.rate:,.0f}" for s in one["steps"])
        ratio = f" | replicated/unreplicated {rep['best'].rate / b1.rate:.2f} (target >= 0.3: " \
            f"{verdict(rep['best'].rate / b1.rate >= 0.3)})" if rep else ""
        print(
            f"unreplicated n=1 (committee of one) saturation: {b1.describe()} at {b1.label} x {REPLICAS} load "
            f"processes{ratio}"
        )
        print(f"  (sweep: {sweep}; daemon used {one['daemon_cores']:.2f} cores)")
    if "stream" in out:
        s = out["stream"]
        for batch in (64, 1):
            lp, tcp = s[("libp2p", batch)], s[("tcp", batch)]
            print(
                f"libp2p stream, one-way, {FRAME_BYTES} B frames, {batch} per write: {lp:,.0f} frames/s | bare TCP "
                f"socket, same frames: {tcp:,.0f} frames/s | ratio {lp / tcp:.2f}"
            )
    if "recovery" in out:
        runs = out["recovery"]
        times = [r["recovery"] for r in runs]
        med, worst = statistics.median(times), max(times)
        detail = "; ".join(
            f"{r['recovery']:.2f} s, view {r['view'][0]} -> {r['view'][1]}, {r['acks_after_kill']} receipts for "
            f"transfers sent after the kill" for r in runs
        )
        print(
            f"recovery after kill -9 of the primary: median {med:.2f} s max {worst:.2f} s over {len(runs)} runs "
            f"(request_timeout {RECOVERY_TIMEOUT:g} s, ratio {med / RECOVERY_TIMEOUT:.2f}; target <= 3 s: "
            f"{verdict(worst <= 3)}) [{detail}]"
        )
    for name, why in failed.items():
        print(f"FAILED {name}: {why}")
    for note in STARTS_FAILED:
        print(f"NOTE: a fresh federation did not commit its first transfers and was started again: {note}")
    if rep is not None and one is not None and "recovery" in out:
        p = rep["paced"]
        print(
            f"targets: >= 5,000 tx/s {verdict(rep['best'].rate >= 5000)} ({rep['best'].rate:,.0f}); "
            f"p50 <= 50 ms at 1,000 tx/s {verdict(sustained(p, OFFERED) and p.pct(0.5) <= 50)} "
            f"({p.describe() if not sustained(p, OFFERED) else f'{p.pct(0.5):.1f} ms'}); "
            f">= 0.3 of unreplicated {verdict(rep['best'].rate / one['best'].rate >= 0.3)} "
            f"({rep['best'].rate / one['best'].rate:.2f}); recovery <= 3 s "
            f"{verdict(max(r['recovery'] for r in out['recovery']) <= 3)} "
            f"({max(r['recovery'] for r in out['recovery']):.2f} s max)"
        )


if __name__ == "__main__":
    main()
