"""The blocking control-socket client (the CLI, scripts): a socket loop over ``Connection``.

Stdlib only and cheap to import: the CLI imports it on every invocation.
"""

from __future__ import annotations

import os
import socket
import time
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any, Self

from node.rpc.connection import (
    CLIENT_MAX_LINE,
    Connection,
    ConnectionClosed,
    DaemonNotRunning,
    ErrorResponse,
    Event,
    LineTooLong,
    Params,
    ProtocolViolation,
    Response,
    RpcError,
    event_params,
)

RECV_SIZE = 1 << 16
# How long a client whose write failed waits for the line the daemon sent before hanging up.
FAREWELL_WAIT = 1.0

class CallTimeout(TimeoutError):
    """No answer to a call within its timeout. The daemon may still be carrying the call out
    (a transfer may still commit), so the caller must not assume it failed."""

    def __init__(self, method: str, timeout: float) -> None:
        super().__init__(f"no answer to {method} within {timeout:g} s")
        self.method = method
        self.timeout = timeout


class _Unset:
    """Marks an argument left out (``None`` already means "wait forever")."""


_UNSET = _Unset()


def warn_ignored(event: Event) -> None:
    """Log what a client ignores from the daemon (a malformed line, a notification it does not know)."""
    # logging costs a few ms to import and is only needed when the daemon misbehaves.
    import logging

    what = event.line if isinstance(event, ProtocolViolation) else event
    logging.getLogger("sovereign.rpc").warning("ignoring an unexpected message from the daemon: %r", what)


class ControlClient:
    """Blocking client for the CLI and scripts: stdlib only, one request at a time.

    Usable as a context manager; connects on first use otherwise. ``timeout`` bounds connecting
    and, unless a call gives its own, each call (``None`` waits forever). A call that sets the
    daemon's own wait (e.g. ``ledger.transfer``'s ``timeout``) should wait longer than that.
    Raises ``DaemonNotRunning`` when nothing listens on the socket, ``RpcError`` for an error
    response (also one the daemon sent before hanging up: a line over its limit, too many
    clients), ``CallTimeout`` when no answer comes in time, ``ConnectionError`` if the daemon
    hangs up without a word, and ``ValueError``/``TypeError`` for params JSON cannot carry (NaN,
    inf), before anything is sent. With ``max_request_line`` set, a request longer than that is
    refused here with ``REQUEST_TOO_LARGE``, as the daemon would, without sending it.
    """

    def __init__(
        self,
        socket_path: str | os.PathLike[str],
        timeout: float | None = 10.0,
        *,
        max_line: int = CLIENT_MAX_LINE,
        max_buffered_events: int = 10_000,
        max_request_line: int | None = None,
    ) -> None:
        self.socket_path = os.fspath(socket_path)
        self.timeout = timeout
        self._max_request_line = max_request_line
        self._max_line = max_line
        self._sock: socket.socket | None = None
        # One protocol object per socket: a new one when the socket closes, so nothing of an old
        # stream (a partial line, ids still awaited) leaks into the next connection.
        self._rpc = self._new_connection()
        self._received: deque[Event] = deque()  # events of _rpc not looked at yet
        # Events that arrive while a call waits for its response; oldest dropped when full so a
        # subscriber that makes calls but never iterates cannot grow without bound.
        self._events: deque[dict[str, Any]] = deque(maxlen=max_buffered_events)

    def _new_connection(self) -> Connection:
        return Connection.client(max_line=self._max_line, max_send_line=self._max_request_line)

    @property
    def max_request_line(self) -> int | None:
        """Requests longer than this are refused here, as the daemon would (None: no limit)."""
        return self._max_request_line

    @max_request_line.setter
    def max_request_line(self, limit: int | None) -> None:
        self._max_request_line = self._rpc.max_send_line = limit

    def __enter__(self) -> Self:
        self.connect()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def connect(self) -> None:
        if self._sock is not None:
            return
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self.socket_path)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            sock.close()
            raise DaemonNotRunning(f"no daemon is listening on {self.socket_path}") from exc
        except BaseException:
            sock.close()
            raise
        self._sock = sock

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            self._rpc = self._new_connection()
            self._received.clear()

    def call(
        self,
        method: str,
        params: Params = None,
        *,
        timeout: float | None | _Unset = _UNSET,
    ) -> Any:
        """Send one request and wait for its answer, at most ``timeout`` seconds (default: the
        client's ``timeout``; ``None``: forever)."""
        wait = self.timeout if isinstance(timeout, _Unset) else timeout
        # Encoded before connecting, so params JSON cannot carry never reach the daemon.
        request_id, data = self._rpc.send_request(method, params)
        deadline = None if wait is None else time.monotonic() + wait
        sock = self._connected()
        try:
            self._send(sock, data)
            if deadline is None:
                sock.settimeout(None)
            while True:
                event = self._next_event(deadline=deadline)
                if event is None:
                    raise ConnectionError("the daemon closed the control connection")
                if isinstance(event, dict):
                    self._events.append(event)
                elif event.id == request_id:
                    return event.unwrap()
                elif isinstance(event, ErrorResponse) and event.is_refusal:
                    raise event.error
                # Anything else is a late answer to an earlier call that timed out: skip it.
        except TimeoutError:
            raise CallTimeout(method, wait if wait is not None else 0.0) from None
        finally:
            if self._sock is sock:
                sock.settimeout(self.timeout)

    def notify(self, method: str, params: Params = None) -> None:
        """Send a notification: the daemon runs the method and sends nothing back."""
        data = self._rpc.send_notification(method, params)
        self._send(self._connected(), data)

    def subscribe(
        self, topics: Sequence[str] = (), *, timeout: float | None = None
    ) -> Iterator[dict[str, Any]]:
        """Subscribe (eagerly, so errors surface here) and return an iterator of events.

        Each event is ``{"topic": str, "ts": int (ms), "data": dict}``. The iterator waits up to
        ``timeout`` seconds per event (``None``: forever; ``TimeoutError`` when exceeded) and ends
        when the daemon closes the connection. ``call`` may be used between events.
        """
        self.call("events.subscribe", {"topics": list(topics)})
        return self._iter_events(timeout)

    def _iter_events(self, timeout: float | None) -> Iterator[dict[str, Any]]:
        while True:
            while self._events:
                yield self._events.popleft()
            sock = self._connected()
            sock.settimeout(timeout)
            try:
                event = self._next_event()
            finally:
                if self._sock is sock:  # not closed by EOF meanwhile
                    sock.settimeout(self.timeout)
            if event is None:
                return
            if isinstance(event, dict):
                yield event
            # An answer here is a late one to a call that timed out: skipped.

    def _send(self, sock: socket.socket, data: bytes) -> None:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError) as exc:
            # The daemon hung up while we wrote; it may have said why first (a line over its
            # limit, too many clients), and that answer, not the broken pipe, is the error.
            farewell = self._farewell()
            self.close()
            if farewell is not None:
                raise farewell from None
            raise ConnectionError(f"the daemon closed the control connection ({exc.strerror})") from None

    def _farewell(self) -> RpcError | None:
        """The error the daemon sent before closing, if any reached us."""
        deadline = time.monotonic() + FAREWELL_WAIT
        try:
            while (event := self._next_event(deadline=deadline)) is not None:
                if isinstance(event, ErrorResponse):
                    return event.error
            return None
        except OSError:  # reset, or nothing more within the wait
            return None

    def _connected(self) -> socket.socket:
        if self._sock is None:
            self.connect()
        assert self._sock is not None
        return self._sock

    def _next_event(self, *, deadline: float | None = None) -> Response | ErrorResponse | dict[str, Any] | None:
        """The next answer or event (its params); None once the daemon has closed the
        connection (the socket is then closed too). Without a deadline, the socket's own
        timeout applies."""
        while True:
            while self._received:
                event = self._received.popleft()
                if isinstance(event, Response | ErrorResponse):
                    return event
                if (params := event_params(event)) is not None:
                    return params
                if isinstance(event, ConnectionClosed):
                    self.close()
                    return None
                if isinstance(event, LineTooLong):
                    self.close()
                    raise ConnectionError(f"the daemon sent a line over {event.limit} bytes")
                warn_ignored(event)
            self._received.extend(self._rpc.receive_data(self._recv(deadline)))

    def _recv(self, deadline: float | None) -> bytes:
        sock = self._connected()
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("timed out")
            sock.settimeout(remaining)
        try:
            return sock.recv(RECV_SIZE)
        except ConnectionResetError:
            return b""  # what the daemon sent before the reset has been read already
