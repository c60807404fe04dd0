"""The TUI's link to its daemon: connect, load a snapshot, follow events, reconnect with backoff.

Updates arrive by subscription. A light resync (node.status, peers.list, federation.status: three
small calls every ``RESYNC_S`` seconds) refreshes what no event carries (uptime, latency, lag,
the state digest); everything else moves with events the moment they arrive.

The link never raises into the UI: a daemon that stops, restarts, answers slowly or sends
something unexpected only changes ``state.connected`` and ``state.connection_note``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from node.rpc import RpcError
from tui.client import TuiClient
from tui.state import DaemonState

RESYNC_S = 3.0
BACKOFF_FIRST_S = 0.25
BACKOFF_MAX_S = 5.0
ACTION_TIMEOUT_S = 120.0  # a user's call may wait on consensus (a transfer) or compute (predict.*)
LOG_BACKFILL = 20  # committed batches loaded on connect, so the table is not empty until the next


class DaemonLink:
    """Keeps ``state`` in step with the daemon at ``socket_path``; ``on_change`` after updates."""

    def __init__(
        self, socket_path: str, state: DaemonState, on_change: Callable[[], None], *, call_timeout: float = 10.0
    ) -> None:
        """``call_timeout`` bounds the link's own calls: a daemon that does not answer in time
        is treated as gone (the TUI says so and reconnects), never waited on forever."""
        self.socket_path = socket_path
        self.call_timeout = call_timeout
        self.state = state
        self.on_change = on_change
        self.client: TuiClient | None = None
        self.connects = 0  # how many times a connection was made (tests wait on it)

    async def run(self) -> None:
        """Forever: connect, follow, and after any failure wait (backoff) and connect again."""
        loop = asyncio.get_running_loop()
        delay = BACKOFF_FIRST_S
        while True:
            try:
                client = await TuiClient.connect(self.socket_path, call_timeout=self.call_timeout)
            except (OSError, asyncio.TimeoutError) as exc:
                self._disconnected(f"disconnected: {_reason(exc)}; retrying in {delay:.1f} s")
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX_S)
                continue
            self.client = client
            connects = self.connects
            try:
                await self._follow(client, loop)
                reason = "the daemon closed the connection"
            except (ConnectionError, TimeoutError, RpcError, OSError) as exc:
                reason = _reason(exc)
            finally:
                self.client = None
                await client.aclose()
            # A connection that got as far as live data starts the backoff afresh; one that
            # failed before (a daemon refusing every call) backs off like a failed connect.
            delay = BACKOFF_FIRST_S if self.connects > connects else delay
            self._disconnected(f"disconnected: {reason}; retrying in {delay:.1f} s")
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX_S)

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """A call for the UI's actions; ConnectionError while disconnected."""
        if self.client is None:
            raise ConnectionError("not connected to the daemon")
        return await self.client.call(method, params, timeout=ACTION_TIMEOUT_S)

    # -- one connection --------------------------------------------------------------------

    async def _follow(self, client: TuiClient, loop: asyncio.AbstractEventLoop) -> None:
        # Subscribe first, then load: an event that lands in between is applied twice at worst
        # (idempotent here), never missed.
        await client.subscribe([])
        await self._resync(client, loop, first=True)
        self.connects += 1
        self.state.set_connected(True, f"connected to {self.socket_path}")
        self.on_change()
        next_resync = loop.time() + RESYNC_S
        while True:
            timeout = max(0.0, next_resync - loop.time())
            try:
                events = await asyncio.wait_for(client.next_events(), timeout)
            except asyncio.TimeoutError:
                events = []
            for event in events:
                self.state.apply_event(event)
            if loop.time() >= next_resync:
                await self._resync(client, loop, first=False)
                next_resync = loop.time() + RESYNC_S
            self.on_change()

    async def _resync(self, client: TuiClient, loop: asyncio.AbstractEventLoop, *, first: bool) -> None:
        status, peers, bootstrap = await asyncio.gather(
            client.call("node.status"), client.call("peers.list"), client.call("bootstrap.list")
        )
        self.state.apply_status(status, time.monotonic())
        self.state.apply_peers(peers)
        self.state.apply_bootstrap(bootstrap)
        try:
            self.state.apply_federation(await client.call("federation.status"))
        except RpcError as exc:
            self.state.no_federation(exc.message)
            return
        if first:
            last = self.state.federation.get("last_executed") if self.state.federation else None
            if isinstance(last, int):
                since = max(0, last - LOG_BACKFILL)
                self.state.apply_log(await client.call("federation.log", {"since": since, "limit": LOG_BACKFILL}))

    def _disconnected(self, note: str) -> None:
        if self.state.connected or self.state.connection_note != note:
            self.state.set_connected(False, note)
            self.on_change()


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text[:200]
