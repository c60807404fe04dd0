"""The genesis of a ledger chain: its id, the first committee (the PBFT members, in order), the
initial balances and the checkpoint interval every replica must agree on.

Every replica of a chain loads the same genesis file; its `hash` goes into every snapshot, so a
replica can never restore state from another chain.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any



from protocols.codec import encode
from protocols.ledger.tx import is_peer_id

MAX_COMMITTEE = 64
MAX_BALANCE = 2**63 - 1  # every balance, and their total, stays below 2**63
# The replica's watermark window is 2K (at least 256), and PBFT carries at most MAX_CERTS = 4096
# prepared certificates in a VIEW-CHANGE: K beyond 2048 would make a genesis no replica can run.
MAX_CHECKPOINT_INTERVAL = 2048
DEFAULT_CHECKPOINT_INTERVAL = 128
_CHAIN_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_KEYS = ("chain_id", "committee", "balances", "checkpoint_interval")


class GenesisError(ValueError):
    """An invalid genesis; the message names the offending field."""


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _validate(chain_id: Any, committee: Any, balances: Any, checkpoint_interval: Any) -> None:
    if type(chain_id) is not str or not _CHAIN_ID.fullmatch(chain_id):
        raise GenesisError(f"chain_id must be 1-64 characters of A-Z a-z 0-9 . _ - (got {_short(chain_id)})")
    if type(committee) is not tuple or not 1 <= len(committee) <= MAX_COMMITTEE:
        raise GenesisError(f"committee must list 1 to {MAX_COMMITTEE} peer ids")
    for member in committee:
        if not is_peer_id(member):
            raise GenesisError(f"committee: {_short(member)} is not a valid Ed25519 peer id")
    if len(set(committee)) != len(committee):
        dup = next(m for m in committee if committee.count(m) > 1)
        raise GenesisError(f"committee: {dup} is listed more than once")
    if type(balances) is not tuple:
        raise GenesisError("balances must map peer ids to amounts")
    total = 0
    previous = None
    for item in balances:
        if type(item) is not tuple or len(item) != 2:
            raise GenesisError("balances must be (peer id, amount) pairs")
        account, amount = item
        if not is_peer_id(account):
            raise GenesisError(f"balances: {_short(account)} is not a valid Ed25519 peer id")
        if type(amount) is not int or not 0 <= amount <= MAX_BALANCE:
            raise GenesisError(
                f"balances: the amount for {account} must be an integer in [0, 2**63-1] (got {_short(amount)})"
            )
        if previous is not None and account <= previous:
            raise GenesisError("balances must be sorted by account, each account once")
        previous = account
        total += amount
    if total > MAX_BALANCE:
        raise GenesisError(f"balances: the total supply {total} must stay below 2**63")
    if type(checkpoint_interval) is not int or not 1 <= checkpoint_interval <= MAX_CHECKPOINT_INTERVAL:
        raise GenesisError(
            f"checkpoint_interval must be an integer in [1, {MAX_CHECKPOINT_INTERVAL}]"
            f" (got {_short(checkpoint_interval)})"
        )


@dataclass(frozen=True)
class Genesis:
    chain_id: str
    committee: tuple[str, ...]  # PBFT member order
    balances: tuple[tuple[str, int], ...]  # sorted by account
    checkpoint_interval: int = DEFAULT_CHECKPOINT_INTERVAL  # the PBFT K

    def __post_init__(self) -> None:
        _validate(self.chain_id, self.committee, self.balances, self.checkpoint_interval)

    @property
    def hash(self) -> str:
        """hex sha256 of the canonical msgpack encoding."""
        data = encode(
            [1, self.chain_id, list(self.committee), [list(b) for b in self.balances], self.checkpoint_interval],
        )
        return hashlib.sha256(data).hexdigest()

    @property
    def total_supply(self) -> int:
        return sum(amount for _, amount in self.balances)

    def to_json(self) -> str:
        return json.dumps(
            {
                "chain_id": self.chain_id,
                "committee": list(self.committee),
                "balances": dict(self.balances),
                "checkpoint_interval": self.checkpoint_interval,
            },
            indent=2,
        )


def _balance_pairs(balances: Any) -> tuple[tuple[str, int], ...]:
    if isinstance(balances, Mapping):
        items: Iterable[Any] = balances.items()
    elif isinstance(balances, (list, tuple)):
        items = balances
    else:
        raise GenesisError("balances must map peer ids to amounts")
    pairs = []
    for item in items:
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise GenesisError("balances must map peer ids to amounts")
        pairs.append((item[0], item[1]))
    accounts = [a for a, _ in pairs]
    for a in accounts:
        if type(a) is not str:
            raise GenesisError(f"balances: {_short(a)} is not a valid Ed25519 peer id")
    if len(set(accounts)) != len(accounts):
        dup = next(a for a in accounts if accounts.count(a) > 1)
        raise GenesisError(f"balances: {dup} is listed more than once")
    return tuple(sorted(pairs))


def make_genesis(
    chain_id: str,
    committee: Iterable[str],
    balances: Mapping[str, int] | Iterable[tuple[str, int]],
    checkpoint_interval: int = DEFAULT_CHECKPOINT_INTERVAL,
) -> Genesis:
    """A validated Genesis (balances given as a mapping or as pairs, in any order)."""
    if isinstance(committee, (str, bytes)) or not isinstance(committee, Iterable):
        raise GenesisError(f"committee must list 1 to {MAX_COMMITTEE} peer ids")
    return Genesis(chain_id, tuple(committee), _balance_pairs(balances), checkpoint_interval)


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            field = "balances" if k not in _KEYS else "genesis"
            raise GenesisError(f"{field}: key {k!r} appears more than once")
        out[k] = v
    return out


def load_genesis(text: str) -> Genesis:
    """Parse and validate a genesis JSON document."""
    try:
        doc = json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except GenesisError:
        raise
    except (ValueError, TypeError, RecursionError) as e:
        raise GenesisError(f"genesis is not valid JSON: {e}") from None
    if type(doc) is not dict:
        raise GenesisError("genesis must be a JSON object")
    unknown = sorted(set(doc) - set(_KEYS))
    if unknown:
        raise GenesisError(f"unknown genesis field(s): {', '.join(unknown)}")
    for key in _KEYS[:3]:
        if key not in doc:
            raise GenesisError(f"{key} is missing")
    committee = doc["committee"]
    if type(committee) is not list:
        raise GenesisError(f"committee must list 1 to {MAX_COMMITTEE} peer ids")
    balances = doc["balances"]
    if type(balances) is not dict:
        raise GenesisError("balances must map peer ids to amounts")
    return make_genesis(
        doc["chain_id"], committee, balances, doc.get("checkpoint_interval", DEFAULT_CHECKPOINT_INTERVAL)
    )
