"""The daemon speaks systemd's notify protocol: READY, STATUS, WATCHDOG, STOPPING."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

pytestmark = pytest.mark.integration


def test_ready_status_watchdog_and_stopping_datagrams() -> None:
    tmp = tempfile.mkdtemp(prefix="sovnotify-", dir="/tmp")
    notify_path = os.path.join(tmp, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(notify_path)
    sock.settimeout(30)
    env = {**os.environ, "NOTIFY_SOCKET": notify_path, "WATCHDOG_USEC": "400000", "SOVEREIGN_LOG_FORMAT": "json"}
    env.pop("WATCHDOG_PID", None)
    home = os.path.join(tmp, "home")
    subprocess.run([sys.executable, "-m", "node", "--home", home, "init"], env=env, check=True, capture_output=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "node", "--home", os.path.join(tmp, "home"), "daemon", "--listen", "/ip4/127.0.0.1/tcp/0"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 30
        while not ({"READY=1", "WATCHDOG=1"} <= set(seen) and seen.count("WATCHDOG=1") >= 2):
            assert time.monotonic() < deadline, f"saw only {seen}"
            seen += sock.recv(4096).decode().split("\n")
        assert any(s.startswith("STATUS=") for s in seen)
        proc.send_signal(signal.SIGTERM)
        while "STOPPING=1" not in seen:
            seen += sock.recv(4096).decode().split("\n")
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sock.close()
        shutil.rmtree(tmp, ignore_errors=True)
    # READY comes only once the daemon can be talked to; the watchdog pings come after it.
    assert seen.index("READY=1") < seen.index("WATCHDOG=1")
