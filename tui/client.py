"""The TUI's control-socket client: JSON-RPC over the daemon's Unix socket, on asyncio.

Textual runs on asyncio, so the TUI cannot use the trio ``AsyncControlClient``; this is an asyncio
socket loop over the same sans-I/O ``node.rpc.Connection`` (request ids and encoding, framing with
a size limit, decoding and matching what the daemon sends), as every other client is.

One reader task routes responses to their callers by id and events into a bounded queue. Every
call has a timeout, so a slow or wedged daemon shows up as an error in the UI, never as a hang.
When the connection ends, every waiting call fails with ``ConnectionError`` and ``next_events``
raises it too, which is how the TUI learns that the daemon went away (and why, when the daemon
said so before hanging up: too many clients, too many unread answers).

The socket is used through the loop's ``sock_*`` calls rather than asyncio streams: a stream whose
write fails discards what the daemon sent before hanging up, and that last line is its reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
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
# How long a call whose write failed waits for the line the daemon sent before hanging up.
FAREWELL_WAIT = 1.0
_RECV_SIZE = 1 << 16


class TuiClient:
    """An asyncio JSON-RPC client; many calls may be in flight on one connection."""

    def __init__(
        self, socket_path: str | os.PathLike[str], *, max_events: int = 10_000, call_timeout: float = DEFAULT_CALL_TIMEOUT
    ) -> None:
        self.socket_path = os.fspath(socket_path)
        self.call_timeout = call_timeout
        self.dropped_events = 0
        self._sock: socket.socket | None = None
        self._rpc = Connection.client(max_line=CLIENT_MAX_LINE)
        self._pending: dict[int, asyncio.Future[Response | ErrorResponse]] = {}
        self._send_lock = asyncio.Lock()  # one line at a time: concurrent sends would interleave
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
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, client.socket_path), timeout)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            sock.close()
            raise DaemonNotRunning(f"no daemon is listening on {client.socket_path}") from exc
        except BaseException:
            sock.close()
            raise
        client._sock = sock
        client._task = asyncio.create_task(client._read_loop(sock), name="tui-control-reader")
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
        if self._sock is not None:
            self._sock.close()  # after the reader stopped: the loop must not watch a closed fd

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
        if self._sock is None:
            raise ConnectionError("not connected to the daemon")
        request_id, data = self._rpc.send_request(method, params)
        future: asyncio.Future[Response | ErrorResponse] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            await self._send(self._sock, data)
            answer = await asyncio.wait_for(future, timeout)
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

    async def _send(self, sock: socket.socket, data: bytes) -> None:
        async with self._send_lock:
            if self._closed is not None:
                raise _closed_error(self._closed) from self._closed
            try:
                await asyncio.get_running_loop().sock_sendall(sock, data)
            except (BrokenPipeError, ConnectionResetError) as exc:
                # The daemon hung up while we wrote; it may have said why first (too many
                # clients), and that answer, not the broken pipe, is the error. The socket is
                # still ours, so the reader can still read it.
                await self._await_farewell()
                raise self._end(exc) from exc
            except asyncio.CancelledError:
                # Cancelled mid-send: part of a line may be on the wire, so framing is lost.
                self._shutdown(ConnectionError("a call was cancelled while it was being sent"))
                raise

    async def _await_farewell(self) -> None:
        """Give the reader a moment to read the daemon's last line and end the connection."""
        task = self._task
        if task is not None and not task.done() and task is not asyncio.current_task():
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(task), FAREWELL_WAIT)

    async def _read_loop(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                try:
                    data = await loop.sock_recv(sock, _RECV_SIZE)
                except ConnectionResetError:
                    data = b""  # what the daemon sent before the reset has been read already
                for event in self._rpc.receive_data(data):
                    self._dispatch(event)
        except asyncio.CancelledError:
            self._shutdown(ConnectionError("the control client was closed"))
            raise
        except Exception as exc:  # noqa: BLE001 - any failure of the socket ends this connection
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

    def _end(self, exc: BaseException) -> ConnectionError:
        """End the connection after our write failed; the error names the daemon's reason if the
        reader got one first."""
        self._shutdown(exc)
        if self._closed is exc:
            return ConnectionError("the daemon closed the control connection")
        assert self._closed is not None
        return _closed_error(self._closed)

    def _shutdown(self, reason: BaseException) -> None:
        if self._closed is None:
            self._closed = reason
        for future in self._pending.values():
            if not future.done():
                future.set_exception(_closed_error(self._closed))
        self._event_ready.set()


def _closed_error(reason: BaseException) -> ConnectionError:
    """What a call or ``next_events`` raises once the connection has ended for ``reason``."""
    if isinstance(reason, ConnectionError) and str(reason):
        return ConnectionError(str(reason))
    return ConnectionError(f"the control connection closed: {reason}")
