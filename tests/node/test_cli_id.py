"""`sovereign id` answers from the home when no daemon runs (the peer id is public: learning it
must not need the daemon), says that it is offline, and with a daemon says that it is online."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from keys.identity import Identity, save_identity
from node import cli
from node.home import MARKER_NAME, Marker, write_marker
from node.scaling.process import DaemonProcess

LISTEN = ["/ip4/127.0.0.1/tcp/4711", "/ip6/::1/tcp/4712"]


@pytest.fixture
def home(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.delenv("SOVEREIGN_SOCKET", raising=False)
    monkeypatch.delenv("SOVEREIGN_PASSPHRASE", raising=False)
    monkeypatch.delenv("SOVEREIGN_LISTEN", raising=False)
    root = Path(tempfile.mkdtemp(prefix="sov-id-", dir="/tmp"))  # AF_UNIX paths max 108 bytes
    h = root / "h"
    h.mkdir(mode=0o700)
    (h / "config.toml").write_text(f"listen = {json.dumps(LISTEN)}\n")
    yield h
    shutil.rmtree(root, ignore_errors=True)


def run(capsys: pytest.CaptureFixture[str], home: Path, *argv: str) -> tuple[int, str, str]:
    code = cli.main(["--home", str(home), *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_offline_id_reads_the_key_and_the_configured_addresses(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    me = Identity.generate()
    save_identity(me, home / "identity.key")
    code, out, err = run(capsys, home, "id")
    assert code == cli.EXIT_OK, err
    assert out.splitlines() == [me.peer_id, *(f"{a}/p2p/{me.peer_id}" for a in LISTEN)]
    # One line on stderr says it: the addresses are what the config asks for, nothing is bound.
    assert len(err.splitlines()) == 1 and "offline" in err and "not bound" in err
    code, out, _ = run(capsys, home, "--json", "id")
    assert code == cli.EXIT_OK
    assert json.loads(out) == {"peer_id": me.peer_id, "addrs": [f"{a}/p2p/{me.peer_id}" for a in LISTEN], "online": False}


def test_an_encrypted_key_needs_its_passphrase_or_the_homes_marker(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    me = Identity.generate()
    save_identity(me, home / "identity.key", b"secret")
    code, out, err = run(capsys, home, "id")
    assert code == cli.EXIT_CONFIG and out == ""
    assert err.startswith("sovereign: ") and len(err.splitlines()) == 1 and "SOVEREIGN_PASSPHRASE" in err
    monkeypatch.setenv("SOVEREIGN_PASSPHRASE", "secret")
    code, out, _ = run(capsys, home, "--json", "id")
    assert code == cli.EXIT_OK and json.loads(out)["peer_id"] == me.peer_id
    monkeypatch.setenv("SOVEREIGN_PASSPHRASE", "wrong")
    code, _, err = run(capsys, home, "id")
    assert code == cli.EXIT_CONFIG and "wrong passphrase" in err
    # A home whose daemon once ran records its peer id beside the key: that is enough to say it.
    monkeypatch.delenv("SOVEREIGN_PASSPHRASE")
    write_marker(home, Marker("store-1", me.peer_id))
    code, out, err = run(capsys, home, "id")
    assert code == cli.EXIT_OK and out.splitlines()[0] == me.peer_id
    assert "encrypted" in err and MARKER_NAME in err


def test_a_home_without_a_key_says_to_run_init(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, home, "id")
    assert code == cli.EXIT_CONFIG and out == ""
    assert err.startswith("sovereign: ") and len(err.splitlines()) == 1 and "init" in err
    assert not (home / "identity.key").exists()  # `id` never creates a key
    # A home that has state but lost its key must not be told to make a new one.
    write_marker(home, Marker("store-1", Identity.generate().peer_id))
    code, _, err = run(capsys, home, "id")
    assert code == cli.EXIT_CONFIG and "restore" in err and "backup" in err


def test_with_a_running_daemon_it_answers_online(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (home / "config.toml").unlink()
    daemon = DaemonProcess(home)
    try:
        daemon.start()
        daemon.wait_ready()
        code, out, err = run(capsys, home, "--json", "id")
        assert code == cli.EXIT_OK and err == ""
        answer = json.loads(out)
        assert answer["online"] is True and answer["addrs"] == daemon.call("node.id")["addrs"]
        code, out, _ = run(capsys, home, "id")
        assert code == cli.EXIT_OK and out.splitlines()[0] == answer["peer_id"]
    finally:
        daemon.stop()
