"""`sovereign demo`: a local federation doing real work, and riding out the loss of replicas.

N daemons on 127.0.0.1 with a shared genesis (all of them the PBFT committee, each with a starting
balance), bootstrapped to the first. Once they see each other, every node streams transfers to
the next one through its control socket (a few in flight each), and the demo prints committed
transactions per second, the sequence number and view, until Ctrl-C (or `--duration`). A daemon
that dies is reported and restarted with backoff while the others keep committing (PBFT tolerates
f of n = 3f+1 down); the view change and the restarted replica's catching up are reported as they
happen, one line each (node/demo/replicas.py). On the way out it checks that every running
replica holds the same state and that no money was created or lost.
"""

from __future__ import annotations

import json
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from keys.identity import KeyFileError
from node.demo.errors import DemoError
from node.demo.load import TransferStream
from node.demo.replicas import LocalFederation, Replica
from node.federation.homes import DEMO_BALANCE, create_federation_homes
from node.rpc import RpcError
from protocols.ledger import Genesis

TICK_S = 0.25  # how often the replicas are looked at
STATS_EVERY_S = 2.0  # how often the throughput line is printed
CONVERGE_S = 10.0  # how long the replicas get to agree once the load has stopped
LOAD_JOIN_S = 35.0  # the streams' last answers (a transfer waits up to 30 s for its commit)


class _Output:
    """Lines for a person (each flushed, so a pipe sees events as they happen), or, with --json,
    only the final report with the events in it."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.events: list[str] = []

    def say(self, text: str) -> None:
        if not self.as_json:
            print(text, flush=True)

    def event(self, text: str) -> None:
        self.events.append(text)
        self.say(f"{time.strftime('%H:%M:%S')}  {text}")


def _make_root(directory: Path | None) -> Path:
    if directory is None:
        try:
            return Path(tempfile.mkdtemp(prefix="sovereign-demo-"))
        except OSError as exc:
            raise DemoError(f"cannot create a temp dir for the homes: {exc.strerror or exc}", 4) from None
    root = Path(directory)
    try:
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise DemoError(f"--dir: cannot create {root}: {exc.strerror or exc}", 4) from None
    return root


def _make_homes(root: Path, count: int) -> tuple[list[Path], list[str], Genesis]:
    try:
        return create_federation_homes(root, count)
    except FileExistsError as exc:
        raise DemoError(f"--dir {root} already holds {Path(exc.filename).name}: give a new or empty directory", 4) from None
    except (OSError, KeyFileError) as exc:
        raise DemoError(f"cannot create the homes in {root}: {exc}", 4) from None


def _start_federation(federation: LocalFederation, timeout: float, homes: list[Path], out: _Output) -> None:
    federation.start()
    took = federation.wait_discovery(timeout)
    out.say(f"all {federation.n} nodes see each other ({took:.2f} s); streaming transfers, Ctrl-C stops")
    out.say(f"try:  {Path(sys.executable).with_name('sovereign')} --home {homes[0]} federation status")


def _start_loads(federation: LocalFederation, ids: list[str], stop: threading.Event) -> list[TransferStream]:
    count = len(ids)
    loads = [TransferStream(r.process.socket_path, ids[(i + 1) % count], stop) for i, r in enumerate(federation.replicas)]
    for t in loads:
        t.start()
    return loads


def _stats_line(federation: LocalFederation, rate: float, applied: int) -> str:
    top = federation.most_advanced()
    up = f"up {len(federation.running())}/{federation.n}"
    if top is None:
        return f"{rate:7.0f} tx/s committed  total {applied:>7}  {up}  (no replica answers)"
    return (
        f"{rate:7.0f} tx/s committed  total {applied:>7}  seq {top['last_executed']:>6}  view {top['view']}"
        f"  primary {federation.name_of(top['primary'])}  checkpoint {top['stable_checkpoint']['seq']}  {up}"
    )


def _stream(federation: LocalFederation, loads: list[TransferStream], duration: float | None, out: _Output) -> None:
    """Watch the replicas and print the throughput until `duration` ends (or Ctrl-C)."""
    began = time.monotonic()
    last_applied, last_t = 0, began
    while duration is None or time.monotonic() - began < duration:
        left = TICK_S if duration is None else duration - (time.monotonic() - began)
        time.sleep(max(0.0, min(TICK_S, left)))
        for event in federation.watch():
            out.event(event)
        now = time.monotonic()
        if now - last_t >= STATS_EVERY_S:
            applied = sum(t.applied for t in loads)
            out.say(f"{time.strftime('%H:%M:%S')}  {_stats_line(federation, (applied - last_applied) / (now - last_t), applied)}")
            last_applied, last_t = applied, now


def _stop_loads(loads: list[TransferStream], stop: threading.Event) -> None:
    stop.set()
    deadline = time.monotonic() + LOAD_JOIN_S
    for t in loads:
        t.join(timeout=max(0.0, deadline - time.monotonic()))


class _Agreement:
    """The running replicas' states once the load has stopped: those level with the most advanced
    agree when they hold one digest; the others are behind (not caught up), which is not the same
    failure as a divergence."""

    def __init__(self, replicas: list[Replica]) -> None:
        self.statuses: dict[str, dict[str, Any] | None] = {}
        for r in replicas:
            try:
                self.statuses[r.name] = r.process.call("federation.status", timeout=5)
            except Exception:  # noqa: BLE001 - a busy or dead node shows as unknown
                self.statuses[r.name] = None
        known = [s for s in self.statuses.values() if s is not None]
        self.seq = max((s["last_executed"] for s in known), default=None)
        level = [s for s in known if s["last_executed"] == self.seq]
        self.digest = level[0]["state_digest"] if level else None
        self.diverged = len({s["state_digest"] for s in level}) > 1
        self.behind = {
            n: (s["last_executed"] if s else None)
            for n, s in self.statuses.items()
            if s is None or s["last_executed"] != self.seq
        }

    @property
    def agree(self) -> bool:
        return self.seq is not None and not self.diverged and not self.behind


def _wait_converged(replicas: list[Replica], timeout: float) -> _Agreement:
    deadline = time.monotonic() + timeout
    while True:
        agreement = _Agreement(replicas)
        if agreement.agree or agreement.diverged or time.monotonic() > deadline:
            return agreement
        time.sleep(0.1)  # polling a condition in an interactive tool, not a test


def _final_report(federation: LocalFederation, loads: list[TransferStream], ids: list[str]) -> dict[str, Any]:
    running = [r for r in federation.running() if r.process.poll() is None]
    if not running:
        return {"error": "no replica is running at the end: nothing to check"}
    final = _wait_converged(running, CONVERGE_S)
    balances = [running[0].process.call("ledger.balance", {"account": i})["balance"] for i in ids]
    errors = [e for t in loads for e in t.errors]
    return {
        "applied": sum(t.applied for t in loads),
        "refused": sum(t.refused for t in loads),
        "interrupted": sum(t.interrupted for t in loads),
        "errors": errors[:5],
        "error_count": len(errors),
        "replicas_agree": final.agree,
        "diverged": final.diverged,
        "behind": final.behind,
        "supply_conserved": sum(balances) == DEMO_BALANCE * len(ids),
        "last_executed": final.seq,
        "state_digest": final.digest,
        "checked": [r.name for r in running],
        "down_at_end": [r.name for r in federation.replicas if r not in running],
        "deaths": federation.deaths,
        "restarts": federation.restarts,
        "view_changes": federation.view_changes,
    }


def _conclude(report: dict[str, Any], out: _Output) -> None:
    agreement = "DISAGREE" if report["diverged"] else "agree"
    out.say(
        f"\n{report['applied']} transfers committed; replicas {agreement} on the state at seq {report['last_executed']};"
        f" total supply {'conserved' if report['supply_conserved'] else 'CHANGED'}"
    )
    if report["behind"]:
        behind = ", ".join(f"{name} (at seq {seq})" for name, seq in report["behind"].items())
        out.say(f"NOT caught up {CONVERGE_S:g} s after the load stopped: {behind}")
    if report["deaths"]:
        out.say(
            f"daemon deaths: {report['deaths']}, restarts: {report['restarts']}, view changes: {report['view_changes']};"
            f" transfers in flight on a daemon that died: {report['interrupted']}"
        )
    if report["down_at_end"]:
        out.say(f"down at the end, not checked: {', '.join(report['down_at_end'])}")
    if report["errors"]:
        out.say(f"{report['error_count']} calls failed, e.g. {report['errors'][0]}")
    report["ok"] = report["replicas_agree"] and report["supply_conserved"] and report["applied"] > 0


def _finish(federation: LocalFederation, loads: list[TransferStream], ids: list[str], report: dict[str, Any], out: _Output) -> None:
    try:
        report.update(_final_report(federation, loads, ids))
    except (OSError, RpcError, KeyError, TypeError) as exc:
        report["error"] = f"the final check failed: {exc}"
    if "error" in report:
        out.say(report["error"])
    else:
        _conclude(report, out)
    report["events"] = out.events


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run_demo(count: int, directory: Path | None, timeout: float, *, as_json: bool = False, duration: float | None = None) -> int:
    """Run the demo; returns the exit code, raises DemoError (one line) when it cannot run."""
    root = _make_root(directory)
    out = _Output(as_json)
    # Our children run in their own sessions, so Ctrl-C reaches only us; we stop them, in order,
    # so none is left behind. SIGTERM is treated like Ctrl-C.
    old = signal.signal(signal.SIGTERM, _interrupt)
    stop = threading.Event()
    federation: LocalFederation | None = None
    loads: list[TransferStream] = []
    ids: list[str] = []
    report: dict[str, Any] = {"nodes": count, "root": str(root)}
    keep = directory is not None  # a temp root is kept only when its logs explain a failure
    try:
        homes, ids, genesis = _make_homes(root, count)
        out.say(f"federation {genesis.chain_id}: {count} replicas (f = {(count - 1) // 3}), genesis {genesis.hash[:16]}..., homes in {root}")
        federation = LocalFederation(homes, ids, genesis.checkpoint_interval)
        try:
            _start_federation(federation, timeout, homes, out)
        except DemoError as exc:
            raise DemoError(f"{exc}; logs in {root}", exc.code) from None
        loads = _start_loads(federation, ids, stop)
        _stream(federation, loads, duration, out)
    except KeyboardInterrupt:
        pass
    except DemoError:
        keep = True
        raise
    finally:
        try:
            _stop_loads(loads, stop)
            if federation is not None and loads:
                _finish(federation, loads, ids, report, out)
        finally:
            signal.signal(signal.SIGTERM, old)
            if federation is not None:
                federation.stop()
                out.say(f"stopped {federation.n} daemons")
            if not keep:
                shutil.rmtree(root, ignore_errors=True)
    if as_json:
        print(json.dumps(report))
    return 0 if report.get("ok", duration is None) else 1
