from protocols.ledger import (
    ALREADY_MEMBER,
    BAD_ARGS,
    COMMITTEE_TOO_LARGE,
    COMMITTEE_TOO_SMALL,
    NO_SUCH_MEMBER,
    NOT_A_MEMBER,
    UNKNOWN_ACCOUNT,
    Ledger,
    make_genesis,
)
from keys.identity import Identity
from tests.protocols.ledger.helpers import CHAIN, COMMITTEE, GENESIS, PIDS, outcome, tx


class Voter:
    """Tracks each identity's next nonce on lane 0."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def __call__(self, who: int, op: str, peer: object) -> str:
        nonce = self.ledger.next_nonce(PIDS[who], 0)
        return outcome(self.ledger, tx(who, nonce, op, {"peer": peer}, genesis=self.ledger.genesis.hash))

    def join(self, who: int, peer: int) -> str:
        return self(who, "federation.join", PIDS[peer])

    def leave(self, who: int, peer: int) -> str:
        return self(who, "federation.leave", PIDS[peer])


def test_join_needs_f_plus_one_member_votes() -> None:
    lg = Ledger(GENESIS)  # n = 4, f = 1: two votes
    v = Voter(lg)
    assert v.join(0, 8) == "applied"
    assert lg.pending_committee is None and lg.join_votes(PIDS[8]) == {PIDS[0]}
    assert v.join(0, 8) == "applied"  # re-voting is harmless
    assert lg.pending_committee is None and lg.join_votes(PIDS[8]) == {PIDS[0]}
    assert v.join(1, 8) == "applied"
    assert lg.pending_committee == (*COMMITTEE, PIDS[8])
    assert lg.join_votes(PIDS[8]) == frozenset()  # cleared when the change lands
    assert lg.committee == tuple(COMMITTEE)  # not yet active
    assert lg.has_account(PIDS[8]) and lg.balance(PIDS[8]) == 0
    assert v.join(2, 8) == "applied"  # already pending: harmless, changes nothing
    assert lg.pending_committee == (*COMMITTEE, PIDS[8]) and lg.join_votes(PIDS[8]) == frozenset()
    assert lg.total_supply() == 6000


def test_join_with_one_member_needs_one_vote_and_seven_need_three() -> None:
    lg = Ledger(make_genesis(CHAIN, [PIDS[0]], {}))
    assert Voter(lg).join(0, 1) == "applied"
    assert lg.pending_committee == (PIDS[0], PIDS[1])
    lg = Ledger(make_genesis(CHAIN, PIDS[:7], {}))  # f = 2
    v = Voter(lg)
    assert v.join(0, 9) == v.join(1, 9) == "applied"
    assert lg.pending_committee is None
    assert v.join(6, 9) == "applied"
    assert lg.pending_committee == (*PIDS[:7], PIDS[9])


def test_non_member_vote_refused() -> None:
    lg = Ledger(GENESIS)
    v = Voter(lg)
    assert v.join(4, 8) == NOT_A_MEMBER  # funded, not a member
    assert v.leave(4, 0) == NOT_A_MEMBER
    assert v.join(8, 9) == UNKNOWN_ACCOUNT  # no account at all: refused before the op
    assert lg.join_votes(PIDS[8]) == frozenset() and lg.pending_committee is None
    assert lg.next_nonce(PIDS[4], 0) == 3  # refusals after the nonce check consume it


def test_join_refusals() -> None:
    lg = Ledger(GENESIS)
    v = Voter(lg)
    assert v.join(0, 1) == ALREADY_MEMBER
    assert v(0, "federation.join", "not-a-peer") == BAD_ARGS
    assert v(0, "federation.join", 5) == BAD_ARGS
    assert v(0, "federation.join", [PIDS[8]]) == BAD_ARGS
    assert outcome(lg, tx(0, lg.next_nonce(PIDS[0], 0), "federation.join", {"peer": PIDS[8], "x": 1})) == BAD_ARGS
    assert outcome(lg, tx(0, lg.next_nonce(PIDS[0], 0), "federation.join", {})) == BAD_ARGS


def test_self_leave_lands_at_once() -> None:
    lg = Ledger(GENESIS)
    v = Voter(lg)
    assert v.leave(2, 2) == "applied"
    assert lg.pending_committee == (PIDS[0], PIDS[1], PIDS[3])
    assert lg.committee == tuple(COMMITTEE)
    assert v.leave(2, 2) == "applied"  # still a current member; already removed in pending: no-op
    assert lg.pending_committee == (PIDS[0], PIDS[1], PIDS[3])
    assert lg.activate_pending() == (PIDS[0], PIDS[1], PIDS[3])
    assert v.leave(2, 2) == NOT_A_MEMBER


def test_removal_needs_f_plus_one_votes() -> None:
    lg = Ledger(GENESIS)
    v = Voter(lg)
    assert v.leave(0, 3) == "applied"
    assert lg.pending_committee is None and lg.leave_votes(PIDS[3]) == {PIDS[0]}
    assert v.leave(0, 3) == "applied"
    assert lg.pending_committee is None
    assert v.leave(1, 3) == "applied"
    assert lg.pending_committee == tuple(PIDS[:3])
    assert lg.leave_votes(PIDS[3]) == frozenset()
    assert v.leave(2, 3) == "applied"  # already removed in pending
    assert v.leave(0, 8) == NO_SUCH_MEMBER
    assert v(0, "federation.leave", "junk") == BAD_ARGS


def test_committee_too_small() -> None:
    lg = Ledger(make_genesis(CHAIN, [PIDS[0]], {}))
    v = Voter(lg)
    assert v.leave(0, 0) == COMMITTEE_TOO_SMALL
    assert lg.pending_committee is None
    lg = Ledger(make_genesis(CHAIN, PIDS[:2], {}))  # f = 0: one vote removes
    v = Voter(lg)
    assert v.leave(0, 1) == "applied"
    assert lg.pending_committee == (PIDS[0],)
    assert v.leave(1, 0) == COMMITTEE_TOO_SMALL  # would empty the pending committee
    assert v.leave(0, 0) == COMMITTEE_TOO_SMALL


def test_committee_too_large() -> None:
    many = [Identity.from_seed(i.to_bytes(2, "big") * 16).peer_id for i in range(100, 164)]
    lg = Ledger(make_genesis(CHAIN, [PIDS[0], *many[:63]], {}))  # 64 members, f = 21
    assert outcome(lg, tx(0, 1, "federation.join", {"peer": PIDS[8]}, genesis=lg.genesis.hash)) == "applied"  # a vote that does not land
    assert lg.join_votes(PIDS[8]) == {PIDS[0]}
    lg = Ledger(make_genesis(CHAIN, [PIDS[0], *many[:63]], {}), verify=lambda k, s, d: True)
    lg._state.join_votes[PIDS[8]] = set(many[:21])
    assert outcome(lg, tx(0, 1, "federation.join", {"peer": PIDS[8]}, genesis=lg.genesis.hash)) == COMMITTEE_TOO_LARGE


def test_activate_pending() -> None:
    lg = Ledger(GENESIS)
    v = Voter(lg)
    assert lg.activate_pending() is None
    assert v.join(0, 8) == v.join(1, 8) == "applied"
    assert v.leave(3, 3) == "applied"
    assert v.join(0, 9) == "applied"  # an outstanding vote
    assert lg.pending_committee == (PIDS[0], PIDS[1], PIDS[2], PIDS[8])
    new = lg.activate_pending()
    assert new == (PIDS[0], PIDS[1], PIDS[2], PIDS[8]) == lg.committee
    assert lg.pending_committee is None
    assert lg.join_votes(PIDS[9]) == frozenset()  # votes are relative to the old committee
    assert lg.activate_pending() is None
    # The new member votes; the one that left cannot.
    assert v.join(8, 9) == "applied"
    assert v.join(3, 9) == NOT_A_MEMBER
    assert v.join(2, 9) == "applied"
    assert lg.pending_committee == (*new, PIDS[9])


def test_join_of_a_member_pending_removal_re_adds_it() -> None:
    lg = Ledger(GENESIS)
    v = Voter(lg)
    assert v.leave(3, 3) == "applied"
    assert lg.pending_committee == tuple(PIDS[:3])
    assert v.join(0, 3) == "applied" and lg.pending_committee == tuple(PIDS[:3])
    assert v.join(1, 3) == "applied"
    assert lg.pending_committee == (*PIDS[:3], PIDS[3])
    assert v.join(2, 3) == ALREADY_MEMBER


def test_snapshot_includes_pending_and_votes() -> None:
    lg = Ledger(GENESIS)
    v = Voter(lg)
    assert v.join(0, 8) == "applied"  # a vote only
    s1 = lg.snapshot()
    other = Ledger(GENESIS)
    other.restore(s1)
    assert other.join_votes(PIDS[8]) == {PIDS[0]}
    assert Voter(other).join(1, 8) == "applied"
    assert other.pending_committee == (*COMMITTEE, PIDS[8])
    assert v.leave(0, 1) == "applied"
    assert v.join(1, 8) == "applied"
    restored = Ledger(GENESIS)
    restored.restore(lg.snapshot())
    assert restored.pending_committee == (*COMMITTEE, PIDS[8])
    assert restored.leave_votes(PIDS[1]) == {PIDS[0]}
    assert restored.digest() == lg.digest()
    assert restored.activate_pending() == lg.activate_pending()
    assert restored.digest() == lg.digest()


def test_votes_alone_change_the_digest() -> None:
    # Two ledgers differing only in an outstanding vote must not share a digest.
    a, b = Ledger(GENESIS, verify=lambda k, s, d: True), Ledger(GENESIS, verify=lambda k, s, d: True)
    a.apply(tx(0, 1, "federation.join", {"peer": PIDS[8]}))
    b.apply(tx(0, 1, "federation.join", {"peer": PIDS[9]}))
    assert a.digest() != b.digest()
