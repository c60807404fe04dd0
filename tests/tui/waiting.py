"""Waiting on the TUI: poll a condition between pilot pauses until it holds or a deadline passes."""

from __future__ import annotations

import time
from collections.abc import Callable

from textual.pilot import Pilot

WAIT_S = 30.0
POLL_S = 0.05


async def until(pilot: Pilot[None], predicate: Callable[[], object], what: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await pilot.pause(POLL_S)  # lets the app process messages, then checks again
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
