"""A daemon's home at start, with real `sovereign daemon` processes: one daemon per home, no silent
fresh start on lost or damaged state, no key ever created by the daemon, a clear message and exit 4
for every refused start, and SIGHUP as a clean stop."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from keys.identity import Identity, save_identity
from node.config import load_config
from node.home import MARKER_NAME, open_store
from node.scaling.process import DaemonProcess
from node.store import Store
from protocols.codec import decode, encode
from protocols.ledger import make_genesis
from tests.node.test_home import move_coins, transfers

from .conftest import wait_for

pytestmark = pytest.mark.integration

LISTEN = "/ip4/127.0.0.1/tcp/0"
START_S = 60.0  # a refused start exits before the network opens: seconds, even on a loaded CI box


@pytest.fixture
def root() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="sovhome-", dir="/tmp"))  # short: AF_UNIX paths
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _home_with_key(root: Path, name: str = "h") -> tuple[Path, Identity]:
    home = root / name
    home.mkdir(mode=0o700)
    identity = Identity.generate()
    save_identity(identity, home / "identity.key")
    return home, identity


def _refused(home: Path, *, env: dict[str, str] | None = None) -> str:
    """Start `sovereign daemon` on `home`; assert it refuses with exit 4 and one clean message."""
    r = subprocess.run(
        [sys.executable, "-m", "node", "--home", str(home), "daemon", "--listen", LISTEN],
        capture_output=True, text=True, timeout=START_S, env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL,
    )
    assert r.returncode == 4, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith("sovereign: cannot start: "), r.stderr
    return r.stderr


def _store_with_state(home: Path, identity: Identity) -> None:
    """What a first start leaves: a store opened through the home checks (so the marker is
    written), with some rows in it."""
    config = load_config(home=home, env={}, overrides={})
    with open_store(config, identity) as store:
        for i in range(200):
            store.peer_upsert(f"peer-{i:04d}", ["/ip4/10.0.0.1/tcp/1"], i, bytes(300))
    conn = sqlite3.connect(home / "sovereign.db")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def test_a_second_daemon_on_the_same_home_is_refused(root: Path) -> None:
    home, identity = _home_with_key(root)
    first = DaemonProcess(home)
    try:
        first.start()
        first.wait_ready()
        # Another control socket: before the home lock, this one ran beside the first.
        message = _refused(home, env={"SOVEREIGN_SOCKET": str(root / "other.sock")})
        assert str(home) in message and f"process {first.pid}" in message
        assert not (root / "other.sock").exists()
        assert first.call("node.id")["peer_id"] == identity.peer_id  # the first one is untouched
        assert first.poll() is None
    finally:
        assert first.stop() == 0


def test_sighup_stops_the_daemon_cleanly(root: Path) -> None:
    home, _ = _home_with_key(root)
    node = DaemonProcess(home)
    try:
        node.start()
        node.wait_ready()
        node.signal(signal.SIGHUP)
        code = wait_for(lambda: node.poll() is not None and (node.poll(),), START_S, "the daemon to exit")[0]
    finally:
        node.stop()
    assert code == 0
    lines = [json.loads(line) for line in node.log_path.read_text().splitlines() if line.startswith("{")]
    messages = [line.get("msg", line.get("message", "")) for line in lines]
    assert any("received SIGHUP" in m for m in messages), messages
    assert messages[-1] == "stopped", messages
    assert not node.socket_path.exists()  # no stale socket left behind
    # The lock went with the process: the home starts again.
    again = DaemonProcess(home)
    try:
        again.start()
        again.wait_ready()
    finally:
        assert again.stop() == 0


def test_a_fresh_home_without_init_is_refused(root: Path) -> None:
    home = root / "fresh"
    message = _refused(home)
    assert f"run `sovereign --home {home} init`" in message
    assert not (home / "identity.key").exists() and not (home / "sovereign.db").exists()


def test_a_home_with_state_and_no_key_is_refused(root: Path) -> None:
    home, identity = _home_with_key(root)
    _store_with_state(home, identity)
    (home / "identity.key").unlink()
    message = _refused(home)
    assert identity.peer_id in message and "restore identity.key" in message
    assert not (home / "identity.key").exists()  # never silently regenerated


def test_a_truncated_store_is_refused(root: Path) -> None:
    home, identity = _home_with_key(root)
    _store_with_state(home, identity)
    (home / "sovereign.db").write_bytes(b"")
    message = _refused(home)
    assert "sovereign.db is empty" in message and MARKER_NAME in message
    assert (home / "sovereign.db").stat().st_size == 0  # nothing was created in its place


def test_garbage_in_a_data_page_is_refused(root: Path) -> None:
    home, identity = _home_with_key(root)
    _store_with_state(home, identity)
    db = home / "sovereign.db"
    page = 4096
    victim = db.read_bytes().index(b"peer-0100") // page
    with open(db, "r+b") as f:
        f.seek(victim * page)
        f.write(bytes((i * 37 + 11) % 256 for i in range(page)))
    message = _refused(home)
    assert "database is damaged" in message and str(db) in message


def test_an_edited_ledger_snapshot_is_refused(root: Path) -> None:
    """A replica's store edited to move coins between accounts, keeping the total supply (which
    the ledger's own checks accept): its certified digest no longer matches."""
    home, identity = _home_with_key(root)
    genesis = make_genesis("itest", (identity.peer_id,), {identity.peer_id: 1000}, 2)
    (home / "genesis.json").write_text(genesis.to_json())
    with Store(home / "sovereign.db") as store:
        transfers(store, genesis, 1, 2, identity)  # a stable checkpoint at 2, dumped
        state, _ = store.pbft_load()
        assert state is not None
        outer = decode(state, max_size=1 << 31, max_depth=4, max_items=1 << 20)
        inner = decode(outer["replica"], max_size=1 << 31, max_depth=16, max_items=1 << 26)
        inner["stable_snapshot"] = inner["app"] = move_coins(inner["stable_snapshot"], 5)
        store.pbft_commit([], [], [], (inner["stable_checkpoint"][0], encode(dict(outer, replica=encode(inner)))))
    message = _refused(home)
    assert "does not match its certified digest" in message and "backup" in message


def test_a_start_error_inside_the_services_is_one_line(root: Path) -> None:
    """The control socket is bound inside the daemon's nursery, so its refusal arrives wrapped in
    exception groups: still one line and exit 4, not a traceback with exit 1."""
    home, _ = _home_with_key(root)
    taken = root / "not-a-socket"
    taken.write_text("an operator's file")
    message = _refused(home, env={"SOVEREIGN_SOCKET": str(taken)})
    assert str(taken) in message and "not a socket" in message
    assert taken.read_text() == "an operator's file"
