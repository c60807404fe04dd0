"""Every attribute of a replica is declared persistent or volatile (protocols/pbft/persist.py): a
new one in neither fails here, instead of being dropped silently at the next crash."""

from __future__ import annotations

from protocols.pbft import PbftConfig, Replica
from protocols.pbft.app import KVStore, put
from protocols.pbft.persist import PERSISTENT, VOLATILE
from tests.protocols.pbft.harness import Cluster


def test_every_attribute_is_declared_once() -> None:
    r = Replica("a", PbftConfig(members=("a", "b", "c", "d")), KVStore())
    attrs = set(vars(r))
    undeclared = attrs - set(PERSISTENT) - set(VOLATILE)
    assert not undeclared, f"declare these in protocols/pbft/persist.py (PERSISTENT or VOLATILE): {sorted(undeclared)}"
    assert not set(PERSISTENT) & set(VOLATILE)
    assert set(PERSISTENT) | set(VOLATILE) <= attrs, "declared attributes the replica no longer has"


def test_every_persistent_attribute_survives_a_round_trip() -> None:
    c = Cluster(checkpoint_interval=2, window=4, max_batch=1, request_timeout=1.0)
    for ts in range(1, 6):
        c.request("c", ts, put("k", b"%d" % ts))
        c.run(until=c.now + 0.05)
    before = c.replicas["r1"]
    assert before.last_executed == 5 and before.stable_proof and before.clients
    after = Replica.recover("r1", before.config, KVStore(), before.persistent_state())
    for name in PERSISTENT:
        assert getattr(after, name) == getattr(before, name), name
    assert after.app.snapshot() == before.app.snapshot()
