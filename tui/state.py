"""What the TUI knows about its daemon: a plain model fed by control-socket answers and events.

No I/O, no clock of its own: the link (``tui.link``) feeds it snapshots, events and the
current time; the widgets read it. Tests build one by hand to render deterministic screens.

Untrusted input: everything here comes from the daemon, which might be a different version or
misbehave, so every field is read defensively (``_get``): a missing or mistyped field shows as
unknown, it never raises.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

HISTORY = 60  # seconds of sparkline history
MAX_EVENTS = 2_000
MAX_BATCHES = 50


def _get(obj: Any, key: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
    if not isinstance(obj, dict):
        return default
    value = obj.get(key)
    if isinstance(value, bool) and kind is not bool:
        return default  # JSON true is not a count
    return value if isinstance(value, kind) else default


def _dict(obj: Any, key: str) -> dict[str, Any]:
    return _get(obj, key, dict, {})


@dataclass
class Peer:
    peer_id: str
    addrs: list[str] = field(default_factory=list)
    state: str = "?"
    connected: bool = False
    last_seen_ago_s: float | None = None
    latency_ms: float | None = None
    version: str = ""
    capabilities: dict[str, Any] = field(default_factory=dict)
    rejected: int = 0

    @classmethod
    def from_json(cls, raw: Any) -> Peer | None:
        peer_id = _get(raw, "peer_id", str)
        if not peer_id:
            return None
        return cls(
            peer_id=peer_id,
            addrs=[a for a in _get(raw, "addrs", list, []) if isinstance(a, str)],
            state=_get(raw, "state", str, "?"),
            connected=_get(raw, "connected", bool, False),
            last_seen_ago_s=_get(raw, "last_seen_ago_s", (int, float)),
            latency_ms=_get(raw, "latency_ms", (int, float)),
            version=_get(raw, "version", str, ""),
            capabilities=_dict(raw, "capabilities"),
            rejected=_get(raw, "rejected", int, 0),
        )


@dataclass
class DaemonState:
    """Everything the screens show. ``revision`` grows on every change, so views redraw once
    per change however many events arrived."""

    socket_path: str = ""
    connected: bool = False
    connection_note: str = "connecting..."
    peer_id: str = ""
    addrs: list[str] = field(default_factory=list)
    version: str = ""
    pid: int | None = None
    uptime_s: float | None = None
    uptime_at: float = 0.0  # our clock when uptime_s was read
    peer_counts: dict[str, int] = field(default_factory=dict)
    peers: dict[str, Peer] = field(default_factory=dict)
    bootstrap: list[str] = field(default_factory=list)
    federation: dict[str, Any] | None = None
    federation_note: str = "not loaded yet"
    batches: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=MAX_BATCHES))
    view_changes: list[dict[str, Any]] = field(default_factory=list)
    events: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=MAX_EVENTS))
    events_seen: int = 0
    tx_rate: deque[float] = field(default_factory=lambda: deque([0.0] * HISTORY, maxlen=HISTORY))
    peer_history: deque[float] = field(default_factory=lambda: deque([0.0] * HISTORY, maxlen=HISTORY))
    revision: int = 0
    _committed_this_second: int = 0

    # -- snapshots (answers to calls) --------------------------------------------------------

    def apply_status(self, status: Any, now: float) -> None:
        self.peer_id = _get(status, "peer_id", str, self.peer_id)
        self.addrs = [a for a in _get(status, "listen_addrs", list, []) if isinstance(a, str)]
        self.version = _get(status, "version", str, "")
        self.pid = _get(status, "pid", int)
        self.uptime_s = _get(status, "uptime_s", (int, float))
        self.uptime_at = now
        self.peer_counts = {k: v for k, v in _dict(status, "peers").items() if isinstance(v, int)}
        self.revision += 1

    def apply_peers(self, answer: Any) -> None:
        peers = (Peer.from_json(p) for p in _get(answer, "peers", list, []))
        self.peers = {p.peer_id: p for p in peers if p is not None}
        self.revision += 1

    def apply_bootstrap(self, answer: Any) -> None:
        self.bootstrap = [a for a in _get(answer, "bootstrap", list, []) if isinstance(a, str)]
        self.revision += 1

    def apply_federation(self, status: Any) -> None:
        if isinstance(status, dict):
            # Lists the views iterate are made lists of strings here, once; scalars are checked
            # where they are shown.
            self.federation = dict(status)
            self.federation["members"] = [m for m in _get(status, "members", list, []) if isinstance(m, str)]
        else:
            self.federation = None
        self.federation_note = "" if self.federation is not None else "no federation status"
        changes = _get(status, "view_changes", list)
        if changes is not None:
            self.view_changes = [c for c in changes if isinstance(c, dict)][-32:]
        self.revision += 1

    def no_federation(self, reason: str) -> None:
        self.federation = None
        self.federation_note = reason
        self.revision += 1

    def apply_log(self, answer: Any) -> None:
        for batch in _get(answer, "batches", list, []):
            if isinstance(batch, dict) and isinstance(batch.get("seq"), int):
                self._add_batch(batch)
        self.revision += 1

    def set_connected(self, connected: bool, note: str) -> None:
        self.connected = connected
        self.connection_note = note
        self.revision += 1

    # -- events ------------------------------------------------------------------------------

    def apply_event(self, event: Any) -> None:
        """One ``{"topic", "ts", "data"}`` notification from ``events.subscribe``."""
        topic = _get(event, "topic", str)
        if topic is None:
            return
        data = _dict(event, "data")
        self.events.append({"topic": topic, "ts": _get(event, "ts", int, 0), "data": data})
        self.events_seen += 1
        if topic == "federation.committed":
            self._committed_this_second += max(0, _get(data, "requests", int, 0))
            if self.federation is not None and isinstance(data.get("seq"), int):
                self.federation["last_executed"] = max(data["seq"], _get(self.federation, "last_executed", int, 0))
            self._add_batch({"seq": data.get("seq"), "view": data.get("view"), "requests": data.get("requests")})
        elif topic == "federation.view":
            self.view_changes = [*self.view_changes[-31:], data]
            if self.federation is not None:
                self.federation["view"] = data.get("view")
                self.federation["primary"] = data.get("primary")
        elif topic == "federation.checkpoint" and self.federation is not None:
            self.federation["stable_checkpoint"] = {"seq": data.get("seq"), "digest": data.get("digest")}
        elif topic.startswith("peer."):
            self._apply_peer_event(topic, data)
        self.revision += 1

    def _apply_peer_event(self, topic: str, data: dict[str, Any]) -> None:
        peer_id = _get(data, "peer_id", str)
        if not peer_id:
            return
        peer = self.peers.get(peer_id)
        if topic == "peer.forgotten":
            self.peers.pop(peer_id, None)
            return
        if peer is None:
            if topic not in ("peer.joined", "peer.updated"):
                return
            peer = self.peers[peer_id] = Peer(peer_id)
        addrs = _get(data, "addrs", list)
        if addrs is not None:
            peer.addrs = [a for a in addrs if isinstance(a, str)]
        new_state = {"peer.joined": "alive", "peer.alive": "alive", "peer.suspect": "suspect", "peer.left": "dead"}
        if topic in new_state:
            peer.state = new_state[topic]
            peer.last_seen_ago_s = 0.0 if new_state[topic] == "alive" else peer.last_seen_ago_s

    def _add_batch(self, batch: dict[str, Any]) -> None:
        if self.batches and isinstance(batch.get("seq"), int):
            last = self.batches[-1].get("seq")
            if isinstance(last, int) and batch["seq"] <= last:
                return  # already known (the log answer and the events overlap)
        self.batches.append(batch)

    # -- time ---------------------------------------------------------------------------------

    def tick(self) -> None:
        """Close one second of history: committed tx/s and the alive peer count."""
        self.tx_rate.append(float(self._committed_this_second))
        self._committed_this_second = 0
        self.peer_history.append(float(self.alive_peers()))
        self.revision += 1

    def alive_peers(self) -> int:
        return sum(1 for p in self.peers.values() if p.state == "alive")

    def uptime_now(self, now: float) -> float | None:
        if self.uptime_s is None or not self.connected:
            return self.uptime_s
        return self.uptime_s + max(0.0, now - self.uptime_at)

    @property
    def role(self) -> str:
        if self.federation is None:
            return "none"
        return _get(self.federation, "role", str, "?")


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    s = int(seconds)
    days, s = divmod(s, 86_400)
    hours, s = divmod(s, 3_600)
    minutes, s = divmod(s, 60)
    if days:
        return f"{days}d {hours:02d}h{minutes:02d}m"
    if hours:
        return f"{hours}h{minutes:02d}m{s:02d}s"
    return f"{minutes}m{s:02d}s"


def short_id(peer_id: str, n: int = 12) -> str:
    """The tail of a peer id: the head "12D3KooW" is the same for every Ed25519 key."""
    return peer_id if len(peer_id) <= n else "…" + peer_id[-n:]
