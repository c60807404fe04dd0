"""JSON-RPC 2.0 framing and clients for the daemon's control socket.

Framing: one JSON object per line, UTF-8, terminated by ``\\n``, over a Unix stream socket.
Batch requests (a JSON array) are NOT supported: the server answers an array with a single
``-32600 Invalid Request`` error whose ``id`` is null. A request object may carry only the
members ``jsonrpc``, ``id``, ``method`` and ``params``; anything else is an Invalid Request too
(a typo such as ``"param"`` would otherwise silently call the method without arguments).
``"params": null`` is treated like absent params. Ids are strings, integers or null; a float or
boolean id is an Invalid Request.

This module is imported by the CLI on every invocation, so it must stay cheap to import: the
sync client uses only the stdlib, and trio is imported lazily inside the async client.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager

    import trio

JSONRPC_VERSION = "2.0"

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
# Application codes (the -32000..-32099 range is reserved for implementation-defined errors).
CALL_FAILED = -32000
REQUEST_TOO_LARGE = -32001
NOT_FOUND = -32004
UNAVAILABLE = -32005

_DEFAULT_MESSAGES = {
    PARSE_ERROR: "Parse error",
    INVALID_REQUEST: "Invalid Request",
    METHOD_NOT_FOUND: "Method not found",
    INVALID_PARAMS: "Invalid params",
    INTERNAL_ERROR: "Internal error",
    CALL_FAILED: "Call failed",
    REQUEST_TOO_LARGE: "Request too large",
    NOT_FOUND: "Not found",
    UNAVAILABLE: "Unavailable",
}

JsonId = int | str | None

# Responses can legitimately be much larger than requests (lists of peers, ledger pages); the
# limit only stops a broken or hostile peer from growing the client's memory without bound.
CLIENT_MAX_LINE = 64 << 20
# The longest request line the daemon's control server takes (its default ``max_line``); a longer
# one is answered with REQUEST_TOO_LARGE and the connection is closed.
DAEMON_MAX_LINE = 1 << 20
_RECV_SIZE = 1 << 16
_REQUEST_MEMBERS = frozenset({"jsonrpc", "id", "method", "params"})


class RpcError(Exception):
    """An error response, raised by clients and by method handlers (passed through to the caller)."""

    def __init__(self, code: int, message: str | None = None, data: Any = None) -> None:
        self.code = code
        self.message = message if message is not None else _DEFAULT_MESSAGES.get(code, "Error")
        self.data = data
        # args mirror __init__ so the exception pickles and copies faithfully.
        super().__init__(code, self.message, data)

    def __str__(self) -> str:
        return f"{self.message} ({self.code})"

    def to_json(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error

    @classmethod
    def from_json(cls, error: Any) -> RpcError:
        """Build from a response's ``error`` member, tolerating a malformed one."""
        if not isinstance(error, dict):
            return cls(INTERNAL_ERROR, "malformed error response", data=error)
        code = error.get("code")
        message = error.get("message")
        return cls(
            code if type(code) is int else INTERNAL_ERROR,
            message if isinstance(message, str) else None,
            error.get("data"),
        )


class RequestError(RpcError):
    """A request that could not be parsed or has the wrong shape.

    ``request_id`` is the request's id when it could be read, so the error response can carry
    it; it is None for parse errors, as the spec requires.
    """

    def __init__(
        self, code: int, message: str | None = None, data: Any = None, *, request_id: JsonId = None
    ) -> None:
        super().__init__(code, message, data)
        self.request_id = request_id


class DaemonNotRunning(ConnectionError):
    """No daemon listens on the control socket (the file is missing or refuses connections)."""


@dataclass(frozen=True, slots=True)
class Request:
    id: JsonId
    method: str
    params: dict[str, Any] | list[Any] | None
    is_notification: bool


# Built once: json.dumps/json.loads with keyword arguments construct a new coder on every call.
# ensure_ascii keeps lone surrogates encodable; allow_nan=False keeps the output strict JSON.
_encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_INFINITY = float("inf")


def _parse_float(text: str) -> float:
    value = float(text)
    # 1e999 is valid JSON syntax but would become inf, which JSON cannot carry back out.
    if value == _INFINITY or value == -_INFINITY:
        raise ValueError(f"number out of range: {text[:20]}")
    return value


_decode = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_parse_float).decode


def encode_message(obj: Any) -> bytes:
    """Compact JSON plus the line terminator. Raises TypeError/ValueError if not serialisable."""
    return (_encode(obj) + "\n").encode("ascii")


def encode_request(request_id: JsonId, method: str, params: Any = None) -> bytes:
    msg: dict[str, Any] = {"jsonrpc": JSONRPC_VERSION, "id": request_id, "method": method}
    if params is not None:
        msg["params"] = params
    return encode_message(msg)


def encode_notification(method: str, params: Any = None) -> bytes:
    msg: dict[str, Any] = {"jsonrpc": JSONRPC_VERSION, "method": method}
    if params is not None:
        msg["params"] = params
    return encode_message(msg)


def encode_result(request_id: JsonId, result: Any) -> bytes:
    return encode_message({"jsonrpc": JSONRPC_VERSION, "id": request_id, "result": result})


def encode_error(request_id: JsonId, error: RpcError) -> bytes:
    """Encode an error response; unserialisable ``data`` is dropped rather than losing the error."""
    try:
        return encode_message({"jsonrpc": JSONRPC_VERSION, "id": request_id, "error": error.to_json()})
    except (TypeError, ValueError):
        bare = {"code": error.code, "message": error.message}
        return encode_message({"jsonrpc": JSONRPC_VERSION, "id": request_id, "error": bare})


def decode_line(line: bytes) -> Any:
    """Strict JSON from one line; anything unreadable is a ``PARSE_ERROR``."""
    try:
        return _decode(line.decode("utf-8"))
    # RecursionError: deeply nested arrays exhaust the C scanner's stack guard.
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise RequestError(PARSE_ERROR, "Parse error", data=str(exc)[:200]) from None


def _is_valid_id(value: Any) -> bool:
    # `type(...) is int` on purpose: bool is an int subclass and is not a valid id.
    return value is None or type(value) is int or type(value) is str


def request_from_json(obj: Any) -> Request:
    """Check a decoded message's shape; raises ``RequestError(INVALID_REQUEST)``."""
    if isinstance(obj, list):
        raise RequestError(INVALID_REQUEST, "Invalid Request: batch requests are not supported")
    if not isinstance(obj, dict):
        raise RequestError(INVALID_REQUEST, "Invalid Request: a request must be a JSON object")
    has_id = "id" in obj
    request_id = obj.get("id")
    if not _is_valid_id(request_id):
        raise RequestError(INVALID_REQUEST, "Invalid Request: id must be a string, an integer or null")

    def invalid(why: str) -> RequestError:
        return RequestError(INVALID_REQUEST, f"Invalid Request: {why}", request_id=request_id)

    if obj.get("jsonrpc") != JSONRPC_VERSION:
        raise invalid('jsonrpc must be "2.0"')
    method = obj.get("method")
    if not isinstance(method, str) or not method:
        raise invalid("method must be a non-empty string")
    params = obj.get("params")
    if params is not None and not isinstance(params, dict | list):
        raise invalid("params must be an object or an array")
    if len(obj) > 2 + has_id + ("params" in obj):
        unknown = sorted(set(obj) - _REQUEST_MEMBERS)
        raise invalid(f"unknown member {unknown[0]!r}")
    return Request(request_id, method, params, not has_id)


def parse_request(line: bytes) -> Request:
    """Parse one line into a Request; raises ``RequestError`` with PARSE_ERROR or INVALID_REQUEST."""
    return request_from_json(decode_line(line))


def _classify(line: bytes) -> tuple[str, Any]:
    """Sort a line the daemon sent into ("response", msg), ("event", params) or ("other", None)."""
    try:
        msg = decode_line(line)
    except RpcError:
        _warn("ignoring a malformed line from the daemon: %r", line[:200])
        return "other", None
    if isinstance(msg, dict):
        if "id" in msg and ("result" in msg or "error" in msg) and _is_valid_id(msg["id"]):
            return "response", msg
        if msg.get("method") == "event" and "id" not in msg:
            return "event", msg.get("params")
    _warn("ignoring an unexpected message from the daemon: %r", line[:200])
    return "other", None


def _is_refusal(msg: dict[str, Any]) -> bool:
    """An error about no request in particular: the daemon could not read or would not take a
    line (clients here send only well-formed requests, so never a parse error of their own)."""
    return msg["id"] is None and "error" in msg


def _result_of(msg: dict[str, Any]) -> Any:
    if "error" in msg:
        raise RpcError.from_json(msg["error"])
    return msg.get("result")


def _warn(fmt: str, *args: Any) -> None:
    # logging costs a few ms to import and is only needed when the daemon misbehaves.
    import logging

    logging.getLogger("sovereign.rpc").warning(fmt, *args)


class _LineBuffer:
    """Accumulates received bytes and splits off complete lines, bounded by ``max_line``."""

    __slots__ = ("_buf", "_scan", "_max_line")

    def __init__(self, max_line: int) -> None:
        self._buf = bytearray()
        self._scan = 0  # bytes already searched for a newline
        self._max_line = max_line

    def next_line(self) -> bytes | None:
        nl = self._buf.find(b"\n", self._scan)
        if nl < 0:
            self._scan = len(self._buf)
            if self._scan > self._max_line:
                raise ConnectionError(f"the daemon sent a line over {self._max_line} bytes")
            return None
        line = bytes(self._buf[:nl])
        del self._buf[: nl + 1]  # O(1) amortised: bytearray keeps an offset for front deletions
        self._scan = 0
        return line

    def feed(self, data: bytes) -> None:
        self._buf += data


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
# How long a client whose write failed waits for the line the daemon sent before hanging up.
_FAREWELL_WAIT = 1.0


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
        self.max_request_line = max_request_line
        self._sock: socket.socket | None = None
        self._lines = _LineBuffer(max_line)
        self._next_id = 1
        # Events that arrive while a call waits for its response; oldest dropped when full so a
        # subscriber that makes calls but never iterates cannot grow without bound.
        self._events: deque[Any] = deque(maxlen=max_buffered_events)

    def __enter__(self) -> ControlClient:
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

    def call(
        self,
        method: str,
        params: dict[str, Any] | list[Any] | None = None,
        *,
        timeout: float | None | _Unset = _UNSET,
    ) -> Any:
        """Send one request and wait for its answer, at most ``timeout`` seconds (default: the
        client's ``timeout``; ``None``: forever)."""
        wait = self.timeout if isinstance(timeout, _Unset) else timeout
        request_id = self._next_id
        self._next_id += 1
        # Encoded before connecting, so params JSON cannot carry never reach the daemon.
        data = self._checked(encode_request(request_id, method, params))
        deadline = None if wait is None else time.monotonic() + wait
        sock = self._connected()
        try:
            self._send(sock, data)
            while True:
                kind, msg = self._read_message(deadline=deadline)
                if kind == "response" and msg["id"] == request_id:
                    return _result_of(msg)
                if kind == "response" and _is_refusal(msg):
                    raise RpcError.from_json(msg["error"])
                if kind == "event":
                    self._events.append(msg)
                # Anything else is a late answer to an earlier call that timed out: skip it.
        except TimeoutError:
            raise CallTimeout(method, wait if wait is not None else 0.0) from None
        finally:
            if self._sock is sock:
                sock.settimeout(self.timeout)

    def notify(self, method: str, params: dict[str, Any] | list[Any] | None = None) -> None:
        """Send a notification: the daemon runs the method and sends nothing back."""
        data = self._checked(encode_notification(method, params))
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
                kind, msg = self._read_message(eof_ok=True)
            finally:
                if self._sock is sock:  # not closed by EOF meanwhile
                    sock.settimeout(self.timeout)
            if kind == "eof":
                return
            if kind == "event":
                yield msg

    def _checked(self, data: bytes) -> bytes:
        limit = self.max_request_line
        if limit is not None and len(data) - 1 > limit:  # the newline does not count
            raise RpcError(
                REQUEST_TOO_LARGE,
                f"the request is {len(data) - 1} bytes, over the daemon's limit of {limit} bytes",
                {"max_line": limit},
            )
        return data

    def _send(self, sock: socket.socket, data: bytes) -> None:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError) as exc:
            # The daemon hung up while we wrote; it may have said why first (a line over its
            # limit, too many clients), and that answer, not the broken pipe, is the error.
            farewell = self._farewell(sock)
            self.close()
            if farewell is not None:
                raise farewell from None
            raise ConnectionError(f"the daemon closed the control connection ({exc.strerror})") from None

    def _farewell(self, sock: socket.socket) -> RpcError | None:
        """The error the daemon sent before closing, if any reached us."""
        deadline = time.monotonic() + _FAREWELL_WAIT
        try:
            while True:
                kind, msg = self._read_message(deadline=deadline, eof_ok=True)
                if kind == "eof":
                    return None
                if kind == "response" and "error" in msg:
                    return RpcError.from_json(msg["error"])
        except OSError:  # reset, or nothing more within the wait
            return None

    def _connected(self) -> socket.socket:
        if self._sock is None:
            self.connect()
        assert self._sock is not None
        return self._sock

    def _read_message(self, *, eof_ok: bool = False, deadline: float | None = None) -> tuple[str, Any]:
        sock = self._connected()
        while True:
            line = self._lines.next_line()
            if line is None:
                if deadline is not None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise TimeoutError("timed out")
                    sock.settimeout(remaining)
                try:
                    data = sock.recv(_RECV_SIZE)
                except ConnectionResetError:
                    data = b""  # what the daemon sent before the reset has been read already
                if not data:
                    self.close()
                    if eof_ok:
                        return "eof", None
                    raise ConnectionError("the daemon closed the control connection")
                self._lines.feed(data)
                continue
            if line.strip():
                kind, msg = _classify(line)
                if kind != "other":
                    return kind, msg


class _Waiter:
    __slots__ = ("event", "message")

    def __init__(self, event: trio.Event) -> None:
        self.event = event
        self.message: dict[str, Any] | None = None


class AsyncControlClient:
    """trio client for the TUI, tests and async scripts; many calls may share one connection.

    Two ways to use it::

        async with AsyncControlClient(path) as client:      # or: client = await ...connect(path)
            await client.subscribe(["peer"])                 #     async with client: ...
            async for event in client.events(): ...

    Inside ``async with`` a reader task (in a nursery the client owns) routes responses by id to
    their callers and events to ``events()``, so calls run concurrently and events flow while
    calls are made. Without ``async with`` (``await connect(...)``, then ``call``, then
    ``aclose``), calls are serialised, each reading its own response, and events are only
    collected while a call waits. Events beyond ``max_events`` unread are dropped and counted in
    ``dropped_events`` (the reader must never block, or call responses would stall behind events).
    ``events()`` ends when the connection closes.
    """

    def __init__(
        self,
        socket_path: str | os.PathLike[str],
        *,
        max_line: int = CLIENT_MAX_LINE,
        max_events: int = 1000,
    ) -> None:
        import trio

        self.socket_path = os.fspath(socket_path)
        self.dropped_events = 0
        self._stream: trio.SocketStream | None = None
        self._lines = _LineBuffer(max_line)
        self._next_id = 1
        self._pending: dict[int, _Waiter] = {}
        self._send_lock = trio.Lock()
        self._inline_lock = trio.Lock()
        self._events_in, self._events_out = trio.open_memory_channel[Any](max_events)
        self._closed: BaseException | None = None
        # The error the daemon sent before hanging up (a line too long, too many clients), if any.
        self._refusal: RpcError | None = None
        self._reader_running = False
        self._reader_done = trio.Event()
        self._nursery_cm: AbstractAsyncContextManager[trio.Nursery] | None = None
        self._nursery: trio.Nursery | None = None

    @classmethod
    async def connect(cls, socket_path: str | os.PathLike[str], **kwargs: Any) -> AsyncControlClient:
        client = cls(socket_path, **kwargs)
        await client._open()
        return client

    async def _open(self) -> None:
        import trio

        if self._stream is not None:
            return
        try:
            self._stream = await trio.open_unix_socket(self.socket_path)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise DaemonNotRunning(f"no daemon is listening on {self.socket_path}") from exc

    async def __aenter__(self) -> AsyncControlClient:
        import trio

        await self._open()
        if self._inline_lock.locked() or self._nursery_cm is not None:
            raise RuntimeError("enter `async with` once, and not while a call is in progress")
        self._nursery_cm = trio.open_nursery()
        self._nursery = await self._nursery_cm.__aenter__()
        self._reader_running = True
        self._nursery.start_soon(self._reader)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._nursery is not None and self._nursery_cm is not None
        try:
            await self.aclose()  # closing the stream ends the reader
        finally:
            # Cancel only now: a checkpoint between cancelling and leaving the nursery would raise
            # a Cancelled that belongs to the nursery's scope but that it would never catch.
            self._nursery.cancel_scope.cancel()
            # The body's exception is deliberately not passed in: the nursery would wrap it in an
            # ExceptionGroup, and its only child (the reader) never raises.
            await self._nursery_cm.__aexit__(None, None, None)

    async def aclose(self) -> None:
        import trio

        self._shutdown(ConnectionError("the control client was closed"))
        if self._stream is not None:
            await trio.aclose_forcefully(self._stream)

    def events(self) -> trio.MemoryReceiveChannel[dict[str, Any]]:
        """Event notifications: ``{"topic", "ts", "data"}`` dicts, in arrival order."""
        return self._events_out

    async def subscribe(self, topics: Sequence[str] = ()) -> list[str]:
        """Subscribe to topic prefixes (empty or ``["*"]``: everything); returns what is active."""
        result = await self.call("events.subscribe", {"topics": list(topics)})
        return list(result["subscribed"])

    async def call(self, method: str, params: dict[str, Any] | list[Any] | None = None) -> Any:
        import trio

        request_id = self._next_id
        self._next_id += 1
        data = encode_request(request_id, method, params)
        if not self._reader_running:
            return await self._call_inline(request_id, data)
        self._check_open()
        waiter = _Waiter(trio.Event())
        self._pending[request_id] = waiter
        try:
            await self._send(data)
            await waiter.event.wait()
        finally:
            del self._pending[request_id]
        if waiter.message is None:
            if self._refusal is not None:
                raise self._refusal
            raise ConnectionError("the control connection closed during the call") from self._closed
        return _result_of(waiter.message)

    async def notify(self, method: str, params: dict[str, Any] | list[Any] | None = None) -> None:
        self._check_open()
        await self._send(encode_notification(method, params))

    def _check_open(self) -> None:
        if self._closed is not None:
            raise ConnectionError("the control connection is closed") from self._closed
        if self._stream is None:
            raise RuntimeError("not connected: use `await AsyncControlClient.connect(...)` or `async with`")

    async def _send(self, data: bytes, *, may_read: bool = False) -> None:
        """Write one line; ``may_read``: the caller owns reading (an inline call), so a failed
        write may read the daemon's last line itself."""
        import trio

        assert self._stream is not None
        async with self._send_lock:
            # Cancelled here, nothing was sent and the connection stays usable; send_all's own
            # first check cannot then fire, as no time passes in between.
            await trio.lowlevel.checkpoint_if_cancelled()
            try:
                await self._stream.send_all(data)
            except trio.BrokenResourceError as exc:
                # The daemon hung up while we wrote; it may have said why first, and that
                # answer, not the broken pipe, is the error.
                await self._await_farewell(may_read)
                self._shutdown(exc)
                if self._refusal is not None:
                    raise self._refusal from None
                raise ConnectionError("the control connection is closed") from exc
            except trio.ClosedResourceError as exc:
                self._shutdown(exc)
                raise ConnectionError("the control connection is closed") from exc
            except BaseException as exc:
                # Cancelled mid-send: part of a line may be on the wire, so framing is lost.
                self._shutdown(exc)
                await trio.aclose_forcefully(self._stream)
                raise

    async def _await_farewell(self, may_read: bool) -> None:
        """Give the daemon's last line a moment to arrive: read by the reader task if it runs,
        else here when the caller owns reading."""
        import trio

        with trio.move_on_after(_FAREWELL_WAIT):
            if self._reader_running:
                await self._reader_done.wait()
                return
            while may_read and self._refusal is None:
                kind, msg = await self._read_message()
                if kind == "eof":
                    return
                if kind == "response" and _is_refusal(msg):
                    self._refusal = RpcError.from_json(msg["error"])

    async def _read_message(self) -> tuple[str, Any]:
        import trio

        assert self._stream is not None
        while True:
            line = self._lines.next_line()
            if line is None:
                try:
                    data = await self._stream.receive_some(_RECV_SIZE)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    data = b""
                if not data:
                    return "eof", None
                self._lines.feed(data)
                continue
            if line.strip():
                kind, msg = _classify(line)
                if kind != "other":
                    return kind, msg

    async def _call_inline(self, request_id: int, data: bytes) -> Any:
        async with self._inline_lock:
            self._check_open()
            await self._send(data, may_read=True)
            while True:
                kind, msg = await self._read_message()
                if kind == "eof":
                    exc = ConnectionError("the daemon closed the control connection")
                    self._shutdown(exc)
                    raise exc
                if kind == "event":
                    self._deliver_event(msg)
                elif msg["id"] == request_id:
                    return _result_of(msg)
                elif _is_refusal(msg):
                    self._refusal = RpcError.from_json(msg["error"])
                    self._shutdown(self._refusal)
                    raise self._refusal

    async def _reader(self) -> None:
        reason: BaseException = ConnectionError("the daemon closed the control connection")
        try:
            while True:
                kind, msg = await self._read_message()
                if kind == "eof":
                    break
                if kind == "event":
                    self._deliver_event(msg)
                elif _is_refusal(msg):
                    # The daemon refused a line whole (too long, too many clients) and hangs up:
                    # that error, not "connection closed", is every waiting call's answer.
                    self._refusal = RpcError.from_json(msg["error"])
                    for waiter in self._pending.values():
                        if waiter.message is None:
                            waiter.message = msg
                            waiter.event.set()
                else:
                    waiter = self._pending.get(msg["id"])
                    if waiter is not None:  # else the caller was cancelled; drop the late answer
                        waiter.message = msg
                        waiter.event.set()
        except ConnectionError as exc:  # a line over max_line: framing is lost
            reason = exc
        finally:
            self._reader_running = False
            self._reader_done.set()
            self._shutdown(reason)

    def _deliver_event(self, params: Any) -> None:
        import trio

        try:
            self._events_in.send_nowait(params)
        except trio.WouldBlock:
            self.dropped_events += 1
        except trio.ClosedResourceError:
            pass

    def _shutdown(self, reason: BaseException) -> None:
        """Fail every waiting call and end ``events()``; idempotent."""
        if self._closed is None:
            self._closed = reason
        for waiter in self._pending.values():
            waiter.event.set()
        self._events_in.close()
