"""Every subcommand of `sovereign`, given bad arguments, fails with one line on stderr starting
with "sovereign: " and a non-zero exit, never a traceback.

The subcommands and their arguments are read from the parser itself, so a new subcommand or
argument is covered without touching this file. Each run mutates one argument of a plausible
command line to a value that is bad for its kind (NaN, inf, -1, a 5000-digit integer, bytes that
are not UTF-8, a missing or binary or oversized file, a directory where a file belongs, a directory
that cannot be made) and runs `node.cli.main` in-process; a few run `.venv/bin/sovereign` as a
subprocess. Without a daemon a call exits 3 (or 2 when the CLI refuses the value itself); against
one real daemon (one replica, not a federation) the daemon's refusal must come back as exit 1.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import node.cli as cli
from node.federation.homes import create_federation_homes
from node.scaling.process import DaemonProcess

SOVEREIGN = Path(sys.executable).with_name("sovereign")
PEER = "12D3KooWPjceQrSwdWXPyLLeABRXmuqt69Rg3sBYbU1Nft9HyQ6X"
HUGE = "1" * 5000  # past Python's 4300-digit limit for int()
BIG = "1" * 4000  # parses, but far beyond any range
NOT_UTF8 = b"\xff\xfe".decode(sys.getfilesystemencoding(), "surrogateescape")  # as argv bytes arrive
TINY_BIF = """network tiny { }
variable A { type discrete [ 2 ] { yes, no }; }
probability ( A ) { table 0.3, 0.7; }
"""

# Plausible values for the arguments every command line needs, by destination.
BASE_VALUES: dict[str, list[str]] = {
    "to": [PEER], "account": [PEER], "peer": [PEER], "member": [PEER], "amount": ["5"],
    "addr": [f"/ip4/127.0.0.1/tcp/4001/p2p/{PEER}"], "tx_id": ["ab" * 32], "name": ["tiny"],
    "variable": ["A"], "evidence": ["A=yes"], "values": ["1", "2", "3", "4", "5", "6", "7", "8"],
    "params": ["{}"], "chain_id": ["c"], "balance": [f"{PEER}=5"], "horizon": ["3"], "steps": ["2"],
    "paths": ["10"], "s0": ["1"], "mu": ["0"], "sigma": ["0.1"],
}
# Commands that also need one of a group of options to be meaningful.
EXTRA_BASE: dict[str, list[str]] = {"predict scenarios": ["--horizon-steps", "3"]}
# Only argument parsing is exercised for `daemon` here: a mutation the parser accepts would start a
# daemon in this process (its start-up errors are the daemon's tests' business).
PARSE_ONLY = {"daemon"}
# Values the daemon rightly accepts although they look bad: a seed may be any integer (numpy's
# SeedSequence takes them all), and removing an address that is not there answers "not present".
DAEMON_ACCEPTS = {("predict simulate", "seed", BIG), ("predict scenarios", "seed", BIG), ("bootstrap rm", "addr", HUGE)}


@dataclass(frozen=True)
class Files:
    root: Path
    missing: Path
    directory: Path
    binary: Path
    oversized: Path
    regular: Path
    homes: Path
    bif: Path


@pytest.fixture(scope="module")
def files() -> Iterator[Files]:
    root = Path(tempfile.mkdtemp(prefix="sov-clie-", dir="/tmp"))
    try:
        (root / "dir").mkdir()
        (root / "binary").write_bytes(b"\xff\xfe\x00\x81binary\x00" * 100)
        with open(root / "oversized", "wb") as f:  # 50 MB, sparse: the issue's big.bif
            f.truncate(50 << 20)
        (root / "regular").write_text("x")
        (root / "homes" / "node-0").mkdir(parents=True)
        (root / "tiny.bif").write_text(TINY_BIF)
        yield Files(
            root, root / "missing", root / "dir", root / "binary", root / "oversized", root / "regular",
            root / "homes", root / "tiny.bif",
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


def leaves(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
        return
    for name, sub in subs[0].choices.items():
        yield from leaves(sub, (*path, name))


def slots(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if not isinstance(a, argparse._HelpAction) and a.nargs != 0]


def kind(action: argparse.Action) -> str:
    if action.choices is not None:
        return "choice"
    if action.type is Path:
        return {"dir": "dir", "socket": "socket"}.get(action.dest, "file")
    if action.dest == "params":
        return "json"
    if action.nargs in ("+", "*"):
        return "list"
    return {cli._integer: "int", cli._finite: "float", cli._seconds: "seconds"}.get(action.type, "str")  # type: ignore[arg-type]


def bad_values(action: argparse.Action, files: Files, *, daemon: bool) -> list[list[str]]:
    """Values bad for this argument whatever the rest of the line; `daemon`: those only the
    daemon can judge (the CLI passes them on)."""
    k = kind(action)
    if daemon:
        if k == "int":
            return [["-1"], [BIG]]
        if k == "str":
            return [[NOT_UTF8], [HUGE]] + ([] if action.nargs == "?" else [[""]])  # "" is "not given" there
        if k == "list" and action.dest == "evidence":
            return [[f"A={NOT_UTF8}"], [f"{HUGE}=yes"]]
        if k == "file":
            return [[str(files.regular)]]  # readable, but not a valid network
        return []
    return {
        "int": [["x"], ["1.5"], ["nan"], [HUGE]],
        "float": [["nan"], ["inf"], ["-inf"], ["1e999"], ["x"], [HUGE]],
        "seconds": [["nan"], ["inf"], ["0"], ["-1"], [HUGE]],
        "choice": [["nan"], ["99"]],
        "file": [[str(p)] for p in (files.missing, files.directory, files.binary, files.oversized, Path("/proc/x/y"))],
        "dir": [["/proc/x"], [str(files.regular / "x")], [str(files.homes)]],
        "socket": [[str(files.missing)]],
        "json": [["[NaN]"], ["[Infinity]"], ["[1e999]"], [f"[{HUGE}]"], ["[" * 100_000 + "]" * 100_000], ["nan"], ["5"], [NOT_UTF8]],
        "list": [["nan"], ["1", "inf"], ["1e999"], ["x"], [HUGE + ".5"]] if action.dest == "values" else [["novalue"], ["=x"]],
        "str": [] if action.nargs == "?" else [[""]],
    }[k]


def command_line(path: tuple[str, ...], parser: argparse.ArgumentParser, mutated: argparse.Action, value: list[str], files: Files) -> list[str]:
    argv = list(path) + EXTRA_BASE.get(" ".join(path), [])
    for action in slots(parser):
        if action is mutated:
            values = value
        elif action.required or (not action.option_strings and action.nargs not in ("?", "*")):
            values = [str(files.bif)] if action.type is Path else BASE_VALUES.get(action.dest, ["x"])
            if action.choices is not None:
                values = [str(next(iter(action.choices)))]
        else:
            continue
        if action.option_strings:
            for v in values:
                argv += [action.option_strings[0], v]
        else:
            argv += values
    return argv


def cases(files: Files, *, daemon: bool) -> Iterator[list[str]]:
    for path, parser in leaves(cli._parser()):
        if daemon and path[0] in ("init", "daemon", "demo", "tui") or path[-1] == "genesis":
            continue  # these never call the daemon
        if not daemon:
            yield [*path, "--bogus-flag"]
        for action in slots(parser):
            if path[0] in PARSE_ONLY and action.choices is None:
                continue
            for value in bad_values(action, files, daemon=daemon):
                if (" ".join(path), action.dest, value[0]) not in DAEMON_ACCEPTS or not daemon:
                    yield command_line(path, parser, action, value, files)


def run(capsys: pytest.CaptureFixture[str], home: Path, argv: list[str]) -> tuple[int, str, str]:
    code = cli.main(["--home", str(home), *argv])
    out, err = capsys.readouterr()
    return code, out, err


def failure(code: int, err: str) -> str | None:
    """Why this run is not a clean failure, or None."""
    if code == 0:
        return "exit 0"
    if "Traceback" in err:
        return "traceback"
    lines = err.splitlines()
    if len(lines) != 1 or not lines[0].startswith("sovereign: "):
        return f"stderr is not one 'sovereign: ' line: {err[:300]!r}"
    return None


def short(argv: list[str]) -> str:
    return " ".join(a if len(a) <= 40 else a[:20] + f"...({len(a)})" for a in argv)


@pytest.fixture
def home(files: Files, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.delenv("SOVEREIGN_SOCKET", raising=False)
    monkeypatch.setenv("SOVEREIGN_PASSPHRASE", "")
    h = Path(tempfile.mkdtemp(prefix="h-", dir=files.root))
    yield h
    shutil.rmtree(h, ignore_errors=True)


def test_the_enumeration_sees_every_subcommand(files: Files) -> None:
    found = {" ".join(path) for path, _ in leaves(cli._parser())}
    assert {"transfer", "tx", "predict bn load", "call", "demo", "federation genesis"} <= found
    assert set(cli.COMMANDS) == {path[0] for path, _ in leaves(cli._parser())}


def test_bad_arguments_without_a_daemon(files: Files, home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    problems = []
    count = 0
    for argv in cases(files, daemon=False):
        count += 1
        code, _, err = run(capsys, home, argv)
        why = failure(code, err) or (None if code in (2, 3, 4) else f"exit {code}")
        if why:
            problems.append(f"{short(argv)}: {why}")
    assert count > 150
    assert not problems, "\n".join(problems)


def test_a_bad_home_is_a_one_line_error(files: Files, home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    binary_config = home / "binary-config"
    binary_config.mkdir()
    (binary_config / "config.toml").write_bytes(b"\xff\xfe\x00")
    for bad in (files.regular, files.regular / "x", Path("/proc/x/y"), binary_config):
        for argv in (["init"], ["status"], ["--json", "id"]):
            code, _, err = run(capsys, bad, argv)
            assert failure(code, err) is None, (bad, argv, code, err)


def test_a_fifo_without_a_writer_does_not_hang(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fifo = home / "fifo.bif"
    os.mkfifo(fifo)
    code, _, err = run(capsys, home, ["predict", "bn", "load", "x", str(fifo)])
    assert failure(code, err) is None and code == cli.EXIT_NOT_RUNNING  # read as empty, then the call


def test_values_on_stdin_that_are_not_utf8_or_not_finite(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for data in (b"1 2 \xff\xfe 3", b"1, 2, nan", b"1 1e999", b"9" * 5000):
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
        code, _, err = run(capsys, home, ["predict", "forecast", "--horizon", "3", "-"])
        assert failure(code, err) is None and code == cli.EXIT_USAGE, (data[:20], code, err)


def test_an_existing_genesis_that_is_binary(files: Files, home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    genesis = files.root / "genesis.json"
    code, out, err = run(capsys, home, ["federation", "genesis", "--chain-id", "c", "--member", PEER])
    assert code == 0
    genesis.write_text(out)
    home.mkdir(exist_ok=True)
    (home / "genesis.json").write_bytes(b"\xff\xfe{}")
    code, _, err = run(capsys, home, ["init", "--genesis", str(genesis)])
    assert failure(code, err) is None and code == cli.EXIT_CONFIG and "not UTF-8" in err


def test_the_issues_examples_as_subprocesses(files: Files, home: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SOVEREIGN_SOCKET"}
    for argv, code in [
        (["predict", "forecast", "--horizon", "3", "1", "2", "nan"], cli.EXIT_USAGE),
        (["transfer", PEER, "5", "--timeout", "inf"], cli.EXIT_USAGE),
        (["call", "M", "[NaN]"], cli.EXIT_USAGE),
        (["call", "M", b"[\xff]"], cli.EXIT_USAGE),
        (["transfer", PEER, HUGE], cli.EXIT_USAGE),
        (["predict", "bn", "load", "x", str(files.binary)], cli.EXIT_USAGE),
        (["init", "--genesis", str(files.binary)], cli.EXIT_CONFIG),
        (["demo", "--dir", "/proc/x"], cli.EXIT_CONFIG),
        (["--json", "status"], cli.EXIT_NOT_RUNNING),
    ]:
        p = subprocess.run([SOVEREIGN, "--home", str(home), *argv], capture_output=True, env=env, timeout=60)
        err = p.stderr.decode(errors="replace")
        assert failure(p.returncode, err) is None and p.returncode == code, (argv[:4], p.returncode, err)


# ---- against a real daemon


@pytest.fixture(scope="module")
def daemon_home() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="sov-clid-", dir="/tmp"))  # AF_UNIX paths max 108 bytes
    node = None
    try:
        homes, _, _ = create_federation_homes(root, 1, chain_id="clitest")
        node = DaemonProcess(homes[0])
        node.start()
        node.wait_ready()
        yield homes[0]
    finally:
        if node is not None:
            node.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.integration
def test_bad_arguments_against_a_daemon(
    files: Files, daemon_home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SOVEREIGN_SOCKET", raising=False)
    code, _, err = run(capsys, daemon_home, ["predict", "bn", "load", "tiny", str(files.bif)])
    assert code == 0, err  # so that queries reach the network and are judged on their evidence
    problems = []
    for argv in cases(files, daemon=True):
        code, _, err = run(capsys, daemon_home, argv)
        # 1: the daemon refused it; 2: the CLI did, the combination being wrong before any call.
        why = failure(code, err) or (None if code in (cli.EXIT_CALL_FAILED, cli.EXIT_USAGE) else f"exit {code}")
        if why:
            problems.append(f"{short(argv)}: {why}")
    assert not problems, "\n".join(problems)


@pytest.mark.integration
def test_the_50_mb_bif_is_refused_before_sending(files: Files, daemon_home: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SOVEREIGN_SOCKET"}
    p = subprocess.run(
        [SOVEREIGN, "--home", str(daemon_home), "predict", "bn", "load", "big", str(files.oversized)],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert failure(p.returncode, p.stderr) is None, (p.returncode, p.stderr)
    assert "52428800 bytes" in p.stderr


@pytest.mark.integration
def test_every_output_path_against_a_daemon(
    files: Files, daemon_home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Human and --json output of the commands that succeed; --json is valid JSON."""
    monkeypatch.delenv("SOVEREIGN_SOCKET", raising=False)
    me = json.loads(run(capsys, daemon_home, ["--json", "id"])[1])["peer_id"]
    code, out, err = run(capsys, daemon_home, ["--json", "transfer", PEER, "5", "--timeout", "30"])
    assert code == 0, err
    tx_id = json.loads(out)["tx_id"]
    lines = [
        ["id"], ["status"], ["peers"], ["bootstrap", "list"], ["balance"], ["balance", me], ["tx", tx_id],
        ["tx", tx_id.upper()], ["federation", "status"], ["federation", "log"],
        ["predict", "forecast", "--horizon", "3", *BASE_VALUES["values"]],
        ["predict", "simulate", "--s0", "1", "--mu", "0", "--sigma", "0.1", "--horizon", "1", "--steps", "2", "--paths", "10", "--seed", "1"],
        ["predict", "scenarios", "--horizon-steps", "3", "--paths", "200", *BASE_VALUES["values"]],
        ["predict", "scenarios", "--tree-steps", "2", "--tree-model", "gbm", *BASE_VALUES["values"]],
        ["predict", "bn", "load", "tiny", str(files.bif)], ["predict", "bn", "query", "tiny", "A"],
        ["call", "node.status"],
    ]
    for argv in lines:
        for as_json in (False, True):
            code, out, err = run(capsys, daemon_home, (["--json"] if as_json else []) + argv)
            assert code == 0 and err == "", (argv, as_json, code, err)
            if as_json:
                json.loads(out)
    code, out, _ = run(capsys, daemon_home, ["tx", tx_id])
    assert out.startswith("applied") and tx_id in out
