"""SVG snapshots of every TUI screen, rendered from a fixed state (no daemon, a frozen clock).

Update after an intended visual change with `pytest tests/tui/test_snapshots.py --snapshot-update`
and look at the new SVGs (tests/tui/__snapshots__/) before committing them.
"""

from __future__ import annotations

from typing import Any, Callable

import pytest
from textual.pilot import Pilot

from tui.app import SovereignApp
from tui.forms import CallScreen

from .sample import NOW, PEER_B, sample_state

SIZE = (100, 30)


def _app(**kw: Any) -> SovereignApp:
    return SovereignApp("/tmp/sample/sovereign.sock", state=sample_state(**kw), live=False, clock=lambda: NOW)


@pytest.mark.parametrize("keys", [(), ("p",), ("f",), ("e",), ("question_mark",)], ids=["overview", "peers", "federation", "events", "help"])
def test_screen(snap_compare: Callable[..., bool], keys: tuple[str, ...]) -> None:
    assert snap_compare(_app(), press=keys, terminal_size=SIZE)


def test_peers_sorted_by_latency_with_a_selected_peer(snap_compare: Callable[..., bool]) -> None:
    async def select(pilot: Pilot[None]) -> None:
        app = pilot.app
        assert isinstance(app, SovereignApp)
        await pilot.press("p")
        for _ in range(4):
            await pilot.press("s")  # peer -> state -> conn -> last seen -> latency
        table = app.query_one("#peers-table")
        table.move_cursor(row=table.get_row_index(PEER_B))  # type: ignore[attr-defined]
        await pilot.pause()

    assert snap_compare(_app(), run_before=select, terminal_size=SIZE)


def test_events_filtered_and_paused(snap_compare: Callable[..., bool]) -> None:
    async def filtered(pilot: Pilot[None]) -> None:
        await pilot.press("e", "slash", *"peer", "enter", "space")

    assert snap_compare(_app(), run_before=filtered, terminal_size=SIZE)


def test_disconnected(snap_compare: Callable[..., bool]) -> None:
    assert snap_compare(_app(connected=False), terminal_size=SIZE)


def test_light_theme_at_80x24(snap_compare: Callable[..., bool]) -> None:
    assert snap_compare(_app(), press=("ctrl+t",), terminal_size=(80, 24))


def test_call_form(snap_compare: Callable[..., bool]) -> None:
    schema = {
        "name": "ledger.transfer",
        "doc": "Transfer `amount` from this node's account to `to` (a peer id).",
        "params": [
            {"name": "to", "type": "str", "required": True},
            {"name": "amount", "type": "int", "required": True},
            {"name": "timeout", "type": "float", "required": False, "default": 30.0},
        ],
    }

    async def open_form(pilot: Pilot[None]) -> None:
        async def refuse(method: str, params: Any) -> Any:
            raise ConnectionError("not connected to the daemon")

        await pilot.app.push_screen(CallScreen(schema, refuse))
        await pilot.press(*"abc", "tab", *"ten", "enter")  # "ten" is not an int: the form says so
        await pilot.pause()

    assert snap_compare(_app(), run_before=open_form, terminal_size=SIZE)
