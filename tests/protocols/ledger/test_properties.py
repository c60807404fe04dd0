"""Random sequences of valid and invalid transactions: replicas agree, money is conserved."""

from typing import Any

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.ledger import Ledger, decode_receipt
from tests.protocols.ledger.helpers import CHAIN, GENESIS, IDS, PIDS, tx

PROPS = settings(max_examples=120, deadline=None, derandomize=True)

# Biased towards members and funded accounts, so that most transactions apply and votes land.
who = st.sampled_from([0, 0, 1, 1, 2, 2, 3, 4, 5, 9])
nonce_delta = st.sampled_from([0, 0, 0, 0, 0, -1, 1])
lane = st.sampled_from([0, 0, 1, 255])
amount: Any = st.one_of(
    st.integers(1, 300), st.sampled_from([999, 1000, 1001, 6000, 0, -1, 2**63 - 1, "7", True])
)
target: Any = st.one_of(
    st.integers(0, len(IDS) - 1).map(lambda i: PIDS[i]),
    st.integers(0, len(IDS) - 1).map(lambda i: PIDS[i]),
    st.sampled_from(["junk", "", None, 3]),
)

action = st.one_of(
    st.tuples(st.just("transfer"), who, target, amount, nonce_delta, lane),
    st.tuples(st.just("transfer"), who, target, amount, nonce_delta, lane),
    st.tuples(st.sampled_from(["federation.join", "federation.leave"]), who, target, st.just(0), nonce_delta, lane),
    st.tuples(st.sampled_from(["federation.join", "federation.leave"]), who, target, st.just(0), nonce_delta, lane),
    st.tuples(
        st.sampled_from(["unknown-op", "wrong-chain", "bad-sig", "extra-arg"]), who, target, amount, nonce_delta, lane
    ),
    st.tuples(st.just("replay"), st.integers(0, 1000)),
    st.tuples(st.just("malformed"), st.binary(max_size=40)),
    st.tuples(st.just("activate")),
)


def build(ledger: Ledger, act: tuple[Any, ...], history: list[bytes]) -> bytes | None:
    """The op bytes for `act` given the reference ledger's state (None for activate)."""
    kind = act[0]
    if kind == "activate":
        return None
    if kind == "replay":
        return history[act[1] % len(history)] if history else b"\x90"
    if kind == "malformed":
        return act[1]
    _, i, to, amt, delta, ln = act
    nonce = max(1, ledger.next_nonce(PIDS[i], ln) + delta)
    if kind == "transfer":
        return tx(i, nonce, "transfer", {"to": to, "amount": amt}, lane=ln)
    if kind in ("federation.join", "federation.leave"):
        return tx(i, nonce, kind, {"peer": to}, lane=ln)
    if kind == "unknown-op":
        return tx(i, nonce, "mint", {"amount": amt}, lane=ln)
    if kind == "wrong-chain":
        return tx(i, nonce, "transfer", {"to": PIDS[0], "amount": 1}, lane=ln, chain=CHAIN + "x")
    if kind == "extra-arg":
        return tx(i, nonce, "transfer", {"to": PIDS[0], "amount": 1, "memo": amt}, lane=ln)
    assert kind == "bad-sig"
    m = msgpack.unpackb(tx(i, nonce, "transfer", {"to": PIDS[0], "amount": 1}, lane=ln))
    m["sig"] = bytes([m["sig"][0] ^ 1]) + m["sig"][1:]
    return msgpack.packb(m)


def check_invariants(ledger: Ledger) -> None:
    assert ledger.total_supply() == GENESIS.total_supply
    assert all(b >= 0 for b in ledger.accounts().values())
    committee = ledger.committee
    assert 1 <= len(committee) == len(set(committee))
    pending = ledger.pending_committee
    assert pending is None or 1 <= len(pending) == len(set(pending))


@PROPS
@given(st.lists(action, min_size=1, max_size=60), st.integers(0, 60))
def test_replicas_agree_and_money_is_conserved(actions: list[tuple[Any, ...]], split: int) -> None:
    a, b = Ledger(GENESIS), Ledger(GENESIS)
    restored: Ledger | None = None
    history: list[bytes] = []
    for step, act in enumerate(actions):
        if step == split:
            restored = Ledger(GENESIS)
            restored.restore(a.snapshot())
            assert restored.digest() == a.digest()
        op = build(a, act, history)
        replicas = [r for r in (a, b, restored) if r is not None]
        if op is None:
            results = [r.activate_pending() for r in replicas]
            assert all(x == results[0] for x in results)
        else:
            history.append(op)
            receipts = [r.apply(op) for r in replicas]
            assert all(x == receipts[0] for x in receipts)
            decode_receipt(receipts[0])
        check_invariants(a)
        digests = {r.digest() for r in replicas}
        assert len(digests) == 1
        assert a.snapshot() == b.snapshot()
    # A snapshot taken at the end restores to the same state and the same behaviour.
    c = Ledger(GENESIS)
    c.restore(a.snapshot())
    assert c.digest() == a.digest() and c.accounts() == a.accounts()
    for i in range(3):
        probe = tx(i, a.next_nonce(PIDS[i], 0), "transfer", {"to": PIDS[9], "amount": 1})
        assert c.apply(probe) == a.apply(probe)
    assert c.digest() == a.digest()


@PROPS
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 9), st.integers(1, 1200)), max_size=60))
def test_balances_match_a_simple_model(transfers: list[tuple[int, int, int]]) -> None:
    lg = Ledger(GENESIS, verify=lambda k, s, d: True)
    model = {p: 1000 for p in PIDS[:6]}
    for p in PIDS[:4]:
        model.setdefault(p, 0)
    for i, j, amt in transfers:
        r = decode_receipt(lg.apply(tx(i, lg.next_nonce(PIDS[i], 0), "transfer", {"to": PIDS[j], "amount": amt})))
        if model.get(PIDS[i], 0) >= amt:
            assert r.applied
            model[PIDS[i]] -= amt
            model[PIDS[j]] = model.get(PIDS[j], 0) + amt
        else:
            assert r.reason == "insufficient-funds"
    assert lg.accounts() == model
