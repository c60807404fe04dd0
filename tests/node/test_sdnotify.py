from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.sdnotify import NOTIFY_ENV_VARS, Notifier, scrub_environment


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)  # a safety net for a broken test, never a wait: datagrams are already queued
    try:
        yield sock, path
    finally:
        sock.close()


def received(sock: socket.socket) -> bytes:
    return sock.recv(4096)


def test_messages_on_a_path_socket(receiver: tuple[socket.socket, str]) -> None:
    sock, path = receiver
    with Notifier.from_environment({"NOTIFY_SOCKET": path}) as notifier:
        assert notifier.enabled
        assert notifier.ready("peer 12D3KooW")
        assert notifier.ready()
        assert notifier.status("3 peers alive")
        assert notifier.watchdog()
        assert notifier.stopping()
    assert received(sock) == b"READY=1\nSTATUS=peer 12D3KooW"
    assert received(sock) == b"READY=1"
    assert received(sock) == b"STATUS=3 peers alive"
    assert received(sock) == b"WATCHDOG=1"
    assert received(sock) == b"STOPPING=1"


def test_status_cannot_inject_assignments(receiver: tuple[socket.socket, str]) -> None:
    sock, path = receiver
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": path})
    notifier.status("bad\nREADY=1")
    notifier.close()
    assert received(sock) == b"STATUS=bad READY=1"


def test_abstract_socket(tmp_path: Path) -> None:
    name = f"sovereign-test-{os.getpid()}-{abs(hash(str(tmp_path)))}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(5)
    try:
        with Notifier.from_environment({"NOTIFY_SOCKET": "@" + name}) as notifier:
            assert notifier.ready("up")
        assert received(sock) == b"READY=1\nSTATUS=up"
    finally:
        sock.close()


def test_no_socket_is_a_no_op() -> None:
    notifier = Notifier.from_environment({})
    assert not notifier.enabled
    assert not notifier.ready("x")
    assert not notifier.watchdog()
    assert notifier.watchdog_interval() is None


def test_unsupported_address_is_a_no_op(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="node.sdnotify"):
        notifier = Notifier.from_environment({"NOTIFY_SOCKET": "vsock:2:1234"})
    assert not notifier.enabled and not notifier.ready()
    assert "vsock:2:1234" in caplog.text


def test_send_failure_does_not_raise(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens.sock")})
    with caplog.at_level(logging.DEBUG, logger="node.sdnotify"):
        assert notifier.ready() is False
        assert notifier.watchdog() is False
    notifier.close()
    assert "failed" in caplog.text


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4242"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "me"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": ""}, None),
        ({}, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": "/run/systemd/notify", **env}, pid=4242)
    assert notifier.watchdog_interval() == expected


def test_watchdog_pid_defaults_to_ours() -> None:
    env = {"NOTIFY_SOCKET": "/run/systemd/notify", "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}
    assert Notifier.from_environment(env).watchdog_interval() == 1.0


def test_watchdog_needs_a_socket() -> None:
    assert Notifier.from_environment({"WATCHDOG_USEC": "2000000"}).watchdog_interval() is None


def test_scrub_environment() -> None:
    env = {"PATH": "/bin", "NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "1", "WATCHDOG_PID": "2"}
    assert scrub_environment(env) == {"PATH": "/bin"}
    assert set(NOTIFY_ENV_VARS) <= set(env)
