"""The TUI against daemons that misbehave (scripted servers on a Unix socket): absent, silent,
failing every call, answering nonsense. It must say what is wrong, keep retrying, never crash."""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from textual.pilot import Pilot
from textual.widgets import Static

from tui.app import SovereignApp

from .waiting import until

Reply = Callable[[dict[str, Any]], dict[str, Any] | None]
def _with_daemon(reply: Reply | None, body: Callable[[SovereignApp, Pilot[None]], Awaitable[None]]) -> None:
    """Run the app against a server that answers each request with reply(request) (None: never)."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            answer = reply(json.loads(line)) if reply is not None else None
            if answer is not None:
                writer.write(json.dumps(answer).encode() + b"\n")
                await writer.drain()
        writer.close()

    async def main() -> None:
        with tempfile.TemporaryDirectory(prefix="tuir-", dir="/tmp") as d:
            path = str(Path(d) / "s.sock")
            server = await asyncio.start_unix_server(serve, path)
            async with server:
                app = SovereignApp(path, call_timeout=0.3)
                async with app.run_test(size=(100, 30)) as pilot:
                    await body(app, pilot)
                    assert app.is_running

    asyncio.run(main())


def _bar(app: SovereignApp) -> str:
    return str(app.query_one("#connection", Static).render())


def test_no_daemon_is_shown_and_retried() -> None:
    async def main() -> None:
        app = SovereignApp("/tmp/sovereign-no-such-dir/s.sock")
        async with app.run_test(size=(100, 30)) as pilot:
            await until(pilot, lambda: "no daemon is listening" in _bar(app), "the disconnected bar")
            assert not app.state.connected and app.is_running

    asyncio.run(main())


def test_a_silent_daemon_is_treated_as_gone() -> None:
    async def body(app: SovereignApp, pilot: Pilot[None]) -> None:
        await until(pilot, lambda: "no answer" in _bar(app), "the timeout to be shown")
        assert not app.state.connected

    _with_daemon(None, body)


def test_a_daemon_failing_every_call_is_shown_not_fatal() -> None:
    def fail(req: dict[str, Any]) -> dict[str, Any]:
        return {"jsonrpc": "2.0", "id": req["id"], "error": {"code": -32603, "message": "Internal error"}}

    async def body(app: SovereignApp, pilot: Pilot[None]) -> None:
        await until(pilot, lambda: "Internal error" in _bar(app), "the error to be shown")
        # It never got as far as live data, so the retries back off (0.25, 0.5, 1 s, ...).
        await until(pilot, lambda: "retrying in 1.0 s" in _bar(app), "the backoff to grow")

    _with_daemon(fail, body)


def test_a_daemon_answering_nonsense_still_connects() -> None:
    answers: dict[str, Any] = {
        "events.subscribe": {"subscribed": ["*"]},
        "node.status": [1, 2, 3],
        "peers.list": {"peers": "everyone"},
        "bootstrap.list": None,
        "federation.status": {"role": 7, "members": "abc", "view": "two", "stable_checkpoint": [1]},
        "federation.log": {"batches": [{"seq": "x"}, 5]},
    }

    def nonsense(req: dict[str, Any]) -> dict[str, Any]:
        return {"jsonrpc": "2.0", "id": req["id"], "result": answers.get(req["method"], 42)}

    async def body(app: SovereignApp, pilot: Pilot[None]) -> None:
        await until(pilot, lambda: app.state.connected, "a connection")
        for key in "pfeo":
            await app.run_action(f"show_tab('{ {'p': 'peers', 'f': 'federation', 'e': 'events', 'o': 'overview'}[key]}')")
            app.refresh_views()
        assert app.state.role == "?" and app.state.peers == {}

    _with_daemon(nonsense, body)
