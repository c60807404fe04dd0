"""The TUI against real daemons (Textual's pilot, headless): every view shows live data, keys
navigate, actions round-trip to the daemon, and a daemon killed and restarted under it is
followed through "disconnected" back to live data.

A committee of one (node 0, the daemon the TUI watches) plus a second daemon (node 1, a peer and
an account to transfer to). Every wait polls a condition against a deadline.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from textual.command import CommandList
from textual.widgets import DataTable, RichLog, Static

from tui.app import SovereignApp
from tui.forms import CallScreen

from tests.integration.federation_helpers import fed_root, make_federation  # noqa: F401 - fixture

from .waiting import until

pytestmark = pytest.mark.integration

def text(app: SovereignApp, selector: str) -> str:
    return str(app.query_one(selector, Static).render())


def test_tui_follows_and_steers_a_live_daemon(request: pytest.FixtureRequest, fed_root: Path) -> None:  # noqa: F811
    fed = make_federation(request, fed_root, 2, members=1)
    n0, n1 = fed.start_all()
    me, other = fed.ids[0], fed.ids[1]
    before = n0.call("ledger.balance", {"account": other})["balance"]

    async def scenario() -> None:
        app = SovereignApp(str(n0.socket_path))
        async with app.run_test(size=(100, 30)) as pilot:
            s = app.state
            await until(pilot, lambda: s.connected and other in s.peers and s.federation, "live data")

            # Overview: identity and federation role.
            await until(pilot, lambda: me in text(app, "#identity"), "own peer id on the overview")
            assert "replica" in text(app, "#summary")
            assert "● connected" in text(app, "#connection")

            # Peers: by key, the table has the other node; its card shows when selected.
            await pilot.press("p")
            table = app.query_one("#peers-table", DataTable)
            assert app.focused is table
            await until(pilot, lambda: table.row_count >= 1, "a peer row")
            table.move_cursor(row=table.get_row_index(other))
            await until(pilot, lambda: other in text(app, "#peer-detail"), "the peer's card")

            # Peer actions on the selected peer: add as bootstrap, disconnect, then connect by address.
            other_addr = next(a for a in n1.call("node.id")["addrs"] if "/p2p/" in a)
            await pilot.press("b")
            await until(pilot, lambda: other_addr in n0.call("bootstrap.list")["persisted"], "the bootstrap entry")
            await pilot.press("d")
            await until(pilot, lambda: any("disconnect: " in n.message for n in app._notifications), "disconnect's answer")
            await pilot.press("c")
            await pilot.press(*other_addr, "enter")
            await until(pilot, lambda: any("connect: peer_id=" in n.message for n in app._notifications), "connect's answer")
            await until(pilot, lambda: other in n0.call("peers.list")["peers"][0]["peer_id"], "the peer, connected again")
            # A bad address is refused by the daemon and shown, nothing breaks.
            await pilot.press("c")
            await pilot.press(*"/ip4/127.0.0.1/tcp/1", "enter")
            await until(pilot, lambda: any("connect failed" in n.message for n in app._notifications), "the refusal")

            # Federation: members and executed batches.
            await pilot.press("f")
            await until(pilot, lambda: me in text(app, "#fed-summary"), "the committee")

            # Transfer by the action's form: "t", the selected peer is the default recipient.
            await pilot.press("t")
            await pilot.pause()
            await pilot.press("tab", "backspace", *"7", "enter")  # amount: the default 1 becomes 7

            def received() -> bool:
                return n0.call("ledger.balance", {"account": other})["balance"] == before + 7
            await until(pilot, received, "the transfer to be applied")
            await until(pilot, lambda: any(b.get("requests") for b in s.batches), "the committed batch in the table")

            # Events: the committed batch went by; filtering keeps only matching topics.
            await pilot.press("e")
            log = app.query_one("#events-log", RichLog)
            await until(pilot, lambda: any(e["topic"] == "federation.committed" for e in s.events), "a committed event")
            await until(pilot, lambda: len(log.lines) > 0, "event lines")
            await pilot.press("slash", *"peer", "enter")
            assert all("peer." in str(line.text) for line in log.lines)

            # The palette reaches any method: node.id, no params, answers the peer id.
            await pilot.press("ctrl+p")
            await pilot.press(*"call node.id")
            await until(pilot, lambda: app.screen.query_one(CommandList).option_count > 0, "palette hits")
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, CallScreen), "the method form")
            await pilot.press("enter")
            await until(pilot, lambda: me in str(app.screen.query_one("#result", Static).render()), "node.id's answer")
            await pilot.press("escape")

            # Kill the daemon: the TUI says so and keeps trying; restart it: live again.
            await asyncio.to_thread(n0.kill)
            await until(pilot, lambda: not s.connected and "disconnected" in text(app, "#connection"), "disconnected")
            await asyncio.to_thread(fed.restart, 0)
            await until(pilot, lambda: s.connected and app.link.connects >= 2, "reconnected")
            await pilot.press("o")
            await until(pilot, lambda: "● connected" in text(app, "#connection"), "the connected bar")

    asyncio.run(scenario())
