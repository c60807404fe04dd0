import msgpack
import pytest

from protocols.ledger import (
    BAD_ARGS,
    BAD_NONCE,
    BAD_SIGNATURE,
    DEFAULT_OPS,
    INSUFFICIENT_FUNDS,
    MALFORMED,
    OP_FAILED,
    UNKNOWN_ACCOUNT,
    UNKNOWN_OP,
    WRONG_CHAIN,
    WRONG_GENESIS,
    Ledger,
    LedgerState,
    Tx,
    decode_tx,
    make_genesis,
)
from protocols.pbft.app import Application
from tests.protocols.ledger.helpers import CHAIN, COMMITTEE, FUNDED, GENESIS, PIDS, apply, outcome, transfer, tx


def fresh() -> Ledger:
    return Ledger(GENESIS)


def test_is_an_application_and_starts_from_genesis() -> None:
    ledger: Application = fresh()
    assert isinstance(ledger, Ledger)
    lg = fresh()
    assert lg.genesis is GENESIS
    assert lg.committee == tuple(COMMITTEE) and lg.pending_committee is None
    assert lg.balance(PIDS[0]) == 1000 and lg.balance(PIDS[9]) == 0
    assert lg.has_account(PIDS[5]) and not lg.has_account(PIDS[9])
    assert lg.total_supply() == 6000
    assert lg.next_nonce(PIDS[0], 0) == 1


def test_committee_members_get_an_empty_account() -> None:
    g = make_genesis(CHAIN, [PIDS[7]], {PIDS[0]: 5})
    lg = Ledger(g)
    assert lg.accounts() == {PIDS[0]: 5, PIDS[7]: 0}


def test_transfer_happy_path() -> None:
    lg = fresh()
    data = transfer(0, 1, 9, 300)
    r = apply(lg, data)
    assert r.applied and r.reason == "" and r.tx_id == decode_tx(data).id
    assert lg.balance(PIDS[0]) == 700 and lg.balance(PIDS[9]) == 300
    assert lg.has_account(PIDS[9])
    assert lg.next_nonce(PIDS[0], 0) == 2
    # The new account can spend what it received.
    assert outcome(lg, transfer(9, 1, 1, 300)) == "applied"
    assert lg.balance(PIDS[9]) == 0 and lg.balance(PIDS[1]) == 1300 and lg.has_account(PIDS[9])
    assert lg.total_supply() == 6000


def test_whole_balance_and_self_transfer() -> None:
    lg = fresh()
    assert outcome(lg, transfer(0, 1, 0, 1000)) == "applied"
    assert lg.balance(PIDS[0]) == 1000
    assert outcome(lg, transfer(0, 2, 1, 1000)) == "applied"
    assert lg.balance(PIDS[0]) == 0
    assert outcome(lg, transfer(0, 3, 0, 1)) == INSUFFICIENT_FUNDS


def test_malformed_bytes() -> None:
    lg = fresh()
    before = lg.digest()
    for junk in (b"", b"\xc1", b"\x00", msgpack.packb({"v": 1}), b"x" * 100_000, transfer(0, 1, 1, 1)[:-1]):
        r = apply(lg, junk)
        assert (r.tx_id, r.status, r.reason) == ("", "refused", MALFORMED)
    assert apply(lg, "not bytes").reason == MALFORMED  # type: ignore[arg-type]
    assert lg.digest() == before


def test_wrong_chain_consumes_nothing() -> None:
    lg = fresh()
    before = lg.digest()
    assert outcome(lg, tx(0, 1, "transfer", {"to": PIDS[1], "amount": 1}, chain="other")) == WRONG_CHAIN
    assert lg.digest() == before
    assert outcome(lg, transfer(0, 1, 1, 1)) == "applied"


def test_same_chain_id_other_genesis_is_refused_and_consumes_nothing() -> None:
    """Two chains may share a chain id; a tx signed against another genesis never applies here."""
    lg = fresh()
    other = make_genesis(CHAIN, COMMITTEE, {**FUNDED, PIDS[0]: 999}, checkpoint_interval=16)
    assert other.chain_id == GENESIS.chain_id and other.hash != GENESIS.hash
    before = lg.digest()
    assert outcome(lg, tx(0, 1, "transfer", {"to": PIDS[1], "amount": 1}, genesis=other.hash)) == WRONG_GENESIS
    assert lg.digest() == before
    assert outcome(lg, transfer(0, 1, 1, 1)) == "applied"


def test_bad_signature_consumes_nothing() -> None:
    lg = fresh()
    good = decode_tx(transfer(0, 1, 1, 1))
    forged_sig = Tx(good.chain, good.genesis, good.sender, good.lane, good.nonce, good.op, good.args, bytes(64))
    m = msgpack.unpackb(transfer(0, 1, 1, 1))
    m["sig"] = bytes(64)
    before = lg.digest()
    assert apply(lg, msgpack.packb(m)).reason == BAD_SIGNATURE
    assert apply(lg, msgpack.packb(m)).tx_id == forged_sig.id
    # Someone else's signature in this sender's name.
    m2 = msgpack.unpackb(transfer(0, 1, 1, 1))
    m2["from"] = PIDS[1]
    assert apply(lg, msgpack.packb(m2)).reason == BAD_SIGNATURE
    # A sender that is not a peer id at all.
    m2["from"] = "nobody"
    assert apply(lg, msgpack.packb(m2)).reason == BAD_SIGNATURE
    assert lg.digest() == before
    assert outcome(lg, transfer(0, 1, 1, 1)) == "applied"


def test_replay_and_gap_are_bad_nonce_and_change_nothing() -> None:
    lg = fresh()
    first = transfer(0, 1, 1, 10)
    assert outcome(lg, first) == "applied"
    after = lg.digest()
    assert outcome(lg, first) == BAD_NONCE  # the same signed tx applies once
    assert outcome(lg, transfer(0, 3, 1, 10)) == BAD_NONCE  # gap
    assert outcome(lg, transfer(0, 1, 2, 10)) == BAD_NONCE  # an old nonce, a new tx
    assert lg.digest() == after
    assert lg.balance(PIDS[1]) == 1010
    assert outcome(lg, transfer(0, 2, 1, 10)) == "applied"


def test_lanes_are_independent() -> None:
    lg = fresh()
    assert outcome(lg, transfer(0, 1, 1, 1, lane=0)) == "applied"
    assert outcome(lg, transfer(0, 1, 1, 1, lane=7)) == "applied"
    assert outcome(lg, transfer(0, 1, 1, 1, lane=255)) == "applied"
    assert outcome(lg, transfer(0, 2, 1, 1, lane=7)) == "applied"
    assert outcome(lg, transfer(0, 2, 1, 1, lane=0)) == "applied"
    assert (lg.next_nonce(PIDS[0], 0), lg.next_nonce(PIDS[0], 7), lg.next_nonce(PIDS[0], 255)) == (3, 3, 2)
    assert lg.next_nonce(PIDS[0], 1) == 1
    assert lg.next_nonce(PIDS[1], 0) == 1


def test_unknown_account_consumes_nothing() -> None:
    # Keys cost nothing to make: a sender without an account must not grow the nonce table.
    lg = fresh()
    before = lg.snapshot()
    assert outcome(lg, transfer(8, 1, 1, 1)) == UNKNOWN_ACCOUNT
    assert lg.next_nonce(PIDS[8], 0) == 1
    assert not lg.has_account(PIDS[8])
    assert lg.snapshot() == before
    assert outcome(lg, transfer(8, 1, 1, 1)) == UNKNOWN_ACCOUNT


def test_insufficient_funds_consumes_the_nonce() -> None:
    lg = fresh()
    assert outcome(lg, transfer(0, 1, 1, 1001)) == INSUFFICIENT_FUNDS
    assert lg.balance(PIDS[0]) == 1000
    assert lg.next_nonce(PIDS[0], 0) == 2
    assert outcome(lg, transfer(0, 1, 1, 1000)) == BAD_NONCE
    assert outcome(lg, transfer(0, 2, 1, 1000)) == "applied"


def test_unknown_op_consumes_the_nonce() -> None:
    lg = fresh()
    assert outcome(lg, tx(0, 1, "mint", {"amount": 5})) == UNKNOWN_OP
    assert outcome(lg, tx(8, 1, "mint", {"amount": 5})) == UNKNOWN_ACCOUNT  # the account comes first
    assert lg.next_nonce(PIDS[0], 0) == 2
    assert lg.total_supply() == 6000


@pytest.mark.parametrize(
    "args",
    [
        {},
        {"to": PIDS[1]},
        {"amount": 1},
        {"to": PIDS[1], "amount": 1, "memo": "x"},
        {"to": PIDS[1], "amount": 0},
        {"to": PIDS[1], "amount": -5},
        {"to": PIDS[1], "amount": 2**63},
        {"to": PIDS[1], "amount": True},
        {"to": PIDS[1], "amount": "1"},
        {"to": "not-a-peer", "amount": 1},
        {"to": PIDS[1] + "1", "amount": 1},
        {"to": [PIDS[1]], "amount": 1},
        {"to": {"x": 1}, "amount": 1},
        {"to": None, "amount": 1},
        {"to": PIDS[1].encode(), "amount": 1},
    ],
)
def test_transfer_bad_args(args: dict[str, object]) -> None:
    lg = fresh()
    before = lg.accounts()
    assert outcome(lg, tx(0, 1, "transfer", args)) == BAD_ARGS
    assert lg.accounts() == before
    assert lg.next_nonce(PIDS[0], 0) == 2


def test_check_order_bad_args_vs_funds() -> None:
    # A sender without an account is refused before the operation looks at its args.
    lg = fresh()
    assert outcome(lg, tx(8, 1, "transfer", {})) == UNKNOWN_ACCOUNT


class Boom:
    name = "boom"

    def check(self, state: LedgerState, tx: Tx) -> str | None:
        raise RuntimeError("bug")

    def apply(self, state: LedgerState, tx: Tx) -> None:
        pass


class Burn:
    """A plugin op: proves the registry is open (not used by the defaults)."""

    name = "burn-memo"

    def check(self, state: LedgerState, tx: Tx) -> str | None:
        return None if set(tx.args) == {"memo"} else BAD_ARGS

    def apply(self, state: LedgerState, tx: Tx) -> None:
        state.accounts[tx.sender] += 0


def test_registry_is_open_and_a_buggy_op_cannot_crash_apply() -> None:
    lg = Ledger(GENESIS, ops={**DEFAULT_OPS, "boom": Boom(), "burn-memo": Burn()})
    assert outcome(lg, tx(0, 1, "boom")) == OP_FAILED
    assert outcome(lg, tx(0, 2, "burn-memo", {"memo": "hi"})) == "applied"
    assert outcome(lg, tx(0, 3, "burn-memo", {})) == BAD_ARGS
    assert outcome(fresh(), tx(0, 1, "burn-memo", {"memo": "hi"})) == UNKNOWN_OP


def test_verifier_is_injectable() -> None:
    lg = Ledger(GENESIS, verify=lambda key, sig, data: False)
    assert outcome(lg, transfer(0, 1, 1, 1)) == BAD_SIGNATURE
    lg = Ledger(GENESIS, verify=lambda key, sig, data: True)
    m = msgpack.unpackb(transfer(0, 1, 1, 1))
    m["sig"] = bytes(64)
    assert outcome(lg, msgpack.packb(m)) == "applied"


def test_snapshot_restore_round_trip() -> None:
    lg = fresh()
    for op in [transfer(0, 1, 9, 5), transfer(1, 1, 2, 7, lane=3), transfer(8, 1, 1, 1)]:
        lg.apply(op)
    snap = lg.snapshot()
    other = fresh()
    other.restore(snap)
    assert other.snapshot() == snap and other.digest() == lg.digest()
    assert other.accounts() == lg.accounts()
    assert other.next_nonce(PIDS[1], 3) == 2 and other.next_nonce(PIDS[8], 0) == 1
    nxt = transfer(9, 1, 0, 5)
    assert lg.apply(nxt) == other.apply(nxt)
    assert lg.digest() == other.digest()


def test_snapshot_is_canonical_regardless_of_history_order() -> None:
    a, b = fresh(), fresh()
    ops = [transfer(0, 1, 9, 5), transfer(1, 1, 8, 7), transfer(2, 1, 7, 1, lane=4)]
    for op in ops:
        a.apply(op)
    for op in reversed(ops):
        b.apply(op)
    assert a.snapshot() == b.snapshot()


def test_restore_refuses_garbage_and_keeps_state() -> None:
    lg = fresh()
    lg.apply(transfer(0, 1, 9, 5))
    before = lg.digest()
    good = lg.snapshot()
    obj = msgpack.unpackb(good)
    other_chain = Ledger(make_genesis("other", COMMITTEE, {PIDS[0]: 1000}))
    bad = [
        b"",
        b"\xc1",
        b"garbage",
        msgpack.packb([]),
        msgpack.packb([2, *obj[1:]]),
        other_chain.snapshot(),
        msgpack.packb([obj[0], obj[1], [[PIDS[0], 10**6]], *obj[3:]]),  # supply differs
        msgpack.packb([obj[0], obj[1], [[PIDS[0], -1]], *obj[3:]]),
        msgpack.packb([*obj[:3], [[PIDS[0], 999, 1]], *obj[4:]]),  # lane out of range
        msgpack.packb([*obj[:4], [], *obj[5:]]),  # empty committee
        msgpack.packb([*obj[:2], list(reversed(obj[2])), *obj[3:]]),  # not canonical
        msgpack.packb([*obj[:6], "x", obj[7]]),
        good + b"\x00",
    ]
    for data in bad:
        with pytest.raises(ValueError):
            lg.restore(data)
        assert lg.digest() == before
    lg.restore(good)
    assert lg.digest() == before
