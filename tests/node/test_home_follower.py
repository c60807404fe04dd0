"""A follower's persisted state is checked at start like a replica's (issue 11, item 7): the ledger
it holds must be the checkpoint it synced, whose digest and CHECKPOINT signatures it keeps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from keys.identity import Identity
from node.federation.host import FederationHost
from node.runtime import Call, Timer, clock
from node.home import StateCorrupt, verify_federation_state
from node.store import Store
from protocols.codec import decode, encode
from protocols.fedsync import Install, SyncState
from protocols.ledger import Genesis, make_genesis, sign_tx
from protocols.pbft import Request, encode_message
from tests.node.test_home import move_coins

MEMBER = Identity.from_seed(b"\x31" * 32)
FOLLOWER = Identity.from_seed(b"\x32" * 32)
K = 2


class _Links:
    def send(self, peer: str, data: bytes) -> None:
        pass


def _driver(store: Store, genesis: Genesis, me: Identity) -> FederationHost:
    noop: Any = lambda *a: None  # noqa: E731
    d = FederationHost(me, genesis, store, request_timeout=1.0, on_reply=noop, on_committed=noop, publish=noop, on_refused=noop)
    d.links = _Links()  # type: ignore[assignment]
    return d


def _synced_follower(tmp_path: Path) -> tuple[Store, Genesis]:
    """A committee of one runs four transfers (stable checkpoint at 4); a follower installs that
    checkpoint as sync would hand it over, and persists its state."""
    genesis = make_genesis("follow", (MEMBER.peer_id,), {MEMBER.peer_id: 1000}, K)
    member_store = Store(tmp_path / "member.db")
    store = Store(tmp_path / "follower.db")

    async def main() -> None:
        m = _driver(member_store, genesis, MEMBER)
        for nonce in range(1, 5):
            tx = sign_tx(MEMBER, chain="follow", genesis=genesis.hash, lane=0, nonce=nonce, op="transfer",
                         args={"to": FOLLOWER.peer_id, "amount": 10})
            m.turn([Call(0, Request(f"{MEMBER.peer_id}/0", nonce, tx))], clock())
            m.turn([Timer("batch")], clock())
        r = m.replica
        assert r is not None and r.low_watermark == 4
        seq, digest = r.stable_checkpoint
        st = SyncState(m.epoch, m.members, r.view, seq, digest, r.stable_snapshot, r.stable_table,
                       tuple(encode_message(c) for c in r.stable_proof))
        f = _driver(store, genesis, FOLLOWER)
        assert f.replica is None
        f.machine._install(Install(st, r.view), clock())
        assert f.machine.synced == 4
        store.pbft_commit([], [], [], (f.position, f.machine.dump()))

    trio.run(main)
    member_store.close()
    return store, genesis


def _edit(store: Store, change: Any) -> None:
    state, _ = store.pbft_load()
    assert state is not None
    dump = decode(state, max_size=1 << 31, max_depth=4, max_items=1 << 20)
    change(dump)
    store.pbft_commit([], [], [], (4, encode(dump)))


def test_a_synced_follower_state_verifies(tmp_path: Path) -> None:
    store, genesis = _synced_follower(tmp_path)
    verify_federation_state(store, genesis)


def test_a_follower_ledger_edited_to_keep_the_supply_is_refused(tmp_path: Path) -> None:
    store, genesis = _synced_follower(tmp_path)
    _edit(store, lambda d: d.update(ledger=move_coins(d["ledger"], 5)))
    with pytest.raises(StateCorrupt, match="not the state it synced"):
        verify_federation_state(store, genesis)


def test_a_follower_certified_snapshot_edited_with_its_ledger_is_refused(tmp_path: Path) -> None:
    store, genesis = _synced_follower(tmp_path)

    def both(d: dict[str, Any]) -> None:
        d["ledger"] = move_coins(d["ledger"], 5)
        d["certified"]["snapshot"] = d["ledger"]

    _edit(store, both)
    with pytest.raises(StateCorrupt, match="does not match its certified digest"):
        verify_federation_state(store, genesis)


def test_a_follower_proof_with_a_digest_edited_to_match_is_refused(tmp_path: Path) -> None:
    from protocols.pbft.view_checks import state_digest

    store, genesis = _synced_follower(tmp_path)

    def all_three(d: dict[str, Any]) -> None:
        d["ledger"] = move_coins(d["ledger"], 5)
        d["certified"]["snapshot"] = d["ledger"]
        d["certified"]["digest"] = state_digest(d["ledger"], d["certified"]["table"])

    _edit(store, all_three)
    with pytest.raises(StateCorrupt, match="not certified"):
        verify_federation_state(store, genesis)
