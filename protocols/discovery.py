"""Membership by gossiped capability cards, as a pure state machine.

Inputs are facts the daemon has already established: a card whose signature it verified, a
connection that opened or closed, and the passing of time (`tick(now)`). Outputs are the membership
view and the events that changed it. Nothing here reads a clock or touches the network, so the
same code runs under the daemon and under a test that moves time by hand.

Liveness is judged by when a peer last *signed* a card, measured on our own clock. A card that
gossip delivers late (fetched by IWANT from a relay's cache seconds after it was published, or
queued behind a busy event loop) proves the peer was alive when it signed it, not when we received
it; crediting receipt time would keep a crashed peer "alive" for as long as stale copies trickle
in. Peers' clocks may disagree with ours, so we never compare clocks directly: per peer we keep the
smallest observed `our wall clock - issued_at` (clock offset plus the fastest delivery, as NTP's
minimum filter does) and take a card's age to be its own delay minus that minimum. Card timestamps
also order cards from one peer (an older card arriving late must not overwrite a newer one or
revive a dead peer).

States:  (new) --card--> alive --silence > suspect_after or disconnect--> suspect
         suspect --card--> alive;   alive|suspect --silence > dead_after--> dead
         dead --newer card--> alive (a rejoin);   dead --forget_after--> forgotten
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Mapping, Union

from keys.card import CapabilityCard


class PeerState(StrEnum):
    ALIVE = "alive"
    SUSPECT = "suspect"
    DEAD = "dead"


@dataclass(frozen=True)
class DiscoveryConfig:
    """Timeouts in seconds. Defaults: a card every second, suspect after two missed, dead after 3 s."""

    card_interval: float = 1.0
    suspect_after: float = 2.0
    dead_after: float = 3.0
    forget_after: float = 600.0
    max_peers: int = 1024

    def __post_init__(self) -> None:
        if not (0 < self.card_interval <= self.suspect_after < self.dead_after < self.forget_after):
            raise ValueError(
                "need 0 < card_interval <= suspect_after < dead_after < forget_after, got "
                f"{self.card_interval}, {self.suspect_after}, {self.dead_after}, {self.forget_after}"
            )
        if self.max_peers < 1:
            raise ValueError("max_peers must be positive")


@dataclass(frozen=True)
class PeerView:
    peer_id: str
    state: PeerState
    card: CapabilityCard
    first_seen: float
    last_seen: float
    state_since: float
    connected: bool
    min_delay_ms: int | None = None  # smallest (our wall clock - issued_at) seen from this peer
    stale_streak: int = 0  # successive newer cards that all looked stale

# A crashed peer leaves at most a card or two in flight; a peer that keeps producing newer cards
# that all look stale is alive and has stepped its clock back, so we re-measure its offset.
STALE_STREAK_RESET = 3


@dataclass(frozen=True)
class PeerJoined:
    peer_id: str
    at: float
    card: CapabilityCard
    rejoined: bool


@dataclass(frozen=True)
class PeerUpdated:
    """A live peer's card changed what it says (addresses, capabilities, version)."""

    peer_id: str
    at: float
    card: CapabilityCard


@dataclass(frozen=True)
class PeerSuspect:
    peer_id: str
    at: float
    reason: str  # "silent" or "disconnected"


@dataclass(frozen=True)
class PeerRecovered:
    peer_id: str
    at: float


@dataclass(frozen=True)
class PeerLeft:
    peer_id: str
    at: float
    last_seen: float


@dataclass(frozen=True)
class PeerForgotten:
    peer_id: str
    at: float


Event = Union[PeerJoined, PeerUpdated, PeerSuspect, PeerRecovered, PeerLeft, PeerForgotten]


def _same_content(a: CapabilityCard, b: CapabilityCard) -> bool:
    return (a.addrs, a.capabilities, a.version) == (b.addrs, b.capabilities, b.version)


class Membership:
    """The membership view of one node. Every method returns the events it caused."""

    def __init__(self, self_id: str, config: DiscoveryConfig | None = None) -> None:
        self.self_id = self_id
        self.config = config or DiscoveryConfig()
        self._peers: dict[str, PeerView] = {}
        # Connection state is kept apart from the view so that a peer we are connected to but
        # have no card from yet (not yet verified as a sovereign node) is not in the view.
        self._connected: set[str] = set()

    def view(self) -> Mapping[str, PeerView]:
        return dict(self._peers)

    def get(self, peer_id: str) -> PeerView | None:
        return self._peers.get(peer_id)

    def count(self, state: PeerState) -> int:
        return sum(1 for p in self._peers.values() if p.state is state)

    def on_card(self, card: CapabilityCard, now: float, wall_ms: int | None = None) -> list[Event]:
        """A card whose signature the caller has verified was received at monotonic `now`
        (and wall-clock `wall_ms`, which lets a late-delivered card count for its real age)."""
        pid = card.peer_id
        if pid == self.self_id:
            return []
        old = self._peers.get(pid)
        delay = None if wall_ms is None else wall_ms - card.issued_at_ms
        if old is None:
            if len(self._peers) >= self.config.max_peers and not self._evict_one():
                return []  # full of live peers: a flood of new identities must not grow memory
            self._peers[pid] = PeerView(
                pid, PeerState.ALIVE, card, now, now, now, pid in self._connected, delay
            )
            return [PeerJoined(pid, now, card, rejoined=False)]
        if card.issued_at_ms <= old.card.issued_at_ms:
            return []  # a duplicate or an older card arriving late proves nothing new
        min_delay = old.min_delay_ms
        signed_at = now
        if delay is not None:
            min_delay = delay if min_delay is None else min(min_delay, delay)
            signed_at = now - (delay - min_delay) / 1000.0
        if old.state is not PeerState.ALIVE and now - signed_at >= self.config.suspect_after:
            if old.stale_streak + 1 < STALE_STREAK_RESET:
                # A stale copy: it neither refreshes nor revives the peer.
                self._peers[pid] = replace(
                    old, card=card, min_delay_ms=min_delay, stale_streak=old.stale_streak + 1
                )
                return []
            min_delay, signed_at = delay, now
        new = replace(
            old, card=card, last_seen=max(old.last_seen, signed_at), min_delay_ms=min_delay, stale_streak=0
        )
        events: list[Event] = []
        if old.state is PeerState.DEAD:
            new = replace(new, state=PeerState.ALIVE, state_since=now)
            events.append(PeerJoined(pid, now, card, rejoined=True))
        else:
            if old.state is PeerState.SUSPECT:
                new = replace(new, state=PeerState.ALIVE, state_since=now)
                events.append(PeerRecovered(pid, now))
            if not _same_content(old.card, card):
                events.append(PeerUpdated(pid, now, card))
        self._peers[pid] = new
        return events

    def on_connected(self, peer_id: str, now: float) -> list[Event]:
        self._connected.add(peer_id)
        old = self._peers.get(peer_id)
        if old is not None:
            self._peers[peer_id] = replace(old, connected=True)
        return []

    def on_disconnected(self, peer_id: str, now: float) -> list[Event]:
        """A closed connection plus an overdue card is early evidence of a crash. A closed
        connection alone is not: connections are trimmed and re-dialed while cards still flow
        through other peers. Only silence makes a peer dead."""
        self._connected.discard(peer_id)
        old = self._peers.get(peer_id)
        if old is None:
            return []
        self._peers[peer_id] = replace(old, connected=False)
        if old.state is PeerState.ALIVE and now - old.last_seen > self.config.card_interval:
            self._peers[peer_id] = replace(
                self._peers[peer_id], state=PeerState.SUSPECT, state_since=now
            )
            return [PeerSuspect(peer_id, now, "disconnected")]
        return []

    def tick(self, now: float) -> list[Event]:
        cfg = self.config
        events: list[Event] = []
        # Compare against the same sums `next_deadline` returns (not `now - last_seen`), so that
        # a driver woken exactly at a deadline always sees the transition: floats do not
        # guarantee (a + b) - a == b.
        for pid, p in list(self._peers.items()):
            if p.state is PeerState.DEAD:
                if now >= p.state_since + cfg.forget_after:
                    del self._peers[pid]
                    events.append(PeerForgotten(pid, now))
            elif now >= p.last_seen + cfg.dead_after:
                self._peers[pid] = replace(p, state=PeerState.DEAD, state_since=now)
                events.append(PeerLeft(pid, now, p.last_seen))
            elif now >= p.last_seen + cfg.suspect_after and p.state is PeerState.ALIVE:
                self._peers[pid] = replace(p, state=PeerState.SUSPECT, state_since=now)
                events.append(PeerSuspect(pid, now, "silent"))
        return events

    def next_deadline(self) -> float | None:
        """The earliest time at which `tick` could change something (for the driver's timer)."""
        cfg = self.config
        times: list[float] = []
        for p in self._peers.values():
            if p.state is PeerState.DEAD:
                times.append(p.state_since + cfg.forget_after)
            elif p.state is PeerState.SUSPECT:
                times.append(p.last_seen + cfg.dead_after)
            else:
                times.append(p.last_seen + cfg.suspect_after)
        return min(times, default=None)

    def _evict_one(self) -> bool:
        dead = [p for p in self._peers.values() if p.state is PeerState.DEAD]
        if not dead:
            return False
        oldest = min(dead, key=lambda p: p.last_seen)
        del self._peers[oldest.peer_id]
        return True
