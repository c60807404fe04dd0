"""JSON-RPC framing, and the sync and async clients against a real ControlServer."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from node.control import ControlServer
from node.rpc import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    NOT_FOUND,
    PARSE_ERROR,
    AsyncControlClient,
    ControlClient,
    DaemonNotRunning,
    Notification,
    Request,
    RequestError,
    RpcError,
    encode_error,
    encode_message,
    encode_notification,
    encode_request,
    encode_result,
    parse_request,
)

POLL_S = 0.001  # polling interval for conditions the test cannot await; always under fail_after

# ---------------------------------------------------------------------------------------------
# Framing


def test_encode_message_is_one_compact_line() -> None:
    data = encode_message({"jsonrpc": "2.0", "id": 1, "result": {"a": [1, "é"]}})
    assert data == b'{"jsonrpc":"2.0","id":1,"result":{"a":[1,"\\u00e9"]}}\n'
    assert data.count(b"\n") == 1
    assert json.loads(encode_message("line\nbreak")) == "line\nbreak"  # escaped, still one line
    with pytest.raises(ValueError):
        encode_message(float("nan"))  # not JSON
    with pytest.raises(TypeError):
        encode_message(object())


def test_encoders_build_spec_shapes() -> None:
    assert json.loads(encode_request(3, "a.b")) == {"jsonrpc": "2.0", "id": 3, "method": "a.b"}
    assert json.loads(encode_request("x", "a.b", [1]))["params"] == [1]
    assert json.loads(encode_notification("event", {"t": 1})) == {
        "jsonrpc": "2.0",
        "method": "event",
        "params": {"t": 1},
    }
    assert json.loads(encode_result(None, None)) == {"jsonrpc": "2.0", "id": None, "result": None}
    err = json.loads(encode_error(7, RpcError(NOT_FOUND, "gone", {"k": 1})))
    assert err == {"jsonrpc": "2.0", "id": 7, "error": {"code": NOT_FOUND, "message": "gone", "data": {"k": 1}}}
    # Data that cannot be encoded is dropped, the error itself is kept.
    bare = json.loads(encode_error(8, RpcError(NOT_FOUND, "gone", object())))
    assert bare["error"] == {"code": NOT_FOUND, "message": "gone"}


def test_rpc_error_round_trips() -> None:
    err = RpcError(INVALID_PARAMS, "bad", {"field": "a"})
    assert err.to_json() == {"code": INVALID_PARAMS, "message": "bad", "data": {"field": "a"}}
    assert RpcError(METHOD_NOT_FOUND).to_json() == {"code": METHOD_NOT_FOUND, "message": "Method not found"}
    back = RpcError.from_json(err.to_json())
    assert (back.code, back.message, back.data) == (err.code, err.message, err.data)
    copied = pickle.loads(pickle.dumps(err))
    assert (copied.code, copied.message, copied.data) == (err.code, err.message, err.data)
    assert RpcError.from_json("garbage").code == INTERNAL_ERROR
    assert "bad" in str(err) and str(INVALID_PARAMS) in str(err)


def test_parse_valid_requests() -> None:
    assert parse_request(b'{"jsonrpc":"2.0","id":1,"method":"a.b","params":{"x":1}}') == Request(1, "a.b", {"x": 1})
    assert parse_request(b'{"jsonrpc":"2.0","id":"s","method":"a","params":[1,2]}\n') == Request("s", "a", [1, 2])
    assert parse_request(b'{"jsonrpc":"2.0","id":null,"method":"a"}') == Request(None, "a", None)
    assert parse_request(b'{"jsonrpc":"2.0","method":"a"}') == Notification("a", None)
    assert parse_request(b' {"method":"a","params":null,"jsonrpc":"2.0"} \r').params is None


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"{",
        b"nope",
        b"\xff",
        b'{"a":NaN}',
        b'{"a":-Infinity}',
        b'{"a":1e999}',  # would decode to inf
        b"[" * 50_000,  # nesting deeper than the decoder's recursion limit
        b"\xef\xbb\xbf{}",  # a BOM is not JSON
        b"1" * 5000,  # over Python's int digit limit
    ],
)
def test_parse_errors(line: bytes) -> None:
    with pytest.raises(RequestError) as err:
        parse_request(line)
    assert err.value.code == PARSE_ERROR
    assert err.value.request_id is None


@pytest.mark.parametrize(
    ("line", "request_id", "why"),
    [
        (b"[]", None, "batch"),
        (b"[1]", None, "batch"),
        (b"null", None, "object"),
        (b'{"jsonrpc":"2.0","id":2.5,"method":"a"}', None, "id"),
        (b'{"jsonrpc":"2.0","id":false,"method":"a"}', None, "id"),
        (b'{"jsonrpc":"2.0","id":[1],"method":"a"}', None, "id"),
        (b'{"id":3,"method":"a"}', 3, "jsonrpc"),
        (b'{"jsonrpc":2.0,"id":3,"method":"a"}', 3, "jsonrpc"),
        (b'{"jsonrpc":"2.0","id":"q","method":null}', "q", "method"),
        (b'{"jsonrpc":"2.0","id":4}', 4, "method"),
        (b'{"jsonrpc":"2.0","id":5,"method":"a","params":1}', 5, "params"),
        (b'{"jsonrpc":"2.0","id":6,"method":"a","params":"x"}', 6, "params"),
        (b'{"jsonrpc":"2.0","id":7,"method":"a","extra":1}', 7, "extra"),
        (b'{"jsonrpc":"2.0","method":"a","result":1}', None, "result"),
    ],
)
def test_invalid_requests(line: bytes, request_id: Any, why: str) -> None:
    with pytest.raises(RequestError) as err:
        parse_request(line)
    assert err.value.code == INVALID_REQUEST
    assert err.value.request_id == request_id
    assert why in err.value.message


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_only_raise_parse_or_invalid_request(line: bytes) -> None:
    try:
        request = parse_request(line)
    except RequestError as exc:
        assert exc.code in (PARSE_ERROR, INVALID_REQUEST)
    else:
        assert isinstance(request.method, str)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)
REQUEST_LIKE = st.dictionaries(
    st.sampled_from(["jsonrpc", "id", "method", "params", "other"]),
    JSON | st.just("2.0") | st.just("a.method"),
    max_size=5,
)


@settings(max_examples=300, deadline=None)
@given(REQUEST_LIKE | JSON)
def test_random_json_is_a_request_or_an_invalid_request(obj: Any) -> None:
    line = json.dumps(obj).encode()
    try:
        request = parse_request(line)
    except RequestError as exc:
        assert exc.code == INVALID_REQUEST
        assert exc.request_id is None or exc.request_id == obj.get("id")
    else:
        assert obj["jsonrpc"] == "2.0" and isinstance(request.method, str) and request.method
        assert request.params is None or isinstance(request.params, dict | list)
        assert isinstance(request, Notification) == ("id" not in obj)
        assert isinstance(request, Notification) or request.id is None or type(request.id) in (int, str)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=50))
def test_any_text_line_only_raises_rpc_errors(text: str) -> None:
    try:
        parse_request(text.encode("utf-8", "surrogatepass"))
    except RequestError as exc:
        assert exc.code in (PARSE_ERROR, INVALID_REQUEST)


def test_importing_the_client_is_cheap() -> None:
    # The CLI imports node.rpc on every run; trio (~0.1 s) and libp2p (~1 s) must stay out.
    code = "import sys, node.rpc; print(sorted(m for m in ('trio', 'libp2p', 'logging') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------------------------------------
# Clients against a real server


@dataclass(frozen=True)
class EchoParams:
    value: Any


class Service:
    def __init__(self) -> None:
        self.release = trio.Event()
        self.blocked = trio.Event()

    async def echo(self, p: EchoParams) -> Any:
        return p.value

    async def missing(self) -> None:
        raise RpcError(NOT_FOUND, "nothing here", {"what": "x"})

    async def block(self) -> str:
        self.blocked.set()
        await self.release.wait()
        return "done"


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="sov-rpc-", dir="/tmp"))  # AF_UNIX paths max 108 bytes
    yield d
    shutil.rmtree(d, ignore_errors=True)


def make_server(path: Path) -> tuple[ControlServer, Service]:
    server = ControlServer(path)
    service = Service()
    server.register("test.echo", service.echo, EchoParams)
    server.register("test.missing", service.missing)
    server.register("test.block", service.block)
    return server, service


@pytest.fixture
async def served(nursery: trio.Nursery, sock_dir: Path) -> AsyncIterator[tuple[ControlServer, Service]]:
    server, service = make_server(sock_dir / "c.sock")
    await nursery.start(server.serve)
    yield server, service


async def wait_until_subscribed(server: ControlServer, n: int) -> None:
    with trio.fail_after(5):
        while server.subscriber_count < n:
            await trio.sleep(POLL_S)


# ---- sync client (run in a worker thread: it blocks)


async def test_sync_client_calls(served: tuple[ControlServer, Service]) -> None:
    server, _ = served

    def run() -> list[Any]:
        with ControlClient(server.socket_path, timeout=5) as client:
            out = [client.call("test.echo", {"value": {"nested": [1, "two", None]}})]
            out.append(client.call("test.echo", ["positional"]))
            with pytest.raises(RpcError) as err:
                client.call("test.missing")
            out.append((err.value.code, err.value.message, err.value.data))
            with pytest.raises(RpcError) as err:
                client.call("test.nope")
            out.append(err.value.code)
            client.notify("test.echo", {"value": 1})  # no reply: the next call still matches
            out.append(client.call("test.echo", {"value": "after"}))
            return out

    with trio.fail_after(10):
        out = await trio.to_thread.run_sync(run)
    assert out == [
        {"nested": [1, "two", None]},
        "positional",
        (NOT_FOUND, "nothing here", {"what": "x"}),
        METHOD_NOT_FOUND,
        "after",
    ]


async def test_sync_client_connects_lazily_and_times_out(served: tuple[ControlServer, Service]) -> None:
    server, service = served

    def run() -> Any:
        client = ControlClient(server.socket_path, timeout=0.2)
        try:
            with pytest.raises(TimeoutError):
                client.call("test.block")
            client.timeout = 5
            trio.from_thread.run_sync(service.release.set)
            # The late answer to the timed-out call is skipped, not mistaken for this one.
            return client.call("test.echo", {"value": 42})
        finally:
            client.close()

    with trio.fail_after(10):
        assert await trio.to_thread.run_sync(run) == 42


async def test_sync_client_subscribe(served: tuple[ControlServer, Service]) -> None:
    server, _ = served
    subscribed = trio.Event()

    def run() -> list[dict[str, Any]]:
        with ControlClient(server.socket_path, timeout=5) as client:
            events = client.subscribe(["peer"], timeout=5)
            trio.from_thread.run_sync(subscribed.set)
            got = [next(events), next(events)]
            assert client.call("test.echo", {"value": 1}) == 1  # calls between events still work
            got.append(next(events))
            return got

    async with trio.open_nursery() as nursery:
        result: list[Any] = []

        async def in_thread() -> None:
            result.extend(await trio.to_thread.run_sync(run))

        with trio.fail_after(10):
            nursery.start_soon(in_thread)
            await subscribed.wait()
            server.publish("peer.joined", {"id": "a"})
            server.publish("market.tick", {})
            server.publish("peer.left", {"id": "a"})
            server.publish("peer.joined", {"id": "b"})
    assert [(e["topic"], e["data"]) for e in result] == [
        ("peer.joined", {"id": "a"}),
        ("peer.left", {"id": "a"}),
        ("peer.joined", {"id": "b"}),
    ]


async def test_sync_subscribe_ends_when_the_daemon_stops(sock_dir: Path) -> None:
    server, _ = make_server(sock_dir / "c.sock")
    subscribed = trio.Event()
    received = trio.Event()

    def run() -> list[dict[str, Any]]:
        got = []
        with ControlClient(server.socket_path, timeout=5) as client:
            events = client.subscribe(timeout=5)
            trio.from_thread.run_sync(subscribed.set)
            for event in events:
                got.append(event)
                trio.from_thread.run_sync(received.set)
        return got

    with trio.fail_after(10):
        async with trio.open_nursery() as outer:
            result: list[Any] = []

            async def in_thread() -> None:
                result.extend(await trio.to_thread.run_sync(run))

            async with trio.open_nursery() as daemon:
                await daemon.start(server.serve)
                outer.start_soon(in_thread)
                await subscribed.wait()
                server.publish("bye", {})
                await received.wait()
                daemon.cancel_scope.cancel()
    assert [e["topic"] for e in result] == ["bye"]


def test_sync_client_daemon_not_running(sock_dir: Path) -> None:
    with pytest.raises(DaemonNotRunning):
        ControlClient(sock_dir / "missing.sock").call("node.status")
    stale = sock_dir / "stale.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(os.fspath(stale))  # the file exists but nobody listens: connection refused
    s.close()
    with pytest.raises(DaemonNotRunning), ControlClient(stale):
        pass
    assert issubclass(DaemonNotRunning, ConnectionError)


async def test_sync_client_sees_the_daemon_hang_up(served: tuple[ControlServer, Service]) -> None:
    server, _ = served
    server.allowed_uids = frozenset({os.getuid() + 1})  # the next connection is refused at once

    def run() -> None:
        with ControlClient(server.socket_path, timeout=5) as client, pytest.raises(ConnectionError):
            client.call("test.echo", {"value": 1})

    with trio.fail_after(10):
        await trio.to_thread.run_sync(run)


# ---- async client


async def test_async_client_concurrent_calls_on_one_connection(served: tuple[ControlServer, Service]) -> None:
    server, service = served
    with trio.fail_after(10):
        async with AsyncControlClient(server.socket_path) as client:
            results: dict[int, Any] = {}

            async def one(i: int) -> None:
                results[i] = await client.call("test.echo", {"value": i})

            async with trio.open_nursery() as nursery:
                nursery.start_soon(client.call, "test.block")  # stays pending throughout
                await service.blocked.wait()
                for i in range(50):
                    nursery.start_soon(one, i)
                while len(results) < 50:
                    await trio.sleep(POLL_S)
                service.release.set()
            assert results == {i: i for i in range(50)}
            with pytest.raises(RpcError) as err:
                await client.call("test.missing")
            assert err.value.code == NOT_FOUND and err.value.data == {"what": "x"}


async def test_async_client_events_while_calling(served: tuple[ControlServer, Service]) -> None:
    server, _ = served
    with trio.fail_after(10):
        async with AsyncControlClient(server.socket_path) as client:
            assert await client.subscribe(["node"]) == ["node"]
            server.publish("node.started", {"n": 1})
            assert await client.call("test.echo", {"value": "x"}) == "x"
            server.publish("other", {})
            server.publish("node.stopping", {"n": 2})
            events = client.events()
            assert [(await events.receive())["data"]["n"] for _ in range(2)] == [1, 2]
            await client.notify("test.echo", {"value": None})
            assert await client.call("events.unsubscribe") == {"subscribed": []}


async def test_async_client_without_async_with(served: tuple[ControlServer, Service]) -> None:
    server, _ = served
    with trio.fail_after(10):
        client = await AsyncControlClient.connect(server.socket_path)
        assert await client.call("test.echo", {"value": 1}) == 1
        # Serialised, but concurrent callers still each get their own answer.
        results: list[Any] = []
        async with trio.open_nursery() as nursery:
            for i in range(5):
                nursery.start_soon(lambda i=i: _append(results, client.call("test.echo", [i])))
        assert sorted(results) == [0, 1, 2, 3, 4]
        await client.subscribe(["x"])
        server.publish("x.y", {})
        assert await client.call("test.echo", [0]) == 0  # reads the event on the way
        assert (await client.events().receive())["topic"] == "x.y"
        await client.aclose()
        with pytest.raises(ConnectionError):
            await client.call("test.echo", [0])


async def _append(results: list[Any], call: Any) -> None:
    results.append(await call)


async def test_async_client_daemon_not_running(sock_dir: Path) -> None:
    with pytest.raises(DaemonNotRunning):
        await AsyncControlClient.connect(sock_dir / "missing.sock")
    with pytest.raises(DaemonNotRunning):
        async with AsyncControlClient(sock_dir / "missing.sock"):
            pass


async def test_async_client_body_exception_is_not_wrapped(served: tuple[ControlServer, Service]) -> None:
    server, _ = served
    with pytest.raises(KeyError):
        async with AsyncControlClient(server.socket_path) as client:
            await client.call("test.echo", [1])
            raise KeyError("mine")


async def test_async_client_cancelled_call_does_not_break_the_connection(
    served: tuple[ControlServer, Service],
) -> None:
    server, service = served
    with trio.fail_after(10):
        async with AsyncControlClient(server.socket_path) as client:
            with trio.move_on_after(0.05) as scope:
                await client.call("test.block")
            assert scope.cancelled_caught
            service.release.set()  # its answer arrives later and is dropped
            assert await client.call("test.echo", ["still fine"]) == "still fine"


async def serve_in_own_scope(
    server: ControlServer, *, task_status: trio.TaskStatus[trio.CancelScope] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve until the returned scope is cancelled (the test body is not inside that scope)."""
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve)
            task_status.started(scope)


async def test_async_client_when_the_daemon_stops(nursery: trio.Nursery, sock_dir: Path) -> None:
    server, service = make_server(sock_dir / "c.sock")
    with trio.fail_after(10):
        daemon = await nursery.start(serve_in_own_scope, server)
        async with AsyncControlClient(server.socket_path) as client:
            await client.subscribe()
            async with trio.open_nursery() as calls:
                outcome: list[BaseException] = []

                async def pending_call() -> None:
                    try:
                        await client.call("test.block")
                    except ConnectionError as exc:
                        outcome.append(exc)

                calls.start_soon(pending_call)
                await service.blocked.wait()
                server.publish("last", {})
                assert (await client.events().receive())["topic"] == "last"
                daemon.cancel()
                assert [e async for e in client.events()] == []  # it ends
            assert len(outcome) == 1
            with pytest.raises(ConnectionError):
                await client.call("test.echo", [1])


async def test_async_client_drops_events_it_cannot_hold(served: tuple[ControlServer, Service]) -> None:
    server, _ = served
    with trio.fail_after(10):
        async with AsyncControlClient(server.socket_path, max_events=2) as client:
            await client.subscribe()
            for i in range(5):
                server.publish("e", {"i": i})
            while client.dropped_events < 3:
                await trio.sleep(POLL_S)
            assert [(await client.events().receive())["data"]["i"] for _ in range(2)] == [0, 1]
            assert await client.call("test.echo", [1]) == 1
