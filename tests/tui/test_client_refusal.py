"""The TUI's client says why the daemon hung up when the daemon said so first."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import pytest

from node.tui.client import TuiClient

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
