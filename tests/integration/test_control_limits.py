"""The daemon applies the control socket's configured limits (issue 11, item 14): an idle client is
told and closed after `control_idle_timeout`, so idle clients cannot hold every slot."""

from __future__ import annotations

import json
import socket

import pytest

from .conftest import Cluster

pytestmark = pytest.mark.integration


def test_the_configured_idle_timeout_closes_an_idle_client(cluster: Cluster) -> None:
    node = cluster.start("idle", env={"SOVEREIGN_CONTROL_IDLE_TIMEOUT": "1"})
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        # The default idle timeout is 300 s: a close before our own guard (recv raises TimeoutError
        # at 30 s) can only be the configured 1 s.
        s.settimeout(30)
        s.connect(str(node.socket_path))
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    answer = json.loads(data.decode().splitlines()[0])
    assert answer["error"]["code"] == -32005 and answer["id"] is None, answer
    assert node.call("node.status")["pid"] == node.pid  # and the daemon keeps serving others
