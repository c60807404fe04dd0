from protocols.pbft import Evidence, Executed, KVStore, PbftConfig, Replica, Request, SendReply, SetTimer
from protocols.pbft.app import get, put
from protocols.codec import decode, encode

from tests.protocols.pbft.harness import Cluster


def ok(value: bytes | None) -> bytes:
    return encode(["ok", value])


def test_normal_case_commits_identical_sequences() -> None:
    c = Cluster(batch_delay=0.01)
    for i in range(1, 21):
        c.request("alice", i, put("k", b"%d" % i))
        c.run(until=c.now + 0.02)
    for i in range(1, 21):
        assert c.result("alice", i) == ok(None)
    c.request("alice", 21, get("k"))
    c.run(until=c.now + 0.02)
    assert c.result("alice", 21) == ok(b"20")
    hist = c.history("r0")
    assert len(hist) == 21
    for rid in c.members:
        assert c.history(rid) == hist
        assert c.replicas[rid].last_executed == 21
        assert c.apps[rid].data == {"k": b"20"}
    assert [s for s, _ in hist] == list(range(1, 22))
    assert not c.evidence


def test_batching_by_size_and_by_delay() -> None:
    c = Cluster(max_batch=4, batch_delay=0.5)
    for i in range(10):
        c.request(f"c{i}", 1, put(f"k{i}", b"v"))
    c.run()  # no time passes: only full batches are ordered
    assert [len(e.batch) for e in c.executed["r1"]] == [4, 4]
    c.run(until=0.49)
    assert len(c.executed["r1"]) == 2
    c.run(until=0.5)
    assert [len(e.batch) for e in c.executed["r1"]] == [4, 4, 2]
    for i in range(10):
        assert c.result(f"c{i}", 1) == ok(None)
    c.assert_agreement()


def test_several_batches_in_flight_up_to_window() -> None:
    c = Cluster(max_batch=1, checkpoint_interval=4, window=8, max_in_flight=64)
    # Hold every COMMIT so nothing executes: the primary may only have `window` batches in flight.
    held: list = []
    c.filter = lambda s, d, m: not (type(m).__name__ == "Commit" and not held.append((s, d, m)))
    for i in range(12):
        c.request(f"c{i}", 1, put("k", b"v"))
    c.run()
    assert c.replicas["r0"].seq_next == 9  # seqs 1..8 assigned, the rest queued
    assert all(r.last_executed == 0 for r in c.replicas.values())
    c.filter = lambda s, d, m: True
    for s, d, m in held:
        c.inject(s, d, m)
    c.run(until=1.0)
    assert all(r.last_executed == 12 for r in c.replicas.values())
    c.assert_agreement()


def test_duplicate_request_gets_cached_reply_and_executes_once() -> None:
    c = Cluster()
    c.request("alice", 5, put("k", b"x"))
    c.run(until=0.1)
    assert c.result("alice", 5) == ok(None)
    c.replies.clear()
    c.request("alice", 5, put("k", b"x"), to="all")  # retransmission
    c.request("alice", 4, put("k", b"old"), to="all")  # older: dropped
    c.run(until=0.2)
    assert c.result("alice", 5) == ok(None)
    assert ("alice", 4) not in c.replies
    assert all(r.last_executed == 1 for r in c.replicas.values())


def test_backup_forwards_request_to_primary_and_arms_timer() -> None:
    cfg = PbftConfig(("a", "b", "c", "d"))
    r = Replica("b", cfg, KVStore())
    out = r.on_request(Request("x", 1, put("k", b"v")), 0.0)
    assert any(getattr(e, "to", None) == "a" for e in out)
    assert SetTimer("view-change", 1.0) in out


def test_malformed_op_is_an_error_result_not_a_crash() -> None:
    c = Cluster()
    c.request("bob", 1, b"\xc1garbage")
    c.request("bob2", 1, put("k", b"v")[:-1])
    c.run(until=0.1)
    assert decode(c.result("bob", 1))[0] == "error"
    assert decode(c.result("bob2", 1))[0] == "error"
    assert not c.evidence


def test_single_replica_committee() -> None:
    cfg = PbftConfig(("solo",), batch_delay=0.0)
    r = Replica("solo", cfg, KVStore())
    out = r.on_request(Request("x", 1, put("k", b"v")), 0.0)
    out += r.on_timer("batch", 0.0)
    assert any(isinstance(e, Executed) for e in out)
    assert any(isinstance(e, SendReply) for e in out)
    assert not any(isinstance(e, Evidence) for e in out)


def test_forwarded_request_is_not_forwarded_again() -> None:
    """A backup's forward reaching a non-primary (the two disagree about the view) is dropped, so
    two replicas in different views cannot bounce a request between them forever."""
    cfg = PbftConfig(("a", "b", "c", "d"))
    r = Replica("b", cfg, KVStore())
    assert r.on_message("c", Request("x", 1, put("k", b"v")), 0.0) == []
    assert r.pending == {}
    p = Replica("a", cfg, KVStore())
    out = p.on_message("c", Request("x", 1, put("k", b"v")), 0.0)
    assert p.queue == [Request("x", 1, put("k", b"v"))] and any(isinstance(e, SetTimer) for e in out)


def test_in_flight_limit_makes_waiting_requests_share_a_batch() -> None:
    # A trickle of requests: with at most 2 batches in flight, what arrives meanwhile waits and
    # goes out together as soon as one executes, instead of costing a protocol round each.
    c = Cluster(max_batch=64, batch_delay=0.0, max_in_flight=2)
    held: list = []
    c.filter = lambda s, d, m: not (type(m).__name__ == "Commit" and not held.append((s, d, m)))
    for i in range(10):
        c.request(f"c{i}", 1, put(f"k{i}", b"v"))
        c.run(until=c.now + 0.01)
    assert c.replicas["r0"].seq_next == 3  # two batches of one request each, eight waiting
    c.filter = lambda s, d, m: True
    for s, d, m in held:
        c.inject(s, d, m)
    c.run(until=c.now + 1.0)
    assert sorted(len(e.batch) for e in c.executed["r1"]) == [1, 1, 8]
    for i in range(10):
        assert c.result(f"c{i}", 1) == ok(None)
    c.assert_agreement()
