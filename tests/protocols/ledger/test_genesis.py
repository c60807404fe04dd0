import json
from typing import Any

import pytest

from protocols.ledger import Genesis, GenesisError, load_genesis, make_genesis
from tests.protocols.ledger.helpers import COMMITTEE, GENESIS, PIDS


def doc(**over: Any) -> str:
    d: dict[str, Any] = {"chain_id": "main.net-1_x", "committee": PIDS[:4], "balances": {PIDS[5]: 7, PIDS[0]: 3}}
    for k, v in over.items():
        if v is KeyError:
            del d[k]
        else:
            d[k] = v
    return json.dumps(d)


def test_json_round_trip() -> None:
    g = load_genesis(doc(checkpoint_interval=64))
    assert g.chain_id == "main.net-1_x"
    assert g.committee == tuple(PIDS[:4])
    assert g.balances == tuple(sorted({PIDS[5]: 7, PIDS[0]: 3}.items()))
    assert g.checkpoint_interval == 64
    assert load_genesis(g.to_json()) == g
    assert load_genesis(g.to_json()).hash == g.hash
    assert load_genesis(GENESIS.to_json()) == GENESIS


def test_defaults_and_make_genesis() -> None:
    g = load_genesis(doc())
    assert g.checkpoint_interval == 128
    assert make_genesis("main.net-1_x", PIDS[:4], [(PIDS[5], 7), (PIDS[0], 3)]) == g
    assert make_genesis("main.net-1_x", iter(PIDS[:4]), {PIDS[0]: 3, PIDS[5]: 7}) == g


def test_hash_depends_on_every_field_and_on_committee_order() -> None:
    base = make_genesis("c", COMMITTEE, {PIDS[0]: 1})
    others = [
        make_genesis("d", COMMITTEE, {PIDS[0]: 1}),
        make_genesis("c", list(reversed(COMMITTEE)), {PIDS[0]: 1}),
        make_genesis("c", COMMITTEE, {PIDS[0]: 2}),
        make_genesis("c", COMMITTEE, {PIDS[0]: 1}, checkpoint_interval=5),
    ]
    assert len({base.hash, *(o.hash for o in others)}) == 5
    assert len(base.hash) == 64


BAD_PEER = "QmNotAnEd25519PeerId"


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "JSON object"),
        (doc(chain_id=""), "chain_id"),
        (doc(chain_id="a" * 65), "chain_id"),
        (doc(chain_id="bad id"), "chain_id"),
        (doc(chain_id="x\n"), "chain_id"),
        (doc(chain_id=5), "chain_id"),
        (doc(chain_id=KeyError), "chain_id is missing"),
        (doc(committee=[]), "committee"),
        (doc(committee=PIDS[0]), "committee"),
        (doc(committee=[PIDS[0], BAD_PEER]), "committee: 'QmNotAnEd25519PeerId'"),
        (doc(committee=[PIDS[0], PIDS[1], PIDS[0]]), "committee: " + PIDS[0]),
        (doc(committee=[PIDS[0], 7]), "committee"),
        (doc(committee=KeyError), "committee is missing"),
        (doc(balances=[]), "balances"),
        (doc(balances={BAD_PEER: 1}), "balances: 'QmNotAnEd25519PeerId'"),
        (doc(balances={PIDS[0]: -1}), "balances: the amount for " + PIDS[0]),
        (doc(balances={PIDS[0]: 1.5}), "balances: the amount"),
        (doc(balances={PIDS[0]: True}), "balances: the amount"),
        (doc(balances={PIDS[0]: 2**63}), "balances: the amount"),
        (doc(balances={PIDS[0]: 2**62, PIDS[1]: 2**62}), "total supply"),
        (doc(balances=KeyError), "balances is missing"),
        ('{"chain_id": "a", "committee": [], "balances": {}, "chain_id": "b"}', "chain_id"),
        ('{"chain_id": "a", "committee": ["%s"], "balances": {"%s": 1, "%s": 2}}' % ((PIDS[0],) * 3), "balances"),
        (doc(checkpoint_interval=0), "checkpoint_interval"),
        (doc(checkpoint_interval=100_001), "checkpoint_interval"),
        (doc(checkpoint_interval="8"), "checkpoint_interval"),
        (doc(extra=1), "unknown genesis field(s): extra"),
    ],
)
def test_validation_errors_name_the_field(text: str, names: str) -> None:
    with pytest.raises(GenesisError) as info:
        load_genesis(text)
    assert names in str(info.value)
    assert isinstance(info.value, ValueError)


def test_committee_size_limit() -> None:
    from keys.identity import Identity

    many = [Identity.from_seed(i.to_bytes(2, "big") * 16).peer_id for i in range(65)]
    assert len(make_genesis("c", many[:64], {}).committee) == 64
    with pytest.raises(GenesisError, match="committee"):
        make_genesis("c", many, {})


def test_direct_construction_is_validated_too() -> None:
    with pytest.raises(GenesisError, match="sorted"):
        Genesis("c", tuple(COMMITTEE), tuple(sorted(((PIDS[5], 1), (PIDS[0], 1)), reverse=True)))
    with pytest.raises(GenesisError, match="committee"):
        Genesis("c", (), ())


def test_every_valid_checkpoint_interval_is_one_a_replica_can_run() -> None:
    """A genesis the ledger accepts must never make the replica's config refuse it at start."""
    from protocols.ledger.genesis import MAX_CHECKPOINT_INTERVAL
    from protocols.pbft import PbftConfig

    for k in (1, 127, 128, 129, MAX_CHECKPOINT_INTERVAL):
        g = make_genesis("c", COMMITTEE, {PIDS[0]: 1}, checkpoint_interval=k)
        PbftConfig(members=g.committee, checkpoint_interval=k, window=max(256, 2 * k))  # the driver's shape
    with pytest.raises(GenesisError, match="checkpoint_interval"):
        make_genesis("c", COMMITTEE, {PIDS[0]: 1}, checkpoint_interval=MAX_CHECKPOINT_INTERVAL + 1)
