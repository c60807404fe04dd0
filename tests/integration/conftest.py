"""Real daemon processes on 127.0.0.1, each in its own short temp home, always stopped."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import pytest

from node.scaling.process import DaemonProcess

T = TypeVar("T")
POLL_S = 0.05


def wait_for(predicate: Callable[[], T], timeout: float, what: str) -> T:
    """Poll `predicate` until it returns something truthy; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - a daemon mid-restart may refuse a call
            last_error = exc
        time.sleep(POLL_S)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what} (last error: {last_error!r})")


def peer_states(node: DaemonProcess) -> dict[str, str]:
    return {p["peer_id"]: p["state"] for p in node.call("peers.list")["peers"]}


class Cluster:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.nodes: list[DaemonProcess] = []

    def start(self, name: str, *, bootstrap: tuple[str, ...] = (), env: dict[str, str] | None = None) -> DaemonProcess:
        import os

        node = DaemonProcess(self.root / name, bootstrap=bootstrap, env={**os.environ, **(env or {})})
        self.nodes.append(node)
        node.start()
        node.wait_ready()
        return node

    def stop_all(self) -> None:
        for node in reversed(self.nodes):
            node.stop()


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    # Short paths: AF_UNIX socket paths are limited to 108 bytes.
    root = Path(tempfile.mkdtemp(prefix="sovit-", dir="/tmp"))
    c = Cluster(root)
    try:
        yield c
    finally:
        c.stop_all()
        shutil.rmtree(root, ignore_errors=True)
