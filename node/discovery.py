"""Drives discovery: the membership state machine over the network, on trio's clock.

Four loops in one nursery: consume network events and timeouts into `Membership` (the only
writer of the view); publish our card every interval with jitter; keep connections to bootstrap
peers, known peers and enough live peers (exponential backoff per address); and ping connected
peers for latency. What membership decides leaves as control-socket events and store updates.
"""

from __future__ import annotations

import logging
import random
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence

import trio

from keys.card import CapabilityCard, CardError, issue_card, verify_card
from keys.envelope import ReplayGuard, SeqCounter, open_envelope, seal
from keys.identity import Identity
from node.config import split_peer_addr
from node.network import (
    CARDS_TOPIC,
    CardReceived,
    Connected,
    DialError,
    Disconnected,
    Network,
    PeersHinted,
    Rejected,
    parse_peer_addr,
)
from node.store import Store
from protocols import discovery as d

log = logging.getLogger("sovereign.discovery")

# The card-exchange stream gets its own signing domain, so a frame sent to one peer directly
# can never be replayed into the gossip topic (and vice versa).
CARD_EXCHANGE_DOMAIN = "sovereign/card/1"
CARD_TTL_MS = 30_000
JITTER = 0.2


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


class CardBook:
    """Seals our own card and opens others' (envelope, then card), per `network.CardCodec`."""

    def __init__(
        self,
        identity: Identity,
        version: str,
        capabilities: Mapping[str, Mapping[str, Any]],
        clock_ms: Callable[[], int] = wall_ms,
    ) -> None:
        self._identity = identity
        self._version = version
        self._capabilities = capabilities
        self._clock_ms = clock_ms
        self._seq = SeqCounter()
        self._guard = ReplayGuard()
        self.addrs: tuple[str, ...] = ()
        # Set by the discovery service: whose cards we pass on in a card exchange.
        self.peer_sample: Callable[[], list[bytes]] = list

    def issue(self) -> CapabilityCard:
        return issue_card(
            self._identity,
            addrs=self.addrs,
            capabilities=self._capabilities,
            version=self._version,
            now_ms=self._clock_ms(),
            ttl_ms=CARD_TTL_MS,
        )

    def seal_own(self, *, direct: bool = False) -> bytes:
        card = self.issue()
        return seal(
            self._identity,
            domain=CARD_EXCHANGE_DOMAIN if direct else CARDS_TOPIC,
            type="card",
            seq=self._seq.next(),
            ts=card.issued_at_ms,
            payload=card.to_bytes(),
        )

    def open(self, data: bytes, *, via: str, direct: bool) -> CapabilityCard:
        now = self._clock_ms()
        envelope = open_envelope(
            data,
            domain=CARD_EXCHANGE_DOMAIN if direct else CARDS_TOPIC,
            now_ms=now,
            guard=self._guard,
            max_size=32 * 1024,
            # A direct frame must come from the authenticated stream peer; gossip is relayed.
            expected_sender=via if direct else None,
        )
        if envelope.type != "card":
            raise CardError("malformed", f"unexpected message type {envelope.type!r} on the card topic")
        card = verify_card(envelope.payload, now_ms=now)
        if card.peer_id != envelope.sender:
            raise CardError("wrong-sender", "card of one peer sealed by another")
        return card

    def sample_peers(self) -> list[bytes]:
        return self.peer_sample()

    def open_hint(self, data: bytes) -> CapabilityCard:
        return verify_card(data, now_ms=self._clock_ms())


def dialable_addrs(peer_id: str, addrs: Sequence[str], own_peer_id: str) -> Iterator[str]:
    """The addresses of a card that we can dial and that name the card's peer (a card may list
    transports we do not speak, and a hostile one someone else's address); none for our own."""
    if peer_id == own_peer_id:
        return
    for addr in addrs:
        try:
            if split_peer_addr(addr)[3] == peer_id:  # stdlib only: this runs at every redial
                yield addr
        except ValueError:
            continue


def first_dialable(peer_id: str, addrs: Sequence[str], own_peer_id: str) -> str | None:
    return next(dialable_addrs(peer_id, addrs, own_peer_id), None)


@dataclass
class Backoff:
    """Exponential backoff for one dial target."""

    initial: float = 0.5
    maximum: float = 30.0
    delay: float = 0.0
    next_at: float = 0.0

    def failed(self, now: float) -> None:
        self.delay = self.initial if self.delay == 0 else min(self.delay * 2, self.maximum)
        self.next_at = now + self.delay

    def succeeded(self) -> None:
        self.delay = 0.0
        self.next_at = 0.0


@dataclass(frozen=True)
class DiscoveryOptions:
    membership: d.DiscoveryConfig
    target_peers: int = 4
    # Above this many connections we close some (oldest-first is unfair to newcomers, so at
    # random among those older than the grace period): everyone bootstraps to the same few
    # nodes, and a hub holding every connection drowns in gossip control traffic.
    max_peers: int = 8
    trim_grace: float = 10.0
    ping_interval: float = 5.0
    redial_interval: float = 0.5


@dataclass
class _State:
    latency: dict[str, float] = field(default_factory=dict)
    backoff: dict[str, Backoff] = field(default_factory=dict)
    dialing: set[str] = field(default_factory=set)
    hold_off: dict[str, float] = field(default_factory=dict)
    # Peers we heard of from others (peer id -> addrs), dialed when we lack connections.
    hints: dict[str, tuple[str, ...]] = field(default_factory=dict)


MAX_HINTED_PEERS = 256
MAX_BACKOFF_ENTRIES = 4096


# Refusals that an honest peer (or an honest relay, which validates before forwarding) never
# causes. Timing refusals (stale, future, replay, expired, not yet valid) and broken streams are
# left out: an overloaded node or a skewed clock produces them, and banning honest neighbours
# for our own overload would turn it into a partition.
PROVABLE_MISBEHAVIOUR = frozenset(
    {
        "oversize", "malformed", "unsupported-version", "bad-sender", "wrong-sender", "bad-signature",
        "bad-peer-id", "unsigned", "bad-validity", "ttl-too-long", "limits", "bad-param",
    }
)


class Misbehaviour:
    """Counts the messages we refused from each peer in a sliding window. Honest peers (and
    honest relays, which validate before forwarding) are refused rarely; a peer refused
    `threshold` times within `window` seconds is costing us verification work on purpose."""

    def __init__(self, threshold: int = 32, window: float = 60.0, ban_for: float = 600.0, max_peers: int = 1024) -> None:
        self.threshold, self.window, self.ban_for, self.max_peers = threshold, window, ban_for, max_peers
        self._refused: dict[str, deque[float]] = {}

    def record(self, peer_id: str, now: float) -> bool:
        """Note one refusal; True when the peer has crossed the threshold."""
        times = self._refused.pop(peer_id, None) or deque()
        times.append(now)
        while times and times[0] <= now - self.window:
            times.popleft()
        self._refused[peer_id] = times  # re-inserted last: the dict's order is recency
        if len(self._refused) > self.max_peers:
            del self._refused[next(iter(self._refused))]
        return len(times) >= self.threshold


Publish = Callable[[str, dict[str, Any]], None]


class DiscoveryService:
    def __init__(
        self,
        network: Network,
        cards: CardBook,
        store: Store,
        options: DiscoveryOptions,
        publish: Publish,
        bootstrap: tuple[str, ...],
        rng: random.Random | None = None,
    ) -> None:
        self.net = network
        self.cards = cards
        self.store = store
        self.options = options
        self.membership = d.Membership(network.peer_id, options.membership)
        self._publish = publish
        self._config_bootstrap = bootstrap
        self._rng = rng or random.Random()
        self._s = _State()
        self._wake_dialer = trio.Event()
        self._misbehaviour = Misbehaviour()
        cards.peer_sample = self.sample_cards

    # -- queries for the control API --------------------------------------------------------

    def peers(self) -> list[dict[str, Any]]:
        out = []
        now = trio.current_time()
        wall = wall_ms()
        for p in sorted(self.membership.view().values(), key=lambda p: p.peer_id):
            latency = self._s.latency.get(p.peer_id)
            out.append(
                {
                    "peer_id": p.peer_id,
                    "addrs": list(p.card.addrs),
                    "state": p.state.value,
                    "connected": self.net.is_connected(p.peer_id),
                    # When the peer last signed a card, on our own wall clock (see protocols/discovery).
                    "last_seen_ms": wall - int((now - p.last_seen) * 1000),
                    "last_seen_ago_s": round(now - p.last_seen, 3),
                    "capabilities": {k: dict(v) for k, v in p.card.capabilities.items()},
                    "version": p.card.version,
                    "latency_ms": None if latency is None else round(latency * 1000, 3),
                    "rejected": self.net.rejections.get(p.peer_id, 0),
                }
            )
        return out

    def sample_cards(self) -> list[bytes]:
        """Cards of up to 16 alive peers, chosen at random so that newcomers spread out."""
        alive = [p.card for p in self.membership.view().values() if p.state is d.PeerState.ALIVE]
        return [c.to_bytes() for c in self._rng.sample(alive, min(16, len(alive)))]

    def bootstrap_addrs(self) -> list[str]:
        return list(dict.fromkeys([*self._config_bootstrap, *self.store.bootstrap_list()]))

    def hold_off(self, peer_id: str, seconds: float) -> None:
        """An operator disconnect should stick for a while rather than be redialed at once."""
        self._s.hold_off[peer_id] = trio.current_time() + seconds

    def wake_dialer(self) -> None:
        self._wake_dialer.set()

    # -- the loops --------------------------------------------------------------------------

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._consume)
            nursery.start_soon(self._publish_cards)
            nursery.start_soon(self._dial)
            nursery.start_soon(self._ping)

    async def _consume(self) -> None:
        events = self.net.events
        while True:
            deadline = self.membership.next_deadline()
            with trio.move_on_at(deadline if deadline is not None else float("inf")):
                event = await events.receive()
                self._on_net_event(event)
            self._apply(self.membership.tick(trio.current_time()))

    def _on_net_event(self, event: object) -> None:
        now = trio.current_time()
        if isinstance(event, CardReceived):
            self._apply(self.membership.on_card(event.card, now, wall_ms()))
        elif isinstance(event, Connected):
            self._apply(self.membership.on_connected(event.peer_id, now))
        elif isinstance(event, Disconnected):
            self._apply(self.membership.on_disconnected(event.peer_id, now))
            self._s.latency.pop(event.peer_id, None)
            self.wake_dialer()
        elif isinstance(event, PeersHinted):
            for card in event.cards:
                if card.peer_id != self.net.peer_id and self.membership.get(card.peer_id) is None:
                    if len(self._s.hints) < MAX_HINTED_PEERS:
                        self._s.hints[card.peer_id] = card.addrs
            self.wake_dialer()
        elif isinstance(event, Rejected):
            self._publish("peer.rejected", {"peer_id": event.peer_id, "where": event.where, "reason": event.reason})
            if (
                event.code in PROVABLE_MISBEHAVIOUR
                and self._misbehaviour.record(event.peer_id, now)
                and not self.net.is_banned(event.peer_id)
            ):
                self.net.ban(event.peer_id, self._misbehaviour.ban_for)
                self._publish("peer.banned", {"peer_id": event.peer_id, "seconds": self._misbehaviour.ban_for})

    def _apply(self, events: list[d.Event]) -> None:
        for ev in events:
            if isinstance(ev, d.PeerJoined):
                log.info("peer %s %s", "rejoined" if ev.rejoined else "joined", ev.peer_id)
                self._remember(ev.card)
                self._publish("peer.joined", {"peer_id": ev.peer_id, "addrs": list(ev.card.addrs), "rejoined": ev.rejoined})
            elif isinstance(ev, d.PeerUpdated):
                self._remember(ev.card)
                self._publish("peer.updated", {"peer_id": ev.peer_id, "addrs": list(ev.card.addrs)})
            elif isinstance(ev, d.PeerRecovered):
                log.info("peer %s alive again", ev.peer_id)
                self._publish("peer.alive", {"peer_id": ev.peer_id})
            elif isinstance(ev, d.PeerSuspect):
                log.info("peer %s suspect (%s)", ev.peer_id, ev.reason)
                self._publish("peer.suspect", {"peer_id": ev.peer_id, "reason": ev.reason})
            elif isinstance(ev, d.PeerLeft):
                log.info("peer %s dead", ev.peer_id)
                self._publish("peer.left", {"peer_id": ev.peer_id})
            elif isinstance(ev, d.PeerForgotten):
                self._publish("peer.forgotten", {"peer_id": ev.peer_id})

    def _remember(self, card: CapabilityCard) -> None:
        try:
            # Only what we would dial is kept: the store's addresses are what we dial at start.
            addrs = list(dialable_addrs(card.peer_id, card.addrs, self.net.peer_id))
            self.store.peer_upsert(card.peer_id, addrs, card.issued_at_ms, card.to_bytes())
        except Exception:  # noqa: BLE001 - a full disk must not stop discovery
            log.exception("could not persist peer %s", card.peer_id)

    async def _publish_cards(self) -> None:
        interval = self.options.membership.card_interval
        while True:
            try:
                await self.net.publish_card()
            except Exception:  # noqa: BLE001 - publishing is retried next interval
                log.exception("publishing our card failed")
            await trio.sleep(interval * (1.0 - JITTER * self._rng.random()))

    # -- dialing ----------------------------------------------------------------------------

    def _dial_targets(self) -> list[tuple[str, str | None]]:
        """(address, expected peer id) pairs worth dialing now, bootstrap peers first."""
        targets: list[tuple[str, str | None]] = []
        connected = len(self.net.connected_peers())
        if connected >= self.options.target_peers:
            return targets
        # Bootstrap peers are where we start and where we return when short of peers, not a
        # connection to hold forever (that would make every bootstrap node a hub).
        for addr in self.bootstrap_addrs():
            try:
                pid, _ = parse_peer_addr(addr)
            except DialError:
                continue  # persisted by an older version; bootstrap.add refuses these now
            if pid == self.net.peer_id:
                continue  # our own address, in a config shared by several nodes
            if not self.net.is_connected(pid):
                targets.append((addr, pid))
        view = self.membership.view()
        unconnected = [p for p in view.values() if not self.net.is_connected(p.peer_id)]
        unconnected.sort(key=lambda p: -p.last_seen)
        live = [(p.peer_id, p.card.addrs) for p in unconnected if p.state is not d.PeerState.DEAD]
        for pid in [pid for pid in self._s.hints if pid in view or self.net.is_connected(pid)]:
            del self._s.hints[pid]  # known first-hand now
        hinted = list(self._s.hints.items())
        # A dead peer is still worth a slow redial (it may restart), after everyone else.
        dead = [(p.peer_id, p.card.addrs) for p in unconnected if p.state is d.PeerState.DEAD]
        wanted = self.options.target_peers - connected
        for pid, addrs in live + hinted + dead:
            if wanted <= 0:
                break
            if addr := self._dialable(pid, addrs):
                targets.append((addr, pid))
                wanted -= 1
        return targets

    def _dialable(self, peer_id: str, addrs: Sequence[str]) -> str | None:
        return first_dialable(peer_id, addrs, self.net.peer_id)

    async def _dial(self) -> None:
        limiter = trio.CapacityLimiter(4)
        async with trio.open_nursery() as nursery:
            for known in self.store.peers_known(limit=self.options.target_peers):
                if addr := self._dialable(known.peer_id, known.addrs):
                    nursery.start_soon(self._dial_one, addr, known.peer_id, limiter)
            while True:
                now = trio.current_time()
                for addr, pid in self._dial_targets():
                    key = pid or addr
                    backoff = self._s.backoff.setdefault(key, Backoff())
                    if key in self._s.dialing or now < backoff.next_at or now < self._s.hold_off.get(key, 0):
                        continue
                    self._s.dialing.add(key)
                    nursery.start_soon(self._dial_one, addr, pid, limiter)
                await self._trim()
                if len(self._s.backoff) > MAX_BACKOFF_ENTRIES:
                    # Entries whose wait is over carry no information worth the memory.
                    self._s.backoff = {k: b for k, b in self._s.backoff.items() if b.next_at > now}
                self._wake_dialer = trio.Event()
                with trio.move_on_after(self.options.redial_interval):
                    await self._wake_dialer.wait()

    async def _trim(self) -> None:
        peers = self.net.connected_peers()
        excess = len(peers) - self.options.max_peers
        if excess <= 0:
            return
        now = trio.current_time()
        eligible = [p for p in peers if now - (self.net.connected_since(p) or now) >= self.options.trim_grace]
        for peer_id in self._rng.sample(eligible, min(excess, len(eligible))):
            log.debug("trimming connection to %s (%d connections)", peer_id, len(peers))
            await self.net.disconnect(peer_id)

    async def _dial_one(self, addr: str, pid: str | None, limiter: trio.CapacityLimiter) -> None:
        key = pid or addr
        self._s.dialing.add(key)
        backoff = self._s.backoff.setdefault(key, Backoff())
        try:
            async with limiter:
                if pid is not None and self.net.is_connected(pid):
                    return
                await self.net.connect(addr)
            backoff.succeeded()
        except DialError as exc:
            backoff.failed(trio.current_time())
            if pid is not None:
                self._s.hints.pop(pid, None)  # second-hand news that did not pan out
            log.debug("%s (next try in %.1f s)", exc, backoff.delay)
        finally:
            self._s.dialing.discard(key)

    async def _ping(self) -> None:
        async def ping_one(peer_id: str) -> None:
            try:
                self._s.latency[peer_id] = await self.net.ping(peer_id)
            except Exception:  # noqa: BLE001 - an unanswered ping just leaves no figure
                self._s.latency.pop(peer_id, None)

        while True:
            async with trio.open_nursery() as nursery:
                for peer_id in self.net.connected_peers():
                    nursery.start_soon(ping_one, peer_id)
            await trio.sleep(self.options.ping_interval)
