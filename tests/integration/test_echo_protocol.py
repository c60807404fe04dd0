"""The proof that a new protocol needs nothing but its module: three real daemons load the test-only
echo protocol (tests/echo_protocol.py) from their config, beat over gossip, ack over streams, and
answer `protocol.call`. (The runtime's refusals of bad frames and gossip: tests/node/test_runtime.py.)"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from node.rpc import INVALID_PARAMS, RpcError
from node.scaling.process import DaemonProcess, DaemonStartError

from .conftest import Cluster, wait_for

pytestmark = pytest.mark.integration

ROOT = str(Path(__file__).resolve().parents[2])  # the repository: `tests.echo_protocol` imports from it
ENV = {"SOVEREIGN_PROTOCOLS": "tests.echo_protocol", "PYTHONPATH": ROOT}


def echo(node: DaemonProcess) -> dict[str, Any]:
    answer: dict[str, Any] = node.call("protocol.call", {"name": "echo", "request": {"op": "status"}}, timeout=10)
    return answer


def test_three_daemons_run_a_protocol_loaded_from_their_config(cluster: Cluster) -> None:
    a = cluster.start("a", env=ENV)
    boot = a.call("node.id")["addrs"][0]
    b = cluster.start("b", bootstrap=(boot,), env=ENV)
    c = cluster.start("c", bootstrap=(boot,), env=ENV)
    nodes = (a, b, c)
    ids = {n: n.call("node.id")["peer_id"] for n in nodes}

    listing = a.call("protocol.list")
    assert [p["name"] for p in listing] == ["echo"] and listing[0]["topics"] == ["sovereign/test-echo/1"]

    def everyone_heard_everyone(floor: dict[DaemonProcess, dict[str, Any]] | None = None) -> bool:
        for n in nodes:
            st = echo(n)
            others = {ids[m] for m in nodes if m is not n}
            if not others <= set(st["seen"]) or not others <= set(st["acked"]):
                return False
            if floor is not None:
                before = floor[n]
                if any(st["seen"][p] <= before["seen"][p] or st["acked"][p] <= before["acked"][p] for p in others):
                    return False
        return True

    wait_for(everyone_heard_everyone, 30, "every daemon to see the others' beats and be acked by them")
    # And it keeps going: every counter moves past where it stood.
    snapshot = {n: echo(n) for n in nodes}
    wait_for(lambda: everyone_heard_everyone(snapshot), 30, "the beats and acks to advance")
    assert echo(a)["counter"] > snapshot[a]["counter"]

    # The protocol's own answer to a request it does not know, and the API's to a protocol it does not run.
    assert "error" in a.call("protocol.call", {"name": "echo", "request": {"op": "dance"}})
    with pytest.raises(RpcError) as info:
        a.call("protocol.call", {"name": "nope", "request": {}})
    assert info.value.code == INVALID_PARAMS and "echo" in info.value.message
    assert all(n.poll() is None for n in nodes), "a daemon exited"


def test_a_protocol_that_does_not_load_refuses_the_start(tmp_path: Path) -> None:
    node = DaemonProcess(tmp_path / "x", env={**os.environ, "SOVEREIGN_PROTOCOLS": "tests.no_such_protocol", "PYTHONPATH": ROOT})
    try:
        node.start()
        with pytest.raises(DaemonStartError) as info:
            node.wait_ready(30)
        assert "tests.no_such_protocol" in str(info.value) and "cannot import" in str(info.value)
    finally:
        node.stop()
