from protocols.pbft import Commit, KVStore, NewView, PrePrepare, Prepare, Replica, SetTimer, Status
from protocols.pbft.app import put

from tests.protocols.pbft.harness import Cluster


def test_lost_pre_prepare_recovered_by_status_without_view_change() -> None:
    c = Cluster(request_timeout=1.0)
    c.filter = lambda s, d, m: not (isinstance(m, PrePrepare) and d == "r3")
    c.request("a", 1, put("k", b"1"))
    c.run(until=0.01)
    assert c.result("a", 1) is not None  # r0, r1, r2 suffice
    assert c.replicas["r3"].last_executed == 0
    c.filter = lambda s, d, m: True
    c.run(until=0.6)  # r3 waits (it saw prepares and commits for seq 1), then asks
    assert c.replicas["r3"].last_executed == 1
    assert all(r.view == 0 for r in c.replicas.values())
    assert c.apps["r3"].data == c.apps["r0"].data
    assert not c.evidence


def test_lost_commits_recovered_by_status() -> None:
    c = Cluster(request_timeout=1.0)
    c.filter = lambda s, d, m: not (isinstance(m, (Commit, Prepare)) and d == "r2")
    for i in range(1, 4):
        c.request("a", i, put("k", b"%d" % i))
        c.run(until=c.now + 0.01)
    assert c.replicas["r2"].last_executed == 0
    c.filter = lambda s, d, m: True
    c.run(until=c.now + 0.6)
    assert c.replicas["r2"].last_executed == 3
    assert all(r.view == 0 for r in c.replicas.values())


def test_missed_new_view_recovered_by_status() -> None:
    c = Cluster(request_timeout=1.0)
    c.down.add("r0")
    c.filter = lambda s, d, m: not (isinstance(m, NewView) and d == "r3")
    c.request("a", 1, put("k", b"1"), to="all")
    c.run(until=1.5)
    assert not c.replicas["r3"].active
    c.filter = lambda s, d, m: True
    c.run(until=2.5)
    assert c.replicas["r3"].active and c.replicas["r3"].view == 1
    assert c.replicas["r3"].last_executed == 1


def test_idle_replicas_send_no_status() -> None:
    c = Cluster(request_timeout=1.0)
    c.request("a", 1, put("k", b"1"))
    c.run(until=5.0)
    sent_before = c.delivered
    c.run(until=50.0)
    assert c.delivered == sent_before
    assert not any(k[1] == "status" for k in c.timers)


def test_status_answers_are_rate_limited() -> None:
    c = Cluster(request_timeout=1.0)
    c.request("a", 1, put("k", b"1"))
    c.run(until=0.01)
    before = c.delivered
    for _ in range(20):
        c.inject("r3", "r1", Status(0, True, 0, 0, "r3"))
    c.run()
    assert c.delivered - before <= 20 + 2  # the 20 statuses, one answer (prepare + commit)


def test_recovered_replica_rearms_its_timers() -> None:
    c = Cluster(request_timeout=1.0)
    c.down.add("r0")
    c.request("a", 1, put("k", b"1"), to="r1")
    state = c.replicas["r1"].persistent_state()
    r = Replica.recover("r1", c.config, KVStore(), state)
    out = r.on_message("r2", Status(0, True, 0, 0, "r2"), 0.5)
    assert SetTimer("view-change", 1.5) in out
