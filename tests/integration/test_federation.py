"""A 4-replica federation of real daemons: transfers commit on every replica, the replicas agree
on the state digest, the control API and the CLI report it, and bad input is refused clearly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from node.rpc import INVALID_PARAMS, RpcError
from node.scaling.process import DaemonProcess

from .federation_helpers import (  # noqa: F401 - fed_root is a fixture
    fed_root,
    logged_tx_ids,
    make_federation,
    missing_txs,
    status,
    wait_converged,
    wait_for,
)

pytestmark = pytest.mark.integration

GENESIS_BALANCE = 1_000_000_000


def cli(node: DaemonProcess, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "node", "--home", str(node.home), *args],
        capture_output=True, text=True, timeout=timeout,
    )


def test_transfers_commit_on_every_replica_and_the_cli_reports_them(
    request: pytest.FixtureRequest, fed_root: Path
) -> None:
    fed = make_federation(request, fed_root, 4)
    nodes = fed.start_all()
    ids = fed.ids
    first = status(nodes[0])
    assert first["role"] == "replica" and first["members"] == ids and first["f"] == 1
    assert first["genesis"] == fed.genesis.hash and first["chain_id"] == "itest"

    # A handful of transfers, each submitted by a different node.
    plan = [(0, 1, 100), (1, 2, 250), (2, 3, 7), (3, 0, 1000), (0, 2, 5), (2, 1, 42)]
    expected = {p: GENESIS_BALANCE for p in ids}
    tx_ids, senders = [], {}
    for src, dst, amount in plan:
        r = nodes[src].call("ledger.transfer", {"to": ids[dst], "amount": amount, "timeout": 20}, timeout=30)
        assert r["status"] == "applied" and r["reason"] == "", r
        assert r["tx_id"] not in tx_ids
        tx_ids.append(r["tx_id"])
        senders[r["tx_id"]] = ids[src]
        expected[ids[src]] -= amount
        expected[ids[dst]] += amount

    # f+1 replies acknowledged each; all four replicas get there.
    wait_for(lambda: not any(missing_txs(n, tx_ids) for n in nodes), 20, "every tx on every replica")
    common = wait_converged(nodes, "after the transfers")
    assert common["last_executed"] >= 1

    for n in nodes:
        for p in ids:
            b = n.call("ledger.balance", {"account": p})
            assert b == {"account": p, "balance": expected[p], "exists": True}, (n.home.name, p)
        for tx_id in tx_ids:
            r = n.call("ledger.tx", {"id": tx_id})
            assert r["tx_id"] == tx_id and r["status"] == "applied" and r["reason"] == ""
            assert r["sender"] == senders[tx_id] and 1 <= r["seq"] <= common["last_executed"]
        logged = logged_tx_ids(n)
        assert set(tx_ids) <= set(logged), n.home.name
        assert all(logged[t]["status"] == "applied" for t in tx_ids)
        assert all(logged[t]["client"].startswith(senders[t] + "/") for t in tx_ids)
    assert sum(expected.values()) == 4 * GENESIS_BALANCE
    # Every replica put each tx at the same sequence number and index.
    places = {t: {(r["seq"], r["index"]) for r in (n.call("ledger.tx", {"id": t}) for n in nodes)} for t in tx_ids}
    assert all(len(v) == 1 for v in places.values()), places

    # An unknown tx id is an error, a malformed one invalid params.
    with pytest.raises(RpcError, match="not in this node's ledger"):
        nodes[0].call("ledger.tx", {"id": "0" * 64})
    with pytest.raises(RpcError) as bad_id:
        nodes[0].call("ledger.tx", {"id": "xyz"})
    assert bad_id.value.code == INVALID_PARAMS

    # --- the CLI
    r = cli(nodes[1], "transfer", ids[3], "3")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("applied") and "tx " in r.stdout
    expected[ids[1]] -= 3
    expected[ids[3]] += 3
    r = cli(nodes[1], "--json", "transfer", ids[3], "4")
    assert r.returncode == 0, r.stderr
    cli_tx = json.loads(r.stdout)
    assert cli_tx["status"] == "applied" and len(cli_tx["tx_id"]) == 64
    expected[ids[1]] -= 4
    expected[ids[3]] += 4
    wait_for(lambda: not any(missing_txs(n, [cli_tx["tx_id"]]) for n in nodes), 20, "the CLI's tx everywhere")
    wait_converged(nodes, "after the CLI transfers")

    r = cli(nodes[3], "balance")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [str(expected[ids[3]]), ids[3]]
    r = cli(nodes[0], "balance", ids[1])
    assert r.returncode == 0 and r.stdout.split()[0] == str(expected[ids[1]]), r
    r = cli(nodes[2], "federation", "status")
    assert r.returncode == 0, r.stderr
    assert "view      0" in r.stdout and "this node: replica" in r.stdout and "f = 1" in r.stdout
    r = cli(nodes[2], "--json", "federation", "status")
    assert r.returncode == 0 and json.loads(r.stdout)["state_digest"] == status(nodes[2])["state_digest"]
    r = cli(nodes[2], "federation", "log", "--limit", "1000")
    assert r.returncode == 0 and r.stdout.startswith("SEQ"), r
    r = cli(nodes[2], "--json", "federation", "log", "--limit", "1000")
    assert r.returncode == 0
    assert cli_tx["tx_id"] in {t.get("tx_id") for b in json.loads(r.stdout)["batches"] for t in b["txs"]}

    # --- bad input: usage errors exit 2, refused calls exit 1, each with a clear message.
    r = cli(nodes[0], "transfer", ids[1], "0")
    assert r.returncode in (1, 2) and "amount must be in" in r.stderr, r
    r = cli(nodes[0], "transfer", ids[1], "-5")
    assert r.returncode in (1, 2) and "amount" in r.stderr, r
    r = cli(nodes[0], "transfer", "not-a-peer", "5")
    assert r.returncode in (1, 2) and "not a peer id" in r.stderr, r
    r = cli(nodes[0], "transfer", ids[1], "lots")
    assert r.returncode == 2 and "not an integer" in r.stderr, r
    r = cli(nodes[0], "transfer", ids[1])
    assert r.returncode == 2 and "amount" in r.stderr, r
    r = cli(nodes[0], "balance", "not-a-peer")
    assert r.returncode in (1, 2) and "not a peer id" in r.stderr, r
    with pytest.raises(RpcError) as zero:
        nodes[0].call("ledger.transfer", {"to": ids[1], "amount": 0})
    assert zero.value.code == INVALID_PARAMS and zero.value.data == {"field": "amount"}

    # Insufficient funds: the tx commits (its nonce is consumed) with a refused receipt.
    r = cli(nodes[0], "--json", "transfer", ids[1], str(2 * GENESIS_BALANCE))
    assert r.returncode == 1, r
    refused = json.loads(r.stdout)
    assert refused["status"] == "refused" and refused["reason"] == "insufficient-funds"
    r = cli(nodes[0], "transfer", ids[1], str(2 * GENESIS_BALANCE))
    assert r.returncode == 1 and r.stdout.startswith("refused: insufficient-funds"), r
    wait_for(lambda: not any(missing_txs(n, []) for n in nodes) and all(
        _tx_or_none(n, refused["tx_id"]) for n in nodes), 20, "the refused tx on every replica")
    for n in nodes:
        row = n.call("ledger.tx", {"id": refused["tx_id"]})
        assert (row["status"], row["reason"]) == ("refused", "insufficient-funds")

    # Nothing moved for the refusals; all replicas agree on the final balances.
    wait_converged(nodes, "at the end")
    for n in nodes:
        assert {p: n.call("ledger.balance", {"account": p})["balance"] for p in ids} == expected, n.home.name
    assert all(n.poll() is None for n in nodes)


def _tx_or_none(node: DaemonProcess, tx_id: str) -> dict | None:
    try:
        return node.call("ledger.tx", {"id": tx_id})
    except RpcError:
        return None


def test_each_transfer_is_a_new_tx_with_the_next_nonce(request: pytest.FixtureRequest, fed_root: Path) -> None:
    """At the control-API level: two identical transfers are two txs with distinct ids (the id
    hashes the signed body, whose (lane, nonce) differs), and both apply, once each."""
    fed = make_federation(request, fed_root, 4)
    nodes = fed.start_all()
    ids = fed.ids
    a = nodes[0].call("ledger.transfer", {"to": ids[1], "amount": 10, "timeout": 20}, timeout=30)
    b = nodes[0].call("ledger.transfer", {"to": ids[1], "amount": 10, "timeout": 20}, timeout=30)
    assert a["status"] == b["status"] == "applied"
    assert a["tx_id"] != b["tx_id"]
    wait_for(lambda: not any(missing_txs(n, [a["tx_id"], b["tx_id"]]) for n in nodes), 20, "both txs everywhere")
    wait_converged(nodes)
    for n in nodes:
        assert n.call("ledger.balance", {"account": ids[0]})["balance"] == GENESIS_BALANCE - 20
        assert n.call("ledger.balance", {"account": ids[1]})["balance"] == GENESIS_BALANCE + 20
    ra, rb = (nodes[2].call("ledger.tx", {"id": t["tx_id"]}) for t in (a, b))
    assert (ra["seq"], ra["index"]) < (rb["seq"], rb["index"])  # b waited for a's receipt
