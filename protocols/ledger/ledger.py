"""The replicated ledger: a deterministic state machine PBFT drives through `apply`.

Each op is an encoded signed transaction. Checks run in a fixed order, each with its own refusal
reason: decode ("malformed"), chain ("wrong-chain"), signature ("bad-signature"), nonce
("bad-nonce"), operation registered ("unknown-op"), sender has an account ("unknown-account"),
then the operation's own check. A tx that passed the nonce check consumes its nonce even if a later
check refuses it, so every receipt is final and the client goes on with the next nonce; the three
earlier refusals consume nothing (anyone could produce them in the sender's name).

`apply` never raises: PBFT executes the same op on every replica at the same sequence number, and
an exception would stall them all.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Any

import msgpack

from keys.identity import verify_signature
from protocols.codec import encode
from protocols.errors import ProtocolError
from protocols.ledger.genesis import Genesis
from protocols.ledger.ops import DEFAULT_OPS, Operation
from protocols.ledger.receipt import (
    APPLIED,
    BAD_NONCE,
    BAD_SIGNATURE,
    MALFORMED,
    OP_FAILED,
    REFUSED,
    UNKNOWN_ACCOUNT,
    UNKNOWN_OP,
    WRONG_CHAIN,
    WRONG_GENESIS,
    Receipt,
    encode_receipt,
)
from protocols.ledger.state import LedgerState
from protocols.ledger.tx import MAX_LANES, MAX_NONCE, decode_tx, verify_tx

SNAPSHOT_VERSION = 1
_MALFORMED_RECEIPT = encode_receipt(Receipt("", REFUSED, MALFORMED))


def _receipt(tx_id: str, reason: str | None) -> bytes:
    if reason is None:
        return encode({"tx_id": tx_id, "status": APPLIED, "reason": ""})
    return encode({"tx_id": tx_id, "status": REFUSED, "reason": reason})


class Ledger:
    """Implements protocols.pbft.app.Application."""

    def __init__(
        self,
        genesis: Genesis,
        *,
        ops: Mapping[str, Operation] = DEFAULT_OPS,
        verify: Callable[[bytes, bytes, bytes], bool] = verify_signature,
    ) -> None:
        self._genesis = genesis
        self._chain = genesis.chain_id
        self._genesis_hash = genesis.hash
        self._genesis_raw = bytes.fromhex(self._genesis_hash)  # what a tx carries
        self._supply = genesis.total_supply
        self._ops = dict(ops)
        self._verify = verify
        self._state = self._initial_state()

    def _initial_state(self) -> LedgerState:
        accounts = dict(self._genesis.balances)
        # Every committee member has an account (empty if genesis gave it nothing): membership
        # votes are transactions, and a sender without an account is refused before any op runs.
        for member in self._genesis.committee:
            accounts.setdefault(member, 0)
        return LedgerState(accounts=accounts, committee=self._genesis.committee)

    # ------------------------------------------------------------ Application

    def apply(self, op: bytes) -> bytes:
        try:
            tx = decode_tx(op)
        except ProtocolError:
            return _MALFORMED_RECEIPT
        tx_id = tx.id
        if tx.chain != self._chain:
            return _receipt(tx_id, WRONG_CHAIN)
        if tx.genesis != self._genesis_raw:
            return _receipt(tx_id, WRONG_GENESIS)
        if not verify_tx(tx, self._verify):
            return _receipt(tx_id, BAD_SIGNATURE)
        state = self._state
        # Before the nonce: a key with no account must not grow the nonce table (it costs nothing
        # to make keys, and a refusal after the nonce check consumes the nonce).
        if tx.sender not in state.accounts:
            return _receipt(tx_id, UNKNOWN_ACCOUNT)
        key = (tx.sender, tx.lane)
        if tx.nonce != state.nonces.get(key, 0) + 1:
            return _receipt(tx_id, BAD_NONCE)
        state.nonces[key] = tx.nonce
        operation = self._ops.get(tx.op)
        if operation is None:
            return _receipt(tx_id, UNKNOWN_OP)
        try:
            reason = operation.check(state, tx)
            if reason is None:
                operation.apply(state, tx)
        except Exception:  # noqa: BLE001 - a buggy operation must not stall every replica
            # Deterministic like everything else: every replica fails the same way at the same op.
            reason = OP_FAILED
        return _receipt(tx_id, reason)

    def snapshot(self) -> bytes:
        """Canonical: everything sorted, so equal states give identical bytes on every replica."""
        s = self._state
        return encode(
            [
                SNAPSHOT_VERSION,
                self._genesis_hash,
                sorted(s.accounts.items()),
                sorted((sender, lane, nonce) for (sender, lane), nonce in s.nonces.items()),
                list(s.committee),
                None if s.pending_committee is None else list(s.pending_committee),
                sorted((c, sorted(v)) for c, v in s.join_votes.items()),
                sorted((c, sorted(v)) for c, v in s.leave_votes.items()),
            ],
        )

    def restore(self, data: bytes) -> None:
        """Replace the state with a snapshot of this chain; ValueError (state unchanged) on garbage."""
        try:
            state = self._parse_snapshot(data)
        except ValueError:
            raise
        except Exception as e:  # noqa: BLE001 - any malformed snapshot is a ValueError to the caller
            raise ValueError(f"invalid ledger snapshot: {type(e).__name__}") from None
        old = self._state
        self._state = state
        # Canonical form too: a snapshot that does not re-encode to itself would make this
        # replica's digest differ from the one it was restored to match.
        if self.snapshot() != data:
            self._state = old
            raise ValueError("invalid ledger snapshot: not in canonical form")

    def _parse_snapshot(self, data: bytes) -> LedgerState:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise ValueError("invalid ledger snapshot: not bytes")
        obj: Any = msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=True, max_ext_len=0)
        if type(obj) is not list or len(obj) != 8 or obj[0] != SNAPSHOT_VERSION:
            raise ValueError("invalid ledger snapshot: unknown layout or version")
        _, genesis_hash, accounts_l, nonces_l, committee_l, pending_l, join_l, leave_l = obj
        if genesis_hash != self._genesis_hash:
            raise ValueError("ledger snapshot is from another chain (genesis hash differs)")
        accounts: dict[str, int] = {}
        for account, balance in accounts_l:
            if type(account) is not str or type(balance) is not int or balance < 0:
                raise ValueError("invalid ledger snapshot: bad account")
            accounts[account] = balance
        if sum(accounts.values()) != self._supply:
            raise ValueError("invalid ledger snapshot: total supply differs from genesis")
        nonces: dict[tuple[str, int], int] = {}
        for sender, lane, nonce in nonces_l:
            if type(sender) is not str or type(lane) is not int or not 0 <= lane < MAX_LANES:
                raise ValueError("invalid ledger snapshot: bad nonce key")
            if type(nonce) is not int or not 1 <= nonce <= MAX_NONCE:
                raise ValueError("invalid ledger snapshot: bad nonce")
            nonces[(sender, lane)] = nonce
        committee = _members(committee_l)
        pending = None if pending_l is None else _members(pending_l)
        return LedgerState(
            accounts=accounts,
            nonces=nonces,
            committee=committee,
            pending_committee=pending,
            join_votes=_votes(join_l),
            leave_votes=_votes(leave_l),
        )

    def digest(self) -> bytes:
        return hashlib.sha256(self.snapshot()).digest()

    # ------------------------------------------------------------ membership

    def reconfiguring(self) -> bool:
        """The PBFT Application hook: a committee change waits for the next checkpoint."""
        s = self._state
        return s.pending_committee is not None and s.pending_committee != s.committee

    def activate_pending(self) -> tuple[str, ...] | None:
        """Make the pending committee current (call at a stable checkpoint, where every replica is
        at the same seq). Returns the new committee, or None if no change was pending. Outstanding
        votes are dropped: they were cast relative to the old committee (and its f)."""
        s = self._state
        if s.pending_committee is None:
            return None
        s.committee = s.pending_committee
        s.pending_committee = None
        s.join_votes.clear()
        s.leave_votes.clear()
        return s.committee

    @property
    def committee(self) -> tuple[str, ...]:
        return self._state.committee

    @property
    def pending_committee(self) -> tuple[str, ...] | None:
        return self._state.pending_committee

    def join_votes(self, candidate: str) -> frozenset[str]:
        return frozenset(self._state.join_votes.get(candidate, ()))

    def leave_votes(self, member: str) -> frozenset[str]:
        return frozenset(self._state.leave_votes.get(member, ()))

    # ------------------------------------------------------------ queries

    @property
    def genesis(self) -> Genesis:
        return self._genesis

    def balance(self, account: str) -> int:
        return self._state.accounts.get(account, 0)

    def has_account(self, account: str) -> bool:
        return account in self._state.accounts

    def next_nonce(self, account: str, lane: int) -> int:
        return self._state.nonces.get((account, lane), 0) + 1

    def accounts(self) -> dict[str, int]:
        return dict(self._state.accounts)

    def total_supply(self) -> int:
        """The sum of all balances: fixed at genesis, whatever is applied."""
        return sum(self._state.accounts.values())


def _members(items: Any) -> tuple[str, ...]:
    if type(items) is not list or not items or any(type(m) is not str for m in items) or len(set(items)) != len(items):
        raise ValueError("invalid ledger snapshot: bad committee")
    return tuple(items)


def _votes(items: Any) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for target, voters in items:
        if type(target) is not str or type(voters) is not list or not voters or any(type(v) is not str for v in voters):
            raise ValueError("invalid ledger snapshot: bad votes")
        out[target] = set(voters)
    return out
