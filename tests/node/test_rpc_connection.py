"""The sans-I/O JSON-RPC ``Connection``: framing, decoding, id matching, and its properties as a decoder."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import node.rpc.connection
from node.rpc import (
    DAEMON_MAX_LINE,
    INVALID_REQUEST,
    NOT_FOUND,
    PARSE_ERROR,
    REQUEST_TOO_LARGE,
    Connection,
    ConnectionClosed,
    ErrorResponse,
    Event,
    LineTooLong,
    Notification,
    ProtocolViolation,
    Request,
    Response,
    RpcError,
    event_params,
)

EVENT_TYPES = (Request, Notification, Response, ErrorResponse, ProtocolViolation, LineTooLong, ConnectionClosed)
REPO = Path(__file__).resolve().parents[2]


def feed(conn: Connection, *chunks: bytes) -> list[Event]:
    return [event for chunk in chunks for event in conn.receive_data(chunk)]


def pair() -> tuple[Connection, Connection]:
    return Connection.client(), Connection.server()


# ---------------------------------------------------------------------------------------------
# Framing


def test_lines_are_split_wherever_the_bytes_break() -> None:
    server = Connection.server()
    assert feed(server, b'{"jsonrpc":"2.0","id":1,', b'"method":"a"}\n{"jsonrpc":"2.0",') == [Request(1, "a", None)]
    assert feed(server, b'"method":"b","params":[1]}\r\n\n  \n') == [Notification("b", [1])]


def test_the_line_limit_counts_bytes_before_the_newline() -> None:
    line = b'{"jsonrpc":"2.0","method":"m","params":["' + b"x" * 50 + b'"]}'
    exact = Connection.server(max_line=len(line))
    assert feed(exact, line + b"\n") == [Notification("m", ["x" * 50])]
    over = Connection.server(max_line=len(line) - 1)
    assert feed(over, line + b"\n") == [LineTooLong(len(line) - 1)]
    assert over.ended


def test_a_line_over_the_limit_is_refused_before_its_newline_arrives() -> None:
    server = Connection.server(max_line=100)
    assert feed(server, b'{"jsonrpc":"2.0","id":1,"method":"a"}\n', b"x" * 60) == [Request(1, "a", None)]
    assert feed(server, b"x" * 41) == [LineTooLong(100)]  # 101 bytes and no newline yet
    with pytest.raises(RuntimeError):
        server.receive_data(b"more")
    assert server.receive_data(b"") == []  # EOF after the end is harmless


def test_lines_before_a_long_one_count_and_nothing_after_it_does() -> None:
    server = Connection.server(max_line=60)
    ok = b'{"jsonrpc":"2.0","id":1,"method":"a"}\n'
    assert feed(server, ok + b"y" * 61 + b"\n" + ok) == [Request(1, "a", None), LineTooLong(60)]


def test_the_last_line_without_a_newline_counts_at_eof() -> None:
    server = Connection.server()
    assert feed(server, b'{"jsonrpc":"2.0","id":"z","method":"a"}') == []
    assert feed(server, b"") == [Request("z", "a", None), ConnectionClosed()]
    assert server.ended
    assert feed(Connection.server(), b"  \r", b"") == [ConnectionClosed()]


# ---------------------------------------------------------------------------------------------
# Strict decoding, in both roles


@pytest.mark.parametrize(
    "line",
    [b"{", b"\xff", b'{"a":NaN}', b'{"a":Infinity}', b'{"a":1e999}', b"1" * 5000, b"[" * 50_000, b'"\xed\xa0\x80"'],
)
@pytest.mark.parametrize("role", ["server", "client"])
def test_unreadable_lines_are_parse_errors_with_a_null_id(line: bytes, role: str) -> None:
    conn = Connection.server() if role == "server" else Connection.client()
    [event] = feed(conn, line + b"\n")
    assert isinstance(event, ProtocolViolation)
    assert (event.code, event.id) == (PARSE_ERROR, None)
    assert event.error.code == PARSE_ERROR and event.error.request_id is None
    assert event.line == line[:200]


def test_an_escaped_lone_surrogate_decodes_for_params_validation_to_refuse() -> None:
    [event] = feed(Connection.server(), b'{"jsonrpc":"2.0","id":1,"method":"a","params":["\\ud800"]}\n')
    assert event == Request(1, "a", ["\ud800"])


def test_the_server_refuses_batches_and_bad_shapes_naming_the_id() -> None:
    server = Connection.server()
    batch, extra = feed(server, b"[]\n", b'{"jsonrpc":"2.0","id":7,"method":"a","param":{}}\n')
    assert isinstance(batch, ProtocolViolation) and batch.code == INVALID_REQUEST and batch.id is None
    assert "batch" in batch.message
    assert isinstance(extra, ProtocolViolation) and extra.id == 7 and "'param'" in extra.message
    answer = json.loads(server.send_error(extra.id, extra.error))
    assert answer == {"jsonrpc": "2.0", "id": 7, "error": {"code": INVALID_REQUEST, "message": extra.message}}


# ---------------------------------------------------------------------------------------------
# The client: ids and answers


def test_answers_are_matched_to_the_requests_sent() -> None:
    client, server = pair()
    first, data1 = client.send_request("a.b", {"x": 1})
    second, data2 = client.send_request("c")
    assert first != second and client.awaiting == {first, second}
    assert feed(server, data1 + data2) == [Request(first, "a.b", {"x": 1}), Request(second, "c", None)]
    out = server.send_error(second, RpcError(NOT_FOUND, "gone", {"k": 1})) + server.send_response(first, [1])
    assert feed(client, out) == [ErrorResponse(second, NOT_FOUND, "gone", {"k": 1}), Response(first, [1])]
    assert client.awaiting == frozenset()
    [again] = feed(client, server.send_response(first, [1]))  # answered already
    assert isinstance(again, ProtocolViolation) and "no request of ours" in again.message
    [stranger] = feed(client, server.send_response("someone else's", 0))
    assert isinstance(stranger, ProtocolViolation)


def test_an_error_with_a_null_id_is_the_daemons_refusal() -> None:
    client = Connection.client()
    [refusal] = feed(client, b'{"jsonrpc":"2.0","id":null,"error":{"code":-32005,"message":"too many"}}\n')
    assert isinstance(refusal, ErrorResponse) and refusal.is_refusal
    with pytest.raises(RpcError) as err:
        refusal.unwrap()
    assert (err.value.code, err.value.message) == (-32005, "too many")
    [odd] = feed(client, b'{"jsonrpc":"2.0","id":null,"result":1}\n')  # a result for nobody
    assert isinstance(odd, ProtocolViolation)


def test_a_malformed_error_member_still_fails_the_call() -> None:
    client = Connection.client()
    request_id, _ = client.send_request("a")
    [event] = feed(client, b'{"jsonrpc":"2.0","id":%d,"error":"boom"}\n' % request_id)
    assert isinstance(event, ErrorResponse) and event.id == request_id and event.data == "boom"


def test_events_reach_the_client_and_requests_to_it_do_not() -> None:
    client = Connection.client()
    server = Connection.server()
    event = feed(client, server.send_notification("event", {"topic": "t", "ts": 1, "data": {}}))[0]
    assert event == Notification("event", {"topic": "t", "ts": 1, "data": {}})
    assert event_params(event) == {"topic": "t", "ts": 1, "data": {}}
    assert event_params(Notification("event", [1])) is None and event_params(Notification("other", {})) is None
    [request] = feed(client, b'{"jsonrpc":"2.0","id":1,"method":"a"}\n')
    assert isinstance(request, ProtocolViolation)


def test_what_cannot_be_sent_is_refused_before_anything_is_owed() -> None:
    client = Connection.client(max_send_line=60)
    with pytest.raises(ValueError):
        client.send_request("a", [float("nan")])
    with pytest.raises(RpcError) as err:
        client.send_request("a", ["x" * 100])
    assert err.value.code == REQUEST_TOO_LARGE and err.value.data == {"max_line": 60}
    with pytest.raises(RpcError):
        client.send_notification("a", ["x" * 100])
    assert client.awaiting == frozenset()
    assert client.send_request("a") == (1, b'{"jsonrpc":"2.0","id":1,"method":"a"}\n')


def test_each_role_sends_only_its_own_messages() -> None:
    client, server = pair()
    with pytest.raises(RuntimeError):
        server.send_request("a")
    with pytest.raises(RuntimeError):
        client.send_response(1, None)
    with pytest.raises(RuntimeError):
        client.send_error(1, RpcError(NOT_FOUND))
    assert Connection.server().max_line == DAEMON_MAX_LINE


def test_the_connection_does_no_io() -> None:
    """Sans-I/O means it: the module imports nothing that reaches a socket, a clock or a log."""
    tree = ast.parse(Path(node.rpc.connection.__file__).read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert imported <= {"__future__", "dataclasses", "enum", "json", "typing"}


def test_no_module_imports_private_names_of_the_rpc_package() -> None:
    offenders = []
    for path in [*REPO.glob("node/**/*.py"), *REPO.glob("tui/**/*.py"), *REPO.glob("tests/**/*.py")]:
        for n in ast.walk(ast.parse(path.read_text())):
            if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("node.rpc"):
                offenders += [f"{path.relative_to(REPO)}: {a.name}" for a in n.names if a.name.startswith("_")]
    assert offenders == []


# ---------------------------------------------------------------------------------------------
# Properties

ROLE = st.sampled_from(["server", "client"])
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)
PARAMS = st.none() | st.lists(JSON, max_size=3) | st.dictionaries(st.text(max_size=8), JSON, max_size=3)
METHOD = st.text(min_size=1, max_size=12)
# Lines that are near misses as well as valid ones: the framing and decoding must hold for both.
LINE = st.one_of(
    st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")),
    st.builds(lambda m, p: Connection.client().send_request(m, p)[1][:-1], METHOD, PARAMS),
    st.builds(lambda m, p: Connection.server().send_notification(m, p)[:-1], METHOD, PARAMS),
    st.builds(lambda r: Connection.server().send_response(1, r)[:-1], JSON),
    st.sampled_from([b"", b"  ", b"[]", b"[1]", b"{}", b'{"a":NaN}', b"1" * 5000, b'{"jsonrpc":"2.0","id":1,"error":{}}']),
)


def _make(role: str, max_line: int = DAEMON_MAX_LINE) -> Connection:
    if role == "server":
        return Connection.server(max_line=max_line)
    client = Connection.client(max_line=max_line)
    client.send_request("warm")  # so that answers with id 1 are matched, not violations
    return client


def receive_all(conn: Connection, chunks: list[bytes]) -> list[Event]:
    """Feed chunks as a driver does: until the connection ends."""
    events: list[Event] = []
    for chunk in chunks:
        if conn.ended:
            break
        events += conn.receive_data(chunk)
    return events


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)]) if a != b]


@settings(max_examples=200, deadline=None)
@given(ROLE, st.binary(max_size=300), st.lists(st.integers(min_value=0), max_size=8), st.integers(1, 64))
def test_arbitrary_bytes_in_any_chunks_give_only_documented_events(
    role: str, data: bytes, cuts: list[int], max_line: int
) -> None:
    conn = _make(role, max_line)
    events = receive_all(conn, _split(data, cuts))
    if not conn.ended:
        events += conn.receive_data(b"")
    assert all(isinstance(e, EVENT_TYPES) for e in events)
    assert isinstance(events[-1], ConnectionClosed | LineTooLong)
    assert not any(isinstance(e, ConnectionClosed | LineTooLong) for e in events[:-1])
    for e in events:
        if isinstance(e, ProtocolViolation):
            assert e.code in (PARSE_ERROR, INVALID_REQUEST) and len(e.line) <= 200
        assert not isinstance(e, Request | Response) or role == ("server" if isinstance(e, Request) else "client")


@settings(max_examples=200, deadline=None)
@given(ROLE, st.lists(LINE, max_size=6), st.lists(st.integers(min_value=0), max_size=10), st.booleans())
def test_split_at_any_byte_boundary_gives_the_same_events(
    role: str, lines: list[bytes], cuts: list[int], terminated: bool
) -> None:
    data = b"\n".join(lines) + (b"\n" if terminated else b"")
    whole = receive_all(_make(role, max_line=2000), [data] if data else [])
    chunked = _make(role, max_line=2000)
    assert receive_all(chunked, _split(data, cuts)) == whole
    if not chunked.ended:
        assert chunked.receive_data(b"")[-1] == ConnectionClosed()


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(METHOD, PARAMS, st.booleans()), min_size=1, max_size=5), JSON, st.integers(1, 8))
def test_requests_and_answers_round_trip(calls: list[tuple[str, Any, bool]], result: Any, chunk: int) -> None:
    client, server = pair()
    sent: list[Event] = []
    wire = b""
    for method, params, is_notification in calls:
        if is_notification:
            wire += client.send_notification(method, params)
            sent.append(Notification(method, params))
        else:
            request_id, data = client.send_request(method, params)
            wire += data
            sent.append(Request(request_id, method, params))
    received = [e for i in range(0, len(wire), chunk) for e in server.receive_data(wire[i : i + chunk])]
    assert received == sent
    answers = b""
    expected: list[Event] = []
    for call in reversed(sent):  # out of order, as the server may answer
        if isinstance(call, Request):
            if len(expected) % 2:
                answers += server.send_error(call.id, RpcError(NOT_FOUND, call.method, result))
                expected.append(ErrorResponse(call.id, NOT_FOUND, call.method, result))
            else:
                answers += server.send_response(call.id, result)
                expected.append(Response(call.id, result))
    assert (client.receive_data(answers) if answers else []) == expected
    assert client.awaiting == frozenset()
