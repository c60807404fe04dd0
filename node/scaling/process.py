"""Start, watch and stop one daemon process.

The parent learns that a child is ready the way systemd does: it hands the child a private
NOTIFY_SOCKET and waits for `READY=1`. So the daemon has one readiness protocol, used alike under
systemd, by `sovereign demo`, by the tests, and later by the sibling supervisor.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from node.rpc import ControlClient

LOOPBACK_ANY_PORT = "/ip4/127.0.0.1/tcp/0"


def _detach_but_die_with_parent() -> None:
    """In the child before exec: its own session (a Ctrl-C at the parent's terminal is the
    parent's to handle, so children stop in order), yet SIGTERM when the parent dies, so a
    crashed test run or demo never leaves orphan daemons behind."""
    os.setsid()
    libc = ctypes.CDLL(None, use_errno=True)
    PR_SET_PDEATHSIG = 1
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


class DaemonStartError(RuntimeError):
    """The child exited or never said READY; the message carries the tail of its log."""


class DaemonProcess:
    """One `sovereign daemon` child with its own home, log file and notify socket."""

    def __init__(
        self,
        home: Path,
        *,
        listen: Sequence[str] = (LOOPBACK_ANY_PORT,),
        bootstrap: Sequence[str] = (),
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
        init: bool = True,
    ) -> None:
        self.home = Path(home)
        # A home that was never initialised (no key, no state) gets `sovereign init` first, as an
        # operator would run it: the daemon itself never creates a key. A home with state but no
        # key is left to the daemon, which refuses it.
        self.init = init
        self.listen = tuple(listen)
        self.bootstrap = tuple(bootstrap)
        self.extra_args = tuple(extra_args)
        self.env = dict(os.environ if env is None else env)
        self.log_path = log_path or self.home / "daemon.log"
        self.socket_path = self.home / "sovereign.sock"
        self._proc: subprocess.Popen[bytes] | None = None
        self._notify_dir: str | None = None
        self._notify: socket.socket | None = None
        self.started_at = 0.0
        self.ready_at = 0.0

    @property
    def pid(self) -> int:
        assert self._proc is not None, "not started"
        return self._proc.pid

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "node", "--home", str(self.home), "daemon"]
        for addr in self.listen:
            cmd += ["--listen", addr]
        for addr in self.bootstrap:
            cmd += ["--bootstrap", addr]
        return cmd + list(self.extra_args)

    def _initialise(self) -> None:
        if (self.home / "identity.key").exists() or (self.home / "has-state").exists():
            return
        cmd = [sys.executable, "-m", "node", "--home", str(self.home), "init"]
        done = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, env=self.env, timeout=60)
        if done.returncode != 0:
            raise DaemonStartError(f"sovereign init failed ({done.returncode}): {done.stderr.decode(errors='replace')[-2000:]}")

    def start(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self.init:
            self._initialise()
        # AF_UNIX paths are short (108 bytes): keep the notify socket in its own short temp dir.
        self._notify_dir = tempfile.mkdtemp(prefix="sov-", dir="/tmp")
        path = os.path.join(self._notify_dir, "notify")
        self._notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._notify.bind(path)
        env = {k: v for k, v in self.env.items() if k not in ("WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS")}
        env["NOTIFY_SOCKET"] = path
        env.setdefault("SOVEREIGN_LOG_FORMAT", "json")
        log = open(self.log_path, "ab")
        try:
            self.started_at = time.monotonic()
            self._proc = subprocess.Popen(
                self.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, preexec_fn=_detach_but_die_with_parent
            )
        finally:
            log.close()

    def wait_ready(self, timeout: float = 30.0) -> float:
        """Block until the child sends READY=1; return seconds from start. Raises DaemonStartError."""
        assert self._proc is not None and self._notify is not None, "not started"
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if self._proc.poll() is not None:
                raise DaemonStartError(f"daemon exited with {self._proc.returncode}:\n{self.log_tail()}")
            if remaining <= 0:
                raise DaemonStartError(f"daemon not ready after {timeout:g} s:\n{self.log_tail()}")
            # Short polls so that a child that dies without a word is noticed promptly.
            self._notify.settimeout(min(remaining, 0.2))
            try:
                data = self._notify.recv(4096)
            except (socket.timeout, TimeoutError):
                continue
            if b"READY=1" in data.split(b"\n"):
                self.ready_at = time.monotonic()
                return self.ready_at - self.started_at

    def client(self, timeout: float = 10.0) -> ControlClient:
        return ControlClient(self.socket_path, timeout=timeout)

    def call(self, method: str, params: Any = None, timeout: float = 10.0) -> Any:
        with self.client(timeout) as c:
            return c.call(method, params)

    def poll(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    def signal(self, signum: int) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL, as a crash would; the caller restarts with the same home to recover."""
        self.signal(signal.SIGKILL)
        if self._proc is not None:
            self._proc.wait()
        self._close_notify()

    def stop(self, timeout: float = 5.0) -> int:
        """SIGTERM, then SIGKILL after `timeout`; returns the exit status."""
        if self._proc is None:
            return 0
        self.signal(signal.SIGTERM)
        try:
            code = self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            code = self._proc.wait()
        self._close_notify()
        return code

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _close_notify(self) -> None:
        if self._notify is not None:
            self._notify.close()
            self._notify = None
        if self._notify_dir is not None:
            shutil.rmtree(self._notify_dir, ignore_errors=True)
            self._notify_dir = None

    def __enter__(self) -> DaemonProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
