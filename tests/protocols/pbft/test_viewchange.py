from protocols.pbft import Commit, NewView, PrePrepare, Prepare, Request, ViewChange, batch_digest
from protocols.pbft.app import put

from tests.protocols.pbft.harness import Cluster


def test_silent_primary_view_change_then_progress() -> None:
    c = Cluster(request_timeout=1.0)
    c.request("a", 1, put("k", b"1"))
    c.run(until=0.1)
    assert c.result("a", 1) is not None
    c.down.add("r0")
    c.request("a", 2, put("k", b"2"), to="all")  # the client retransmits to everybody
    c.run(until=5.0)
    for rid in ("r1", "r2", "r3"):
        r = c.replicas[rid]
        assert r.view == 1 and r.active and r.last_executed == 2
        assert c.views[rid] == [1]
    assert c.result("a", 2) is not None
    c.request("a", 3, put("k", b"3"))  # goes to r1, the new primary
    c.run(until=c.now + 0.1)
    assert c.result("a", 3) is not None
    c.assert_agreement()


def test_successive_primary_crashes() -> None:
    c = Cluster(request_timeout=1.0)
    c.down.update({"r0"})
    c.request("a", 1, put("k", b"1"), to="all")
    c.run(until=5.0)
    assert c.result("a", 1) is not None
    c.down.discard("r0")  # r0 comes back (in view 0; it catches up by the join rule / timers)
    c.down.add("r1")
    c.request("a", 2, put("k", b"2"), to="all")
    c.run(until=20.0)
    assert c.result("a", 2) is not None
    assert {c.replicas[r].view for r in ("r0", "r2", "r3")} == {2}
    c.assert_agreement()


def test_prepared_request_survives_view_change() -> None:
    """A batch that prepared (commits lost) under the old primary is re-proposed by the new one with
    the same digest at the same sequence number; nothing executes twice."""
    c = Cluster(request_timeout=1.0)
    c.filter = lambda s, d, m: not isinstance(m, Commit)
    c.request("a", 1, put("k", b"1"))
    c.run(until=0.01)
    assert all(r.certs.get(1) for r in c.replicas.values())
    c.filter = lambda s, d, m: True
    c.down.add("r0")
    c.request("a", 1, put("k", b"1"), to="all")
    c.run(until=5.0)
    for rid in ("r1", "r2", "r3"):
        assert [(s, b) for s, b in c.history(rid)] == [(1, (Request("a", 1, put("k", b"1")),))]
    assert c.result("a", 1) is not None


def test_committed_at_some_survives_view_change() -> None:
    """Commits reach only r1: it executes seq 1, the others do not; after the view change the new
    view must order the same batch at seq 1."""
    c = Cluster(request_timeout=1.0)
    c.filter = lambda s, d, m: not isinstance(m, Commit) or d == "r1"
    c.request("a", 1, put("k", b"1"))
    c.run(until=0.01)
    assert c.replicas["r1"].last_executed == 1 and c.replicas["r2"].last_executed == 0
    c.filter = lambda s, d, m: True
    c.down.add("r0")
    c.request("b", 1, put("j", b"2"), to="all")
    c.run(until=5.0)
    c.assert_agreement()
    for rid in ("r1", "r2", "r3"):
        assert c.replicas[rid].last_executed == 2
        assert c.apps[rid].data == {"k": b"1", "j": b"2"}


def test_join_rule_f_plus_one() -> None:
    """A replica whose own timer has not fired joins once f+1 others ask for a higher view."""
    c = Cluster(request_timeout=1.0)
    c.down.add("r0")
    c.request("a", 1, put("k", b"1"), to="r1")  # only r1 and r2 know the request
    c.request("a", 1, put("k", b"1"), to="r2")
    c.run(until=3.0)
    assert all(c.replicas[r].view == 1 and c.replicas[r].active for r in ("r1", "r2", "r3"))
    assert c.result("a", 1) is not None


def test_failed_view_change_doubles_timeout() -> None:
    c = Cluster(request_timeout=1.0)
    # A faulty primary that stays up but never orders, and the next primary is down: view 1 fails.
    c.filter = lambda s, d, m: not (s == "r0" and isinstance(m, PrePrepare))
    c.down.add("r1")
    c.request("a", 1, put("k", b"1"), to="all")
    c.run(until=1.1)
    assert all(c.replicas[r].view == 1 and not c.replicas[r].active for r in ("r0", "r2", "r3"))
    c.run(until=2.9)
    assert c.replicas["r2"].view == 1  # waits 2 s for view 1
    c.run(until=3.2)
    # Then view 2, whose primary (r2) is up: it completes and the request executes.
    assert all(c.replicas[r].view == 2 and c.replicas[r].active for r in ("r0", "r2", "r3"))
    assert c.result("a", 1) is not None
    c.assert_agreement()


def test_no_quorum_no_view_change() -> None:
    """Two of four down: the live two time out again and again, but 2f+1 votes never gather, so
    they stay active in view 0 (repeating their votes, not backing off) instead of racing through
    views no quorum can install; healed, the request executes and all share one active view."""
    c = Cluster(request_timeout=1.0)
    c.down.update({"r0", "r1"})
    c.request("a", 1, put("k", b"1"), to="all")
    c.run(until=10.0)
    for r in ("r2", "r3"):
        assert c.replicas[r].view == 0 and c.replicas[r].active and c.replicas[r].vote == 1
    c.down.clear()
    c.request("a", 1, put("k", b"1"), to="all")
    c.run(until=20.0)
    assert c.result("a", 1) is not None
    assert len({(r.view, r.active) for r in c.replicas.values()}) == 1
    assert all(r.active for r in c.replicas.values())
    c.assert_agreement()


def test_forged_new_view_is_evidence() -> None:
    c = Cluster()
    bogus = NewView(1, (), (), "r1")
    c.inject("r1", "r2", bogus)
    c.inject("r3", "r2", NewView(1, (), (), "r3"))
    c.inject("r3", "r2", ViewChange(1, 0, (), (), "r3"))  # valid alone: no view change (needs f+1)
    c.run()
    reasons = [e.reason for _, e in c.evidence]
    assert reasons == ["new-view-quorum", "sender-mismatch"] or reasons == ["new-view-quorum", "new-view-not-from-primary"]
    assert c.replicas["r2"].view == 0 and c.replicas["r2"].active


def test_new_view_with_wrong_pre_prepares_is_rejected() -> None:
    c = Cluster()
    vcs = tuple(ViewChange(1, 0, (), (), s) for s in ("r1", "r2", "r3"))
    evil = PrePrepare(1, 1, batch_digest((Request("x", 1, b"op"),)), (Request("x", 1, b"op"),), "r1")
    c.inject("r1", "r2", NewView(1, vcs, (evil,), "r1"))
    c.run()
    assert [e.reason for _, e in c.evidence] == ["new-view-bad-pre-prepares"]
    assert c.replicas["r2"].view == 0


def test_forged_prepared_certificate_in_view_change_is_evidence() -> None:
    c = Cluster()
    req = (Request("x", 1, b"op"),)
    pp = PrePrepare(0, 1, batch_digest(req), req, "r0")
    from protocols.pbft import PreparedCert

    fake = PreparedCert(pp, (Prepare(0, 1, pp.digest, "r3"), Prepare(0, 1, pp.digest, "r3")))  # one member twice
    c.inject("r3", "r1", ViewChange(1, 0, (), (fake,), "r3"))
    c.run()
    assert [e.reason for _, e in c.evidence] == ["cert-senders"]


def test_pre_prepare_overtaking_new_view_is_kept() -> None:
    """Links are not FIFO in general: the new primary's first pre-prepare may reach a backup before
    its NEW-VIEW. The backup keeps it and accepts it once the view is installed."""
    c = Cluster(request_timeout=1.0)
    c.down.add("r0")
    held: list = []
    c.filter = lambda s, d, m: not (isinstance(m, NewView) and d == "r2" and not held.append((s, d, m)))
    c.request("a", 1, put("k", b"1"), to="all")
    c.run(until=1.5)
    assert c.replicas["r2"].early and not c.replicas["r2"].active
    c.filter = lambda s, d, m: True
    for s, d, m in held:
        c.inject(s, d, m)
    c.run(until=1.6)
    assert c.result("a", 1) is not None
    assert all(c.replicas[r].last_executed == 1 and c.replicas[r].view == 1 for r in ("r1", "r2", "r3"))
    assert not c.evidence


def test_any_replica_in_the_view_relays_its_new_view() -> None:
    """A replica that missed the NEW-VIEW (it may be unable to reach the new primary) gets it from
    whichever member it asks: a NEW-VIEW is signed through and through, so a relay is as good as
    the original, and it installs the view without waiting for the next view change."""
    c = Cluster(request_timeout=1.0)
    c.down.add("r0")
    # r3 never hears the new primary (r1): its NEW-VIEW can only reach it by relay.
    c.filter = lambda src, dst, msg: not (src == "r1" and dst == "r3" and isinstance(msg, NewView))
    c.request("a", 1, put("k", b"1"), to="all")
    c.run(until=1.5)
    vc = ViewChange(1, 0, (), (), "r3")
    c.inject("r3", "r2", vc)  # r3 says it still waits for view 1: r2 (a backup) relays the NEW-VIEW
    c.run(until=3.0)
    r3 = c.replicas["r3"]
    assert r3.view == 1 and r3.active
    assert c.result("a", 1) is not None
    assert not c.evidence


def test_view_change_from_a_checkpoint_the_lagging_replica_lacks() -> None:
    """r3 misses two checkpoints; then the primary dies. The NEW-VIEW starts at the latest stable
    checkpoint (min-s = 8, proven inside the VIEW-CHANGEs); r3, needed for the quorum, verifies the
    proof, fetches that state and takes part in the new view."""
    c = Cluster(checkpoint_interval=4, window=8, max_batch=1, request_timeout=1.0)
    c.down.add("r3")
    for i in range(1, 10):
        c.request("a", i, put("k", b"%d" % i))
        c.run(until=c.now + 0.01)
    assert c.replicas["r1"].low_watermark == 8
    c.down.discard("r3")
    c.down.add("r0")
    c.request("a", 10, put("k", b"10"), to="all")
    c.run(until=c.now + 5.0)
    for rid in ("r1", "r2", "r3"):
        r = c.replicas[rid]
        assert r.view == 1 and r.active and r.last_executed == 10, rid
    assert c.apps["r3"].data == c.apps["r1"].data == {"k": b"10"}
    assert c.result("a", 10) is not None
    nv = c.replicas["r3"].new_view_msg
    assert nv is not None and max(v.stable_seq for v in nv.view_changes) == 8
    c.assert_agreement()
    assert not c.evidence


def test_primary_cannot_starve_one_client_while_serving_others() -> None:
    """The timer is for the oldest waiting request: other clients' executions do not restart it."""
    c = Cluster(request_timeout=1.0)
    # r0 never hears of client a's request (it censors it); b's requests flow through r0.
    c.filter = lambda s, d, m: not (d == "r0" and isinstance(m, Request) and m.client_id == "a")
    for rid in ("r1", "r2", "r3"):
        c.request("a", 1, put("a", b"1"), to=rid)
    for i in range(1, 40):
        c.request("b", i, put("b", b"%d" % i), to=c.config.primary(c.replicas["r1"].view))
        c.run(until=c.now + 0.1)
    assert c.result("a", 1) is not None
    assert c.replicas["r1"].view == 1
    c.assert_agreement()
