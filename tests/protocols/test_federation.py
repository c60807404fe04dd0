"""The federation machine's own rules (protocols/federation.py), each on its own. Committee changes,
follower sync and epoch switches under faults run in the simulator (tests/sim/federation.py)."""

from __future__ import annotations

from typing import Any

from keys.identity import Identity
from protocols.effects import Journal, Note, Refused, Send
from protocols.federation import FederationNode
from protocols.fedsync import SyncOffer, SyncRequest
from protocols.ledger import make_genesis, sign_tx
from protocols.pbft import Prepare, Request, SetTimer
from protocols.pbft.base import T_VIEW_CHANGE
from protocols.pbft.binding import ChainBinding
from protocols.pbft.signing import default_verifier

IDS = [Identity.from_seed(bytes([40 + i]) * 32) for i in range(5)]
PIDS = [i.peer_id for i in IDS]


def node(members: int = 4, me: int = 0) -> FederationNode:
    genesis = make_genesis("fed", tuple(PIDS[:members]), {p: 1000 for p in PIDS})
    binding = ChainBinding.of(genesis.hash)
    return FederationNode(
        PIDS[me], genesis, request_timeout=1.0, sign=binding.signer(IDS[me].sign),
        verify=binding.verifier(default_verifier),
    )


def request(n: FederationNode, who: int = 4, nonce: int = 1) -> Request:
    tx = sign_tx(IDS[who], chain="fed", genesis=n.genesis.hash, lane=0, nonce=nonce, op="transfer",
                 args={"to": PIDS[0], "amount": 1})
    return Request(f"{PIDS[who]}/0", nonce, tx)


def kinds(effects: list[Any]) -> list[str]:
    return [type(e).__name__ for e in effects]


def test_a_view_change_timer_found_long_overdue_is_postponed_once() -> None:
    n = node()
    out = n.on_timer(T_VIEW_CHANGE, due=0.0, now=5.0)  # 5 s late: the process was paused
    assert kinds(out) == ["Note", "SetTimer"] and isinstance(out[1], SetTimer) and out[1].at == 6.0
    assert isinstance(out[0], Note) and "late" in out[0].text
    again = n.on_timer(T_VIEW_CHANGE, due=6.0, now=8.0)  # late again: this time it counts
    assert isinstance(again[0], Journal) and again[0].kind == "timer"


def test_what_reaches_the_replica_is_screened() -> None:
    n = node()
    outsider = n.on_bundle(PIDS[4], 0, [Prepare(0, 1, b"\x01" * 32, PIDS[4])], now=0.0)
    assert [(e.reason) for e in outsider if isinstance(e, Refused)] == ["not-a-member"]
    unsigned = n.on_bundle(PIDS[1], 0, [Prepare(0, 1, b"\x01" * 32, PIDS[1])], now=0.0)
    assert [(e.reason) for e in unsigned if isinstance(e, Refused)] == ["unsigned"]
    forwarded_by_stranger = n.on_bundle(PIDS[4], 0, [request(n, who=3)], now=0.0)
    assert [e.reason for e in forwarded_by_stranger if isinstance(e, Refused)] == ["not-the-client"]
    from_its_client = n.on_bundle(PIDS[4], 0, [request(n, who=4)], now=0.0)
    assert isinstance(from_its_client[0], Journal) and from_its_client[0].kind == "request"
    assert not n.sync_wanted
    n.on_bundle(PIDS[2], 8, [Prepare(0, 9, b"\x01" * 32, PIDS[2])], now=0.0)  # a newer epoch
    assert n.sync_wanted


def test_a_replica_that_waits_without_progress_looks_for_a_newer_state() -> None:
    n = node()
    n.on_local_request(request(n), now=0.0)  # pending; nobody else is there to order it
    asked: list[int] = []
    for tick in range(1, 7):
        out = n.on_tick(float(tick), None)
        if any(isinstance(e, Send) and isinstance(e.message, SyncRequest) for e in out):
            asked.append(tick)
    assert asked and asked[0] >= 4, asked  # after STALLED_TICKS rounds, not at once


def test_sync_answers_are_rate_limited_per_peer() -> None:
    n = node()
    first = n.on_sync(PIDS[4], SyncRequest(0), now=10.0)
    assert len(first) == 1 and isinstance(first[0], Send) and isinstance(first[0].message, SyncOffer)
    assert n.on_sync(PIDS[4], SyncRequest(0), now=10.05) == []
    assert len(n.on_sync(PIDS[3], SyncRequest(0), now=10.05)) == 1  # another peer is served
    assert len(n.on_sync(PIDS[4], SyncRequest(0), now=10.2)) == 1


def test_the_journal_replays_to_the_same_state() -> None:
    n = node(members=1)
    journal: list[tuple[str, str, bytes, float]] = []
    now = 0.0
    for nonce in range(1, 4):
        for e in n.on_local_request(request(n, nonce=nonce), now) or []:
            if isinstance(e, Journal):
                journal.append((e.kind, e.sender, e.payload, now))
        now += 0.01
        for e in n.on_timer("batch", due=now, now=now):
            if isinstance(e, Journal):
                journal.append((e.kind, e.sender, e.payload, now))
    assert n.position == 3
    again = node(members=1)
    assert again.recover(None, journal) is not None
    assert (again.position, again.ledger.digest()) == (n.position, n.ledger.digest())
