from protocols.pbft import Checkpoint, Evidence
from protocols.pbft.app import put

from tests.protocols.pbft.harness import Cluster


def load(c: Cluster, count: int, client: str = "c", start: int = 1, step: float = 0.01) -> None:
    for i in range(start, start + count):
        c.request(client, i, put(f"k{i % 7}", b"%d" % i))
        c.run(until=c.now + step)


def test_checkpoints_become_stable_and_log_is_collected() -> None:
    c = Cluster(checkpoint_interval=8, window=16, max_batch=1)
    sizes = []
    for round_ in range(6):
        load(c, 8, start=1 + 8 * round_)
        sizes.append(max(r.log_size() for r in c.replicas.values()))
    for rid, r in c.replicas.items():
        assert r.last_executed == 48
        assert r.stable_checkpoint[0] == 48
        assert r.low_watermark == 48
        assert [s.seq for s in c.stable[rid]] == [8, 16, 24, 32, 40, 48]
    # identical digests at every stable checkpoint
    for i in range(6):
        assert len({c.stable[rid][i].state_digest for rid in c.members}) == 1
    # the log is bounded: after GC nothing below the stable checkpoint is kept
    assert max(sizes) == sizes[0]
    for r in c.replicas.values():
        assert all(s > 48 for s in r.pre_prepares) and not r.certs and not r.commits
    c.assert_agreement()


def test_long_load_keeps_log_bounded() -> None:
    c = Cluster(checkpoint_interval=4, window=8, max_batch=2, batch_delay=0.001)
    peak = 0
    for i in range(1, 201):
        c.request(f"c{i % 3}", i, put("k", b"%d" % i))
        c.run(until=c.now + 0.002)
        peak = max(peak, max(r.log_size() for r in c.replicas.values()))
    c.run(until=c.now + 0.1)
    assert all(r.last_executed == c.replicas["r0"].last_executed for r in c.replicas.values())
    assert sum(len(e.batch) for e in c.executed["r2"]) == 200
    assert peak < 4 * 8 * 4  # (pre-prepare + prepares + commits + checkpoints) per seq, window-bounded
    c.assert_agreement()


def test_checkpoint_off_interval_is_evidence() -> None:
    c = Cluster(checkpoint_interval=8)
    c.inject("r3", "r0", Checkpoint(5, b"x" * 32, "r3"))
    c.inject("r3", "r0", Checkpoint(8, b"x" * 32, "r2"))  # claims another sender
    c.run()
    assert [(e.sender, e.reason) for _, e in c.evidence] == [("r3", "checkpoint-not-on-interval"), ("r3", "sender-mismatch")]


def test_forged_checkpoints_below_quorum_do_not_stabilise() -> None:
    c = Cluster(checkpoint_interval=8)
    for _ in range(3):
        c.inject("r3", "r0", Checkpoint(8, b"x" * 32, "r3"))  # repeated, one sender: counts once
    c.run(until=5.0)
    assert c.replicas["r0"].stable_checkpoint[0] == 0
    assert c.replicas["r0"].fetch_target is None
