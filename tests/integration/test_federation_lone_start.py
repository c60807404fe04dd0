"""A replica that starts before the others and times out alone (issue 11, item 1).

Before view changes started with votes, such a replica sent VIEW-CHANGEs for views 1, 2, 3, ...
alone, and ended inactive in a view of its own while the others ran view 0 or 1: the committee kept
working without it, and then had no fault tolerance left. Now it votes, stays active in view 0,
and takes part as soon as its peers arrive."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.rpc import RpcError

from .federation_helpers import (  # noqa: F401 - fed_root is a fixture
    describe,
    fed_root,
    make_federation,
    status,
    wait_for,
    wait_log_mentions,
)

pytestmark = pytest.mark.integration


def test_a_replica_that_started_alone_takes_part_once_the_others_arrive(
    request: pytest.FixtureRequest, fed_root: Path
) -> None:
    fed = make_federation(request, fed_root, 4)
    first = fed.start(0)

    # Alone, a transfer cannot commit: the call times out with the tx id (the request stays pending).
    with pytest.raises(RpcError) as exc:
        first.call("ledger.transfer", {"to": fed.ids[1], "amount": 1, "timeout": 3}, timeout=15)
    tx_id = exc.value.data["tx_id"]
    # Its request timer expires (0.5 s here) again and again: it votes, and stays in view 0.
    wait_log_mentions(first, "voting for view 1", timeout=30)
    st = status(first)
    assert (st["view"], st["view_active"], st["view_vote"]) == (0, True, 1), st
    assert "asking for view" not in first.log_path.read_text(errors="replace")

    others = [fed.start(i, wait=False) for i in (1, 2, 3)]
    for node in others:
        node.wait_ready(30)
    nodes = [first, *others]

    def one_active_view() -> bool:
        sts = [status(n) for n in nodes]
        return len({s["view"] for s in sts}) == 1 and all(s["view_active"] for s in sts)

    def pending_committed() -> bool:
        try:
            return bool(first.call("ledger.tx", {"id": tx_id})["status"] == "applied")
        except RpcError:
            return False

    try:
        wait_for(pending_committed, 30, "the transfer submitted while alone to commit")
        wait_for(one_active_view, 30, "all four replicas to run one view, active")
    except AssertionError as e:
        raise AssertionError(f"{e}; now: {describe(nodes)}") from None
    assert status(first)["view"] <= 1, describe(nodes)

    # The committee kept its fault tolerance: with one replica killed, a transfer still commits.
    victim = next(n for n in others if n.call("node.id")["peer_id"] != status(first)["primary"])
    victim.kill()
    r = first.call("ledger.transfer", {"to": fed.ids[2], "amount": 1, "timeout": 20}, timeout=30)
    assert r["status"] == "applied", r
