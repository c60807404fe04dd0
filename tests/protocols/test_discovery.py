"""The membership state machine, driven by hand-moved time."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keys.card import issue_card
from keys.identity import Identity
from protocols import discovery as d

CFG = d.DiscoveryConfig(card_interval=1.0, suspect_after=2.0, dead_after=3.0, forget_after=60.0, max_peers=4)
ME = Identity.generate()


def card(identity: Identity, at_ms: int, addrs: tuple[str, ...] = ("/ip4/127.0.0.1/tcp/1",)):
    return issue_card(identity, addrs=addrs, capabilities={}, version="t", now_ms=at_ms, ttl_ms=30_000)


def kinds(events: list[d.Event]) -> list[str]:
    return [type(e).__name__ for e in events]


def test_join_suspect_dead_forget() -> None:
    m = d.Membership(ME.peer_id, CFG)
    a = Identity.generate()
    assert kinds(m.on_card(card(a, 1000), now=0.0)) == ["PeerJoined"]
    assert m.get(a.peer_id).state is d.PeerState.ALIVE
    assert m.next_deadline() == 2.0
    assert m.tick(1.99) == []
    assert kinds(m.tick(2.0)) == ["PeerSuspect"]
    assert m.next_deadline() == 3.0
    left = m.tick(3.0)
    assert kinds(left) == ["PeerLeft"] and left[0].last_seen == 0.0
    assert m.get(a.peer_id).state is d.PeerState.DEAD
    assert m.tick(62.9) == []
    assert kinds(m.tick(63.0)) == ["PeerForgotten"]
    assert m.get(a.peer_id) is None


def test_cards_keep_a_peer_alive_and_recover_suspects() -> None:
    m = d.Membership(ME.peer_id, CFG)
    a = Identity.generate()
    m.on_card(card(a, 1000), 0.0)
    for i in range(1, 10):
        assert m.on_card(card(a, 1000 + i * 1000), float(i)) == []
        assert m.tick(i + 0.5) == []
    assert kinds(m.tick(11.0)) == ["PeerSuspect"]
    assert kinds(m.on_card(card(a, 20_000), 11.5)) == ["PeerRecovered"]
    assert m.get(a.peer_id).state is d.PeerState.ALIVE


def test_old_or_duplicate_card_neither_refreshes_nor_revives() -> None:
    m = d.Membership(ME.peer_id, CFG)
    a = Identity.generate()
    first = card(a, 5000)
    m.on_card(first, 0.0)
    assert m.on_card(first, 1.5) == []
    assert m.on_card(card(a, 4000), 1.5) == []
    assert m.get(a.peer_id).last_seen == 0.0
    m.tick(3.0)
    assert m.get(a.peer_id).state is d.PeerState.DEAD
    assert m.on_card(first, 4.0) == []  # a replayed card must not revive a dead peer
    joined = m.on_card(card(a, 9000), 5.0)
    assert kinds(joined) == ["PeerJoined"] and joined[0].rejoined


def test_changed_card_content_is_an_update() -> None:
    m = d.Membership(ME.peer_id, CFG)
    a = Identity.generate()
    m.on_card(card(a, 1000), 0.0)
    assert kinds(m.on_card(card(a, 2000, ("/ip4/127.0.0.1/tcp/2",)), 1.0)) == ["PeerUpdated"]


def test_disconnect_with_an_overdue_card_makes_suspect_and_silence_kills() -> None:
    m = d.Membership(ME.peer_id, CFG)
    a = Identity.generate()
    m.on_connected(a.peer_id, 0.0)
    assert m.view() == {}  # a connection without a card is not membership
    m.on_card(card(a, 1000), 0.1)
    assert m.get(a.peer_id).connected
    # Its card is not overdue yet: a trimmed connection is no evidence of a crash.
    assert m.on_disconnected(a.peer_id, 0.5) == []
    assert not m.get(a.peer_id).connected
    m.on_connected(a.peer_id, 0.6)
    ev = m.on_disconnected(a.peer_id, 1.5)
    assert kinds(ev) == ["PeerSuspect"] and ev[0].reason == "disconnected"
    assert kinds(m.tick(3.1)) == ["PeerLeft"]


def test_own_card_is_ignored() -> None:
    m = d.Membership(ME.peer_id, CFG)
    assert m.on_card(card(ME, 1000), 0.0) == []
    assert m.view() == {}


def test_capacity_evicts_dead_before_refusing() -> None:
    m = d.Membership(ME.peer_id, CFG)
    ids = [Identity.generate() for _ in range(6)]
    for i in ids[:4]:
        m.on_card(card(i, 1000), 0.0)
    assert m.on_card(card(ids[4], 1000), 1.0) == []  # full of live peers
    m.on_card(card(ids[1], 2000), 2.5)
    m.tick(3.0)  # all but ids[1] dead
    assert kinds(m.on_card(card(ids[4], 1000), 3.1)) == ["PeerJoined"]
    assert len(m.view()) == 4


def test_config_is_validated() -> None:
    with pytest.raises(ValueError):
        d.DiscoveryConfig(card_interval=1.0, suspect_after=3.0, dead_after=2.0)
    with pytest.raises(ValueError):
        d.DiscoveryConfig(card_interval=0.0)


PEERS = [Identity.generate() for _ in range(3)]


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    st.lists(
        st.tuples(st.sampled_from(["card", "conn", "disc", "tick"]), st.integers(0, 2), st.floats(0.0, 2.0)),
        max_size=60,
    )
)
def test_invariants_under_any_schedule(steps: list[tuple[str, int, float]]) -> None:
    """Whatever happens: states follow silence, last_seen never moves back, deadlines are honest."""
    m = d.Membership(ME.peer_id, CFG)
    now = 0.0
    issued = 1000
    for op, who, dt in steps:
        now += dt
        peer = PEERS[who]
        before = m.get(peer.peer_id)
        if op == "card":
            issued += 1
            m.on_card(card(peer, issued), now)
        elif op == "conn":
            m.on_connected(peer.peer_id, now)
        elif op == "disc":
            m.on_disconnected(peer.peer_id, now)
        else:
            m.tick(now)
        after = m.get(peer.peer_id)
        if before is not None and after is not None:
            assert after.last_seen >= before.last_seen
        m.tick(now)
        for p in m.view().values():
            if p.state is d.PeerState.ALIVE:
                assert now < p.last_seen + CFG.suspect_after
            if p.state is not d.PeerState.DEAD:
                assert now < p.last_seen + CFG.dead_after
        deadline = m.next_deadline()
        assert deadline is None or deadline > now


def test_late_delivered_card_counts_for_its_real_age() -> None:
    """A copy fetched from a gossip cache seconds late must not keep a crashed peer alive."""
    m = d.Membership(ME.peer_id, CFG)
    a = Identity.generate()
    # Our wall clock runs 500 ms ahead of the peer's; first delivery takes 10 ms.
    m.on_card(card(a, 1000), now=0.0, wall_ms=1510)
    m.on_card(card(a, 2000), now=1.0, wall_ms=2510)
    # The peer crashes after signing issued_at=3000; that card reaches us 2.4 s late.
    assert m.on_card(card(a, 3000), now=4.4, wall_ms=5910) == []
    assert m.get(a.peer_id).last_seen == pytest.approx(2.0)
    assert kinds(m.tick(4.4)) == ["PeerSuspect"]
    assert kinds(m.tick(5.01)) == ["PeerLeft"]
    # A stale copy neither refreshes nor revives it...
    assert m.on_card(card(a, 3500), now=5.1, wall_ms=5110 + 3000) == []
    assert m.get(a.peer_id).state is d.PeerState.DEAD
    # ...but a fresh card does.
    assert kinds(m.on_card(card(a, 9000), now=8.0, wall_ms=9510)) == ["PeerJoined"]


def test_a_peer_whose_clock_stepped_back_is_accepted_after_a_streak() -> None:
    m = d.Membership(ME.peer_id, CFG)
    a = Identity.generate()
    m.on_card(card(a, 1000), now=0.0, wall_ms=1010)
    m.tick(3.0)
    assert m.get(a.peer_id).state is d.PeerState.DEAD
    # Restarted with its clock 60 s behind ours: each card looks a minute old.
    results = [m.on_card(card(a, 2000 + i * 1000), now=10.0 + i, wall_ms=62_010 + i * 1000) for i in range(d.STALE_STREAK_RESET)]
    assert [kinds(r) for r in results[:-1]] == [[]] * (d.STALE_STREAK_RESET - 1)
    assert kinds(results[-1]) == ["PeerJoined"]
    assert m.on_card(card(a, 9000), now=16.0, wall_ms=69_010) == []
    assert m.get(a.peer_id).last_seen == pytest.approx(16.0)
