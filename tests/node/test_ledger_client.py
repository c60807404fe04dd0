"""The ledger client's submission edge cases (issue 11, items 3 and 11)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from keys.identity import Identity
from node.federation.ledger_client import LanesBusy, LedgerClient, SubmitTimeout
from node.store import Store
from protocols.ledger import make_genesis

A, B = Identity.from_seed(b"\x41" * 32), Identity.from_seed(b"\x42" * 32)
GENESIS = make_genesis("lanes", (A.peer_id,), {A.peer_id: 1000})


async def test_a_tiny_timeout_still_submits_and_busy_lanes_submit_nothing(tmp_path: Path, autojump_clock: Any) -> None:
    """A transfer with a 1e-9 s timeout is submitted and reported pending by its real tx id; when
    every lane is busy the error says nothing was submitted (no made-up tx id to look up)."""
    store = Store(tmp_path / "c.db")
    client = LedgerClient(
        A, "lanes", GENESIS.hash, lambda: GENESIS.committee, store, send=lambda peer, req: None, submit_local=lambda req: True,
        next_nonce=None, lanes=1,
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.run)
        await trio.testing.wait_all_tasks_blocked()  # the client's nursery is open and waiting
        assert client._nursery is not None
        with pytest.raises(SubmitTimeout) as pending:
            await client.submit("transfer", {"to": B.peer_id, "amount": 1}, 1e-9)
        assert len(pending.value.tx_id) == 64 and int(pending.value.tx_id, 16) >= 0
        with pytest.raises(LanesBusy, match="nothing was submitted"):
            await client.submit("transfer", {"to": B.peer_id, "amount": 1}, 0.5)
        nursery.cancel_scope.cancel()
    store.close()
