"""A committee change: every replica stops at the checkpoint whose state asks for it, and a new
configuration starts from that checkpoint (Replica.halt_at, Replica.from_checkpoint)."""

from __future__ import annotations

from protocols.pbft import KVStore, PbftConfig, Replica
from protocols.pbft.app import put
from protocols.pbft.view_checks import encode_client_table

from tests.protocols.pbft.harness import Cluster


class ReconfKV(KVStore):
    """Asks for a new committee once the key "committee" is set."""

    def reconfiguring(self) -> bool:
        return "committee" in self.data


def _cluster() -> Cluster:
    c = Cluster(checkpoint_interval=4, window=8, max_batch=1, request_timeout=1.0)
    c.apps = {m: ReconfKV() for m in c.members}
    c.replicas = {m: Replica(m, c.config, c.apps[m]) for m in c.members}
    return c


def test_every_replica_halts_at_the_checkpoint_that_asks_for_a_new_committee() -> None:
    c = _cluster()
    for ts in range(1, 8):
        op = put("committee", b"r0,r1,r2,r3,r4") if ts == 2 else put(f"k{ts}", b"v")
        c.request("c", ts, op, to="all")
        c.run(until=c.now + 0.01)
    c.run(until=c.now + 30.0)  # long past every view-change timeout
    for rid, r in c.replicas.items():
        assert r.halt_at == 4 and r.last_executed == 4 and r.halted, rid
        assert r.stable_checkpoint[0] == 4, rid
        assert r.view == 0, "a halted committee must not blame its primary"
    assert len({r.stable_checkpoint[1] for r in c.replicas.values()}) == 1
    c.assert_agreement()


def test_a_new_configuration_continues_from_the_halting_checkpoint() -> None:
    c = _cluster()
    for ts in range(1, 8):
        op = put("committee", b"x") if ts == 2 else put(f"k{ts}", b"v")
        c.request("c", ts, op, to="all")
        c.run(until=c.now + 0.01)
    c.run(until=c.now + 2.0)
    old = c.replicas
    pending = sorted({q.timestamp: q for r in old.values() for q in r.pending.values()}.values(), key=lambda q: q.timestamp)
    assert pending, "requests after the halt wait for the next configuration"

    # The new committee: the four old members and r4, which receives the checkpoint state.
    new = Cluster(n=5, checkpoint_interval=4, window=8, max_batch=1, request_timeout=1.0)
    new.now = c.now
    snapshot, table = old["r0"].app.snapshot(), encode_client_table(old["r0"].clients)
    for m in new.members:
        app = ReconfKV()
        app.restore(snapshot)
        del app.data["committee"]  # the change is applied: no longer pending
        new.apps[m] = app
        new.replicas[m] = Replica.from_checkpoint(m, new.config, app, 4, table, view=old["r0"].view)
    digests = {r.stable_checkpoint for r in new.replicas.values()}
    assert len(digests) == 1 and next(iter(digests))[0] == 4
    for q in pending:
        new.request(q.client_id, q.timestamp, q.op, to="all")
        new.run(until=new.now + 0.01)
    new.run(until=new.now + 1.0)
    for rid, r in new.replicas.items():
        assert r.last_executed == 4 + len(pending), rid
    assert [q.timestamp for _, (q,) in new.history("r4")] == [q.timestamp for q in pending]
    new.assert_agreement()
    assert isinstance(new.config, PbftConfig) and new.config.n == 5
