"""JSON-RPC 2.0 over newline-delimited JSON, as a sans-I/O state machine (the shape of h11).

A ``Connection`` does no I/O: bytes that arrived go in through ``receive_data`` and come out as
events; what to say goes in through ``send_request``/``send_notification``/``send_response``/
``send_error`` and comes out as bytes to write. The daemon's control server and every client (the
CLI's blocking one, the trio one, the TUI's asyncio one) drive this one object, so the framing,
the size limit, the strict JSON decoding and the message shapes exist once.

The wire: one JSON object per line, UTF-8, terminated by ``\\n``; blank lines (and a ``\\r``
before the ``\\n``) are ignored. A line longer than ``max_line`` bytes ends the connection
(``LineTooLong``): framing is lost, and nothing past the limit is ever buffered. At the end of the
stream a last line without its newline still counts.

Decoding is strict: NaN, Infinity, numbers that overflow to inf (``1e999``), integers over
Python's digit limit, nesting deep enough to exhaust the decoder's stack and invalid UTF-8
(including encoded surrogates) are all ``PARSE_ERROR``. Escaped lone surrogates (``"\\ud800"``)
decode; the control server's params validation refuses them where text is expected.

Roles. A server (``Connection.server()``) takes requests and notifications. Batch requests (a
JSON array) are NOT supported: an array is an ``INVALID_REQUEST`` whose id is null. A request
object may carry only ``jsonrpc``, ``id``, ``method`` and ``params`` (a typo such as ``"param"``
would otherwise silently call the method without arguments); ``"params": null`` is absent params;
ids are strings, integers or null (a float or boolean id is an Invalid Request). A client
(``Connection.client()``) takes responses and notifications; it numbers its requests itself and
matches answers to them: an answer to no request it sent is a ``ProtocolViolation``, and an error
with a null id (the daemon refusing a line or the connection, then hanging up) is an
``ErrorResponse`` whose ``is_refusal`` is true.

This module is imported by the CLI on every invocation: stdlib only, and cheap.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any, TypeAlias

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

JsonId: TypeAlias = int | str | None
Params: TypeAlias = dict[str, Any] | list[Any] | None

# Responses can legitimately be much larger than requests (lists of peers, ledger pages); the
# limit only stops a broken or hostile peer from growing the client's memory without bound.
CLIENT_MAX_LINE = 64 << 20
# The longest request line the daemon's control server takes (its default ``max_line``); a longer
# one is answered with REQUEST_TOO_LARGE and the connection is closed.
DAEMON_MAX_LINE = 1 << 20
_REQUEST_MEMBERS = frozenset({"jsonrpc", "id", "method", "params"})
_EXCERPT = 200  # bytes of an offending line kept for a log message


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


# --------------------------------------------------------------------------------------------
# Events: what ``Connection.receive_data`` returns


@dataclass(frozen=True, slots=True)
class Request:
    """A call that wants an answer (server role)."""

    id: JsonId
    method: str
    params: Params


@dataclass(frozen=True, slots=True)
class Notification:
    """A call without an id: nothing is answered (a request to a server, an event to a client)."""

    method: str
    params: Params


@dataclass(frozen=True, slots=True)
class Response:
    """A successful answer (client role)."""

    id: JsonId
    result: Any

    def unwrap(self) -> Any:
        return self.result


@dataclass(frozen=True, slots=True)
class ErrorResponse:
    """An error answer (client role). A null id is a refusal: the daemon could not read or would
    not take a line or the connection, and hangs up after it."""

    id: JsonId
    code: int
    message: str
    data: Any = None

    @property
    def is_refusal(self) -> bool:
        return self.id is None

    @property
    def error(self) -> RpcError:
        return RpcError(self.code, self.message, self.data)

    def unwrap(self) -> Any:
        raise self.error


@dataclass(frozen=True, slots=True)
class ProtocolViolation:
    """A line that is not a message this role takes. A server answers it with ``error`` (and
    ``id``, when the request's id could be read); a client ignores it (and may log ``line``)."""

    code: int  # PARSE_ERROR or INVALID_REQUEST
    message: str
    data: Any
    id: JsonId
    line: bytes  # the first bytes of the offending line

    @property
    def error(self) -> RequestError:
        return RequestError(self.code, self.message, self.data, request_id=self.id)


@dataclass(frozen=True, slots=True)
class LineTooLong:
    """The peer sent a line over ``limit`` bytes; the connection has ended (framing is lost)."""

    limit: int


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The peer closed its sending side (``receive_data(b"")``); the connection has ended."""


Event: TypeAlias = (
    Request | Notification | Response | ErrorResponse | ProtocolViolation | LineTooLong | ConnectionClosed
)


# --------------------------------------------------------------------------------------------
# Encoding and decoding of single messages

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
    """Strict JSON from one line; anything unreadable is a ``RequestError(PARSE_ERROR)``."""
    try:
        return _decode(line.decode("utf-8"))
    # RecursionError: deeply nested arrays exhaust the C scanner's stack guard.
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise RequestError(PARSE_ERROR, "Parse error", data=str(exc)[:200]) from None


def _is_valid_id(value: Any) -> bool:
    # `type(...) is int` on purpose: bool is an int subclass and is not a valid id.
    return value is None or type(value) is int or type(value) is str


def request_from_json(obj: Any) -> Request | Notification:
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
    if has_id:
        return Request(request_id, method, params)
    return Notification(method, params)


def parse_request(line: bytes) -> Request | Notification:
    """Parse one line into a Request or Notification; raises ``RequestError`` with PARSE_ERROR
    or INVALID_REQUEST."""
    return request_from_json(decode_line(line))


def event_params(event: Event) -> dict[str, Any] | None:
    """The ``{"topic", "ts", "data"}`` of the daemon's ``event`` notification, else None."""
    if type(event) is Notification and event.method == "event" and type(event.params) is dict:
        return event.params
    return None


def _violation(error: RequestError, line: bytes) -> ProtocolViolation:
    return ProtocolViolation(error.code, error.message, error.data, error.request_id, line[:_EXCERPT])


# --------------------------------------------------------------------------------------------
# The connection


class Role(enum.Enum):
    CLIENT = "client"
    SERVER = "server"


class Connection:
    """One side of one JSON-RPC connection; no I/O, no clock, no logging.

    ``max_line`` bounds every received line (default: ``DAEMON_MAX_LINE`` for a server,
    ``CLIENT_MAX_LINE`` for a client). ``max_send_line`` (client role) refuses to encode a request
    longer than the daemon takes, with the ``REQUEST_TOO_LARGE`` it would answer, before
    anything is sent. After ``LineTooLong`` or ``ConnectionClosed`` the connection has ``ended``:
    ``receive_data`` then takes only ``b""`` (and returns nothing); sending stays possible (a
    server still answers what a half-closed client asked).
    """

    __slots__ = ("_awaiting", "_buf", "_ended", "_is_server", "_next_id", "max_line", "max_send_line", "role")

    def __init__(self, role: Role, *, max_line: int | None = None, max_send_line: int | None = None) -> None:
        if max_line is None:
            max_line = DAEMON_MAX_LINE if role is Role.SERVER else CLIENT_MAX_LINE
        if max_line < 1:
            raise ValueError("max_line must be positive")
        self.role = role
        self.max_line = max_line
        self.max_send_line = max_send_line
        self._buf = bytearray()  # the start of a line whose newline has not arrived
        self._ended = False
        self._next_id = 1
        self._awaiting: set[int] = set()  # ids of our requests not answered yet
        self._is_server = role is Role.SERVER

    @classmethod
    def server(cls, *, max_line: int = DAEMON_MAX_LINE) -> Connection:
        return cls(Role.SERVER, max_line=max_line)

    @classmethod
    def client(cls, *, max_line: int = CLIENT_MAX_LINE, max_send_line: int | None = None) -> Connection:
        return cls(Role.CLIENT, max_line=max_line, max_send_line=max_send_line)

    @property
    def ended(self) -> bool:
        """The peer's stream is over (it closed, or sent a line over the limit)."""
        return self._ended

    @property
    def awaiting(self) -> frozenset[int]:
        """Ids of the requests sent on this connection that have no answer yet."""
        return frozenset(self._awaiting)

    # ---- receiving

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed bytes as they arrived (any split); ``b""`` means the peer closed. Returns the
        events they complete, in order. Never raises for anything the peer sent."""
        if self._ended:
            if data:
                raise RuntimeError("receive_data after the connection ended")
            return []
        if not data:
            return self._end_of_stream()
        buf = self._buf
        if b"\n" not in data:  # only the new bytes are searched: a long line costs linear time
            buf += data
            return self._line_too_long() if len(buf) > self.max_line else []
        if buf:
            buf += data
            data = bytes(buf)
            buf.clear()
        *lines, rest = data.split(b"\n")
        max_line = self.max_line
        message = self._server_message if self._is_server else self._client_message
        events: list[Event] = []
        for line in lines:
            if len(line) > max_line:
                events.extend(self._line_too_long())
                return events
            if line and not line.isspace():
                events.append(message(line))
        if len(rest) > max_line:
            events.extend(self._line_too_long())
        elif rest:
            buf += rest
        return events

    def _end_of_stream(self) -> list[Event]:
        self._ended = True
        events: list[Event] = []
        if self._buf and not self._buf.isspace():  # a last line without its newline
            message = self._server_message if self._is_server else self._client_message
            events.append(message(bytes(self._buf)))
        self._buf.clear()
        events.append(ConnectionClosed())
        return events

    def _line_too_long(self) -> list[Event]:
        self._ended = True
        self._buf.clear()
        return [LineTooLong(self.max_line)]

    def _server_message(self, line: bytes) -> Event:
        try:
            return request_from_json(decode_line(line))
        except RequestError as exc:
            return _violation(exc, line)

    def _client_message(self, line: bytes) -> Event:
        try:
            obj = decode_line(line)
        except RequestError as exc:
            return _violation(exc, line)
        if type(obj) is dict and "method" not in obj and ("result" in obj or "error" in obj):
            return self._answer(obj, line)
        try:
            message = request_from_json(obj)
        except RequestError as exc:
            return _violation(exc, line)
        if type(message) is Notification:
            return message
        return _violation(RequestError(INVALID_REQUEST, "a request to a client is not supported"), line)

    def _answer(self, obj: dict[str, Any], line: bytes) -> Event:
        # Liberal in what it takes from the daemon (no check of "jsonrpc" or of extra members),
        # strict about whose answer it is.
        request_id = obj.get("id")
        if "error" in obj:
            error = RpcError.from_json(obj["error"])
            if request_id is None:
                return ErrorResponse(None, error.code, error.message, error.data)
            if self._claim(request_id):
                return ErrorResponse(request_id, error.code, error.message, error.data)
        elif self._claim(request_id):
            return Response(request_id, obj["result"])
        return _violation(RequestError(INVALID_REQUEST, f"an answer to no request of ours (id {request_id!r})"), line)

    def _claim(self, request_id: Any) -> bool:
        """Whether ``request_id`` names a request of ours still waiting; it then stops waiting."""
        if type(request_id) is int and request_id in self._awaiting:
            self._awaiting.remove(request_id)
            return True
        return False

    # ---- sending

    def send_request(self, method: str, params: Params = None) -> tuple[int, bytes]:
        """A new request id and the bytes to send. Raises TypeError/ValueError for params JSON
        cannot carry, RpcError(REQUEST_TOO_LARGE) past ``max_send_line``; nothing is then owed."""
        if self._is_server:
            raise RuntimeError("a server connection does not send requests")
        request_id = self._next_id
        data = self._fits(encode_request(request_id, method, params))
        self._next_id += 1
        self._awaiting.add(request_id)
        return request_id, data

    def send_notification(self, method: str, params: Params = None) -> bytes:
        """A notification: a client's fire-and-forget call, or a server's event."""
        data = encode_notification(method, params)
        return data if self._is_server else self._fits(data)

    def send_response(self, request_id: JsonId, result: Any) -> bytes:
        """Raises TypeError/ValueError when ``result`` is not JSON-serialisable."""
        if not self._is_server:
            raise RuntimeError("a client connection does not answer requests")
        return encode_result(request_id, result)

    def send_error(self, request_id: JsonId, error: RpcError) -> bytes:
        """An error answer (``None``: about no request in particular); never raises for ``data``."""
        if not self._is_server:
            raise RuntimeError("a client connection does not answer requests")
        return encode_error(request_id, error)

    def _fits(self, data: bytes) -> bytes:
        limit = self.max_send_line
        if limit is not None and len(data) - 1 > limit:  # the newline does not count
            raise RpcError(
                REQUEST_TOO_LARGE,
                f"the request is {len(data) - 1} bytes, over the daemon's limit of {limit} bytes",
                {"max_line": limit},
            )
        return data
