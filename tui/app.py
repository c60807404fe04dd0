"""`sovereign tui`: a Textual app that watches and steers one daemon through its control socket.

The app owns a ``DaemonState`` (the model), a ``DaemonLink`` (keeps the model in step with the
daemon, in a worker) and four panes (views of the model). The link marks the model changed; a
timer redraws at most ``REDRAW_HZ`` times a second, so a burst of events costs one redraw.
Actions (connect, disconnect, transfer, any method from the palette) are control calls made in
workers: the UI never waits on the daemon, and every error ends up in a notification.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import Footer, Header, RichLog, Static, TabbedContent, TabPane

from tui.commands import ControlMethods
from tui.forms import HelpScreen, PromptScreen, describe_error
from tui.link import DaemonLink
from tui.panes import EventsPane, FederationPane, OverviewPane, PeersPane
from tui.state import DaemonState, short_id

REDRAW_HZ = 4
TABS = ("overview", "peers", "federation", "events")
_FOCUS = {"peers": "#peers-table", "federation": "#batches", "events": "#events-log"}

CSS = """
TabbedContent { height: 1fr; }
TabPane { padding: 0; }
#connection { height: 1; padding: 0 1; background: $boost; }
#connection.down { background: $error 40%; }
.box { border: round $primary 60%; padding: 0 1; height: auto; }
.spark-row { height: 3; }
.spark-label { width: 16; padding: 1 1; }
.spark-value { width: 10; padding: 1 1; }
Sparkline { width: 1fr; height: 3; margin: 0 1; }
#peers-table { height: 1fr; }
#peer-detail { height: auto; max-height: 12; overflow-y: auto; }
#fed-summary { height: auto; max-height: 60%; overflow-y: auto; }
#batches, #views { width: 1fr; height: 1fr; }
#events-bar { height: 3; }
#events-filter { width: 1fr; }
#events-status { width: 18; padding: 1 1; }
#events-log { height: 1fr; }
ModalScreen { align: center middle; }
.dialog { width: 80%; max-width: 100; height: auto; max-height: 90%; border: thick $primary; background: $surface; padding: 1 2; }
.dialog .title { margin-bottom: 1; }
.dialog .buttons { height: 3; margin-top: 1; }
.dialog .buttons Button { margin-right: 2; }
.dialog .result-box { height: auto; max-height: 14; }
"""


class PeersView(PeersPane):
    BINDINGS = [
        Binding("s", "app.sort_peers", "sort"),
        Binding("c", "app.connect_peer", "connect"),
        Binding("d", "app.disconnect_peer", "disconnect"),
        Binding("b", "app.add_bootstrap", "add bootstrap"),
    ]


class FederationView(FederationPane):
    BINDINGS = [Binding("t", "app.transfer", "transfer")]


class EventsView(EventsPane):
    BINDINGS = [
        Binding("space", "app.toggle_pause", "pause/resume"),
        Binding("slash", "app.focus_filter", "filter"),
    ]


class SovereignApp(App[None]):
    TITLE = "sovereign"
    CSS = CSS
    COMMANDS = App.COMMANDS | {ControlMethods}
    BINDINGS = [
        Binding("o", "show_tab('overview')", "overview"),
        Binding("p", "show_tab('peers')", "peers"),
        Binding("f", "show_tab('federation')", "federation"),
        Binding("e", "show_tab('events')", "events"),
        Binding("question_mark", "help", "help"),
        Binding("ctrl+t", "toggle_theme", "theme"),
        Binding("q", "quit", "quit"),
    ]

    def __init__(
        self,
        socket_path: str,
        *,
        state: DaemonState | None = None,
        live: bool = True,
        clock: Callable[[], float] = time.monotonic,
        call_timeout: float = 10.0,
    ) -> None:
        """``live=False`` shows ``state`` as given and never touches the socket (snapshot tests)."""
        super().__init__()
        self.state = state or DaemonState(socket_path=socket_path)
        self.live = live
        self.clock = clock
        self.link = DaemonLink(socket_path, self.state, self._changed, call_timeout=call_timeout)
        self._drawn = -1
        self._redraw_pending = False
        self._last_draw = 0.0
        self._drawn_connected = False

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="connection")
        with TabbedContent(initial="overview"):
            with TabPane("Overview", id="overview"):
                yield OverviewPane()
            with TabPane("Peers", id="peers"):
                yield PeersView()
            with TabPane("Federation", id="federation"):
                yield FederationView()
            with TabPane("Events", id="events"):
                yield EventsView()
        yield Footer()

    def on_mount(self) -> None:
        self.refresh_views()
        if self.live:
            self.run_worker(self.link.run(), name="daemon-link", exclusive=True, group="link")
            self.set_interval(1.0, self._tick)

    # -- model -> views ----------------------------------------------------------------------

    def _changed(self) -> None:
        """The state changed: redraw now if the last redraw is old enough, else once when it is
        (leading-edge throttle: the first data after connecting shows without delay, and a
        burst of events costs one redraw per interval)."""
        if self._redraw_pending:
            return
        wait = self._last_draw + 1.0 / REDRAW_HZ - time.monotonic()
        # A connection made or lost is shown at once, whatever was drawn just before.
        if wait <= 0 or self.state.connected != self._drawn_connected:
            self._redraw()
        else:
            self._redraw_pending = True
            self.set_timer(wait, self._redraw)

    def _redraw(self) -> None:
        self._redraw_pending = False
        if self.state.revision != self._drawn:
            self.refresh_views()

    def _tick(self) -> None:
        self.state.tick()
        self._changed()

    def refresh_views(self) -> None:
        self._drawn = self.state.revision
        self._drawn_connected = self.state.connected
        self._last_draw = time.monotonic()
        now = self.clock()
        s = self.state
        bar = self.query_one("#connection", Static)
        bar.set_class(not s.connected, "down")
        if s.connected:
            bar.update(Text.assemble(("● connected", "bold"), f"  {short_id(s.peer_id, 20)}  role {s.role}"))
        else:
            bar.update(Text(f"○ {s.connection_note}", style="bold"))
        self.sub_title = "connected" if s.connected else "disconnected"
        self.query_one(OverviewPane).show(s, now)
        self.query_one(PeersView).show(s, now)
        self.query_one(FederationView).show(s, now)
        self.query_one(EventsView).show(s, now)

    # -- calls ---------------------------------------------------------------------------------

    async def call(self, method: str, params: dict[str, Any] | None) -> Any:
        """A control call for the palette and the actions; raises on any failure."""
        return await self.link.call(method, params)

    @work(group="actions")
    async def _act(self, what: str, method: str, params: dict[str, Any] | None) -> None:
        try:
            result = await self.call(method, params)
        except Exception as exc:  # noqa: BLE001 - shown, never raised into the UI
            self.notify(f"{what} failed: {describe_error(exc)}", severity="error", timeout=8)
            return
        self.notify(f"{what}: {_summary(result)}", timeout=6)

    # -- actions -------------------------------------------------------------------------------

    def action_show_tab(self, tab: str) -> None:
        if tab in TABS:
            self.query_one(TabbedContent).active = tab

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        # Focus the view's main widget, so its keys (sort, connect, transfer, pause) are live
        # and listed in the footer at once.
        target = _FOCUS.get(event.pane.id or "")
        # Asked of the pane, not the app: the message may arrive while the app shuts down and
        # its screen is gone.
        widgets = event.pane.query(target) if target is not None else None
        if not widgets:
            if self.screen_stack:
                self.set_focus(None)
            return
        widget = widgets.first()
        widget.focus()
        if isinstance(widget, RichLog):
            # Lines written while the tab was hidden are laid out only now: follow the newest
            # once the layout is done.
            self.call_after_refresh(widget.scroll_end, animate=False)

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def action_toggle_theme(self) -> None:
        self.theme = "textual-light" if self.theme != "textual-light" else "textual-dark"

    def action_sort_peers(self) -> None:
        self.query_one(PeersView).cycle_sort()
        self.refresh_views()

    def action_connect_peer(self) -> None:
        def done(values: dict[str, str] | None) -> None:
            if values and values.get("addr"):
                self._act("connect", "peers.connect", {"addr": values["addr"]})

        self.push_screen(PromptScreen("Connect to a peer", [("addr", "multiaddr (/ip4/HOST/tcp/PORT/p2p/PEER_ID)", "")]), done)

    def _selected_peer(self) -> str | None:
        peer = self.query_one(PeersView).selected
        if peer is None or peer not in self.state.peers:
            self.notify("select a peer in the table first", severity="warning")
            return None
        return peer

    def action_disconnect_peer(self) -> None:
        peer = self._selected_peer()
        if peer is not None:
            self._act("disconnect", "peers.disconnect", {"peer_id": peer})

    def action_add_bootstrap(self) -> None:
        peer = self._selected_peer()
        if peer is None:
            return
        addrs = self.state.peers[peer].addrs
        if not addrs:
            self.notify("this peer has no known address", severity="warning")
            return
        addr = addrs[0] if "/p2p/" in addrs[0] else f"{addrs[0]}/p2p/{peer}"
        self._act("add bootstrap", "bootstrap.add", {"addr": addr})

    def action_transfer(self) -> None:
        default_to = self.query_one(PeersView).selected or ""
        if not default_to and self.state.federation:
            others = [m for m in self.state.federation.get("members") or [] if m != self.state.peer_id]
            default_to = str(others[0]) if others else ""

        def done(values: dict[str, str] | None) -> None:
            if not values:
                return
            try:
                amount = int(values.get("amount", ""))
            except ValueError:
                self.notify(f"amount must be a whole number, got {values.get('amount')!r}", severity="error")
                return
            self._act("transfer", "ledger.transfer", {"to": values.get("to", ""), "amount": amount})

        self.push_screen(
            PromptScreen("Transfer from this node's account", [("to", "to (peer id)", default_to), ("amount", "amount", "1")]),
            done,
        )

    def action_toggle_pause(self) -> None:
        pane = self.query_one(EventsView)
        pane.paused = not pane.paused
        if not pane.paused:
            pane.rewrite(self.state)
        self.refresh_views()

    def action_focus_filter(self) -> None:
        self.query_one("#events-filter").focus()


def _summary(result: Any) -> str:
    if isinstance(result, dict):
        parts = [f"{k}={v}" for k, v in list(result.items())[:4] if isinstance(v, (str, int, float, bool)) or v is None]
        return ", ".join(parts) or "done"
    return str(result)[:200]


def run(socket_path: str) -> int:
    SovereignApp(socket_path).run()
    return 0
