"""The four views of the TUI: overview, peers, federation, events.

Each pane is composed of stock Textual widgets and has one entry point, ``show(state, now)``,
which the app calls when the state changed (at most a few times a second). Data flows one way:
state in, widgets out; a pane's actions go back through the app, never into the state directly.
"""

from __future__ import annotations

import datetime
import json
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import DataTable, Input, Label, RichLog, Sparkline, Static

from tui.state import DaemonState, Peer, format_duration, short_id

_STATE_STYLE = {"alive": "green", "suspect": "yellow", "dead": "red"}


def _b(text: str) -> tuple[str, str]:
    return (text, "bold")


def _text(*parts: str | tuple[str, str] | Text) -> Text:
    """Styled text assembled from parts: what the daemon sent is never parsed as markup."""
    return Text.assemble(*parts)


def _num(value: Any, suffix: str = "") -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "?"
    return f"{value:,}{suffix}" if isinstance(value, int) else f"{value:,.1f}{suffix}"


class OverviewPane(VerticalScroll):
    """Identity, peer counts, federation role, and live sparklines."""

    def compose(self) -> ComposeResult:
        yield Static(id="identity", classes="box")
        yield Static(id="summary", classes="box")
        with Horizontal(classes="spark-row"):
            yield Label("committed tx/s", classes="spark-label")
            yield Sparkline([0.0], id="tx-spark", summary_function=max)
            yield Label("", id="tx-now", classes="spark-value")
        with Horizontal(classes="spark-row"):
            yield Label("alive peers", classes="spark-label")
            yield Sparkline([0.0], id="peer-spark", summary_function=max)
            yield Label("", id="peers-now", classes="spark-value")

    def show(self, state: DaemonState, now: float) -> None:
        addrs = "\n".join(state.addrs) or "(none)"
        self.query_one("#identity", Static).update(
            _text(
                _b("peer id"), f"     {state.peer_id or '?'}\n",
                _b("listening on"), f"\n{addrs}\n",
                _b("version"), f"     {state.version or '?'}    ", _b("pid"), f" {state.pid or '?'}    ",
                _b("uptime"), f" {format_duration(state.uptime_now(now))}",
            )
        )
        counts = state.peer_counts
        fed = state.federation
        if fed is None:
            fed_line = _text(_b("federation"), f"  none ({state.federation_note})")
        else:
            fed_line = _text(
                _b("federation"), f"  {fed.get('chain_id', '?')}: {state.role}"
                f"    view {_num(fed.get('view'))}    primary {short_id(str(fed.get('primary') or '-'))}"
                f"    executed {_num(fed.get('last_executed'))}    members {len(fed.get('members') or [])}",
            )
        self.query_one("#summary", Static).update(
            _text(
                _b("peers"), f"       {counts.get('alive', 0)} alive, {counts.get('suspect', 0)} suspect, "
                f"{counts.get('dead', 0)} dead, {counts.get('connected', 0)} connected\n",
                fed_line,
            )
        )
        self.query_one("#tx-spark", Sparkline).data = list(state.tx_rate)
        self.query_one("#peer-spark", Sparkline).data = list(state.peer_history)
        self.query_one("#tx-now", Label).update(f"{state.tx_rate[-1]:,.0f}")
        self.query_one("#peers-now", Label).update(f"{state.peer_history[-1]:,.0f}")


_PEER_COLUMNS = ("peer", "state", "conn", "last seen", "latency", "version", "capabilities", "addrs")
_PEER_SORT_KEYS = {
    "peer": lambda p: p.peer_id,
    "state": lambda p: (p.state, p.peer_id),
    "conn": lambda p: (not p.connected, p.peer_id),
    "last seen": lambda p: (p.last_seen_ago_s is None, p.last_seen_ago_s or 0.0, p.peer_id),
    "latency": lambda p: (p.latency_ms is None, p.latency_ms or 0.0, p.peer_id),
    "version": lambda p: (p.version, p.peer_id),
    "capabilities": lambda p: (-len(p.capabilities), p.peer_id),
    "addrs": lambda p: (p.addrs[:1], p.peer_id),
}


class PeersPane(Vertical):
    """The membership view as a sortable table, and the selected peer's capability card."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sort_column = "peer"
        self.sort_reverse = False
        self.selected: str | None = None
        self._peers: dict[str, Peer] = {}
        self._headers: tuple[str, bool] | None = None

    def compose(self) -> ComposeResult:
        yield DataTable(id="peers-table", cursor_type="row", zebra_stripes=True)
        yield Static("select a peer to see its capability card", id="peer-detail", classes="box")

    def show(self, state: DaemonState, now: float) -> None:
        self._peers = dict(state.peers)
        table = self.query_one("#peers-table", DataTable)
        peers = sorted(state.peers.values(), key=_PEER_SORT_KEYS[self.sort_column], reverse=self.sort_reverse)
        keep = self.selected
        if self._headers != (self.sort_column, self.sort_reverse):
            # Labels are rebuilt, not edited in place: the table caches its rendered header.
            self._headers = (self.sort_column, self.sort_reverse)
            table.clear(columns=True)
            for name in _PEER_COLUMNS:
                arrow = (" ▼" if self.sort_reverse else " ▲") if name == self.sort_column else ""
                table.add_column(f"{name}{arrow}", key=name)
        table.clear()
        for p in peers:
            table.add_row(
                Text(short_id(p.peer_id, 16)),
                Text(p.state, style=_STATE_STYLE.get(p.state, "")),
                "yes" if p.connected else "no",
                "?" if p.last_seen_ago_s is None else f"{p.last_seen_ago_s:.1f} s ago",
                "-" if p.latency_ms is None else f"{p.latency_ms:.1f} ms",
                p.version,
                ", ".join(sorted(p.capabilities)) or "-",
                p.addrs[0] if p.addrs else "-",
                key=p.peer_id,
            )
        if keep in state.peers:
            table.move_cursor(row=table.get_row_index(keep), animate=False)
        self._show_detail()

    def cycle_sort(self) -> str:
        i = _PEER_COLUMNS.index(self.sort_column)
        self.sort_column = _PEER_COLUMNS[(i + 1) % len(_PEER_COLUMNS)]
        return self.sort_column

    def sort_by(self, column: str) -> None:
        if column == self.sort_column:
            self.sort_reverse = not self.sort_reverse
        else:
            self.sort_column, self.sort_reverse = column, False

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.selected = event.row_key.value
        self._show_detail()

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        self.sort_by(str(event.column_key.value))
        self.app.refresh_views()  # type: ignore[attr-defined]

    def _show_detail(self) -> None:
        peer = self._peers.get(self.selected or "")
        detail = self.query_one("#peer-detail", Static)
        if peer is None:
            detail.update("select a peer to see its capability card")
            return
        parts: list[str | tuple[str, str]] = [
            _b("peer"), f" {peer.peer_id}\n",
            _b("version"), f" {peer.version or '?'}   ", _b("state"), f" {peer.state}   ",
            _b("rejected messages"), f" {peer.rejected}\n",
        ]
        for a in peer.addrs or ["(none known)"]:
            parts += [_b("addr"), f" {a}\n"]
        parts += [_b("capabilities"), "" if peer.capabilities else " (none)"]
        for name, value in sorted(peer.capabilities.items()):
            if isinstance(value, dict):
                text = ", ".join(f"{k}={json.dumps(v, sort_keys=True)}" for k, v in sorted(value.items()))
            else:
                text = json.dumps(value, sort_keys=True)
            parts.append(f"\n  {name}: {text}")
        detail.update(_text(*parts))


class FederationPane(Vertical):
    """Committee, view, checkpoints, digest; recent batches and view changes."""

    def compose(self) -> ComposeResult:
        yield Static(id="fed-summary", classes="box")
        with Horizontal():
            batches: DataTable[Any] = DataTable(id="batches", cursor_type="row", zebra_stripes=True)
            batches.add_columns("seq", "view", "txs")
            yield batches
            views: DataTable[Any] = DataTable(id="views", cursor_type="row")
            views.add_columns("view", "primary")
            yield views

    def show(self, state: DaemonState, now: float) -> None:
        fed = state.federation
        summary = self.query_one("#fed-summary", Static)
        if fed is None:
            summary.update(f"This node is in no federation: {state.federation_note}")
        else:
            primary = fed.get("primary")
            checkpoint = fed.get("stable_checkpoint")
            parts: list[str | tuple[str, str]] = [
                _b("chain"), f" {fed.get('chain_id', '?')}   ", _b("role"), f" {state.role}   ",
                _b("epoch"), f" {_num(fed.get('epoch'))}   ", _b("view"), f" {_num(fed.get('view'))}   ",
                _b("f"), f" {_num(fed.get('f'))}\n",
                _b("last executed"), f" {_num(fed.get('last_executed'))}   ",
                _b("stable checkpoint"), f" {_num(checkpoint.get('seq') if isinstance(checkpoint, dict) else None)}   ",
                _b("lag"), f" {_num(fed.get('lag'))}   ", _b("tx/s"), f" {_num(fed.get('committed_tx_per_s'))}\n",
                _b("state digest"), f" {fed.get('state_digest', '?')}\n",
                _b("members"),
            ]
            for m in fed.get("members") or []:
                tags = [t for t, on in (("primary", m == primary), ("you", m == state.peer_id)) if on]
                parts += [f"\n  {m}", _b(f"  ({', '.join(tags)})") if tags else ""]
            if not fed.get("members"):
                parts.append("\n  (none)")
            summary.update(_text(*parts))
        batches = self.query_one("#batches", DataTable)
        batches.clear()
        for b in reversed(state.batches):
            txs = b.get("requests")
            if txs is None and isinstance(b.get("txs"), list):
                txs = len(b["txs"])
            batches.add_row(_num(b.get("seq")), _num(b.get("view")), _num(txs))
        views = self.query_one("#views", DataTable)
        views.clear()
        for v in reversed(state.view_changes):
            views.add_row(_num(v.get("view")), short_id(str(v.get("primary") or "-"), 16))


class EventsPane(Vertical):
    """The live event stream, filtered by topic prefix, with pause and resume."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.paused = False
        self.topic_filter = ""
        self._written = 0  # state.events_seen when we last wrote

    def compose(self) -> ComposeResult:
        with Horizontal(id="events-bar"):
            yield Input(placeholder="filter by topic prefix, e.g. peer or federation.view", id="events-filter")
            yield Label("live", id="events-status")
        yield RichLog(id="events-log", max_lines=2_000, wrap=False, markup=False)

    def show(self, state: DaemonState, now: float) -> None:
        status = self.query_one("#events-status", Label)
        if self.paused:
            behind = state.events_seen - self._written
            status.update(f"paused ({behind} new)")
            return
        status.update("live")
        new = min(state.events_seen - self._written, len(state.events))
        log = self.query_one("#events-log", RichLog)
        if new > 0:
            for event in list(state.events)[-new:]:
                if self._matches(event):
                    log.write(_event_line(event))
        self._written = state.events_seen

    def rewrite(self, state: DaemonState) -> None:
        log = self.query_one("#events-log", RichLog)
        log.clear()
        for event in state.events:
            if self._matches(event):
                log.write(_event_line(event))
        self._written = state.events_seen

    def _matches(self, event: dict[str, Any]) -> bool:
        prefix = self.topic_filter.strip().rstrip(".")
        topic = str(event.get("topic", ""))
        return not prefix or topic == prefix or topic.startswith(prefix + ".")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.query_one("#events-log", RichLog).focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        self.topic_filter = event.value
        self.rewrite(self.app.state)  # type: ignore[attr-defined]


def _event_line(event: dict[str, Any]) -> Text:
    line = Text(f"{_clock_time(event.get('ts'))} ")
    line.append(f"{event.get('topic', '?'):<24}", style="bold cyan")
    line.append(" " + json.dumps(event.get("data", {}), sort_keys=True, separators=(",", ":"))[:400])
    return line


def _clock_time(ts: Any) -> str:
    """HH:MM:SS.mmm (UTC) of a millisecond timestamp; dashes for anything else."""
    if isinstance(ts, int) and not isinstance(ts, bool) and 0 < ts < 1 << 50:
        return datetime.datetime.fromtimestamp(ts / 1000, datetime.timezone.utc).strftime("%H:%M:%S.%f")[:-3]
    return "--:--:--.---"
