"""The TUI's client says why the daemon hung up when the daemon said so first."""

from __future__ import annotations

import asyncio
import socket
import tempfile
import threading
from pathlib import Path

import pytest

from tui.client import TuiClient

REFUSAL = b'{"jsonrpc":"2.0","id":null,"error":{"code":-32005,"message":"too many control clients","data":{"max_clients":1}}}\n'


def test_the_daemons_refusal_is_the_reason_calls_and_events_fail() -> None:
    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(REFUSAL)  # as the control server does at its client limit, then it closes
        await writer.drain()
        writer.close()

    async def main() -> None:
        with tempfile.TemporaryDirectory(prefix="tuir-", dir="/tmp") as d:
            path = str(Path(d) / "s.sock")
            async with await asyncio.start_unix_server(refuse, path):
                client = await TuiClient.connect(path)
                with pytest.raises(ConnectionError, match="too many control clients"):
                    await client.call("node.status", timeout=5)
                with pytest.raises(ConnectionError, match="too many control clients"):
                    await client.next_events()
                await client.aclose()

    asyncio.run(main())



def test_the_refusal_is_the_reason_even_when_our_write_fails_first() -> None:
    """The daemon refuses at accept and closes; our first write then fails before the client's
    reader has run (the loop is held until the daemon is gone), yet its reason is the error."""
    with tempfile.TemporaryDirectory(prefix="tuir-", dir="/tmp") as d:
        path = str(Path(d) / "s.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        listener.listen(1)
        gone = threading.Event()

        def refuse() -> None:
            conn, _ = listener.accept()
            conn.sendall(REFUSAL)
            conn.close()
            gone.set()

        thread = threading.Thread(target=refuse, daemon=True)
        thread.start()

        async def main() -> None:
            client = await TuiClient.connect(path)
            assert gone.wait(5)  # blocking on purpose: the client's reader task must not run yet
            with pytest.raises(ConnectionError, match="too many control clients"):
                await client.call("test.echo", {"value": "x" * (1 << 20)}, timeout=5)
            await client.aclose()

        try:
            asyncio.run(main())
        finally:
            thread.join(5)
            listener.close()
