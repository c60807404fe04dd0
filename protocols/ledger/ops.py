"""Ledger operations: an open registry, so that features add operations without touching the core.

An operation is looked up by `tx.op`. The ledger has already decoded the tx, checked its chain,
signature and nonce (and consumed the nonce), and checked that the sender has an account. Then
`check` decides (a refusal reason, or None), and only if it passed, `apply` mutates the state.
`apply` must not fail: everything that can go wrong belongs in `check`. Both must be deterministic
(no clock, no randomness, no iteration over unordered sets whose order leaks into the state).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Protocol

from protocols.ledger.genesis import MAX_BALANCE, MAX_COMMITTEE
from protocols.ledger.receipt import (
    ALREADY_MEMBER,
    BAD_ARGS,
    COMMITTEE_TOO_LARGE,
    COMMITTEE_TOO_SMALL,
    INSUFFICIENT_FUNDS,
    NO_SUCH_MEMBER,
    NOT_A_MEMBER,
)
from protocols.ledger.state import LedgerState
from protocols.ledger.tx import Tx, is_peer_id


class Operation(Protocol):
    name: str

    def check(self, state: LedgerState, tx: Tx) -> str | None: ...

    def apply(self, state: LedgerState, tx: Tx) -> None: ...


_TRANSFER_KEYS = frozenset({"to", "amount"})
_PEER_KEYS = frozenset({"peer"})


class Transfer:
    """transfer {to: peer id, amount: int in [1, 2**63-1]}; the recipient's account is created on
    first receipt; a transfer to oneself is allowed and changes no balance."""

    name = "transfer"

    def check(self, state: LedgerState, tx: Tx) -> str | None:
        args = tx.args
        if args.keys() != _TRANSFER_KEYS:
            return BAD_ARGS
        to = args["to"]
        amount = args["amount"]
        if type(to) is not str or type(amount) is not int or not 1 <= amount <= MAX_BALANCE:
            return BAD_ARGS
        # An existing account is a valid peer id (accounts are only ever created for valid ids).
        if to not in state.accounts and not is_peer_id(to):
            return BAD_ARGS
        if state.accounts[tx.sender] < amount:
            return INSUFFICIENT_FUNDS
        return None

    def apply(self, state: LedgerState, tx: Tx) -> None:
        to = tx.args["to"]
        if to == tx.sender:
            return
        amount = tx.args["amount"]
        accounts = state.accounts
        accounts[tx.sender] -= amount
        # Cannot overflow: the total supply is fixed at genesis below 2**63.
        accounts[to] = accounts.get(to, 0) + amount


def _peer_arg(tx: Tx) -> str | None:
    if tx.args.keys() != _PEER_KEYS:
        return None
    peer = tx.args["peer"]
    return peer if is_peer_id(peer) else None


def _begin_change(state: LedgerState) -> list[str]:
    return list(state.target_committee())


class FederationJoin:
    """federation.join {peer}: a current member's vote to admit `peer`. With f+1 distinct votes
    (f of the current committee) the candidate is appended to the pending committee and gets an
    (empty) account if it had none, so that it can vote once it is a member. A vote for a
    candidate that is already in the pending committee is applied and changes nothing."""

    name = "federation.join"

    def check(self, state: LedgerState, tx: Tx) -> str | None:
        if tx.sender not in state.committee:
            return NOT_A_MEMBER
        peer = _peer_arg(tx)
        if peer is None:
            return BAD_ARGS
        target = state.target_committee()
        if peer in target:
            return ALREADY_MEMBER if peer in state.committee else None
        if len(target) >= MAX_COMMITTEE and len(state.join_votes.get(peer, set()) | {tx.sender}) > state.fault_bound():
            return COMMITTEE_TOO_LARGE  # this vote would land the candidate in a full committee
        return None

    def apply(self, state: LedgerState, tx: Tx) -> None:
        peer = tx.args["peer"]
        if peer in state.target_committee():
            return  # already landed in the pending committee
        voters = state.join_votes.setdefault(peer, set())
        voters.add(tx.sender)
        if len(voters) >= state.fault_bound() + 1:
            new = _begin_change(state)
            new.append(peer)
            state.pending_committee = tuple(new)
            del state.join_votes[peer]
            state.accounts.setdefault(peer, 0)


class FederationLeave:
    """federation.leave {peer}: a member leaving itself (peer == sender) lands at once; removing
    another member needs f+1 distinct current-member votes. The change goes to the pending
    committee; one that would leave it empty is refused. A vote to remove someone already removed
    in the pending committee is applied and changes nothing."""

    name = "federation.leave"

    def check(self, state: LedgerState, tx: Tx) -> str | None:
        if tx.sender not in state.committee:
            return NOT_A_MEMBER
        peer = _peer_arg(tx)
        if peer is None:
            return BAD_ARGS
        target = state.target_committee()
        if peer not in target:
            return None if peer in state.committee else NO_SUCH_MEMBER
        if len(target) <= 1:
            return COMMITTEE_TOO_SMALL
        return None

    def apply(self, state: LedgerState, tx: Tx) -> None:
        peer = tx.args["peer"]
        if peer not in state.target_committee():
            return  # already removed in the pending committee
        if peer != tx.sender:
            voters = state.leave_votes.setdefault(peer, set())
            voters.add(tx.sender)
            if len(voters) < state.fault_bound() + 1:
                return
        new = _begin_change(state)
        new.remove(peer)
        state.pending_committee = tuple(new)
        state.leave_votes.pop(peer, None)


TRANSFER = Transfer()
FEDERATION_JOIN = FederationJoin()
FEDERATION_LEAVE = FederationLeave()

DEFAULT_OPS: Mapping[str, Operation] = MappingProxyType(
    {op.name: op for op in (TRANSFER, FEDERATION_JOIN, FEDERATION_LEAVE)}
)
