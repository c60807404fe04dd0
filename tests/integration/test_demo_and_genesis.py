"""`sovereign demo` (the README's first command) really runs a federation doing work, and the
genesis commands an operator uses to form one refuse bad input with clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from keys.identity import Identity


def sovereign(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "node", *args], capture_output=True, text=True, timeout=timeout)


def test_demo_commits_transfers_and_the_replicas_agree(tmp_path: Path) -> None:
    r = sovereign("--json", "demo", "--nodes", "4", "--duration", "4", "--dir", str(tmp_path / "demo"), timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    report = json.loads(r.stdout.strip().splitlines()[-1])
    assert report["ok"] and report["replicas_agree"] and report["supply_conserved"], report
    assert report["applied"] > 0 and report["last_executed"] > 0
    assert not report["errors"], report["errors"]


def test_genesis_is_made_installed_and_checked(tmp_path: Path) -> None:
    ids = [Identity.from_seed(bytes([i]) * 32).peer_id for i in range(1, 5)]
    r = sovereign("federation", "genesis", "--chain-id", "acme", *[a for p in ids for a in ("--member", p)],
                  "--balance", f"{ids[0]}=1000", "--checkpoint-interval", "16")
    assert r.returncode == 0, r.stderr
    genesis = json.loads(r.stdout)
    assert genesis["committee"] == ids and genesis["balances"][ids[0]] == 1000
    path = tmp_path / "genesis.json"
    path.write_text(r.stdout)

    home = tmp_path / "home"
    r = sovereign("--home", str(home), "--json", "init", "--genesis", str(path))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["genesis"]["chain_id"] == "acme"
    assert (home / "genesis.json").stat().st_mode & 0o077 == 0
    # Installing the same genesis again is fine; another federation's is refused.
    assert sovereign("--home", str(home), "init", "--genesis", str(path)).returncode == 0
    other = tmp_path / "other.json"
    other.write_text(path.read_text().replace('"acme"', '"other"'))
    r = sovereign("--home", str(home), "init", "--genesis", str(other))
    assert r.returncode == 4 and "another federation" in r.stderr


def test_bad_genesis_input_is_refused_clearly(tmp_path: Path) -> None:
    good = Identity.from_seed(b"\x01" * 32).peer_id
    r = sovereign("federation", "genesis", "--chain-id", "acme", "--member", "not-a-peer-id")
    assert r.returncode == 2 and "committee" in r.stderr
    r = sovereign("federation", "genesis", "--chain-id", "a b", "--member", good)
    assert r.returncode == 2 and "chain_id" in r.stderr
    r = sovereign("federation", "genesis", "--chain-id", "acme", "--member", good, "--balance", "x")
    assert r.returncode == 2 and "PEER_ID=AMOUNT" in r.stderr
    bad = tmp_path / "bad.json"
    bad.write_text('{"chain_id": "acme", "committee": [], "balances": {}}')
    r = sovereign("--home", str(tmp_path / "h"), "init", "--genesis", str(bad))
    assert r.returncode == 4 and "committee" in r.stderr
    r = sovereign("--home", str(tmp_path / "h"), "init", "--genesis", str(tmp_path / "missing.json"))
    assert r.returncode == 4 and "cannot read" in r.stderr
    # A daemon whose home holds a broken genesis refuses to start (exit 4), naming the file.
    home = tmp_path / "h2"
    assert sovereign("--home", str(home), "init").returncode == 0
    (home / "genesis.json").write_text("{not json")
    r = sovereign("--home", str(home), "daemon", "--listen", "/ip4/127.0.0.1/tcp/0", timeout=30)
    assert r.returncode == 4 and "genesis.json" in r.stderr
