"""Committee changes with real daemons: a fifth node follows the ledger from outside the
committee, is voted in (f+1 member votes), and from the switching checkpoint on takes part, so
much that the committee needs it once two of the original members are gone. Then a member
leaves and goes on following the ledger."""

from __future__ import annotations

import pytest

from .conftest import wait_for
from .federation_helpers import fed_root, make_federation, status, wait_converged  # noqa: F401 (fixture)

K = 8  # checkpoint interval: the switch comes after at most 8 more batches


def transfer(node, to: str, amount: int = 1) -> dict:  # type: ignore[no-untyped-def]
    r = node.call("ledger.transfer", {"to": to, "amount": amount, "timeout": 30}, timeout=40)
    assert r["status"] == "applied", r
    return r


def test_a_fifth_node_is_voted_in_and_takes_part(request: pytest.FixtureRequest, fed_root) -> None:  # type: ignore[no-untyped-def]
    fed = make_federation(request, fed_root, 5, members=4, checkpoint_interval=K)
    try:
        _scenario(fed)
    except AssertionError as exc:
        dead = [n for n in fed.nodes.values() if n.poll() not in (None, -9)]
        tails = "".join(f"\n--- {n.home.name} exited {n.poll()}:\n{n.log_tail(40)}" for n in dead)
        raise AssertionError(f"{exc}{tails}") from None


def _scenario(fed) -> None:  # type: ignore[no-untyped-def]
    nodes = fed.start_all()
    newcomer, newcomer_id = nodes[4], fed.ids[4]

    # Outside the committee it is a follower: it can submit (its genesis balance is real) ...
    st = status(newcomer)
    assert st["role"] == "follower" and newcomer_id not in st["members"]
    transfer(newcomer, fed.ids[0], 5)
    # ... and its copy of the ledger follows the committee's stable checkpoints.
    for i in range(K + 1):
        transfer(nodes[i % 4], fed.ids[(i + 1) % 4])
    wait_for(lambda: status(newcomer)["last_executed"] >= K, 20, "the follower to sync a checkpoint")

    # One vote is not enough (n = 4, f = 1: f+1 = 2 votes).
    first = nodes[0].call("federation.join", {"peer": newcomer_id, "timeout": 30}, timeout=40)
    assert first["status"] == "applied" and first["pending_members"] is None
    # A non-member cannot vote.
    self_vote = newcomer.call("federation.join", {"peer": newcomer_id, "timeout": 30}, timeout=40)
    assert self_vote["status"] == "refused" and self_vote["reason"] == "not-a-member"
    second = nodes[1].call("federation.join", {"peer": newcomer_id, "timeout": 30}, timeout=40)
    assert second["status"] == "applied" and newcomer_id in second["pending_members"]

    # The next checkpoint switches every replica to the 5-member committee.
    def switched() -> bool:
        for i in range(4):
            transfer(nodes[i], fed.ids[(i + 1) % 4])
        sts = [status(n) for n in nodes]
        return all(s["role"] == "replica" and len(s["members"]) == 5 and s["epoch"] > 0 for s in sts)

    try:
        wait_for(switched, 60, "all five to run as replicas of the new committee")
    except AssertionError as exc:
        sts = [status(n) for n in nodes]
        raise AssertionError(
            f"{exc}: " + "; ".join(f"{s['role']} epoch {s['epoch']} n={len(s['members'])} at {s['last_executed']} "
                                   f"view {s['view']} halted {s.get('halted_for_reconfiguration')}" for s in sts)
        ) from None
    common = wait_converged(nodes, "after the switch")
    epoch = common["epoch"]
    assert epoch % K == 0 and all(status(n)["epoch"] == epoch for n in nodes)

    # It takes part: with one of the original members gone (five tolerate f = 1), the four left,
    # the newcomer among them, are exactly a quorum of five (floor((n+f)/2)+1 = 4, not 2f+1 = 3:
    # two sets of three among five could meet in one faulty member), so nothing commits without it.
    nodes[0].kill()
    r = transfer(nodes[2], fed.ids[3], 3)
    survivors = [nodes[1], nodes[2], nodes[3], newcomer]
    wait_for(lambda: all(n.call("ledger.tx", {"id": r["tx_id"]}, timeout=5)["status"] == "applied" for n in survivors),
             30, "the transfer on every survivor")
    wait_converged(survivors, "with one member gone")

    # It comes back from its home and catches up in the new configuration.
    nodes = [fed.restart(0), nodes[1], nodes[2], nodes[3], newcomer]
    wait_converged(nodes, "with it restarted", at_least=status(nodes[2])["last_executed"])
    assert all(status(n)["epoch"] == epoch for n in nodes)

    # A member leaves on its own: from the next checkpoint it follows instead.
    left = nodes[3].call("federation.leave", {"timeout": 30}, timeout=40)
    assert left["status"] == "applied" and fed.ids[3] not in (left["pending_members"] or left["members"])

    def shrunk() -> bool:
        transfer(nodes[2], fed.ids[0])
        return all(len(status(n)["members"]) == 4 for n in nodes)

    wait_for(shrunk, 60, "the committee to shrink to four")
    wait_for(lambda: status(nodes[3])["role"] == "follower", 30, "the leaver to become a follower")
    transfer(nodes[3], fed.ids[4])  # a follower still submits, and the four commit it
    assert all(n.poll() is None for n in nodes), "a daemon exited"
