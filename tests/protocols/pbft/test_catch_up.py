"""A replica that went into a view change nobody else wanted keeps executing what the others
commit (2f+1 commits of an older view prove a batch committed), instead of idling until the next
real view change."""

from __future__ import annotations

from protocols.pbft.app import put

from tests.protocols.pbft.harness import Cluster


def test_a_replica_alone_in_a_view_change_keeps_executing() -> None:
    c = Cluster(checkpoint_interval=16, window=32, max_batch=1, request_timeout=1.0)
    # r3 hears nothing: the request it got directly times out, and it asks for view 1 alone.
    c.filter = lambda src, dst, msg: "r3" not in (src, dst)
    c.request("c", 1, put("a", b"1"), to="all")
    c.run(until=c.now + 3.0)
    lone = c.replicas["r3"]
    assert lone.view >= 1 and not lone.active
    assert lone.last_executed == 0
    assert all(c.replicas[m].view == 0 and c.replicas[m].last_executed == 1 for m in ("r0", "r1", "r2"))

    # The link heals; the others never change view, and r3 still catches up and keeps up.
    c.filter = lambda src, dst, msg: True
    for ts in range(2, 8):
        c.request("c", ts, put("a", b"%d" % ts))
        c.run(until=c.now + 0.05)
    c.run(until=c.now + 1.0)
    assert all(c.replicas[m].view == 0 for m in ("r0", "r1", "r2"))
    assert lone.view >= 1, "it never went back: its VIEW-CHANGE still stands"
    assert lone.last_executed == 7
    assert lone.app.snapshot() == c.replicas["r0"].app.snapshot()
    c.assert_agreement()


def test_old_view_messages_are_bounded_and_collected() -> None:
    c = Cluster(checkpoint_interval=4, window=8, max_batch=1, request_timeout=1.0)
    c.filter = lambda src, dst, msg: "r3" not in (src, dst)
    c.request("c", 1, put("a", b"1"), to="all")
    c.run(until=c.now + 3.0)
    c.filter = lambda src, dst, msg: True
    for ts in range(2, 30):
        c.request("c", ts, put("a", b"%d" % ts))
        c.run(until=c.now + 0.05)
    c.run(until=c.now + 1.0)
    lone = c.replicas["r3"]
    assert lone.last_executed == 29
    assert all(s > lone.low_watermark for s in lone.old_pre_prepares)
    assert all(s > lone.low_watermark for s in lone.old_commits)
    c.assert_agreement()
