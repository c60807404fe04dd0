"""`sovereign demo`: a local federation doing real work.

N daemons on 127.0.0.1 with a shared genesis (all of them the PBFT committee, each with a starting
balance), bootstrapped to the first. Once they see each other, every node streams transfers to
the next one through its control socket (a few in flight each), and the demo prints committed
transactions per second, the sequence number and view, and whether the replicas' state digests
agree, until Ctrl-C (or `--duration`). On the way out it checks that every replica holds the
same state and that no money was created or lost.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from keys.identity import KeyFileError
from node.rpc import RpcError
from node.federation.homes import DEMO_BALANCE, create_federation_homes
from node.scaling.process import DaemonProcess, DaemonStartError
from protocols.ledger import Genesis

IN_FLIGHT = 8  # transfers each node keeps outstanding
AMOUNT = 1


class DemoError(Exception):
    """The demo cannot run or failed; the message is one line for the user, `code` the exit code
    (4: the homes cannot be made, 1: a daemon failed)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


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


class _Load(threading.Thread):
    """Keeps IN_FLIGHT transfers outstanding on one pipelined control connection."""

    def __init__(self, node: DaemonProcess, to: str, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.node, self.to, self.stop_event = node, to, stop
        self.applied = 0
        self.refused = 0
        self.errors: list[str] = []

    def run(self) -> None:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.connect(str(self.node.socket_path))
                f = s.makefile("rwb")
                next_id = 0
                outstanding = 0
                while not self.stop_event.is_set() or outstanding:
                    while outstanding < IN_FLIGHT and not self.stop_event.is_set():
                        next_id += 1
                        call = {"jsonrpc": "2.0", "id": next_id, "method": "ledger.transfer", "params": {"to": self.to, "amount": AMOUNT}}
                        f.write(json.dumps(call).encode() + b"\n")
                        outstanding += 1
                    f.flush()
                    line = f.readline()
                    if not line:
                        self.errors.append("daemon closed the control connection")
                        return
                    outstanding -= 1
                    answer = json.loads(line)
                    if "error" in answer:
                        self.errors.append(str(answer["error"].get("message")))
                    elif answer["result"]["status"] == "applied":
                        self.applied += 1
                    else:
                        self.refused += 1
        # A daemon that goes away or answers nonsense ends this load with a reason, never a
        # thread traceback.
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            self.errors.append(f"{type(exc).__name__}: {exc}")


def _statuses(nodes: list[DaemonProcess]) -> list[dict[str, Any] | None]:
    out: list[dict[str, Any] | None] = []
    for n in nodes:
        try:
            out.append(n.call("federation.status", timeout=5))
        except Exception:  # noqa: BLE001 - a busy or dead node shows as unknown
            out.append(None)
    return out


def _wait_converged(nodes: list[DaemonProcess], timeout: float) -> list[dict[str, Any] | None]:
    deadline = time.monotonic() + timeout
    while True:
        st = _statuses(nodes)
        if all(s is not None for s in st) and len({(s["last_executed"], s["state_digest"]) for s in st if s}) == 1:
            return st
        if time.monotonic() > deadline:
            return st
        time.sleep(0.1)  # polling a condition in an interactive tool, not a test


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


def _start(node: DaemonProcess) -> None:
    try:
        node.start()
    except OSError as exc:
        raise DemoError(f"cannot start the daemon of {node.home.name}: {exc}") from None


def _ready(node: DaemonProcess) -> None:
    try:
        node.wait_ready()
    except DaemonStartError as exc:
        last = node.log_tail(1).strip()[:300] or "(no log)"
        first = str(exc).splitlines()[0]
        raise DemoError(f"the daemon of {node.home.name} did not start ({first}); last log line: {last}") from None


def _boot_addr(node: DaemonProcess) -> str:
    try:
        return str(node.call("node.id")["addrs"][0])
    except (OSError, RpcError, KeyError, IndexError, TypeError) as exc:
        raise DemoError(f"the first daemon does not tell its address: {exc}") from None


def _final_report(nodes: list[DaemonProcess], loads: list[_Load], ids: list[str], count: int) -> dict[str, Any]:
    final = _wait_converged(nodes, 10)
    ok = all(s is not None for s in final) and len({(s["last_executed"], s["state_digest"]) for s in final if s}) == 1
    balances = [nodes[0].call("ledger.balance", {"account": i})["balance"] for i in ids]
    errors = [e for t in loads for e in t.errors]
    return {
        "applied": sum(t.applied for t in loads),
        "refused": sum(t.refused for t in loads),
        "errors": errors[:5],
        "error_count": len(errors),
        "replicas_agree": ok,
        "supply_conserved": sum(balances) == DEMO_BALANCE * count,
        "last_executed": final[0]["last_executed"] if final[0] else None,
        "state_digest": final[0]["state_digest"] if final[0] else None,
    }


def run_demo(count: int, directory: Path | None, timeout: float, *, as_json: bool = False, duration: float | None = None) -> int:
    """Run the demo; returns the exit code, raises DemoError (one line) when it cannot run."""
    root = _make_root(directory)
    nodes: list[DaemonProcess] = []
    say = (lambda *a: None) if as_json else print

    # Our children run in their own sessions, so Ctrl-C reaches only us; we stop them, in order,
    # so none is left behind. SIGTERM is treated like Ctrl-C.
    def on_signal(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, on_signal)
    stop = threading.Event()
    loads: list[_Load] = []
    ids: list[str] = []
    report: dict[str, Any] = {"nodes": count, "root": str(root)}
    keep = directory is not None  # a temp root is kept only when its logs explain a failure
    try:
        homes, ids, genesis = _make_homes(root, count)
        say(f"federation {genesis.chain_id}: {count} replicas (f = {(count - 1) // 3}), genesis {genesis.hash[:16]}..., homes in {root}")
        nodes.append(DaemonProcess(homes[0]))
        _start(nodes[0])
        _ready(nodes[0])
        boot = _boot_addr(nodes[0])
        for home in homes[1:]:
            nodes.append(DaemonProcess(home, bootstrap=[boot]))
            _start(nodes[-1])
        for n in nodes[1:]:
            _ready(n)
        start = time.monotonic()
        while min(_alive_counts(nodes)) < count - 1:
            if time.monotonic() - start > timeout:
                raise DemoError(f"not all {count} nodes saw each other within {timeout:g} s; logs in {root}")
            time.sleep(0.1)  # polling a condition in an interactive tool, not a test
        say(f"all {count} nodes see each other ({time.monotonic() - start:.2f} s); streaming transfers, Ctrl-C stops")
        if not as_json:
            cli = Path(sys.executable).with_name("sovereign")
            say(f"try:  {cli} --home {homes[0]} federation status")
        loads = [_Load(n, ids[(i + 1) % count], stop) for i, n in enumerate(nodes)]
        for t in loads:
            t.start()
        began = time.monotonic()
        last_applied, last_t = 0, began
        while duration is None or time.monotonic() - began < duration:
            time.sleep(min(2.0, duration or 2.0))
            exited = [n for n in nodes if n.poll() is not None]
            if exited:
                for n in exited:
                    say(n.home, n.log_tail(10))
                raise DemoError(f"the daemon of {exited[0].home.name} exited unexpectedly ({exited[0].poll()}); logs in {root}")
            applied = sum(t.applied for t in loads)
            now = time.monotonic()
            st = [s for s in _statuses(nodes) if s is not None]
            if st:
                top = max(st, key=lambda s: s["last_executed"])
                say(
                    f"{time.strftime('%H:%M:%S')}  {(applied - last_applied) / (now - last_t):7.0f} tx/s committed"
                    f"  total {applied:>7}  seq {top['last_executed']:>6}  view {top['view']}"
                    f"  primary {top['primary'][-8:]}  checkpoint {top['stable_checkpoint']['seq']}"
                )
            last_applied, last_t = applied, now
    except KeyboardInterrupt:
        pass
    except DemoError:
        keep = True
        raise
    finally:
        try:
            stop.set()
            for t in loads:
                t.join(timeout=35)
            if nodes and all(n.poll() is None for n in nodes) and loads:
                try:
                    report.update(_final_report(nodes, loads, ids, count))
                except (OSError, RpcError, KeyError, TypeError) as exc:
                    report["error"] = f"the final check failed: {exc}"
                    say(report["error"])
                else:
                    say(
                        f"\n{report['applied']} transfers committed; replicas {'agree' if report['replicas_agree'] else 'DISAGREE'}"
                        f" on the state at seq {report['last_executed']}; total supply"
                        f" {'conserved' if report['supply_conserved'] else 'CHANGED'}"
                    )
                    if report["errors"]:
                        say(f"{report['error_count']} calls failed, e.g. {report['errors'][0]}")
                    report["ok"] = report["replicas_agree"] and report["supply_conserved"] and report["applied"] > 0
        finally:
            signal.signal(signal.SIGTERM, old)
            for n in reversed(nodes):
                n.stop()
            if not keep:
                shutil.rmtree(root, ignore_errors=True)
            if nodes:
                say(f"stopped {len(nodes)} daemons")
    if as_json:
        print(json.dumps(report))
    return 0 if report.get("ok", duration is None) else 1
