"""The control socket server, driven over a real Unix socket in the test's nursery."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import socket
import stat
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

import node.control
from node.control import ControlServer, ControlSocketInUse, SubscribeParams
from node.rpc import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    NOT_FOUND,
    PARSE_ERROR,
    REQUEST_TOO_LARGE,
    UNAVAILABLE,
    AsyncControlClient,
    RpcError,
)

POLL_S = 0.001  # polling interval for conditions the test cannot await; always under fail_after

# ---------------------------------------------------------------------------------------------
# Methods the test server exposes


@dataclass(frozen=True)
class AddParams:
    a: int
    b: int = 0


@dataclass(frozen=True)
class KitchenSink:
    name: str
    count: int
    ratio: float
    flag: bool
    tags: list[str]
    note: str | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    mode: Literal["fast", "safe"] = "safe"


@dataclass(frozen=True)
class RangeParams:
    low: int
    high: int

    def __post_init__(self) -> None:
        if self.low > self.high:
            raise ValueError("low must not exceed high")


@dataclass(frozen=True)
class KeyParams:
    key: str


@dataclass(frozen=True)
class BigParams:
    size: int


class Gate:
    """A handler that blocks until released, recording how many calls entered it."""

    def __init__(self) -> None:
        self.release = trio.Event()
        self.entered = 0
        self.finished = 0
        self.entered_changed = trio.Event()

    async def handler(self) -> str:
        self.entered += 1
        self.entered_changed.set()
        self.entered_changed = trio.Event()
        await self.release.wait()
        self.finished += 1
        return "released"

    async def wait_entered(self, n: int) -> None:
        while self.entered < n:
            await self.entered_changed.wait()


class Methods:
    def __init__(self) -> None:
        self.gate = Gate()
        self.touched = 0

    async def add(self, p: AddParams) -> int:
        return p.a + p.b

    async def sink(self, p: KitchenSink) -> dict[str, Any]:
        return dataclasses.asdict(p)

    async def span(self, p: RangeParams) -> int:
        return p.high - p.low

    async def lookup(self, p: KeyParams) -> str:
        raise RpcError(NOT_FOUND, f"no such key: {p.key}", {"key": p.key})

    async def boom(self) -> None:
        raise ZeroDivisionError("kaboom")

    async def unserialisable(self) -> object:
        return object()

    async def touch(self) -> int:
        self.touched += 1
        return self.touched

    async def fast(self) -> str:
        return "fast"

    async def big(self, p: BigParams) -> str:
        return "x" * p.size


def make_server(path: Path, **kwargs: Any) -> tuple[ControlServer, Methods]:
    server = ControlServer(path, **kwargs)
    m = Methods()
    server.register("math.add", m.add, AddParams)
    server.register("test.sink", m.sink, KitchenSink)
    server.register("test.span", m.span, RangeParams)
    server.register("test.lookup", m.lookup, KeyParams)
    server.register("test.boom", m.boom)
    server.register("test.unserialisable", m.unserialisable)
    server.register("test.touch", m.touch)
    server.register("test.fast", m.fast)
    server.register("test.block", m.gate.handler)
    server.register("test.big", m.big, BigParams)
    return server, m


# ---------------------------------------------------------------------------------------------
# Fixtures and a raw line client (the server must be tested with bytes no client would send)


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    # pytest's tmp_path can exceed the 108-byte AF_UNIX path limit.
    d = Path(tempfile.mkdtemp(prefix="sov-ctl-", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
async def served(nursery: trio.Nursery, sock_dir: Path) -> AsyncIterator[tuple[ControlServer, Methods]]:
    server, methods = make_server(sock_dir / "c.sock")
    await nursery.start(server.serve)
    yield server, methods


class Raw:
    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buf = bytearray()

    @classmethod
    async def open(cls, path: Path) -> Raw:
        return cls(await trio.open_unix_socket(os.fspath(path)))

    async def send(self, msg: bytes | dict[str, Any]) -> None:
        data = msg if isinstance(msg, bytes) else json.dumps(msg).encode() + b"\n"
        await self.stream.send_all(data)

    async def recv(self) -> dict[str, Any] | None:
        """The next message, or None once the server has closed the connection."""
        while b"\n" not in self.buf:
            try:
                data = await self.stream.receive_some(1 << 16)
            except trio.BrokenResourceError:
                data = b""
            if not data:
                return None
            self.buf += data
        line, _, rest = bytes(self.buf).partition(b"\n")
        self.buf = bytearray(rest)
        msg: dict[str, Any] = json.loads(line)
        return msg

    async def call(self, method: str, params: Any = None, id: int | str | None = 1) -> dict[str, Any]:
        msg: dict[str, Any] = {"jsonrpc": "2.0", "id": id, "method": method}
        if params is not None:
            msg["params"] = params
        await self.send(msg)
        reply = await self.recv()
        assert reply is not None, "connection closed"
        return reply

    async def aclose(self) -> None:
        await self.stream.aclose()


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll a condition the test cannot await directly (e.g. state changed by another task)."""
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(POLL_S)


def error_code(reply: dict[str, Any] | None) -> int:
    assert reply is not None and "error" in reply, reply
    code: int = reply["error"]["code"]
    return code


# ---------------------------------------------------------------------------------------------
# Calls, params and errors


async def test_named_and_positional_params(served: tuple[ControlServer, Methods]) -> None:
    server, _ = served
    with trio.fail_after(5):
        raw = await Raw.open(server.socket_path)
        assert await raw.call("math.add", {"a": 2, "b": 3}, id=1) == {"jsonrpc": "2.0", "id": 1, "result": 5}
        assert (await raw.call("math.add", [2, 5], id="x"))["result"] == 7
        assert (await raw.call("math.add", [4], id=None))["result"] == 4  # null id: still answered
        assert (await raw.call("math.add", {"a": 1}, id=3))["result"] == 1
        await raw.aclose()


async def test_all_supported_param_types(served: tuple[ControlServer, Methods]) -> None:
    server, _ = served
    with trio.fail_after(5):
        raw = await Raw.open(server.socket_path)
        params = {"name": "n", "count": 3, "ratio": 2, "flag": False, "tags": ["a", "b"], "note": None}
        result = (await raw.call("test.sink", params))["result"]
        assert result == {**params, "ratio": 2.0, "extra": {}, "mode": "safe"}
        assert isinstance(result["ratio"], float)
        params |= {"extra": {"k": [1, {"x": None}]}, "mode": "fast", "note": "hi"}
        assert (await raw.call("test.sink", params))["result"]["extra"] == {"k": [1, {"x": None}]}
        await raw.aclose()


BASE = {"name": "n", "count": 3, "ratio": 1.5, "flag": True, "tags": []}


@pytest.mark.parametrize(
    ("method", "params", "field", "reason"),
    [
        ("math.add", {"a": "2"}, "a", "type"),
        ("math.add", {"a": True}, "a", "type"),  # a JSON boolean is not an int
        ("math.add", {"a": 1.0}, "a", "type"),
        ("math.add", {}, "a", "missing"),
        ("math.add", {"b": 1}, "a", "missing"),
        ("math.add", {"a": 1, "c": 2}, "c", "unknown"),
        ("math.add", [1, 2, 3], None, "too_many"),
        ("test.sink", {**BASE, "ratio": "1"}, "ratio", "type"),
        ("test.sink", {**BASE, "ratio": False}, "ratio", "type"),
        ("test.sink", {**BASE, "flag": 1}, "flag", "type"),
        ("test.sink", {**BASE, "tags": "a"}, "tags", "type"),
        ("test.sink", {**BASE, "tags": ["a", 1]}, "tags", "type"),  # data["path"] == "tags[1]"
        ("test.sink", {**BASE, "note": 5}, "note", "type"),
        ("test.sink", {**BASE, "extra": []}, "extra", "type"),
        ("test.sink", {**BASE, "mode": "turbo"}, "mode", "value"),
        ("test.sink", {**BASE, "name": None}, "name", "type"),
        ("test.span", {"low": 5, "high": 1}, None, "invalid"),  # __post_init__ refused it
        ("test.fast", {"x": 1}, None, "unexpected"),
        ("test.fast", [1], None, "unexpected"),
        # Integers are 64-bit and text is valid Unicode, at any depth and in untyped values too.
        ("math.add", {"a": 2**63}, "a", "range"),
        ("math.add", {"a": -(2**63) - 1}, "a", "range"),
        ("test.sink", {**BASE, "ratio": 10**400}, "ratio", "range"),  # an int for a float field
        ("test.sink", {**BASE, "extra": {"k": [1, {"n": 2**64}]}}, "extra", "range"),
        ("test.sink", {**BASE, "name": "a\ud800"}, "name", "unicode"),
        ("test.sink", {**BASE, "tags": ["ok", "\udfff"]}, "tags", "unicode"),
        ("test.sink", {**BASE, "extra": {"\ud800": 1}}, "extra", "unicode"),
        ("test.sink", {**BASE, "extra": {"k": [[["\ud800"]]]}}, "extra", "unicode"),
    ],
)
async def test_invalid_params_name_the_field(
    served: tuple[ControlServer, Methods], method: str, params: Any, field: str | None, reason: str
) -> None:
    server, _ = served
    with trio.fail_after(5):
        raw = await Raw.open(server.socket_path)
        reply = await raw.call(method, params, id=9)
        assert reply["id"] == 9
        assert error_code(reply) == INVALID_PARAMS
        data = reply["error"]["data"]
        assert data["reason"] == reason
        if field is not None:
            assert data["field"] == field
            assert field in reply["error"]["message"]
        # The connection is still usable.
        assert (await raw.call("math.add", {"a": 1}, id=10))["result"] == 1
        await raw.aclose()


async def test_no_params_method_accepts_empty_params(served: tuple[ControlServer, Methods]) -> None:
    server, _ = served
    with trio.fail_after(5):
        raw = await Raw.open(server.socket_path)
        params: Any
        for params in (None, {}, []):
            assert (await raw.call("test.fast", params))["result"] == "fast"
        await raw.aclose()


async def test_bad_json_then_connection_still_works(served: tuple[ControlServer, Methods]) -> None:
    server, _ = served
    with trio.fail_after(5):
        raw = await Raw.open(server.socket_path)
        for junk in (b"{not json\n", b"\xff\xfe\n", b'{"a": NaN}\n', b"[" * 100_000 + b"\n"):
            await raw.send(junk)
            reply = await raw.recv()
            assert error_code(reply) == PARSE_ERROR
            assert reply is not None and reply["id"] is None
        assert (await raw.call("math.add", {"a": 1, "b": 1}))["result"] == 2
        await raw.aclose()


@pytest.mark.parametrize(
    ("line", "expected_id"),
    [
        (b"[]", None),
        (b'[{"jsonrpc":"2.0","id":1,"method":"test.fast"}]', None),  # batches are not supported
        (b"42", None),
        (b'"test.fast"', None),
        (b'{"id":1,"method":"test.fast"}', 1),
        (b'{"jsonrpc":"1.0","id":2,"method":"test.fast"}', 2),
        (b'{"jsonrpc":"2.0","id":3,"method":7}', 3),
        (b'{"jsonrpc":"2.0","id":4,"method":""}', 4),
        (b'{"jsonrpc":"2.0","id":5,"method":"test.fast","params":"x"}', 5),
        (b'{"jsonrpc":"2.0","id":6,"method":"test.fast","param":{}}', 6),
        (b'{"jsonrpc":"2.0","id":1.5,"method":"test.fast"}', None),
        (b'{"jsonrpc":"2.0","id":true,"method":"test.fast"}', None),
        (b'{"jsonrpc":"2.0","id":{},"method":"test.fast"}', None),
        (b'{"jsonrpc":"2.0","method":1,"params":"bar"}', None),
    ],
)
async def test_invalid_request_shapes(
    served: tuple[ControlServer, Methods], line: bytes, expected_id: Any
) -> None:
    server, _ = served
    with trio.fail_after(5):
        raw = await Raw.open(server.socket_path)
        await raw.send(line + b"\n")
        reply = await raw.recv()
        assert error_code(reply) == INVALID_REQUEST
        assert reply is not None and reply["id"] == expected_id
        assert (await raw.call("test.fast"))["result"] == "fast"
        await raw.aclose()


async def test_batch_error_says_unsupported(served: tuple[ControlServer, Methods]) -> None:
    server, _ = served
    with trio.fail_after(5):
        raw = await Raw.open(server.socket_path)
        await raw.send(b'[{"jsonrpc":"2.0","id":1,"method":"test.fast"}]\n')
        reply = await raw.recv()
        assert reply is not None and "batch" in reply["error"]["message"]
        await raw.aclose()


async def test_unknown_method(served: tuple[ControlServer, Methods]) -> None:
    server, _ = served
    with trio.fail_after(5):
        raw = await Raw.open(server.socket_path)
        reply = await raw.call("no.such.method", id=12)
        assert error_code(reply) == METHOD_NOT_FOUND and reply["id"] == 12
        await raw.aclose()


async def test_application_error_passes_through(served: tuple[ControlServer, Methods]) -> None:
    server, _ = served
    with trio.fail_after(5):
        raw = await Raw.open(server.socket_path)
        reply = await raw.call("test.lookup", {"key": "k1"})
        assert reply["error"] == {"code": NOT_FOUND, "message": "no such key: k1", "data": {"key": "k1"}}
        await raw.aclose()


async def test_handler_exception_is_internal_error_and_logged(
    served: tuple[ControlServer, Methods], caplog: pytest.LogCaptureFixture
) -> None:
    server, _ = served
    with trio.fail_after(5):
        raw = await Raw.open(server.socket_path)
        with caplog.at_level(logging.ERROR, logger="sovereign.control"):
            reply = await raw.call("test.boom", id=4)
            assert error_code(reply) == INTERNAL_ERROR and reply["id"] == 4
            assert "kaboom" not in json.dumps(reply)  # internals stay in the log
            reply = await raw.call("test.unserialisable", id=5)
            assert error_code(reply) == INTERNAL_ERROR
        failures = [r for r in caplog.records if r.name == "sovereign.control"]
        assert any(r.exc_info and isinstance(r.exc_info[1], ZeroDivisionError) for r in failures)
        assert any("test.unserialisable" in r.getMessage() for r in failures)
        # Same connection, still served.
        assert (await raw.call("math.add", {"a": 3}))["result"] == 3
        await raw.aclose()


async def test_notifications_get_no_reply(served: tuple[ControlServer, Methods]) -> None:
    server, methods = served
    with trio.fail_after(5):
        raw = await Raw.open(server.socket_path)
        for notification in (
            {"jsonrpc": "2.0", "method": "test.touch"},
            {"jsonrpc": "2.0", "method": "no.such.method"},
            {"jsonrpc": "2.0", "method": "math.add", "params": {"a": "wrong"}},
            {"jsonrpc": "2.0", "method": "test.boom"},
        ):
            await raw.send(notification)
        # The first thing back is the answer to the next real request: nothing for the four above.
        assert await raw.call("test.fast", id=99) == {"jsonrpc": "2.0", "id": 99, "result": "fast"}
        await wait_until(lambda: methods.touched == 1)
        assert (await raw.call("test.fast", id=100))["id"] == 100
        await raw.aclose()


async def test_blank_lines_and_crlf_are_tolerated(served: tuple[ControlServer, Methods]) -> None:
    server, _ = served
    with trio.fail_after(5):
        raw = await Raw.open(server.socket_path)
        await raw.send(b'\n  \n{"jsonrpc":"2.0","id":1,"method":"test.fast"}\r\n')
        assert (await raw.recv()) == {"jsonrpc": "2.0", "id": 1, "result": "fast"}
        await raw.aclose()


async def test_half_closed_client_still_gets_its_answers(served: tuple[ControlServer, Methods]) -> None:
    # What `echo '{...}' | socat - UNIX-CONNECT:sock` does; the last line even lacks its newline.
    server, _ = served
    with trio.fail_after(5):
        raw = await Raw.open(server.socket_path)
        await raw.send(b'{"jsonrpc":"2.0","id":1,"method":"math.add","params":[1,1]}\n')
        await raw.send(b'{"jsonrpc":"2.0","id":2,"method":"math.add","params":[2,2]}')
        await raw.stream.send_eof()
        replies = [await raw.recv(), await raw.recv()]
        assert sorted(r["result"] for r in replies if r) == [2, 4]
        assert await raw.recv() is None
        await raw.aclose()


# ---------------------------------------------------------------------------------------------
# Limits, concurrency and misbehaving clients


async def test_oversized_line_is_refused_without_buffering_it(served: tuple[ControlServer, Methods]) -> None:
    server, _ = served
    total = 10 * 1024 * 1024
    sent = 0
    with trio.fail_after(10):
        other = await Raw.open(server.socket_path)
        raw = await Raw.open(server.socket_path)

        async def flood() -> None:
            nonlocal sent
            chunk = b'{"jsonrpc":"2.0","id":1,"method":"x","params":["' + b"a" * 65536
            try:
                while sent < total:
                    await raw.stream.send_all(chunk)
                    sent += len(chunk)
            except trio.BrokenResourceError:
                pass

        async with trio.open_nursery() as nursery:
            nursery.start_soon(flood)
            reply = await raw.recv()
            assert error_code(reply) == REQUEST_TOO_LARGE
            assert reply is not None and reply["id"] is None
            assert await raw.recv() is None  # then the connection is closed
        # The server stopped reading after about max_line bytes: the rest never left the client.
        assert sent < total
        assert (await other.call("math.add", [1, 2]))["result"] == 3
        await wait_until(lambda: server.client_count == 1)
        await raw.aclose()
        await other.aclose()


async def test_client_vanishing_mid_request_is_harmless(
    served: tuple[ControlServer, Methods], caplog: pytest.LogCaptureFixture
) -> None:
    server, methods = served
    with trio.fail_after(5), caplog.at_level(logging.WARNING):
        raw = await Raw.open(server.socket_path)
        await raw.send({"jsonrpc": "2.0", "id": 1, "method": "test.block"})
        await methods.gate.wait_entered(1)
        await raw.aclose()
        methods.gate.release.set()
        await wait_until(lambda: methods.gate.finished == 1 and server.client_count == 0)
        other = await Raw.open(server.socket_path)
        assert (await other.call("test.fast"))["result"] == "fast"
        await other.aclose()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_many_concurrent_clients(served: tuple[ControlServer, Methods]) -> None:
    server, _ = served
    results: dict[int, list[int]] = {}

    async def client(i: int) -> None:
        async with AsyncControlClient(server.socket_path) as c:
            results[i] = [await c.call("math.add", {"a": i, "b": j}) for j in range(20)]

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            for i in range(100):
                nursery.start_soon(client, i)
    assert results == {i: [i + j for j in range(20)] for i in range(100)}


async def test_slow_method_does_not_block_a_fast_one(served: tuple[ControlServer, Methods]) -> None:
    server, methods = served
    with trio.fail_after(5):
        async with AsyncControlClient(server.socket_path) as c, trio.open_nursery() as nursery:
            slow_result: list[str] = []

            async def slow() -> None:
                slow_result.append(await c.call("test.block"))

            nursery.start_soon(slow)
            await methods.gate.wait_entered(1)
            assert await c.call("test.fast") == "fast"  # answered while the slow one is blocked
            assert slow_result == []
            methods.gate.release.set()
        assert slow_result == ["released"]


async def test_in_flight_requests_are_bounded_per_connection(nursery: trio.Nursery, sock_dir: Path) -> None:
    server, methods = make_server(sock_dir / "c.sock", max_in_flight=4)
    await nursery.start(server.serve)
    with trio.fail_after(5):
        raw = await Raw.open(server.socket_path)
        await raw.send(
            b"".join(b'{"jsonrpc":"2.0","id":%d,"method":"test.block"}\n' % i for i in range(10))
        )
        await methods.gate.wait_entered(4)
        await trio.testing.wait_all_tasks_blocked()
        assert methods.gate.entered == 4  # the reader stopped: backpressure onto the client
        methods.gate.release.set()
        ids = {(await raw.recv() or {}).get("id") for _ in range(10)}
        assert ids == set(range(10))
        await raw.aclose()


async def test_max_clients(nursery: trio.Nursery, sock_dir: Path) -> None:
    server, _ = make_server(sock_dir / "c.sock", max_clients=2)
    await nursery.start(server.serve)
    with trio.fail_after(5):
        a, b = await Raw.open(server.socket_path), await Raw.open(server.socket_path)
        assert (await a.call("test.fast"))["result"] == (await b.call("test.fast"))["result"]
        c = await Raw.open(server.socket_path)
        assert error_code(await c.recv()) == UNAVAILABLE
        assert await c.recv() is None
        await a.aclose()
        await wait_until(lambda: server.client_count == 1)
        d = await Raw.open(server.socket_path)
        assert (await d.call("test.fast"))["result"] == "fast"
        for r in (b, c, d):
            await r.aclose()


# ---------------------------------------------------------------------------------------------
# The socket file and who may connect


async def test_socket_file_is_private(served: tuple[ControlServer, Methods]) -> None:
    server, _ = served
    mode = os.stat(server.socket_path).st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600


async def test_disallowed_uid_is_refused(
    nursery: trio.Nursery, sock_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server, _ = make_server(sock_dir / "c.sock", allowed_uids={os.getuid() + 4242})
    await nursery.start(server.serve)
    with trio.fail_after(5), caplog.at_level(logging.WARNING, logger="sovereign.control"):
        raw = await Raw.open(server.socket_path)
        assert await raw.recv() is None  # closed before reading a single request
        await raw.aclose()
    refusals = [r.getMessage() for r in caplog.records if "uid not allowed" in r.getMessage()]
    assert refusals and f"uid={os.getuid()}" in refusals[0] and f"pid={os.getpid()}" in refusals[0]


async def test_stale_socket_file_is_replaced(nursery: trio.Nursery, sock_dir: Path) -> None:
    path = sock_dir / "c.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(os.fspath(path))  # a crashed daemon leaves exactly this: a socket nobody listens on
    dead.close()
    assert stat.S_ISSOCK(os.lstat(path).st_mode)
    server, _ = make_server(path)
    await nursery.start(server.serve)
    with trio.fail_after(5):
        raw = await Raw.open(path)
        assert (await raw.call("test.fast"))["result"] == "fast"
        await raw.aclose()


async def test_live_socket_is_not_stolen(served: tuple[ControlServer, Methods]) -> None:
    server, _ = served
    second, _ = make_server(server.socket_path)
    with trio.fail_after(5):
        with pytest.raises(ControlSocketInUse):
            await second.serve()
        raw = await Raw.open(server.socket_path)  # the first daemon still owns and serves it
        assert (await raw.call("test.fast"))["result"] == "fast"
        await raw.aclose()


async def test_a_live_server_without_the_lock_is_not_stolen(sock_dir: Path) -> None:
    # E.g. an older daemon, or any other program: the probe finds it answering.
    path = sock_dir / "c.sock"
    other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    other.bind(os.fspath(path))
    other.listen(1)
    try:
        server, _ = make_server(path)
        with pytest.raises(ControlSocketInUse):
            await server.serve()
        assert stat.S_ISSOCK(os.lstat(path).st_mode)
    finally:
        other.close()


async def test_a_file_that_is_not_a_socket_is_left_alone(sock_dir: Path) -> None:
    path = sock_dir / "c.sock"
    path.write_text("precious")
    server, _ = make_server(path)
    with pytest.raises(FileExistsError):
        await server.serve()
    assert path.read_text() == "precious"


async def test_socket_file_removed_when_serve_is_cancelled(sock_dir: Path) -> None:
    server, _ = make_server(sock_dir / "c.sock")
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve)
            client = await AsyncControlClient.connect(server.socket_path)
            assert await client.call("test.fast") == "fast"
            nursery.cancel_scope.cancel()
        assert not server.socket_path.exists()
        with pytest.raises(ConnectionError):
            await client.call("test.fast")
        await client.aclose()
        # A server can serve again after it stopped.
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve)
            assert server.socket_path.exists()
            nursery.cancel_scope.cancel()


# ---------------------------------------------------------------------------------------------
# Events


async def test_subscribers_get_events_filtered_by_prefix(served: tuple[ControlServer, Methods]) -> None:
    server, _ = served
    with trio.fail_after(5):
        async with (
            AsyncControlClient(server.socket_path) as peers,
            AsyncControlClient(server.socket_path) as everything,
            AsyncControlClient(server.socket_path) as nothing,
        ):
            assert await peers.subscribe(["peer", "market.btc"]) == ["market.btc", "peer"]
            assert await everything.subscribe(["*"]) == ["*"]
            assert server.subscriber_count == 2
            for topic in ("peer.joined", "peers.count", "market.btc.tick", "market.eth.tick", "peer"):
                server.publish(topic, {"topic_was": topic})
            server.publish("peer.left", {"id": "Qm1"})
            got = [(await peers.events().receive())["topic"] for _ in range(4)]
            assert got == ["peer.joined", "market.btc.tick", "peer", "peer.left"]
            all_topics = [(await everything.events().receive())["topic"] for _ in range(6)]
            assert len(all_topics) == 6
            assert await nothing.call("test.fast") == "fast"
            with pytest.raises(trio.WouldBlock):
                nothing.events().receive_nowait()

            assert await peers.call("events.unsubscribe") == {"subscribed": []}
            server.publish("peer.joined", {"late": True})
            event = await everything.events().receive()
            assert event["topic"] == "peer.joined" and event["data"] == {"late": True}
            assert isinstance(event["ts"], int)
            assert await peers.call("test.fast") == "fast"
            with pytest.raises(trio.WouldBlock):
                peers.events().receive_nowait()


async def test_empty_topic_list_means_everything(served: tuple[ControlServer, Methods]) -> None:
    server, _ = served
    with trio.fail_after(5):
        async with AsyncControlClient(server.socket_path) as c:
            assert await c.call("events.subscribe", {}) == {"subscribed": ["*"]}
            server.publish("anything.at.all", {})
            assert (await c.events().receive())["topic"] == "anything.at.all"
            with pytest.raises(RpcError) as err:
                await c.subscribe([""])
            assert err.value.code == INVALID_PARAMS


async def test_slow_subscriber_is_dropped_without_hurting_others(
    nursery: trio.Nursery, sock_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Long enough that the dropped client always reads its overflow notice, even on a busy machine.
    monkeypatch.setattr(node.control, "_FAREWELL_GRACE", 30.0)
    server, _ = make_server(sock_dir / "c.sock", max_queued_events=50)
    await nursery.start(server.serve)
    padding = "x" * 4096
    with trio.fail_after(15):
        slow = await Raw.open(server.socket_path)
        assert (await slow.call("events.subscribe", {"topics": ["tick"]}))["result"] == {"subscribed": ["tick"]}
        async with AsyncControlClient(server.socket_path) as fast:
            await fast.subscribe(["tick"])
            received = 0
            published = 0
            # `slow` never reads: first its kernel buffer fills, then its queue; `fast` keeps up.
            while server.subscriber_count == 2:
                for _ in range(20):
                    server.publish("tick", {"n": published, "pad": padding})
                    published += 1
                while received < published:
                    event = await fast.events().receive()
                    assert event["data"]["n"] == received
                    received += 1
            assert published < 20_000  # dropped once buffers and the queue are full, not never
            # The survivor still gets events and answers.
            server.publish("tick", {"n": published, "pad": ""})
            assert (await fast.events().receive())["data"]["n"] == published
            assert await fast.call("test.fast") == "fast"
            assert fast.dropped_events == 0

        # The slow client finds the events that fit in its buffers, then the notice, then EOF.
        messages = []
        while (msg := await slow.recv()) is not None:
            messages.append(msg)
        topics = [m["params"]["topic"] for m in messages]
        assert topics[-1] == "events.overflow"
        assert set(topics[:-1]) == {"tick"}
        assert messages[-1]["params"]["data"]["limit"] == 50
        await slow.aclose()


async def test_publish_burst_beyond_the_queue_drops_at_once(nursery: trio.Nursery, sock_dir: Path) -> None:
    server, _ = make_server(sock_dir / "c.sock", max_queued_events=10)
    await nursery.start(server.serve)
    pad = "x" * 100_000
    with trio.fail_after(5):
        raw = await Raw.open(server.socket_path)
        await raw.call("events.subscribe", {"topics": []})
        published = 0
        # No checkpoint in between: once the socket buffer is full nothing drains the queue.
        while server.subscriber_count and published < 1000:
            server.publish("burst", {"i": published, "pad": pad})
            published += 1
        assert server.subscriber_count == 0
        server.publish("burst", {"i": "after"})  # ignored for the dropped client
        messages = []
        while (msg := await raw.recv()) is not None:
            messages.append(msg)
        topics = [m["params"]["topic"] for m in messages]
        assert topics[-1] == "events.overflow" and set(topics[:-1]) == {"burst"}
        # What reached the socket arrives whole and in order, then the notice.
        assert [m["params"]["data"]["i"] for m in messages[:-1]] == list(range(len(messages) - 1))
        assert messages[-1]["params"]["data"]["dropped"] == 11
        assert len(messages) - 1 + 11 == published
        await raw.aclose()


async def test_unserialisable_event_is_dropped_not_raised(
    served: tuple[ControlServer, Methods], caplog: pytest.LogCaptureFixture
) -> None:
    server, _ = served
    with trio.fail_after(5):
        async with AsyncControlClient(server.socket_path) as c:
            await c.subscribe()
            with caplog.at_level(logging.ERROR, logger="sovereign.control"):
                server.publish("bad", {"x": object()})
            server.publish("good", {})
            assert (await c.events().receive())["topic"] == "good"
    assert any("not JSON-serialisable" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------------------------------------
# Registry and introspection


async def test_rpc_methods_lists_schemas(served: tuple[ControlServer, Methods]) -> None:
    server, _ = served
    with trio.fail_after(5):
        async with AsyncControlClient(server.socket_path) as c:
            listing = await c.call("rpc.methods")
    names = [m["name"] for m in listing]
    assert names == server.methods() == sorted(names)
    assert {"rpc.methods", "events.subscribe", "events.unsubscribe", "math.add"} <= set(names)
    by_name = {m["name"]: m for m in listing}
    assert by_name["math.add"]["params"] == [
        {"name": "a", "type": "int", "required": True},
        {"name": "b", "type": "int", "required": False, "default": 0},
    ]
    sink = {f["name"]: f for f in by_name["test.sink"]["params"]}
    assert sink["tags"]["type"] == "list[str]"
    assert sink["note"] == {"name": "note", "type": "str | None", "required": False, "default": None}
    assert sink["extra"]["type"] == "dict[str, Any]" and sink["extra"]["default"] == {}
    assert sink["ratio"]["type"] == "float"
    assert sink["mode"]["type"] == "one of 'fast', 'safe'"
    assert by_name["test.fast"]["params"] == []
    assert by_name["events.subscribe"]["doc"]


def test_register_refuses_bad_definitions() -> None:
    server = ControlServer(Path("/tmp/unused.sock"))

    async def handler(p: Any = None) -> None:
        return None

    def not_async() -> None:
        return None

    @dataclass(frozen=True)
    class Unsupported:
        when: complex

    @dataclass(frozen=True)
    class IntKeys:
        m: dict[int, str]

    @dataclass(frozen=True)
    class WideUnion:
        v: int | str

    class NotADataclass:
        x: int

    server.register("a.b", handler)
    for name in ("a.b", "rpc.anything", "events.subscribe", ""):
        with pytest.raises(ValueError):
            server.register(name, handler)
    with pytest.raises(TypeError):
        server.register("x.sync", not_async)  # type: ignore[arg-type]
    for params in (Unsupported, IntKeys, WideUnion, NotADataclass):
        with pytest.raises(TypeError):
            server.register(f"x.{params.__name__}", handler, params)
    assert "x.Unsupported" not in server.methods()


BIND = make_server(Path("/tmp/unused.sock"))[0]._methods["test.sink"]
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


@given(
    st.dictionaries(
        st.sampled_from([f.name for f in dataclasses.fields(KitchenSink)] + ["bogus"]), JSON, max_size=9
    )
    | st.lists(JSON, max_size=9)
)
def test_params_validation_only_raises_invalid_params(raw: Any) -> None:
    try:
        bound = BIND.bind(raw)
    except RpcError as exc:
        assert exc.code == INVALID_PARAMS
        assert isinstance(exc.data, dict) and "reason" in exc.data
    else:
        assert isinstance(bound, KitchenSink)
        assert type(bound.count) is int and type(bound.flag) is bool and type(bound.ratio) is float
        assert all(type(t) is str for t in bound.tags)


def test_limits_of_the_schema_are_accepted() -> None:
    bound = BIND.bind({**BASE, "count": 2**63 - 1, "ratio": -(2**63), "extra": {"k": [-(2**63), "é𝕏"]}})
    assert bound.count == 2**63 - 1 and bound.ratio == -(2.0**63) and bound.extra == {"k": [-(2**63), "é𝕏"]}
    deep: Any = 1
    for _ in range(5000):  # deeper than Python's recursion limit: the untyped check is iterative
        deep = [deep]
    assert BIND.bind({**BASE, "extra": {"deep": deep}}).extra["deep"] is deep


def test_subscribe_params_are_a_dataclass() -> None:
    assert SubscribeParams().topics == []
    with pytest.raises(ValueError):
        SubscribeParams(topics=["."])


# ---------------------------------------------------------------------------------------------
# Idle connections and the byte budget (on trio's virtual clock: hours pass in no time)


async def expect_closed_with(raw: Raw, fragment: str) -> dict[str, Any]:
    """The server's farewell (an error with id null), then EOF."""
    farewell = await raw.recv()
    assert farewell is not None and farewell["id"] is None, farewell
    assert error_code(farewell) == UNAVAILABLE and fragment in farewell["error"]["message"], farewell
    assert await raw.recv() is None
    return farewell


async def test_an_idle_connection_is_closed_after_the_timeout(
    nursery: trio.Nursery, sock_dir: Path, autojump_clock: trio.testing.MockClock
) -> None:
    server, _ = make_server(sock_dir / "c.sock", idle_timeout=300)
    await nursery.start(server.serve)
    idle, chatty = await Raw.open(server.socket_path), await Raw.open(server.socket_path)
    start = trio.current_time()

    async def keep_talking() -> None:
        for _ in range(5):  # a call every 200 s keeps it open past the idle timeout
            await trio.sleep(200)
            assert (await chatty.call("test.fast"))["result"] == "fast"

    async with trio.open_nursery() as talkers:
        talkers.start_soon(keep_talking)
        farewell = await expect_closed_with(idle, "idle for 300 s")
        assert farewell["error"]["data"] == {"idle_timeout": 300}
        assert trio.current_time() - start == pytest.approx(300, abs=1)
    assert server.client_count == 1  # the one that kept talking
    last_call = trio.current_time()
    await expect_closed_with(chatty, "idle")  # and, once it stops, it goes the same way
    assert trio.current_time() - last_call == pytest.approx(300, abs=1)
    await wait_until(lambda: server.client_count == 0)


async def test_calls_in_flight_and_subscriptions_are_not_idle(
    nursery: trio.Nursery, sock_dir: Path, autojump_clock: trio.testing.MockClock
) -> None:
    server, methods = make_server(sock_dir / "c.sock", idle_timeout=10)
    await nursery.start(server.serve)
    waiting, subscriber = await Raw.open(server.socket_path), await Raw.open(server.socket_path)
    assert "result" in await subscriber.call("events.subscribe", {"topics": ["tick"]})
    await waiting.send({"jsonrpc": "2.0", "id": 7, "method": "test.block"})
    await methods.gate.wait_entered(1)
    await trio.sleep(1000)  # a hundred timeouts, on the virtual clock
    assert server.client_count == 2
    server.publish("tick", {})
    assert (await subscriber.recv())["params"]["topic"] == "tick"  # type: ignore[index]
    methods.gate.release.set()
    assert (await waiting.recv())["result"] == "released"  # type: ignore[index]
    answered = trio.current_time()
    await expect_closed_with(waiting, "idle")  # idle from the moment its answer went out
    assert trio.current_time() - answered == pytest.approx(10, abs=0.5)
    assert (await subscriber.call("events.unsubscribe"))["result"] == {"subscribed": []}
    await expect_closed_with(subscriber, "idle")  # unsubscribed and silent: idle like any other


async def test_idle_clients_cannot_lock_out_new_ones(
    nursery: trio.Nursery, sock_dir: Path, autojump_clock: trio.testing.MockClock
) -> None:
    server, _ = make_server(sock_dir / "c.sock", max_clients=4, idle_timeout=60)
    await nursery.start(server.serve)
    squatters = [await Raw.open(server.socket_path) for _ in range(4)]
    await wait_until(lambda: server.client_count == 4)
    late = await Raw.open(server.socket_path)
    assert "too many" in (await late.recv())["error"]["message"]  # type: ignore[index]
    for raw in squatters:
        await expect_closed_with(raw, "idle")
    newcomer = await Raw.open(server.socket_path)
    assert (await newcomer.call("test.fast"))["result"] == "fast"


async def test_unread_answers_are_bounded_over_all_clients(nursery: trio.Nursery, sock_dir: Path) -> None:
    limit = 1 << 20
    server, _ = make_server(sock_dir / "c.sock", max_queued_bytes=limit)
    await nursery.start(server.serve)
    size = 64 * 1024
    request = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "test.big", "params": {"size": size}}).encode() + b"\n"
    with trio.fail_after(10):
        # Each would hold 64 in-flight answers of 64 KiB (4 MiB) if nothing bounded the total.
        hogs = [await Raw.open(server.socket_path) for _ in range(3)]
        async with AsyncControlClient(server.socket_path) as reader:
            for _ in range(64):
                for hog in hogs:
                    if server.client_count > 1:
                        try:
                            await hog.send(request)
                        except (trio.BrokenResourceError, trio.ClosedResourceError):
                            pass  # already closed by the server
                # One answer more than the budget may be queued before the worst backlog goes.
                assert server.queued_bytes <= limit + size + 100
                assert len(await reader.call("test.big", {"size": size})) == size  # unaffected
            # Every hog that kept sending was cut off, each with one error after what it was sent.
            for hog in hogs:
                messages = []
                while (msg := await hog.recv()) is not None:
                    messages.append(msg)
                assert messages, "a hog got nothing at all"
                assert all(m.get("result") == "x" * size for m in messages[:-1])
                assert messages[-1]["id"] is None and error_code(messages[-1]) == UNAVAILABLE
                assert messages[-1]["error"]["data"]["max_queued_bytes"] == limit
            assert await reader.call("test.fast") == "fast"
        await wait_until(lambda: server.client_count == 0)
        assert server.queued_bytes == 0
