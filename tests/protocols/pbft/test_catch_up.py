"""A replica cut off from the others times out alone: it votes for a view change but stays in
the committee's view (a view change needs 2f+1 votes), and once its links heal it takes part at once,
so the committee keeps its fault tolerance. A replica that does go into a view change the others
have not installed yet keeps executing what they commit (2f+1 commits of an older view prove a
batch committed) instead of idling."""

from __future__ import annotations

from protocols.pbft.app import put

from tests.protocols.pbft.harness import Cluster


def test_a_replica_that_times_out_alone_stays_in_the_committee() -> None:
    c = Cluster(checkpoint_interval=16, window=32, max_batch=1, request_timeout=1.0)
    # r3 hears nothing: the request it got directly times out, again and again.
    c.filter = lambda src, dst, msg: "r3" not in (src, dst)
    c.request("c", 1, put("a", b"1"), to="all")
    c.run(until=c.now + 5.0)
    lone = c.replicas["r3"]
    assert lone.vote == 1, "it voted to leave view 0"
    assert lone.view == 0 and lone.active, "alone, it never left view 0"
    assert lone.last_executed == 0
    assert all(c.replicas[m].view == 0 and c.replicas[m].last_executed == 1 for m in ("r0", "r1", "r2"))

    # The link heals; one vote moves nobody, and r3 catches up and keeps up in view 0.
    c.filter = lambda src, dst, msg: True
    for ts in range(2, 8):
        c.request("c", ts, put("a", b"%d" % ts))
        c.run(until=c.now + 0.05)
    c.run(until=c.now + 1.0)
    assert all(c.replicas[m].view == 0 and c.replicas[m].active for m in ("r0", "r1", "r2", "r3"))
    assert lone.last_executed == 7
    assert lone.app.snapshot() == c.replicas["r0"].app.snapshot()

    # Its fault tolerance is intact: with r2 down, r0, r1 and r3 still form a quorum in view 0.
    c.down.add("r2")
    c.request("c", 8, put("a", b"8"))
    c.run(until=c.now + 0.5)
    assert c.result("c", 8) is not None and lone.last_executed == 8
    c.assert_agreement()


def test_a_replica_in_a_view_change_keeps_executing_older_views() -> None:
    c = Cluster(checkpoint_interval=16, window=32, max_batch=1, request_timeout=1.0)
    lone = c.replicas["r3"]
    # r3 goes into a view change for view 1 (as if 2f+1 votes reached it, but no one else).
    c.filter = lambda src, dst, msg: "r3" not in (src, dst)
    out: list = []
    lone._start_view_change(1, c.now, out)
    assert lone.view == 1 and not lone.active
    c.filter = lambda src, dst, msg: not (dst != "r3" and src == "r3")  # the others never hear it
    for ts in range(1, 6):
        c.request("c", ts, put("a", b"%d" % ts))
        c.run(until=c.now + 0.05)
    assert all(c.replicas[m].view == 0 for m in ("r0", "r1", "r2"))
    assert lone.view == 1 and lone.last_executed == 5
    assert lone.app.snapshot() == c.replicas["r0"].app.snapshot()
    c.assert_agreement()


def test_old_view_messages_are_bounded_and_collected() -> None:
    c = Cluster(checkpoint_interval=4, window=8, max_batch=1, request_timeout=1.0)
    lone = c.replicas["r3"]
    lone._start_view_change(1, c.now, [])  # a view change no one else hears of
    c.filter = lambda src, dst, msg: not (dst != "r3" and src == "r3")
    for ts in range(1, 30):
        c.request("c", ts, put("a", b"%d" % ts))
        c.run(until=c.now + 0.05)
    c.run(until=c.now + 1.0)
    assert lone.view == 1 and not lone.active
    assert lone.last_executed == 29
    assert lone.old_pre_prepares or lone.old_commits, "it executed through older views' messages"
    assert all(s > lone.low_watermark for s in lone.old_pre_prepares)
    assert all(s > lone.low_watermark for s in lone.old_commits)
    c.assert_agreement()
