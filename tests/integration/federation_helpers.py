"""Shared pieces of the federation integration tests: a local federation of real daemons, a
closed-loop transfer load, and waits on what `federation.status` and `ledger.tx` report.

Everything waits by polling a condition against a deadline (POLL_S), never by a fixed sleep, and
every process a test starts is stopped in the fixture's teardown, even when the test fails.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from node.federation.homes import create_federation_homes
from node.rpc import ControlClient, RpcError
from node.scaling.process import DaemonProcess
from protocols.ledger import Genesis

from .conftest import POLL_S, wait_for

REQUEST_TIMEOUT = "0.5"  # seconds before a backup suspects the primary: fast view changes
CONVERGE_S = 30.0
READY_S = 30.0


class LocalFederation:
    """Homes for `count` nodes (the first `members` form the committee) and the daemons started
    from them. Node i is `self.nodes[i]` once started; `stop_all` ends every one of them."""

    def __init__(
        self, root: Path, count: int, *, members: int | None = None, checkpoint_interval: int = 128
    ) -> None:
        self.root = root
        self.homes, self.ids, self.genesis = create_federation_homes(
            root, count, chain_id="itest", members=members, checkpoint_interval=checkpoint_interval
        )
        self.genesis: Genesis
        self.nodes: dict[int, DaemonProcess] = {}
        self._all: list[DaemonProcess] = []  # every process ever started, for teardown
        self.boot: str | None = None

    # ------------------------------------------------------------------ processes

    def start(self, i: int, *, wait: bool = True) -> DaemonProcess:
        env = {**os.environ, "SOVEREIGN_REQUEST_TIMEOUT": REQUEST_TIMEOUT}
        bootstrap = () if self.boot is None else (self.boot,)
        node = DaemonProcess(self.homes[i], bootstrap=bootstrap, env=env)
        self.nodes[i] = node
        self._all.append(node)
        node.start()
        if wait:
            node.wait_ready(READY_S)
            if self.boot is None:
                self.boot = node.call("node.id")["addrs"][0]
        return node

    def start_all(self, indices: Sequence[int] | None = None) -> list[DaemonProcess]:
        indices = list(range(len(self.homes))) if indices is None else list(indices)
        first, rest = indices[0], indices[1:]
        self.start(first)
        started = [self.start(i, wait=False) for i in rest]
        for node in started:
            node.wait_ready(READY_S)
        return [self.nodes[i] for i in indices]

    def restart(self, i: int) -> DaemonProcess:
        """Start node i again from the same home (after kill or stop)."""
        old = self.nodes.get(i)
        if old is not None and old.poll() is None:
            old.stop()
        # Bootstrap from a node that is up (node 0 may be the one restarting).
        for j, n in self.nodes.items():
            if j != i and n.poll() is None:
                self.boot = n.call("node.id")["addrs"][0]
                break
        return self.start(i)

    def live(self) -> list[DaemonProcess]:
        return [n for n in self.nodes.values() if n.poll() is None]

    def index_of(self, peer_id: str) -> int:
        return self.ids.index(peer_id)

    def stop_all(self) -> None:
        for node in reversed(self._all):
            try:
                node.signal(signal.SIGCONT)  # a stopped process cannot act on SIGTERM
                node.stop()
            except Exception:  # noqa: BLE001 - teardown must reach every process
                pass


@pytest.fixture
def fed_root() -> Iterator[Path]:
    # Short paths: AF_UNIX socket paths are limited to 108 bytes.
    root = Path(tempfile.mkdtemp(prefix="sovfed-", dir="/tmp"))
    try:
        yield root
    finally:
        if not os.environ.get("SOVEREIGN_TEST_KEEP"):  # set it to inspect the homes and logs afterwards
            shutil.rmtree(root, ignore_errors=True)


def make_federation(request: pytest.FixtureRequest, root: Path, count: int, **kw: Any) -> LocalFederation:
    fed = LocalFederation(root, count, **kw)
    request.addfinalizer(fed.stop_all)
    return fed


# ---------------------------------------------------------------------- conditions


def status(node: DaemonProcess) -> dict[str, Any]:
    return node.call("federation.status", timeout=5)


def converged(nodes: Sequence[DaemonProcess], *, at_least: int = 0) -> dict[str, Any] | None:
    """The common status if every node reports the same last_executed and state_digest (and
    last_executed >= at_least), else None."""
    sts = [status(n) for n in nodes]
    points = {(s["last_executed"], s["state_digest"]) for s in sts}
    if len(points) == 1 and sts[0]["last_executed"] >= at_least:
        return sts[0]
    return None


def describe(nodes: Iterable[DaemonProcess]) -> str:
    """One line per replica: executed/digest, view (active or changing), stable checkpoint."""
    out = []
    for n in nodes:
        try:
            s = status(n)
            out.append(
                f"{n.home.name}: {s['last_executed']}/{s['state_digest'][:8]} view {s['view']}"
                f"{'' if s['view_active'] else ' (changing)'} stable {s['stable_checkpoint']['seq']}"
            )
        except Exception as exc:  # noqa: BLE001
            out.append(f"{n.home.name}: {exc!r}")
    return "; ".join(out)


def wait_converged(
    nodes: Sequence[DaemonProcess], what: str = "", *, at_least: int = 0, timeout: float = CONVERGE_S
) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        return converged(nodes, at_least=at_least)

    try:
        return wait_for(check, timeout, f"replicas to agree on last_executed and digest {what}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; now: {describe(nodes)}") from None


def missing_txs(node: DaemonProcess, tx_ids: Sequence[str]) -> list[str]:
    """The tx ids `ledger.tx` does not find (as applied) on this node."""
    missing = []
    with node.client(timeout=10) as c:
        for tx_id in tx_ids:
            try:
                r = c.call("ledger.tx", {"id": tx_id})
            except RpcError:
                missing.append(tx_id)
                continue
            if r["status"] != "applied":
                missing.append(tx_id)
    return missing


def logged_batches(node: DaemonProcess) -> list[dict[str, Any]]:
    """Every batch in the node's federation.log, paging through it."""
    out: list[dict[str, Any]] = []
    since = 0
    with node.client(timeout=10) as c:
        while True:
            batches = c.call("federation.log", {"since": since, "limit": 1000})["batches"]
            if not batches:
                return out
            out += batches
            since = batches[-1]["seq"]


def logged_tx_ids(node: DaemonProcess) -> dict[str, dict[str, Any]]:
    """Every tx in the node's federation.log, by tx_id."""
    out: dict[str, dict[str, Any]] = {}
    for b in logged_batches(node):
        for t in b["txs"]:
            if t.get("tx_id"):
                out[t["tx_id"]] = {**t, "seq": b["seq"]}
    return out


# ---------------------------------------------------------------------- load


class Load:
    """Closed-loop transfers: `per_node` threads per node, each with its own control connection,
    each calling ledger.transfer(amount 1) to a random other account in a loop and recording the
    tx_id of every applied receipt. A node that is down (killed, stopped, restarting) makes its
    threads reconnect with a short backoff; errors are counted, never raised."""

    def __init__(self, nodes: dict[int, DaemonProcess], ids: Sequence[str], *, per_node: int = 2, timeout: float = 10.0):
        self._nodes = nodes
        self._ids = list(ids)
        self._per_node = per_node
        self._timeout = timeout
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.acked: list[str] = []
        self.acked_by: dict[int, int] = {}
        self.refused: list[dict[str, Any]] = []
        self.errors = 0
        self._threads: list[threading.Thread] = []
        self._paused: set[int] = set()
        self._busy: dict[int, int] = {}  # node -> calls in progress

    def pause(self, i: int, timeout: float = 30.0) -> None:
        """Stop submitting through node i and wait until its threads' calls have all returned."""
        with self._lock:
            self._paused.add(i)
        wait_for(lambda: self._busy.get(i, 0) == 0, timeout, f"node {i}'s load threads to go idle")

    def resume(self, i: int) -> None:
        with self._lock:
            self._paused.discard(i)

    def start(self, indices: Sequence[int]) -> Load:
        for i in indices:
            for k in range(self._per_node):
                t = threading.Thread(target=self._run, args=(i, k), name=f"load-{i}-{k}", daemon=True)
                self._threads.append(t)
                t.start()
        return self

    def count(self) -> int:
        with self._lock:
            return len(self.acked)

    def wait_more(self, n: int, timeout: float, what: str) -> int:
        """Wait until `n` more transfers than now have been acknowledged."""
        target = self.count() + n
        try:
            return wait_for(lambda: self.count() >= target and self.count(), timeout, f"{n} more acked transfers {what}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; now: {describe(self._nodes.values())}") from None

    def stop(self) -> list[str]:
        self._stop.set()
        for t in self._threads:
            t.join(self._timeout + 5)
        with self._lock:
            return list(self.acked)

    def _run(self, i: int, k: int) -> None:
        rng = random.Random(i * 100 + k)
        me = self._ids[i]
        others = [p for p in self._ids if p != me]
        client: ControlClient | None = None
        while not self._stop.is_set():
            with self._lock:
                paused = i in self._paused
                if not paused:
                    self._busy[i] = self._busy.get(i, 0) + 1
            if paused:
                self._stop.wait(0.05)
                continue
            node = self._nodes[i]
            try:
                if client is None:
                    client = node.client(timeout=self._timeout + 5)
                    client.connect()
                r = client.call("ledger.transfer", {"to": rng.choice(others), "amount": 1, "timeout": self._timeout})
            except Exception:  # noqa: BLE001 - the node may be down on purpose
                with self._lock:
                    self.errors += 1
                    self._busy[i] -= 1
                if client is not None:
                    client.close()
                    client = None
                self._stop.wait(0.2)  # back off while the node is down or restarting
                continue
            with self._lock:
                self._busy[i] -= 1
                if r["status"] == "applied":
                    self.acked.append(r["tx_id"])
                    self.acked_by[i] = self.acked_by.get(i, 0) + 1
                else:
                    self.refused.append(r)
        if client is not None:
            client.close()

    def __enter__(self) -> Load:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_log_mentions(node: DaemonProcess, needle: str, timeout: float = 15.0) -> str:
    def check() -> str | None:
        text = node.log_path.read_text(errors="replace")
        return text if needle in text else None

    return wait_for(check, timeout, f"{node.home.name}'s log to mention {needle!r}")


def elapsed(t0: float) -> float:
    return round(time.monotonic() - t0, 1)


__all__ = [
    "POLL_S", "LocalFederation", "Load", "converged", "describe", "elapsed", "fed_root", "logged_batches", "logged_tx_ids", "make_federation",
    "missing_txs", "status", "wait_converged", "wait_for", "wait_log_mentions",
]
