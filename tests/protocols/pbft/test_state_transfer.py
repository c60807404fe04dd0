from protocols.pbft import KVStore, Replica, StateTransfer
from protocols.pbft.app import put

from tests.protocols.pbft.harness import Cluster


def load(c: Cluster, first: int, count: int, client: str = "c") -> None:
    for i in range(first, first + count):
        c.request(client, i, put(f"k{i % 5}", b"%d" % i))
        c.run(until=c.now + 0.01)


def test_lagging_replica_catches_up_by_state_transfer() -> None:
    c = Cluster(checkpoint_interval=4, window=8, max_batch=1, request_timeout=1.0)
    load(c, 1, 3)
    c.down.add("r3")
    load(c, 4, 30)  # r3 misses 30 sequence numbers; the others collect their logs
    assert c.replicas["r0"].low_watermark == 32
    c.down.discard("r3")
    load(c, 34, 8)  # new checkpoints reach r3, it fetches and restores the certified state
    c.run(until=c.now + 2.0)
    r3 = c.replicas["r3"]
    assert r3.last_executed == c.replicas["r0"].last_executed == 41
    assert c.apps["r3"].data == c.apps["r0"].data
    assert r3.stable_checkpoint == c.replicas["r0"].stable_checkpoint
    assert r3.clients == c.replicas["r0"].clients
    c.assert_agreement()
    assert not c.evidence
    # and it keeps participating: with r0 silent, r3 is needed for a quorum
    c.down.add("r0")
    c.request("c", 100, put("z", b"1"), to="all")
    c.run(until=c.now + 10.0)
    assert c.result("c", 100) is not None
    assert c.apps["r3"].data["z"] == b"1"


def test_blank_restart_catches_up() -> None:
    c = Cluster(checkpoint_interval=4, window=8, max_batch=1)
    load(c, 1, 10)
    c.apps["r2"] = KVStore()
    c.replicas["r2"] = Replica("r2", c.config, c.apps["r2"])  # lost its disk
    load(c, 11, 8)
    c.run(until=c.now + 2.0)
    assert c.replicas["r2"].last_executed == 18
    assert c.apps["r2"].data == c.apps["r0"].data


def test_state_with_wrong_digest_is_evidence() -> None:
    c = Cluster(checkpoint_interval=4, window=8, max_batch=1)
    c.down.add("r3")
    load(c, 1, 9)
    c.down.discard("r3")
    c.filter = lambda s, d, m: not isinstance(m, StateTransfer)
    load(c, 10, 4)  # r3 learns the stable checkpoint and asks for it
    seq, digest = c.replicas["r0"].stable_checkpoint
    assert c.replicas["r3"].fetch_target is not None
    c.inject("r1", "r3", StateTransfer(seq, digest, b"forged", b"", "r1"))
    c.run()
    assert ("r3", "bad-state") in [(rid, e.reason) for rid, e in c.evidence]
    assert c.replicas["r3"].last_executed == 0
    c.filter = lambda s, d, m: True
    c.run(until=c.now + 3.0)  # retry goes to the next certifier
    assert c.replicas["r3"].last_executed >= seq


def test_fetch_state_answers_are_rate_limited() -> None:
    from protocols.pbft import FetchState

    c = Cluster(checkpoint_interval=4, window=8, max_batch=1)
    load(c, 1, 5)
    assert c.replicas["r1"].low_watermark == 4
    before = c.delivered
    for _ in range(10):
        c.inject("r3", "r1", FetchState(4, "r3"))
    c.run()
    assert c.delivered - before == 10 + 1
