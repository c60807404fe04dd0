"""Every attribute of the federation machine is declared given, persistent or volatile, and what is
declared persistent is what dump() writes (protocols/federation.py)."""

from __future__ import annotations

from keys.identity import Identity
from protocols.codec import decode
from protocols.federation import GIVEN, PERSISTENT, VOLATILE, FederationNode
from protocols.ledger import make_genesis
from protocols.pbft import default_verifier

ME = Identity.from_seed(b"\x31" * 32)
OTHER = Identity.from_seed(b"\x32" * 32).peer_id


def _nodes() -> list[FederationNode]:
    genesis = make_genesis("decl", (ME.peer_id,), {ME.peer_id: 10})
    replica = FederationNode(ME.peer_id, genesis, request_timeout=1.0, sign=ME.sign, verify=default_verifier)
    follower = FederationNode(OTHER, genesis, request_timeout=1.0, sign=None, verify=default_verifier)
    return [replica, follower]


def test_every_attribute_is_declared_once() -> None:
    for node in _nodes():
        attrs = set(vars(node))
        undeclared = attrs - GIVEN - set(PERSISTENT) - set(VOLATILE)
        assert not undeclared, f"declare these in protocols/federation.py (GIVEN, PERSISTENT or VOLATILE): {sorted(undeclared)}"
        assert not (GIVEN & set(PERSISTENT)) and not (GIVEN & set(VOLATILE)) and not (set(PERSISTENT) & set(VOLATILE))
        assert attrs >= set(PERSISTENT) | set(VOLATILE), "a declared attribute the machine no longer has"


def test_the_dump_holds_exactly_the_persistent_attributes() -> None:
    for node in _nodes():
        dumped = decode(node.dump(), max_size=1 << 24, max_depth=8, max_items=1 << 16)
        assert set(dumped) - {"v"} == set(PERSISTENT)
