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


def _finish(c: Cluster, ops: dict[int, bytes], rounds: int = 20) -> None:
    for _ in range(rounds):
        missing = [i for i in ops if c.result(f"c{i}", 1) is None]
        if not missing:
            return
        for i in missing:
            c.request(f"c{i}", 1, ops[i], to="all")
        c.run(until=c.now + 2.0)


@pytest.mark.parametrize("seed", range(12))
def test_crash_restart_and_partition(seed: int) -> None:
    """Loss, a 2-2 partition, a backup restarted from its persisted state and another from a blank
    disk; after healing every request completes and all live replicas agree."""
    from protocols.pbft import KVStore, Replica

    rng = random.Random(1000 + seed)
    c = Cluster(checkpoint_interval=4, window=8, max_batch=2, request_timeout=0.5)
    phase = {"loss": 0.15, "cut": set()}

    def net(s: str, d: str, m: object) -> bool:
        if {s, d} & phase["cut"] and not {s, d} <= phase["cut"]:
            return False
        return rng.random() >= phase["loss"]

    c.filter = net
    ops = {i: put(f"k{i % 5}", b"%d" % i) for i in range(1, 31)}
    events = {rng.randint(3, 8): "partition", rng.randint(10, 14): "heal", rng.randint(15, 20): "persisted", rng.randint(21, 26): "blank"}
    for i in range(1, 31):
        ev = events.get(i)
        if ev == "partition":
            phase["cut"] = {"r0", "r1"}
        elif ev == "heal":
            phase["cut"] = set()
        elif ev in ("persisted", "blank"):
            victim = rng.choice(["r1", "r2", "r3"])
            state = c.replicas[victim].persistent_state()
            c.apps[victim] = KVStore()
            if ev == "persisted":
                c.replicas[victim] = Replica.recover(victim, c.config, c.apps[victim], state)
            else:
                c.replicas[victim] = Replica(victim, c.config, c.apps[victim])
                c.executed[victim] = []  # it lost its disk: it may execute everything again
            c.timers = {k: v for k, v in c.timers.items() if k[0] != victim}
            c.queue = type(c.queue)(x for x in c.queue if x[1] != victim)  # in-flight input is lost
        c.request(f"c{i}", 1, ops[i], to="all")
        c.run(until=c.now + 0.05)
    phase["loss"] = 0.0
    phase["cut"] = set()
    _finish(c, ops)
    c.assert_agreement()
    for i in ops:
        assert c.result(f"c{i}", 1) is not None, i
    top = max(r.last_executed for r in c.replicas.values())
    states = {tuple(sorted(c.apps[r].data.items())) for r in c.members if c.replicas[r].last_executed == top}
    assert len(states) == 1
    assert not c.evidence
