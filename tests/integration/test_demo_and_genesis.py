"""`sovereign demo` (the README's first command) really runs a federation doing work, rides out
a replica's death as BFT should, and the genesis commands an operator uses to form one refuse bad
input with clear errors."""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import IO

from keys.identity import Identity
from node.rpc import ControlClient


def sovereign(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "node", *args], capture_output=True, text=True, timeout=timeout, check=False)


def test_demo_commits_transfers_and_the_replicas_agree(tmp_path: Path) -> None:
    r = sovereign("--json", "demo", "--nodes", "4", "--duration", "4", "--dir", str(tmp_path / "demo"), timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    report = json.loads(r.stdout.strip().splitlines()[-1])
    assert report["ok"] and report["replicas_agree"] and report["supply_conserved"], report
    assert report["applied"] > 0 and report["last_executed"] > 0
    assert not report["errors"], report["errors"]


class Lines:
    """A child's output, read by a thread, so each wait has a timeout and no fixed sleep."""

    def __init__(self, stream: IO[str]) -> None:
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        """The first line from now on that matches `pattern`."""
        while True:
            try:
                line = self._queue.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no line matching {pattern!r} within {timeout:g} s; output:\n" + "\n".join(self.seen)) from None
            if line is None:
                raise AssertionError(f"output ended before a line matching {pattern!r}; output:\n" + "\n".join(self.seen))
            self.seen.append(line)
            found = re.search(pattern, line)
            if found:
                return found

    def rest(self, timeout: float) -> str:
        while (line := self._queue.get(timeout=timeout)) is not None:
            self.seen.append(line)
        return "\n".join(self.seen)


def call(home: Path, method: str) -> dict[str, object]:
    with ControlClient(home / "sovereign.sock", timeout=10) as c:
        result = c.call(method)
    assert isinstance(result, dict)
    return result


def test_demo_keeps_committing_while_a_replica_is_dead_and_restarts_it(tmp_path: Path) -> None:
    root = Path(tempfile.mkdtemp(prefix="sovdemo-", dir="/tmp"))  # AF_UNIX paths max 108 bytes
    # --duration only bounds a run gone wrong: the test stops the demo as a user does, with Ctrl-C.
    cmd = [sys.executable, "-m", "node", "demo", "--nodes", "4", "--duration", "600", "--dir", str(root)]
    demo = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert demo.stdout is not None
    lines = Lines(demo.stdout)
    try:
        lines.wait_for(r"streaming transfers", 90)
        lines.wait_for(r"tx/s committed", 30)
        # A backup, not the primary: its death needs no view change, so nothing stops the others.
        homes = sorted(root.glob("node-*"))
        primary = call(homes[0], "federation.status")["primary"]
        victim = next(h for h in homes if call(h, "node.id")["peer_id"] != primary)
        pid = call(victim, "node.status")["pid"]
        assert isinstance(pid, int)
        os.kill(pid, signal.SIGKILL)

        died = lines.wait_for(rf"{victim.name} \(peer \S+, pid {pid}\) died, killed by SIGKILL; (\d) of 4 replicas up", 30)
        assert died.group(1) == "3" and "the others keep committing" in died.string
        back = lines.wait_for(rf"{victim.name} is back \(pid (\d+)\).* executed seq (\d+) -> (\d+)", 60)
        assert int(back.group(1)) != pid
        assert int(back.group(3)) > int(back.group(2)), "the others did not commit while it was down"
        caught = lines.wait_for(rf"{victim.name} caught up: executed seq (\d+)", 60)
        assert int(caught.group(1)) >= int(back.group(3))
        assert call(victim, "node.status")["pid"] == int(back.group(1))

        demo.send_signal(signal.SIGINT)
        assert demo.wait(timeout=90) == 0, lines.rest(10)
        out = lines.rest(10)
        assert "replicas agree" in out and "total supply conserved" in out, out
        assert "daemon deaths: 1, restarts: 1" in out, out
        assert "Traceback" not in out, out
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        shutil.rmtree(root, ignore_errors=True)


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
