from protocols.pbft import KVStore, Replica
from protocols.pbft.app import put

from tests.protocols.pbft.harness import Cluster


def load(c: Cluster, first: int, count: int) -> None:
    for i in range(first, first + count):
        c.request("c", i, put(f"k{i % 3}", b"%d" % i))
        c.run(until=c.now + 0.01)


def restart(c: Cluster, rid: str) -> None:
    state = c.replicas[rid].persistent_state()
    c.apps[rid] = KVStore()
    c.replicas[rid] = Replica.recover(rid, c.config, c.apps[rid], state)
    c.timers = {k: v for k, v in c.timers.items() if k[0] != rid}  # its timers died with it


def test_recover_from_persistent_state_round_trip() -> None:
    c = Cluster(checkpoint_interval=4, window=8, max_batch=2)
    load(c, 1, 11)
    before = c.replicas["r1"]
    restart(c, "r1")
    after = c.replicas["r1"]
    for attr in ("view", "active", "last_executed", "stable_checkpoint", "clients", "pre_prepares", "prepares",
                 "commits", "certs", "committed", "checkpoints", "stable_proof", "pending", "seq_next"):
        assert getattr(after, attr) == getattr(before, attr), attr
    assert c.apps["r1"].data == {"k0": b"9", "k1": b"10", "k2": b"11"}
    assert after.persistent_state() == before.persistent_state()


def test_crash_mid_flight_then_recover_and_continue() -> None:
    c = Cluster(checkpoint_interval=4, window=8, max_batch=1, request_timeout=1.0)
    load(c, 1, 5)
    c.request("c", 6, put("x", b"6"))
    for _ in range(5):
        c.step()  # part of the protocol run for seq 6
    c.down.add("r2")
    c.run(until=c.now + 0.01)
    restart(c, "r2")
    c.down.discard("r2")
    load(c, 7, 10)
    c.run(until=c.now + 2.0)
    c.assert_agreement()
    assert c.replicas["r2"].last_executed == c.replicas["r0"].last_executed == 16
    assert c.apps["r2"].data == c.apps["r0"].data


def test_recovered_primary_after_view_change() -> None:
    c = Cluster(checkpoint_interval=4, window=8, max_batch=1, request_timeout=1.0)
    load(c, 1, 3)
    c.down.add("r0")
    c.request("c", 4, put("x", b"4"), to="all")
    c.run(until=c.now + 5.0)
    restart(c, "r1")  # the new primary crashes and recovers
    c.request("c", 5, put("x", b"5"), to="all")
    c.run(until=c.now + 5.0)
    assert c.result("c", 5) is not None
    c.assert_agreement()


def test_a_restarted_replica_catches_up_in_an_idle_committee() -> None:
    # It missed the last batches while down, and no request comes afterwards to show it that it
    # is behind: its first act after the restart (a STATUS) brings the others' messages back.
    c = Cluster(checkpoint_interval=16, window=32, max_batch=1, request_timeout=1.0)
    load(c, 1, 3)
    c.down.add("r2")
    load(c, 4, 3)
    assert c.replicas["r2"].last_executed == 3
    restart(c, "r2")
    c.down.discard("r2")
    c.apply("r2", c.replicas["r2"].on_timer("resume", c.now))  # what the daemon feeds first
    c.run(until=c.now + 1.0)
    assert c.replicas["r2"].last_executed == 6
    c.assert_agreement()
