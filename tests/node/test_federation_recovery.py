"""The replica driver's write-ahead log: a crash before (and after) the first stable checkpoint
loses nothing it executed, by replaying the logged inputs (a committee of one: no network)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

from keys.identity import Identity
from node.federation.host import FederationHost
from node.runtime import Call, Timer, clock
from node.store import Store
from protocols.ledger import make_genesis, sign_tx
from protocols.pbft import Request

ME = Identity.from_seed(b"\x07" * 32)
OTHER = Identity.from_seed(b"\x08" * 32).peer_id


class _Links:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    def send(self, peer: str, data: bytes) -> None:
        self.sent.append((peer, data))


def _driver(store: Store, k: int) -> FederationHost:
    genesis = make_genesis("rec", (ME.peer_id,), {ME.peer_id: 1000}, k)
    noop: Any = lambda *a: None  # noqa: E731
    d = FederationHost(ME, genesis, store, request_timeout=1.0, on_reply=noop, on_committed=noop, publish=noop, on_refused=noop)
    d.links = _Links()  # type: ignore[assignment]
    return d


def _transfer(d: FederationHost, nonce: int) -> None:
    tx = sign_tx(ME, chain="rec", genesis=d.genesis.hash, lane=0, nonce=nonce, op="transfer", args={"to": OTHER, "amount": 10})
    d.turn([Call(0, Request(f"{ME.peer_id}/0", nonce, tx))], clock())
    d.turn([Timer("batch")], clock())  # the primary's batch timer: order what is queued


def _run(tmp_path: Path, k: int, count: int) -> None:
    async def main() -> None:
        with Store(tmp_path / "s.db") as store:
            d = _driver(store, k)
            for nonce in range(1, count + 1):
                _transfer(d, nonce)
            assert d.ledger.balance(OTHER) == 10 * count
            assert d.replica is not None and d.replica.last_executed == count
        # kill -9: nothing but the store survives.
        with Store(tmp_path / "s.db") as store:
            again = _driver(store, k)
            assert again.replica is not None and again.replica.last_executed == count
            assert again.ledger.balance(OTHER) == 10 * count
            assert again.ledger.digest() == d.ledger.digest()
            assert again.ledger.next_nonce(ME.peer_id, 0) == count + 1
            assert len(store.ledger_batches(0, 100)) == count

    trio.run(main)


def test_recovery_before_the_first_checkpoint(tmp_path: Path) -> None:
    _run(tmp_path, k=128, count=3)


def test_recovery_after_checkpoints(tmp_path: Path) -> None:
    _run(tmp_path, k=2, count=5)  # dumps at 2 and 4, then one logged input to replay
