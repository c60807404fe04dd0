"""The systemd notify protocol (sd_notify(3)) over a datagram Unix socket, stdlib only.

Outside systemd (no ``$NOTIFY_SOCKET``) every method is a no-op, so the daemon calls them
unconditionally. Sends never raise: a lost status line must not take the node down, and systemd
notices a dead daemon by itself (the watchdog).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping
from typing import Final

__all__ = ["NOTIFY_ENV_VARS", "Notifier", "scrub_environment"]

log = logging.getLogger(__name__)

# Variables through which systemd talks to the main process only. A child (a sibling daemon)
# that inherits them would send READY/WATCHDOG for a unit it is not the main process of.
NOTIFY_ENV_VARS: Final = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def scrub_environment(env: Mapping[str, str]) -> dict[str, str]:
    """A copy of ``env`` without the notify variables, for spawning child daemons."""
    return {k: v for k, v in env.items() if k not in NOTIFY_ENV_VARS}


def _socket_address(raw: str) -> str | None:
    if raw.startswith("@"):
        # Abstract namespace: a leading NUL instead of '@' (Linux only).
        return "\0" + raw[1:]
    if raw.startswith("/"):
        return raw
    return None  # e.g. systemd's newer "vsock:CID:PORT", which we do not speak


def _watchdog_period(env: Mapping[str, str], pid: int) -> float | None:
    usec_text = env.get("WATCHDOG_USEC", "")
    if not usec_text:
        return None
    watchdog_pid = env.get("WATCHDOG_PID", "")
    if watchdog_pid:
        try:
            if int(watchdog_pid) != pid:
                return None  # the watchdog is meant for another process (our parent, say)
        except ValueError:
            log.debug("ignoring malformed WATCHDOG_PID=%r", watchdog_pid)
            return None
    try:
        usec = int(usec_text)
    except ValueError:
        log.debug("ignoring malformed WATCHDOG_USEC=%r", usec_text)
        return None
    if usec <= 0:
        return None
    # Ping at half the deadline, as sd_watchdog_enabled(3) recommends, so one late tick is safe.
    return usec / 1_000_000 / 2


class Notifier:
    """Sends sd_notify messages; create with :meth:`from_environment`."""

    def __init__(self, address: str | None, watchdog_period: float | None = None) -> None:
        self._address = address
        self._watchdog_period = watchdog_period
        self._sock: socket.socket | None = None

    @classmethod
    def from_environment(cls, env: Mapping[str, str], pid: int | None = None) -> Notifier:
        """A notifier for ``$NOTIFY_SOCKET``, or a no-op one when it is unset or unusable."""
        raw = env.get("NOTIFY_SOCKET", "")
        address = _socket_address(raw) if raw else None
        if raw and address is None:
            log.warning("NOTIFY_SOCKET=%r is not a socket path this daemon supports; not notifying", raw)
        period = _watchdog_period(env, os.getpid() if pid is None else pid)
        return cls(address, period)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def watchdog_interval(self) -> float | None:
        """Seconds between ``watchdog()`` pings (half systemd's WatchdogSec), or None if off."""
        return self._watchdog_period if self.enabled else None

    def ready(self, status: str | None = None) -> bool:
        fields = ["READY=1"]
        if status is not None:
            fields.append("STATUS=" + _one_line(status))
        return self.notify(*fields)

    def status(self, text: str) -> bool:
        return self.notify("STATUS=" + _one_line(text))

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def notify(self, *assignments: str) -> bool:
        """Send ``KEY=VALUE`` lines as one datagram; True if it was handed to the socket."""
        if self._address is None:
            return False
        message = "\n".join(assignments).encode("utf-8", "replace")
        try:
            if self._sock is None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                # Non-blocking: a stalled systemd must never stall the trio loop that calls us.
                sock.setblocking(False)
                self._sock = sock
            self._sock.sendto(message, self._address)
        except OSError as exc:
            log.debug("sd_notify %r to %r failed: %s", message, self._address, exc)
            return False
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> Notifier:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _one_line(text: str) -> str:
    # A newline would end the STATUS= assignment and let the rest pose as another one.
    return " ".join(text.splitlines())
