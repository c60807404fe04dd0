"""The TUI's asyncio control client against a scripted Unix-socket server."""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from node.rpc import DaemonNotRunning, RpcError
from tui.client import TuiClient

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def _run(handler: Handler, body: Callable[[str], Awaitable[None]]) -> None:
    async def main() -> None:
        with tempfile.TemporaryDirectory(prefix="tuic-", dir="/tmp") as d:
            path = str(Path(d) / "s.sock")
            server = await asyncio.start_unix_server(handler, path)
            async with server:
                await body(path)

    asyncio.run(main())


async def _echo_daemon(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers in reverse order of asking, with an event before each answer."""
    pending = []
    while line := await reader.readline():
        req = json.loads(line)
        pending.append(req)
        if req["method"] == "boom":
            writer.write(b'{"jsonrpc":"2.0","id":%d,"error":{"code":-32000,"message":"it broke","data":{"why":1}}}\n' % req["id"])
        elif len(pending) == 2:
            for r in reversed(pending):
                writer.write(b'{"jsonrpc":"2.0","method":"event","params":{"topic":"t","ts":1,"data":{}}}\n')
                writer.write(json.dumps({"jsonrpc": "2.0", "id": r["id"], "result": r["method"]}).encode() + b"\n")
            pending.clear()
        await writer.drain()
    writer.close()


def test_concurrent_calls_are_matched_by_id_and_events_collected() -> None:
    async def body(path: str) -> None:
        client = await TuiClient.connect(path)
        a, b = await asyncio.gather(client.call("first"), client.call("second"))
        assert (a, b) == ("first", "second")
        assert len(await client.next_events()) == 2
        with pytest.raises(RpcError) as err:
            await client.call("boom")
        assert err.value.code == -32000 and err.value.data == {"why": 1}
        await client.aclose()
        with pytest.raises(ConnectionError):
            await client.call("after close")

    _run(_echo_daemon, body)


def test_a_silent_daemon_times_out_instead_of_hanging() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    async def body(path: str) -> None:
        client = await TuiClient.connect(path)
        with pytest.raises(TimeoutError, match="no answer"):
            await client.call("node.status", timeout=0.05)
        await client.aclose()

    _run(silent, body)


def test_a_daemon_that_hangs_up_fails_waiting_calls_and_ends_events() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        writer.write(b"not json\n")  # ignored, with a warning
        writer.close()

    async def body(path: str) -> None:
        client = await TuiClient.connect(path)
        with pytest.raises(ConnectionError):
            await client.call("node.status")
        with pytest.raises(ConnectionError):
            await client.next_events()
        assert client.closed
        await client.aclose()

    _run(hang_up, body)


def test_no_daemon() -> None:
    async def main() -> None:
        with pytest.raises(DaemonNotRunning):
            await TuiClient.connect("/tmp/no-such-dir-sovereign/s.sock")

    asyncio.run(main())
