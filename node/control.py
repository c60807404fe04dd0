"""The control socket server: JSON-RPC 2.0 over a Unix socket.

Framing, decoding and encoding are ``node.rpc.Connection``'s (server role), one per client: this
module feeds it the bytes each client sends and writes the bytes it returns. What is here is the
daemon's side: the method registry, params validation, subscriptions and the limits below.

Who may connect: the socket file is created 0600 and each connection's peer credentials
(``SO_PEERCRED``) must name an allowed uid, else it is closed at once.

What a connection may cost the daemon, all bounded:
- a request line is at most ``max_line`` bytes; a longer one is answered with
  ``REQUEST_TOO_LARGE`` (id null) and the connection is closed, since framing is lost. Bytes are
  never buffered past the limit.
- at most ``max_in_flight`` requests per connection are being handled or have unsent answers;
  beyond that the server stops reading that connection (backpressure onto the client).
- an event subscriber has at most ``max_queued_events`` events waiting to be written. One that
  falls further behind gets a single ``events.overflow`` event and is disconnected: a slow client
  must never grow the daemon's memory or stall ``publish``.
- answers and events waiting to be written, over all connections together, are at most
  ``max_queued_bytes`` (counted until the kernel has taken them). Past it, the connection with the
  longest backlog (a client that sends requests and does not read the answers) gets one
  ``UNAVAILABLE`` error (id null) and is closed; the others are untouched.
- a connection that is idle for ``idle_timeout`` seconds gets one ``UNAVAILABLE`` error (id null)
  and is closed, so idle clients cannot hold every one of the ``max_clients`` slots. Idle means: it
  sent no bytes, has no request in flight (a long call is waited for) and holds no event
  subscription (a subscriber waits for events by design; one that stops reading them is dropped
  by the rule above).

Requests on one connection are handled concurrently, each in its own task, so answers may come
out of order (match them by id). One writer task per connection does all the writing, which keeps
lines whole and lets answers that are ready together go out in one ``send``. A client that hangs
up mid-request does not cancel its handlers (a half-done state change is worse than wasted
work): they finish and their answers are discarded. After a clean EOF (the client may have only
shut down its sending side, as ``socat`` does) answers still in flight are written before closing.
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import inspect
import logging
import math
import os
import socket
import stat
import struct
import time
import types
import typing
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import trio

from node.rpc import (
    DAEMON_MAX_LINE,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
    REQUEST_TOO_LARGE,
    UNAVAILABLE,
    ConnectionClosed,
    LineTooLong,
    Notification,
    ProtocolViolation,
    Request,
    RpcError,
    encode_error,
    encode_notification,
)
from node.rpc import Connection as RpcConnection

log = logging.getLogger("sovereign.control")

Handler = Callable[..., Awaitable[Any]]

_RECV_SIZE = 1 << 16
# Time a connection being dropped (too-large line, overflowing subscriber) gets to take its last
# message before the socket is closed regardless.
_FAREWELL_GRACE = 1.0
_ACCEPT_RETRY_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


class ControlSocketInUse(RuntimeError):
    """Another live process (most likely a running daemon) is serving the control socket path."""


# --------------------------------------------------------------------------------------------
# Params validation: a frozen dataclass describes a method's params object.


class _ParamError(Exception):
    def __init__(
        self, message: str, field: str, reason: str, expected: str | None = None, path: str | None = None
    ) -> None:
        super().__init__(message)
        self.field = field
        self.reason = reason
        self.expected = expected
        self.path = path

    def to_rpc(self) -> RpcError:
        data: dict[str, Any] = {"field": self.field, "reason": self.reason}
        if self.path is not None and self.path != self.field:
            data["path"] = self.path  # where inside the field, e.g. "tags[1]"
        if self.expected is not None:
            data["expected"] = self.expected
        return RpcError(INVALID_PARAMS, f"Invalid params: {self.args[0]}", data)


Check = Callable[[Any, str, str], Any]  # (value, field, path) -> value, possibly converted

# Every integer in params, at any depth, is a signed 64-bit one: SQLite, numpy and the wire
# formats all stop there, and a bigger one reaching them was an internal error (2**63 as a
# sequence number). A method that wants more takes a string.
INT_MIN, INT_MAX = -(2**63), 2**63 - 1


def _check_int_range(v: int, f: str, p: str) -> None:
    if not INT_MIN <= v <= INT_MAX:
        raise _ParamError(f"{p!r} must be a 64-bit integer ({INT_MIN}..{INT_MAX})", f, "range", "int", p)


def _check_text(v: str, f: str, p: str) -> None:
    # JSON's \ud800 escapes decode to lone surrogates, which are not text: encoding them (for
    # SQLite, a file name, a log line) fails far from here.
    if not v.isascii():
        try:
            v.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise _ParamError(
                f"{p!r} is not valid Unicode (a lone surrogate at {exc.start})", f, "unicode", "str", p
            ) from None


def _check_any(v: Any, f: str, p: str) -> Any:
    """Untyped values still obey the rules for every integer and string (iteratively: the
    decoder allows nesting deeper than Python's recursion limit)."""
    stack = [v]
    while stack:
        item = stack.pop()
        if type(item) is int:
            _check_int_range(item, f, p)
        elif type(item) is str:
            _check_text(item, f, p)
        elif type(item) is list:
            stack.extend(item)
        elif type(item) is dict:
            stack.extend(item)
            stack.extend(item.values())
    return v


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _wrong_type(value: Any, field: str, path: str, expected: str) -> _ParamError:
    return _ParamError(f"{path!r} must be {expected}, got {_json_type(value)}", field, "type", expected, path)


def _compile(tp: Any) -> tuple[Check, str]:
    """A checker and a display name for one supported type hint; TypeError if unsupported."""
    if tp is Any:
        return _check_any, "Any"
    if tp in (str, int, bool):
        name = tp.__name__

        def check_exact(v: Any, f: str, p: str, tp: type = tp, name: str = name) -> Any:
            # `type(v) is` rather than isinstance: JSON true must not pass as an int.
            if type(v) is not tp:
                raise _wrong_type(v, f, p, name)
            if tp is int:
                _check_int_range(v, f, p)
            elif tp is str:
                _check_text(v, f, p)
            return v

        return check_exact, name
    if tp is float:

        def check_float(v: Any, f: str, p: str) -> Any:
            if type(v) is float:
                return v  # finite: the decoder refuses NaN, Infinity and 1e999
            if type(v) is int:
                _check_int_range(v, f, p)
                return float(v)
            raise _wrong_type(v, f, p, "float")

        return check_float, "float"

    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (types.UnionType, typing.Union):
        others = [a for a in args if a is not type(None)]
        if len(others) != 1 or len(args) != 2:
            raise TypeError(f"only `T | None` unions are supported, not {tp!r}")
        inner, inner_name = _compile(others[0])
        name = f"{inner_name} | None"

        def check_optional(v: Any, f: str, p: str) -> Any:
            return None if v is None else inner(v, f, p)

        return check_optional, name
    if tp is list or origin is list:
        item, item_name = _compile(args[0]) if args else _compile(Any)
        name = f"list[{item_name}]"

        def check_list(v: Any, f: str, p: str) -> Any:
            if type(v) is not list:
                raise _wrong_type(v, f, p, name)
            return [item(x, f, f"{p}[{i}]") for i, x in enumerate(v)]

        return check_list, name
    if tp is dict or origin is dict:
        if args and args[0] is not str:
            raise TypeError(f"JSON object keys are strings: use dict[str, ...], not {tp!r}")
        value, value_name = _compile(args[1]) if args else _compile(Any)
        name = f"dict[str, {value_name}]"

        def check_dict(v: Any, f: str, p: str) -> Any:
            if type(v) is not dict:
                raise _wrong_type(v, f, p, name)
            for k in v:
                _check_text(k, f, p)
            return {k: value(x, f, f"{p}.{k}") for k, x in v.items()}

        return check_dict, name
    if origin is Literal:
        choices = tuple(args)
        if not all(type(c) in (str, int) for c in choices):
            raise TypeError(f"Literal params may only hold str or int values, not {tp!r}")
        name = "one of " + ", ".join(repr(c) for c in choices)

        def check_literal(v: Any, f: str, p: str) -> Any:
            # The type check keeps True from matching a Literal[1].
            if not any(type(v) is type(c) and v == c for c in choices):
                raise _ParamError(f"{p!r} must be {name}", f, "value", name, p)
            return v

        return check_literal, name
    raise TypeError(f"unsupported params type {tp!r}")


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    check: Check
    type_name: str
    required: bool
    default: Any  # JSON-friendly default for the schema, or None

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type_name, "required": self.required}
        if not self.required:
            out["default"] = self.default
        return out


def _fields_of(params: type) -> tuple[_Field, ...]:
    if not (isinstance(params, type) and dataclasses.is_dataclass(params)):
        raise TypeError(f"params must be a dataclass type, not {params!r}")
    hints = typing.get_type_hints(params)
    fields = []
    for f in dataclasses.fields(params):
        if not f.init:
            continue
        check, type_name = _compile(hints[f.name])
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        default: Any = None
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        if not isinstance(default, str | int | float | bool | list | dict | None):
            default = repr(default)
        fields.append(_Field(f.name, check, type_name, required, default))
    return tuple(fields)


@dataclass(frozen=True, slots=True)
class _Method:
    name: str
    handler: Handler
    params: type | None
    fields: tuple[_Field, ...]
    doc: str
    builtin: bool = False  # built-ins also receive the calling connection

    def bind(self, raw: dict[str, Any] | list[Any] | None) -> Any:
        """Validate raw JSON params into the params dataclass (None for a no-params method)."""
        if self.params is None:
            if raw:
                raise RpcError(
                    INVALID_PARAMS, f"Invalid params: {self.name} takes no params", {"reason": "unexpected"}
                )
            return None
        if raw is None:
            raw = {}
        elif isinstance(raw, list):
            if len(raw) > len(self.fields):
                raise RpcError(
                    INVALID_PARAMS,
                    f"Invalid params: at most {len(self.fields)} positional params",
                    {"reason": "too_many", "expected": len(self.fields)},
                )
            raw = {f.name: v for f, v in zip(self.fields, raw)}
        try:
            kwargs = {}
            for f in self.fields:
                if f.name in raw:
                    kwargs[f.name] = f.check(raw[f.name], f.name, f.name)
                elif f.required:
                    raise _ParamError(f"missing required field {f.name!r}", f.name, "missing", f.type_name)
            if len(kwargs) != len(raw):
                unknown = sorted(set(raw) - set(kwargs))[0]
                raise _ParamError(f"unknown field {unknown!r}", unknown, "unknown")
        except _ParamError as exc:
            raise exc.to_rpc() from None
        try:
            return self.params(**kwargs)
        except RpcError:
            raise
        except (TypeError, ValueError) as exc:
            # __post_init__ may check ranges and relations between fields.
            raise RpcError(INVALID_PARAMS, f"Invalid params: {exc}", {"reason": "invalid"}) from None

    def schema(self) -> dict[str, Any]:
        return {"name": self.name, "params": [f.schema() for f in self.fields], "doc": self.doc}


# --------------------------------------------------------------------------------------------
# Event subscriptions


@dataclass(frozen=True, slots=True)
class _TopicFilter:
    """Topic prefixes matched on dot boundaries: "peer" matches "peer" and "peer.joined", not "peers"."""

    everything: bool
    exact: frozenset[str]
    dotted: tuple[str, ...]

    @classmethod
    def from_topics(cls, topics: Iterable[str]) -> _TopicFilter:
        prefixes = {t.rstrip(".") for t in topics}
        if not prefixes or "*" in prefixes:
            return cls(True, frozenset(), ())
        return cls(False, frozenset(prefixes), tuple(p + "." for p in sorted(prefixes)))

    def matches(self, topic: str) -> bool:
        return self.everything or topic in self.exact or topic.startswith(self.dotted)

    def describe(self) -> list[str]:
        return ["*"] if self.everything else sorted(self.exact)


@dataclass(frozen=True)
class SubscribeParams:
    topics: list[str] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        if any(not t.strip(".") for t in self.topics):
            raise ValueError("topics must be non-empty prefixes such as 'peer' or '*'")


# --------------------------------------------------------------------------------------------
# One client connection


class _QueueBudget:
    """Bytes queued for writing over every connection of one server, against one limit."""

    def __init__(self, limit: int, on_exceeded: Callable[[], None]) -> None:
        self.limit = limit
        self.used = 0
        self.on_exceeded = on_exceeded


class _Connection:
    """Per-client state shared by its reader, its writer and its handler tasks."""

    def __init__(
        self,
        stream: trio.SocketStream,
        pid: int,
        uid: int,
        max_in_flight: int,
        budget: _QueueBudget,
        idle_timeout: float,
        max_line: int,
    ) -> None:
        self.stream = stream
        self.rpc = RpcConnection.server(max_line=max_line)  # its bytes in, its requests out
        self.fd = stream.socket.fileno()
        self.pid = pid
        self.uid = uid
        self.max_in_flight = max_in_flight
        self.budget = budget
        self.idle_timeout = idle_timeout
        self.last_active = trio.current_time()  # when it last sent bytes or stopped being busy
        self.receive_scope: trio.CancelScope | None = None  # the reader's wait for bytes
        self.queued_bytes = 0  # in `pending` or in the writer's send_all, not yet in the kernel
        self.nursery: trio.Nursery | None = None
        # Lines waiting for the writer, answers and events in the order they were produced.
        self.pending: list[bytes] = []
        self.pending_slots = 0  # in-flight slots held by the answers in `pending`
        self.pending_events = 0  # events in `pending`, bounded by max_queued_events
        self.partial_head = False  # pending[0] is the rest of a line already partly sent
        self.writing = False  # the writer is inside send_all
        self.topics: _TopicFilter | None = None
        self.in_flight = 0  # lines accepted whose handling or answer is not finished
        self.wake = trio.Event()  # the writer has something to do
        self.space: trio.Event | None = None  # the reader waits for a slot
        self.idle = trio.Event()  # nothing in flight, or the socket is gone
        self.closing = False  # reading has stopped
        self.last_message_queued = False  # the writer exits once `pending` is flushed
        self.closed = False  # the socket is unusable; answers are discarded
        self.reader_scope = trio.CancelScope()
        self.writer_scope = trio.CancelScope()

    def _queue(self, data: bytes, *, check: bool = True) -> None:
        self.pending.append(data)
        self.queued_bytes += len(data)
        self.budget.used += len(data)
        if check and self.budget.used > self.budget.limit:
            self.budget.on_exceeded()

    def unqueue(self, size: int) -> None:
        self.queued_bytes -= size
        self.budget.used -= size

    def idle_deadline(self) -> float:
        if self.in_flight or self.topics is not None:
            return math.inf  # busy: a call being answered, or a subscriber waiting for events
        return self.last_active + self.idle_timeout

    def active(self) -> None:
        """It sent something or stopped being busy: the idle time starts again."""
        self.last_active = trio.current_time()
        if self.receive_scope is not None:
            self.receive_scope.deadline = self.idle_deadline()

    def _write_now(self, data: bytes) -> bytes:
        """Write without waiting if the socket takes it; return what is left for the writer.

        Only called when nothing is pending and the writer is idle, so lines stay whole and in order.
        """
        try:
            sent = os.write(self.fd, data)  # the socket is non-blocking: this never waits
        except OSError:
            return data  # full (EAGAIN) or broken: the writer waits, or finds out and closes
        if sent < len(data):
            self.partial_head = True
        return data[sent:]

    def respond(self, data: bytes) -> None:
        """Send an answer; it holds its in-flight slot until it has left."""
        if self.closed or self.last_message_queued:
            self.release(1)
            return
        # A lone answer goes straight out: waking the writer task costs more than the round trip of
        # a sequential client. With others in flight, answers finishing together share one send.
        if self.in_flight == 1 and not self.pending and not self.writing:
            data = self._write_now(data)
            if not data:
                self.release(1)
                return
        self.pending_slots += 1
        self.wake.set()
        self._queue(data)  # last: going over the budget may drop this very connection

    def push_event(self, line: bytes) -> None:
        if not self.pending and not self.writing:
            rest = self._write_now(line)
            if rest:
                # Partly sent already: it is no longer droppable, so it does not count as queued.
                self.wake.set()
                self._queue(rest)
            return
        self.pending_events += 1
        self.wake.set()
        self._queue(line)

    def release(self, n: int) -> None:
        self.in_flight -= n
        if self.space is not None and self.in_flight < self.max_in_flight:
            self.space.set()
        if self.in_flight == 0:
            self.idle.set()
            self.active()

    async def wait_for_slot(self) -> None:
        while self.in_flight >= self.max_in_flight:
            self.space = trio.Event()
            await self.space.wait()
        self.space = None

    def last_message(self, data: bytes, *, drop_pending: bool) -> None:
        """Stop reading, send `data` (after what is pending, unless dropped), then close.

        The writer gets a grace period for it, then the socket is closed regardless.
        """
        self.closing = True
        self.last_message_queued = True
        if drop_pending:
            kept = self.pending[:1] if self.partial_head else []
            self.unqueue(sum(map(len, self.pending)) - sum(map(len, kept)))
            self.pending = kept
            self.pending_events = 0
        self._queue(data, check=False)  # a farewell is small, and the socket closes soon anyway
        self.reader_scope.cancel()
        self.writer_scope.deadline = min(self.writer_scope.deadline, trio.current_time() + _FAREWELL_GRACE)
        self.wake.set()


def _peer_credentials(sock: trio.socket.SocketType) -> tuple[int, int, int] | None:
    """(pid, uid, gid) of the connecting process, or None where SO_PEERCRED does not exist."""
    peercred = getattr(socket, "SO_PEERCRED", None)
    if peercred is None:
        return None
    size = struct.calcsize("3i")
    pid, uid, gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, peercred, size))
    return pid, uid, gid


def _now_ms() -> int:
    return int(time.time() * 1000)


# --------------------------------------------------------------------------------------------
# The server


class ControlServer:
    """JSON-RPC method registry, params validation and event fan-out on one Unix socket."""

    def __init__(
        self,
        socket_path: Path | str,
        *,
        max_line: int = DAEMON_MAX_LINE,
        max_clients: int = 256,
        allowed_uids: set[int] | None = None,
        max_in_flight: int = 64,
        max_queued_events: int = 1000,
        max_queued_bytes: int = 64 << 20,
        idle_timeout: float = 300.0,
    ) -> None:
        if not (idle_timeout > 0 and max_queued_bytes > 0):
            raise ValueError("idle_timeout and max_queued_bytes must be positive")
        self.socket_path = Path(socket_path)
        self.max_line = max_line
        self.max_clients = max_clients
        self.allowed_uids = frozenset({os.getuid(), 0} if allowed_uids is None else allowed_uids)
        self.max_in_flight = max_in_flight
        self.max_queued_events = max_queued_events
        self.idle_timeout = idle_timeout
        self._budget = _QueueBudget(max_queued_bytes, self._shed_longest_backlog)
        self._methods: dict[str, _Method] = {}
        self._connections: set[_Connection] = set()
        self._subscribers: set[_Connection] = set()
        self._serving = False
        self._socket_id: tuple[int, int] | None = None  # (st_dev, st_ino) of the file we bound
        self._register_builtins()

    # ---- registry

    def register(self, name: str, handler: Handler, params: type | None = None) -> None:
        """Add a method. ``handler`` is ``async def h(p)`` given an instance of the ``params``
        dataclass, or ``async def h()`` when ``params`` is None (the method then takes no params).
        Its result must be JSON-serialisable; it raises ``RpcError`` for application errors.
        """
        if not isinstance(name, str) or not name:
            raise ValueError("method names are non-empty strings")
        if name.startswith("rpc.") or name in ("events.subscribe", "events.unsubscribe"):
            raise ValueError(f"method name {name!r} is reserved")  # rpc.* by the JSON-RPC spec
        self._add(name, handler, params)

    def _add(self, name: str, handler: Handler, params: type | None, builtin: bool = False) -> None:
        if name in self._methods:
            raise ValueError(f"method {name!r} is already registered")
        if not (inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(getattr(handler, "__call__", None))):
            raise TypeError(f"handler for {name!r} must be an async function")
        fields = () if params is None else _fields_of(params)
        doc = inspect.getdoc(handler) or ""
        self._methods[name] = _Method(name, handler, params, fields, doc.split("\n\n")[0], builtin)

    def methods(self) -> list[str]:
        return sorted(self._methods)

    @property
    def client_count(self) -> int:
        return len(self._connections)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    @property
    def queued_bytes(self) -> int:
        """Bytes of answers and events waiting for clients to read them, over all connections."""
        return self._budget.used

    @property
    def max_queued_bytes(self) -> int:
        return self._budget.limit

    def _register_builtins(self) -> None:
        self._add("rpc.methods", self._rpc_methods, None, builtin=True)
        self._add("events.subscribe", self._events_subscribe, SubscribeParams, builtin=True)
        self._add("events.unsubscribe", self._events_unsubscribe, None, builtin=True)

    async def _rpc_methods(self, conn: _Connection, params: None) -> list[dict[str, Any]]:
        """List every method with its params schema (field name, type, required, default)."""
        return [self._methods[name].schema() for name in self.methods()]

    async def _events_subscribe(self, conn: _Connection, params: SubscribeParams) -> dict[str, Any]:
        """Receive "event" notifications whose topic starts with one of `topics` (empty or "*": all).

        Replaces any earlier subscription of this connection.
        """
        conn.topics = _TopicFilter.from_topics(params.topics)
        if not conn.closing:
            self._subscribers.add(conn)
        return {"subscribed": conn.topics.describe()}

    async def _events_unsubscribe(self, conn: _Connection, params: None) -> dict[str, Any]:
        """Stop receiving events on this connection."""
        self._unsubscribe(conn)
        return {"subscribed": []}

    def _unsubscribe(self, conn: _Connection) -> None:
        conn.topics = None
        self._subscribers.discard(conn)

    # ---- events

    def publish(self, topic: str, data: dict[str, Any]) -> None:
        """Send an event to every matching subscriber; never blocks, never raises for a client.

        A subscriber with ``max_queued_events`` events already waiting is sent one
        ``events.overflow`` event and disconnected.
        """
        targets = [c for c in self._subscribers if c.topics is not None and c.topics.matches(topic)]
        if not targets:
            return
        try:
            # Encoded once, whatever the number of subscribers.
            line = encode_notification("event", {"topic": topic, "ts": _now_ms(), "data": data})
        except (TypeError, ValueError):
            log.exception("event %r is not JSON-serialisable; dropped", topic)
            return
        for conn in targets:
            if conn.pending_events >= self.max_queued_events:
                self._drop_slow_subscriber(conn)
            else:
                conn.push_event(line)

    def _drop_slow_subscriber(self, conn: _Connection) -> None:
        dropped = conn.pending_events + 1
        log.warning(
            "disconnecting slow event subscriber pid=%s uid=%s: %d events queued",
            conn.pid,
            conn.uid,
            dropped,
        )
        self._unsubscribe(conn)
        notice = {
            "topic": "events.overflow",
            "ts": _now_ms(),
            "data": {"dropped": dropped, "limit": self.max_queued_events, "disconnected": True},
        }
        conn.last_message(encode_notification("event", notice), drop_pending=True)

    def _shed_longest_backlog(self) -> None:
        """Over the byte budget: close the connection that is furthest behind in reading.

        One already being closed is left to finish (its bytes go within the farewell grace),
        so a burst past the budget costs one connection, not every one that queues meanwhile.
        """
        worst = max(self._connections, key=lambda c: c.queued_bytes, default=None)
        if worst is None or worst.last_message_queued:
            return
        log.warning(
            "closing control client pid=%s uid=%s: %d bytes of answers and events unread (%d over all clients, limit %d)",
            worst.pid, worst.uid, worst.queued_bytes, self._budget.used, self._budget.limit,
        )
        self._unsubscribe(worst)
        error = RpcError(
            UNAVAILABLE,
            "too many unread answers and events; closing",
            {"queued_bytes": worst.queued_bytes, "max_queued_bytes": self._budget.limit},
        )
        worst.last_message(worst.rpc.send_error(None, error), drop_pending=True)

    def _drop_idle(self, conn: _Connection) -> None:
        log.info("closing control client pid=%s uid=%s: idle for %g s", conn.pid, conn.uid, self.idle_timeout)
        error = RpcError(UNAVAILABLE, f"idle for {self.idle_timeout:g} s; closing", {"idle_timeout": self.idle_timeout})
        conn.last_message(conn.rpc.send_error(None, error), drop_pending=False)

    # ---- serving

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Bind the socket, report started, serve until cancelled, then close clients and unlink."""
        if self._serving:
            raise RuntimeError("this ControlServer is already serving")
        self._serving = True
        lock_fd = -1
        try:
            lock_fd = self._lock()
            listener = trio.SocketListener(self._bind())
            try:
                async with trio.open_nursery() as nursery:
                    task_status.started()
                    await self._accept_loop(listener, nursery)
            finally:
                listener.socket.close()
                self._unlink_own_socket()
        finally:
            if lock_fd >= 0:
                os.close(lock_fd)
            self._serving = False

    def _lock(self) -> int:
        """Hold ``<socket>.lock`` while serving.

        Probing for a live server and then unlinking a stale file is a race between two daemons
        starting at once (each could unlink the other's fresh socket); the lock makes it safe. The
        lock file is left in place: unlinking it would reopen the same race.
        """
        lock_path = self.socket_path.with_name(self.socket_path.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ControlSocketInUse(f"another process holds {lock_path}: a daemon already serves it") from None
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _bind(self) -> trio.socket.SocketType:
        path = self.socket_path
        self._remove_stale_socket()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # umask makes the file 0600 from the moment it exists (no window where others could
            # connect); chmod makes it explicit whatever the umask semantics. No await in between:
            # the umask is process-wide.
            old_umask = os.umask(0o177)
            try:
                sock.bind(os.fspath(path))
            finally:
                os.umask(old_umask)
            os.chmod(path, 0o600)
            st = os.stat(path)
            self._socket_id = (st.st_dev, st.st_ino)
            sock.listen(min(self.max_clients, socket.SOMAXCONN))
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                raise ControlSocketInUse(f"{path} was taken by another process while starting") from exc
            raise
        return trio.socket.from_stdlib_socket(sock)

    def _remove_stale_socket(self) -> None:
        path = self.socket_path
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise FileExistsError(f"{path} exists and is not a socket; refusing to replace it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.setblocking(False)
        try:
            rc = probe.connect_ex(os.fspath(path))
        finally:
            probe.close()
        if rc == errno.ECONNREFUSED:
            log.info("removing stale control socket %s", path)
            path.unlink(missing_ok=True)
        elif rc in (0, errno.EAGAIN, errno.EINPROGRESS):  # EAGAIN: alive, its backlog is full
            raise ControlSocketInUse(f"a running daemon already serves {path}")
        elif rc != errno.ENOENT:
            raise OSError(rc, f"cannot probe the control socket {path}: {os.strerror(rc)}")

    def _unlink_own_socket(self) -> None:
        # Only our own file: a daemon started after us may have replaced it.
        try:
            st = os.lstat(self.socket_path)
        except FileNotFoundError:
            return
        if (st.st_dev, st.st_ino) == self._socket_id:
            self.socket_path.unlink(missing_ok=True)

    async def _accept_loop(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno not in _ACCEPT_RETRY_ERRNOS:
                    raise
                log.error("control socket accept failed (%s); retrying", exc)
                await trio.sleep(0.1)
                continue
            self._admit(stream, nursery)

    def _admit(self, stream: trio.SocketStream, nursery: trio.Nursery) -> None:
        sock = stream.socket
        try:
            creds = _peer_credentials(sock)
        except OSError as exc:  # the peer may already be gone
            log.warning("refused control connection: cannot read peer credentials (%s)", exc)
            sock.close()
            return
        # Without SO_PEERCRED (not Linux) the socket file's 0600 mode is the only gate.
        pid, uid = (creds[0], creds[1]) if creds else (-1, -1)
        if creds is not None and uid not in self.allowed_uids:
            log.warning("refused control connection from pid=%d uid=%d: uid not allowed", pid, uid)
            sock.close()
            return
        if len(self._connections) >= self.max_clients:
            log.warning("refused control connection from pid=%d uid=%d: %d clients", pid, uid, self.max_clients)
            error = RpcError(UNAVAILABLE, "too many control clients", {"max_clients": self.max_clients})
            try:
                os.write(sock.fileno(), encode_error(None, error))  # a fresh socket's buffer takes it
            except OSError:
                pass
            sock.close()
            return
        conn = _Connection(stream, pid, uid, self.max_in_flight, self._budget, self.idle_timeout, self.max_line)
        self._connections.add(conn)
        nursery.start_soon(self._serve_connection, conn)

    async def _serve_connection(self, conn: _Connection) -> None:
        try:
            async with trio.open_nursery() as nursery:
                conn.nursery = nursery
                nursery.start_soon(self._writer, conn)
                with conn.reader_scope:
                    await self._reader(conn)
                if not conn.closing:  # clean EOF: answer what is in flight, then close
                    conn.closing = True
                    if conn.in_flight and not conn.closed:
                        conn.idle = trio.Event()
                        await conn.idle.wait()
                conn.last_message_queued = True
                conn.wake.set()
        finally:
            self._connections.discard(conn)
            self._unsubscribe(conn)

    async def _reader(self, conn: _Connection) -> None:
        stream, rpc = conn.stream, conn.rpc
        try:
            while True:
                data: bytes | None = None
                with trio.move_on_at(conn.idle_deadline()) as conn.receive_scope:
                    data = await stream.receive_some(_RECV_SIZE)
                conn.receive_scope = None
                if data is None:  # nothing before the deadline (which moves while it is busy)
                    if trio.current_time() >= conn.idle_deadline():
                        return self._drop_idle(conn)
                    continue
                conn.active()
                for event in rpc.receive_data(data):
                    if type(event) is LineTooLong:
                        return self._too_large(conn)
                    if type(event) is ConnectionClosed:
                        return
                    if conn.in_flight >= conn.max_in_flight:
                        await conn.wait_for_slot()
                    self._dispatch(conn, event)  # type: ignore[arg-type]  # a server's events: calls or violations
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return  # reset by the client, or closed by our writer

    def _too_large(self, conn: _Connection) -> None:
        log.warning("control client pid=%d sent a line over %d bytes; closing it", conn.pid, self.max_line)
        error = RpcError(REQUEST_TOO_LARGE, f"request line exceeds {self.max_line} bytes", {"max_line": self.max_line})
        conn.last_message(conn.rpc.send_error(None, error), drop_pending=False)

    def _dispatch(self, conn: _Connection, call: Request | Notification | ProtocolViolation) -> None:
        """Validate one message synchronously; start a handler task only for a valid call."""
        conn.in_flight += 1
        if isinstance(call, ProtocolViolation):  # unreadable, or not a request: answered, never run
            conn.respond(conn.rpc.send_error(call.id, call.error))
            return
        method = self._methods.get(call.method)
        try:
            if method is None:
                raise RpcError(METHOD_NOT_FOUND, f"Method not found: {call.method[:100]}")
            params = method.bind(call.params)
        except RpcError as exc:
            if isinstance(call, Request):
                conn.respond(conn.rpc.send_error(call.id, exc))
            else:
                conn.release(1)
            return
        assert conn.nursery is not None
        conn.nursery.start_soon(self._run_handler, conn, call, method, params)

    async def _run_handler(self, conn: _Connection, call: Request | Notification, method: _Method, params: Any) -> None:
        request_id = call.id if isinstance(call, Request) else None
        try:
            if method.builtin:
                result = await method.handler(conn, params)
            elif method.params is None:
                result = await method.handler()
            else:
                result = await method.handler(params)
            data = conn.rpc.send_response(request_id, result) if isinstance(call, Request) else b""
        except RpcError as exc:
            data = conn.rpc.send_error(request_id, exc)
        except Exception:
            log.exception("control method %s failed (client pid=%d)", method.name, conn.pid)
            data = conn.rpc.send_error(request_id, RpcError(INTERNAL_ERROR, f"Internal error in {method.name}"))
        if isinstance(call, Request):
            conn.respond(data)
        else:
            conn.release(1)  # a notification is never answered, not even with its error

    async def _writer(self, conn: _Connection) -> None:
        stream = conn.stream
        try:
            with conn.writer_scope:
                while True:
                    if conn.pending:
                        batch, slots = conn.pending, conn.pending_slots
                        conn.pending, conn.pending_slots, conn.pending_events = [], 0, 0
                        conn.partial_head = False
                        conn.writing = True
                        data = batch[0] if len(batch) == 1 else b"".join(batch)
                        await stream.send_all(data)
                        conn.writing = False
                        # Counted until sent: a client that does not read holds them in our memory.
                        conn.unqueue(len(data))
                        conn.release(slots)
                    elif conn.last_message_queued:
                        return
                    else:
                        conn.wake = trio.Event()
                        await conn.wake.wait()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client went away; its answers are discarded
        finally:
            conn.unqueue(conn.queued_bytes)
            conn.closed = True
            conn.closing = True
            conn.idle.set()
            conn.reader_scope.cancel()
            self._unsubscribe(conn)
            await trio.aclose_forcefully(stream)
