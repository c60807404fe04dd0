"""Two federations with one chain id but different genesis files never exchange anything that counts
(issue 11, item 6): frames, nested signatures and transactions are all bound to the genesis hash."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from keys.envelope import SeqCounter
from keys.identity import Identity
from node.federation.host import FederationHost
from node.runtime import seal_messages
from node.federation.service import FederationError, read_genesis
from node.store import Store
from protocols.errors import ProtocolError
from protocols.federation import FederationWire, bundle_channel, send_sync
from protocols.fedsync import SyncRequest
from protocols.ledger import Genesis, decode_receipt, make_genesis, sign_tx
from protocols.pbft import Commit, Prepare, check_signatures, default_verifier, sign_message
from protocols.pbft.binding import ChainBinding

A, B, C, D = (Identity.from_seed(bytes([i]) * 32) for i in range(21, 25))
MEMBERS = tuple(i.peer_id for i in (A, B, C, D))
OURS = make_genesis("twin", MEMBERS, {A.peer_id: 1000})
THEIRS = make_genesis("twin", MEMBERS, {A.peer_id: 1001})  # same chain id, same members


def _driver(tmp_path: Path, genesis: Genesis, refused: list[tuple[str, Exception]]) -> FederationHost:
    noop: Any = lambda *a: None  # noqa: E731
    return FederationHost(
        B, genesis, Store(tmp_path / "b.db"), request_timeout=1.0, on_reply=noop, on_committed=noop, publish=noop,
        on_refused=lambda peer, exc: refused.append((peer, exc)),
    )


def test_the_two_genesis_files_share_a_chain_id() -> None:
    assert OURS.chain_id == THEIRS.chain_id and OURS.committee == THEIRS.committee and OURS.hash != THEIRS.hash


@pytest.mark.parametrize("kind", ["bundle", "sync"])
def test_a_frame_from_another_genesis_is_refused_as_wrong_genesis(tmp_path: Path, kind: str) -> None:
    refused: list[tuple[str, Exception]] = []
    d = _driver(tmp_path, OURS, refused)
    theirs = ChainBinding.of(THEIRS.hash)
    commit = Commit(0, 1, b"\x01" * 32, A.peer_id)
    frame = (
        seal_messages(A, FederationWire(theirs), bundle_channel(0), [commit], SeqCounter())[0] if kind == "bundle"
        else seal_messages(A, FederationWire(theirs), send_sync(B.peer_id, SyncRequest(0)).channel, [SyncRequest(0)], SeqCounter())[0]
    )
    d.on_frame(A.peer_id, frame)
    assert len(refused) == 1
    peer, exc = refused[0]
    assert peer == A.peer_id and isinstance(exc, ProtocolError) and exc.reason == "wrong-genesis"
    assert d.runtime._inbox.statistics().current_buffer_used == 0  # nothing reached the replica

    # The same message bound to our genesis is taken.
    refused.clear()
    d.on_frame(A.peer_id, seal_messages(A, d.wire, bundle_channel(0), [commit], SeqCounter())[0])
    assert refused == [] and d.runtime._inbox.statistics().current_buffer_used == 1


def test_nested_signatures_do_not_verify_under_another_genesis() -> None:
    ours, theirs = ChainBinding.of(OURS.hash), ChainBinding.of(THEIRS.hash)
    prepare = sign_message(Prepare(0, 1, b"\x02" * 32, A.peer_id), theirs.signer(A.sign))
    assert check_signatures(prepare, theirs.verifier(default_verifier)) is None
    assert check_signatures(prepare, ours.verifier(default_verifier)) == "bad-signature"


def test_a_transaction_signed_for_another_genesis_is_refused(tmp_path: Path) -> None:
    refused: list[tuple[str, Exception]] = []
    d = _driver(tmp_path, OURS, refused)
    op = sign_tx(A, chain="twin", genesis=THEIRS.hash, lane=0, nonce=1, op="transfer", args={"to": B.peer_id, "amount": 1})
    receipt = decode_receipt(d.ledger.apply(op))
    assert (receipt.status, receipt.reason) == ("refused", "wrong-genesis")
    ok = sign_tx(A, chain="twin", genesis=OURS.hash, lane=0, nonce=1, op="transfer", args={"to": B.peer_id, "amount": 1})
    assert decode_receipt(d.ledger.apply(ok)).status == "applied"


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"\xff\xfe\x00binary", "not UTF-8"), (b"{" * 10, "genesis"), (b" " * ((16 << 20) + 1), "larger than")],
)
def test_a_bad_genesis_file_in_the_home_is_a_clear_federation_error(tmp_path: Path, content: bytes, message: str) -> None:
    (tmp_path / "genesis.json").write_bytes(content)
    with pytest.raises(FederationError, match=message):
        read_genesis(tmp_path)

