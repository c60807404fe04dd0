"""The ban policy's counter and what it counts."""

from node.discovery import PROVABLE_MISBEHAVIOUR, Misbehaviour


def test_threshold_within_the_window_triggers() -> None:
    m = Misbehaviour(threshold=3, window=10.0)
    assert not m.record("p", 0.0)
    assert not m.record("p", 1.0)
    assert m.record("p", 2.0)


def test_refusals_older_than_the_window_do_not_count() -> None:
    m = Misbehaviour(threshold=3, window=10.0)
    m.record("p", 0.0)
    m.record("p", 1.0)
    assert not m.record("p", 10.5)  # the first has left the window
    assert m.record("p", 10.9)


def test_peers_are_counted_apart_and_memory_is_bounded() -> None:
    m = Misbehaviour(threshold=2, window=10.0, max_peers=3)
    for i in range(10):
        assert not m.record(f"p{i}", 0.0)
    assert len(m._refused) == 3
    assert m.record("p9", 1.0)


def test_timing_refusals_never_count_towards_a_ban() -> None:
    # An overloaded node sees honest peers' cards arrive stale or expired: that is our problem.
    assert not {"stale", "future", "replay", "expired", "not-yet-valid"} & PROVABLE_MISBEHAVIOUR
    assert {"malformed", "bad-signature", "oversize", "wrong-sender"} <= PROVABLE_MISBEHAVIOUR
