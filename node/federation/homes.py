"""Homes for a local federation: N identities, one shared genesis naming them all.

Used by `sovereign demo` (node/demo/), the integration tests and the benchmarks; an operator does
the same by hand with `sovereign init`, `sovereign federation genesis` and `sovereign init --genesis
FILE`.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from keys.identity import Identity, save_identity
from node.config import KEY_NAME
from node.federation.service import GENESIS_NAME
from protocols.ledger import Genesis, make_genesis

DEMO_BALANCE = 1_000_000_000


def create_federation_homes(
    root: Path,
    count: int,
    *,
    chain_id: str = "demo",
    members: int | None = None,
    balance: int = DEMO_BALANCE,
    checkpoint_interval: int = 128,
    prefix: str = "node-",
) -> tuple[list[Path], list[str], Genesis]:
    """Create `count` homes under `root` (node-0 ...); the first `members` (default all) form the
    committee, and every node starts with `balance`. Returns the homes, peer ids and genesis.

    Raises FileExistsError, before creating anything, if one of the homes already exists: a
    second federation must not be mixed into the first one's homes.
    """
    for i in range(count):
        existing = root / f"{prefix}{i}"
        if os.path.lexists(existing):
            raise FileExistsError(errno.EEXIST, "a home already exists there", str(existing))
    homes, ids = [], []
    for i in range(count):
        home = root / f"{prefix}{i}"
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        identity = Identity.generate()
        save_identity(identity, home / KEY_NAME)
        homes.append(home)
        ids.append(identity.peer_id)
    committee = tuple(ids[: members if members is not None else count])
    genesis = make_genesis(chain_id, committee, {p: balance for p in ids}, checkpoint_interval)
    for home in homes:
        (home / GENESIS_NAME).write_text(genesis.to_json())
    return homes, ids, genesis
