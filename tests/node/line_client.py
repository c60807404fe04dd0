"""A raw JSON-RPC line client for tests that must see each answer exactly as the server sent it
(errors included, as dicts): node.rpc's clients raise on errors, these tests look at them."""

from __future__ import annotations

import json
from typing import Any

import trio

OMIT: Any = object()  # no "params" key at all (None sends "params": null)


class Line:
    def __init__(self, stream: trio.SocketStream, guard_s: float = 60.0) -> None:
        self.stream = stream
        self.guard_s = guard_s  # a call not answered by then is hung (never reached when all is well)
        self.buf = b""
        self.next_id = 0

    async def call(self, method: str, params: Any = OMIT) -> dict[str, Any]:
        self.next_id += 1
        msg: dict[str, Any] = {"jsonrpc": "2.0", "id": self.next_id, "method": method}
        if params is not OMIT:
            msg["params"] = params
        await self.stream.send_all(json.dumps(msg).encode() + b"\n")
        with trio.fail_after(self.guard_s):
            while b"\n" not in self.buf:
                data = await self.stream.receive_some(1 << 16)
                assert data, f"the server closed the connection on {method}"
                self.buf += data
        line, _, self.buf = self.buf.partition(b"\n")
        reply: dict[str, Any] = json.loads(line)
        assert reply["id"] == self.next_id
        return reply
