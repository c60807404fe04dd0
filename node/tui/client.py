"""The TUI's control-socket client: JSON-RPC over the daemon's Unix socket, on asyncio.

Textual runs on asyncio, so the TUI cannot use the trio ``AsyncControlClient``; this is an asyncio
stream loop over the same sans-I/O ``node.rpc.Connection`` (request ids and encoding, framing with
a size limit, decoding and matching what the daemon sends), as every other client is.

One reader task routes responses to their callers by id and events into a bounded queue. Every
call has a timeout, so a slow or wedged daemon shows up as an error in the UI, never as a hang.
When the connection ends, every waiting call fails with ``ConnectionError`` and ``next_events``
raises it too, which is how the TUI learns that the daemon went away (and why, when the daemon
said so before hanging up: too many clients, too many unread answers).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import deque
from typing import Any

from node.rpc import (
    CLIENT_MAX_LINE,
    Connection,
    ConnectionClosed,
    DaemonNotRunning,
    ErrorResponse,
    Event,
    LineTooLong,
    Response,
    event_params,
    warn_ignored,
)

DEFAULT_CALL_TIMEOUT = 10.0
_RECV_SIZE = 1 << 16


class TuiClient:
    """An asyncio JSON-RPC client; many calls may be in flight on one connection."""

    def __init__(
        self, socket_path: str | os.PathLike[str], *, max_events: int = 10_000, call_timeout: float = DEFAULT_CALL_TIMEOUT
    ) -> None:
        self.socket_path = os.fspath(socket_path)
        self.call_timeout = call_timeout
        self.dropped_events = 0
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._rpc = Connection.client(max_line=CLIENT_MAX_LINE)
        self._pending: dict[int, asyncio.Future[Response | ErrorResponse]] = {}
        # Oldest events are dropped when the UI falls behind: the reader must never block, or
        # call responses would queue up behind events (and the daemon would drop us as slow).
        self._events: deque[dict[str, Any]] = deque(maxlen=max_events)
        self._event_ready = asyncio.Event()
        self._closed: BaseException | None = None
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def connect(
        cls, socket_path: str | os.PathLike[str], *, timeout: float = 5.0, call_timeout: float = DEFAULT_CALL_TIMEOUT
    ) -> TuiClient:
        client = cls(socket_path, call_timeout=call_timeout)
        try:
            client._reader, client._writer = await asyncio.wait_for(
                asyncio.open_unix_connection(client.socket_path), timeout
            )
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise DaemonNotRunning(f"no daemon is listening on {client.socket_path}") from exc
        client._task = asyncio.create_task(client._read_loop(), name="tui-control-reader")
        return client

    @property
    def closed(self) -> bool:
        return self._closed is not None

    async def aclose(self) -> None:
        self._shutdown(ConnectionError("the control client was closed"))
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()

    async def call(
        self, method: str, params: dict[str, Any] | None = None, *, timeout: float | None = None
    ) -> Any:
        """The method's result; ``RpcError`` for an error answer, ``TimeoutError`` for no answer
        in ``timeout`` seconds (default ``call_timeout``), ``ConnectionError`` when the
        connection is or gets closed."""
        if timeout is None:
            timeout = self.call_timeout
        if self._closed is not None:
            raise _closed_error(self._closed) from self._closed
        if self._writer is None:
            raise ConnectionError("not connected to the daemon")
        request_id, data = self._rpc.send_request(method, params)
        future: asyncio.Future[Response | ErrorResponse] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            self._writer.write(data)
            await self._writer.drain()
            answer = await asyncio.wait_for(future, timeout)
        except (BrokenPipeError, ConnectionResetError) as exc:
            self._shutdown(exc)
            raise ConnectionError("the daemon closed the control connection") from exc
        except TimeoutError:
            raise TimeoutError(f"{method}: no answer from the daemon in {timeout:g} s") from None
        finally:
            self._pending.pop(request_id, None)
        return answer.unwrap()

    async def subscribe(self, topics: list[str] | None = None) -> list[str]:
        result = await self.call("events.subscribe", {"topics": topics or []})
        return list(result["subscribed"])

    async def next_events(self) -> list[dict[str, Any]]:
        """Every event received so far (at least one); waits for one. ``ConnectionError`` once
        the connection has ended and nothing is left to read."""
        while not self._events:
            if self._closed is not None:
                raise _closed_error(self._closed) from self._closed
            self._event_ready.clear()
            await self._event_ready.wait()
        out = list(self._events)
        self._events.clear()
        return out

    # -- internals ---------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        assert self._reader is not None
        try:
            while True:
                for event in self._rpc.receive_data(await self._reader.read(_RECV_SIZE)):
                    self._dispatch(event)
        except asyncio.CancelledError:
            self._shutdown(ConnectionError("the control client was closed"))
            raise
        except Exception as exc:  # noqa: BLE001 - any failure of the stream ends this connection
            self._shutdown(exc)

    def _dispatch(self, event: Event) -> None:
        """Route one event; raises ConnectionError when it ends the connection."""
        if isinstance(event, ErrorResponse) and event.is_refusal:
            # The daemon refused us (too many clients, too much unread) and hangs up: its reason
            # is the connection's end, where the calls would otherwise only see "closed".
            raise ConnectionError(f"the daemon closed the connection: {event.message}")
        if isinstance(event, Response | ErrorResponse):
            future = self._pending.get(event.id) if isinstance(event.id, int) else None
            if future is not None and not future.done():  # else its caller gave up
                future.set_result(event)
        elif (params := event_params(event)) is not None:
            if len(self._events) == self._events.maxlen:
                self.dropped_events += 1
            self._events.append(params)
            self._event_ready.set()
        elif isinstance(event, ConnectionClosed):
            raise ConnectionError("the daemon closed the control connection")
        elif isinstance(event, LineTooLong):
            raise ConnectionError(f"the daemon sent a line over {event.limit} bytes")
        else:
            warn_ignored(event)

    def _shutdown(self, reason: BaseException) -> None:
        if self._closed is None:
            self._closed = reason
        for future in self._pending.values():
            if not future.done():
                future.set_exception(_closed_error(reason))
        self._event_ready.set()


def _closed_error(reason: BaseException) -> ConnectionError:
    """What a call or ``next_events`` raises once the connection has ended for ``reason``."""
    if isinstance(reason, ConnectionError) and str(reason):
        return ConnectionError(str(reason))
    return ConnectionError(f"the control connection closed: {reason}")
