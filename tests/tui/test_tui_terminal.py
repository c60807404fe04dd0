"""`sovereign tui` in a real terminal: tmux at 100x30 runs the command, and the daemon's peer id
must appear on the screen that `tmux capture-pane` reads back."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from node.scaling.process import DaemonProcess

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
]

WAIT_S = 30.0
POLL_S = 0.1


def test_sovereign_tui_shows_the_peer_id_in_tmux() -> None:
    root = Path(tempfile.mkdtemp(prefix="sovtui-", dir="/tmp"))
    daemon = DaemonProcess(root / "home")
    # A private tmux server (its own socket), so the test never touches a user's sessions.
    tmux = ["tmux", "-f", "/dev/null", "-S", str(root / "tmux.sock")]
    try:
        daemon.start()
        daemon.wait_ready()
        peer_id = daemon.call("node.id")["peer_id"]
        command = f"{sys.executable} -m node --home {daemon.home} tui"
        env = {**os.environ, "TERM": "xterm-256color"}
        subprocess.run([*tmux, "new-session", "-d", "-x", "100", "-y", "30", command], check=True, env=env)
        deadline = time.monotonic() + WAIT_S
        screen = ""
        while time.monotonic() < deadline:
            screen = subprocess.run([*tmux, "capture-pane", "-p"], capture_output=True, text=True).stdout
            if peer_id in screen and "connected" in screen:
                break
            time.sleep(POLL_S)
        assert peer_id in screen, f"peer id {peer_id} not on the screen:\n{screen}"
        lines = screen.splitlines()
        assert len(lines) <= 30 and max(len(line) for line in lines) <= 100
        # q quits cleanly: the session (whose only command was the TUI) ends.
        subprocess.run([*tmux, "send-keys", "q"], check=True)
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            if subprocess.run([*tmux, "has-session"], capture_output=True).returncode != 0:
                break
            time.sleep(POLL_S)
        else:
            raise AssertionError("the TUI did not quit on q")
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)
        daemon.stop()
        shutil.rmtree(root, ignore_errors=True)
