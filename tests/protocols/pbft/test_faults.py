"""Seeded fault schedules on the in-test driver (the full simulator lives in tests/sim): loss and
duplication until a heal time, a crash of the primary, then every request must complete."""

import random

import pytest

from protocols.pbft.app import put

from tests.protocols.pbft.harness import Cluster


@pytest.mark.parametrize("seed", range(12))
def test_lossy_network_with_primary_crash(seed: int) -> None:
    rng = random.Random(seed)
    c = Cluster(checkpoint_interval=4, window=8, max_batch=3, request_timeout=0.5)
    healed = False

    def lossy(s: str, d: str, m: object) -> bool:
        if healed:
            return True
        if rng.random() < 0.1:
            c.queue.append((s, d, m, False))  # duplicate (delivered later: reordered too)
        return rng.random() >= 0.2

    c.filter = lossy
    crash_at = rng.randint(3, 12)
    for i in range(1, 25):
        if i == crash_at:
            c.down.add("r0")
        c.request(f"c{i}", 1, put(f"k{i % 4}", b"%d" % i), to="all")
        c.run(until=c.now + 0.05)
    healed = True
    # clients retransmit what has not completed
    for _ in range(20):
        missing = [i for i in range(1, 25) if c.result(f"c{i}", 1) is None]
        if not missing:
            break
        for i in missing:
            c.request(f"c{i}", 1, put(f"k{i % 4}", b"%d" % i), to="all")
        c.run(until=c.now + 2.0)
    c.assert_agreement()
    for i in range(1, 25):
        assert c.result(f"c{i}", 1) is not None, i
    live = [r for r in c.members if r not in c.down]
    states = {tuple(sorted(c.apps[r].data.items())) for r in live if c.replicas[r].last_executed == max(c.replicas[x].last_executed for x in live)}
    assert len(states) == 1
    assert not [e for rid, e in c.evidence if e.sender != "r0"]
