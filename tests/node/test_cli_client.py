"""The control client and the CLI against an in-process control server that misbehaves on purpose:
a call slower than the client's default timeout, a daemon that never answers, one that refuses a
line over its limit or a client over its limit and hangs up mid-write, a transfer that is not
committed in time. Each must end in the daemon's own error (or a clear one-line CLI error and a
non-zero exit), never a broken pipe taken for success or a traceback.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio

import node.cli as cli
from node.api import TransferParams
from node.control import ControlServer
from node.rpc import (
    CALL_FAILED,
    REQUEST_TOO_LARGE,
    UNAVAILABLE,
    CallTimeout,
    ControlClient,
    DaemonNotRunning,
    RpcError,
)

PEER = "12D3KooWPjceQrSwdWXPyLLeABRXmuqt69Rg3sBYbU1Nft9HyQ6X"
TX_ID = "9f" * 32
POLL_S = 0.005  # polling interval for conditions the test cannot await; always under fail_after


@dataclass(frozen=True)
class EchoParams:
    value: Any = None


class Daemon:
    """Stand-ins for the daemon's methods, each failing one way."""

    def __init__(self) -> None:
        self.transfers: list[TransferParams] = []
        self.answer_transfers = True

    async def echo(self, p: EchoParams) -> Any:
        return p.value

    async def slow(self) -> str:
        # Longer than the client's default timeout in the test (0.05 s): a sleep never ends
        # early, so a client that applied its default would always time out.
        await trio.sleep(0.3)
        return "late but here"

    async def silent(self) -> None:
        await trio.sleep_forever()

    async def transfer(self, p: TransferParams) -> dict[str, Any]:
        # As node/api.py does when the commit does not come within the call's timeout.
        self.transfers.append(p)
        if not self.answer_transfers:
            await trio.sleep_forever()
        await trio.sleep(p.timeout)
        raise RpcError(CALL_FAILED, f"transaction {TX_ID} not committed within {p.timeout:g} s", {"tx_id": TX_ID})


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="sov-cli-", dir="/tmp"))  # AF_UNIX paths max 108 bytes
    yield d
    shutil.rmtree(d, ignore_errors=True)


async def serve(nursery: trio.Nursery, path: Path, **limits: Any) -> tuple[ControlServer, Daemon]:
    server = ControlServer(path, **limits)
    daemon = Daemon()
    server.register("test.echo", daemon.echo, EchoParams)
    server.register("test.slow", daemon.slow)
    server.register("test.silent", daemon.silent)
    server.register("ledger.transfer", daemon.transfer, TransferParams)
    await nursery.start(server.serve)
    return server, daemon


@pytest.fixture
async def served(nursery: trio.Nursery, sock_dir: Path) -> AsyncIterator[tuple[ControlServer, Daemon]]:
    yield await serve(nursery, sock_dir / "c.sock")


def run_cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], socket_path: Path, *argv: str
) -> tuple[int, str, str]:
    monkeypatch.setenv("SOVEREIGN_SOCKET", str(socket_path))
    monkeypatch.setenv("SOVEREIGN_HOME", str(socket_path.parent))
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str) -> str:
    assert code != 0
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("sovereign: "), err
    return lines[0]


# ---- the client


async def test_a_call_waits_its_own_timeout_not_the_clients(served: tuple[ControlServer, Daemon]) -> None:
    server, _ = served

    def run() -> Any:
        client = ControlClient(server.socket_path, timeout=0.05)
        try:
            return client.call("test.slow", timeout=30)
        finally:
            client.close()

    with trio.fail_after(20):
        assert await trio.to_thread.run_sync(run) == "late but here"


async def test_a_call_without_a_timeout_waits_past_the_clients(served: tuple[ControlServer, Daemon]) -> None:
    """``timeout=None`` is "forever", not the client's own 0.05 s left on the socket."""
    server, _ = served

    def run() -> Any:
        with ControlClient(server.socket_path, timeout=0.05) as client:
            return client.call("test.slow", timeout=None)

    with trio.fail_after(20):
        assert await trio.to_thread.run_sync(run) == "late but here"


async def test_no_answer_in_time_is_a_call_timeout(served: tuple[ControlServer, Daemon]) -> None:
    server, _ = served

    def run() -> None:
        with ControlClient(server.socket_path, timeout=5) as client, pytest.raises(CallTimeout) as err:
            client.call("test.silent", timeout=0.05)
        assert err.value.method == "test.silent" and isinstance(err.value, TimeoutError)

    with trio.fail_after(10):
        await trio.to_thread.run_sync(run)


async def test_the_daemons_refusal_of_a_long_line_is_read_after_the_write_fails(
    nursery: trio.Nursery, sock_dir: Path
) -> None:
    server, _ = await serve(nursery, sock_dir / "c.sock", max_line=1000)

    def run() -> RpcError:
        # 8 MiB: far more than the socket buffers hold, so the daemon hangs up mid-write.
        with ControlClient(server.socket_path, timeout=5) as client, pytest.raises(RpcError) as err:
            client.call("test.echo", {"value": "x" * (8 << 20)})
        return err.value

    with trio.fail_after(10):
        error = await trio.to_thread.run_sync(run)
    assert error.code == REQUEST_TOO_LARGE


async def test_the_client_limits_refusal_is_the_error_not_a_reset(nursery: trio.Nursery, sock_dir: Path) -> None:
    server, _ = await serve(nursery, sock_dir / "c.sock", max_clients=1)
    holder = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        holder.connect(str(server.socket_path))
        with trio.fail_after(5):
            while len(server._connections) < 1:
                await trio.sleep(POLL_S)

        def run(payload: int) -> RpcError:
            with ControlClient(server.socket_path, timeout=5) as client, pytest.raises(RpcError) as err:
                client.call("test.echo", {"value": "x" * payload})
            return err.value

        with trio.fail_after(10):
            # A small request (the refusal arrives before or after our write) and a large one
            # (the write itself fails with a reset or a broken pipe).
            for payload in (1, 4 << 20):
                error = await trio.to_thread.run_sync(run, payload)
                assert error.code == UNAVAILABLE, error
    finally:
        holder.close()


def test_params_json_cannot_carry_and_long_requests_fail_before_connecting(sock_dir: Path) -> None:
    client = ControlClient(sock_dir / "missing.sock", max_request_line=100)
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError):
            client.call("m", [bad])
    with pytest.raises(RpcError) as err:
        client.call("m", ["x" * 200])
    assert err.value.code == REQUEST_TOO_LARGE
    with pytest.raises(DaemonNotRunning):
        client.call("m", ["x"])


# ---- the CLI


def test_the_socket_waits_for_the_transfers_own_timeout(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], sock_dir: Path
) -> None:
    """`transfer --timeout 20` must wait past 20 s for the daemon's answer (it gave up at 10)."""
    waits: list[Any] = []

    class Recorder(ControlClient):
        def call(self, method: str, params: Any = None, *, timeout: Any = None) -> Any:
            waits.append(timeout)
            return {"tx_id": TX_ID, "status": "applied", "reason": ""}

    monkeypatch.setattr(cli, "ControlClient", Recorder)
    code, out, _ = run_cli(monkeypatch, capsys, sock_dir / "c.sock", "transfer", PEER, "5", "--timeout", "20")
    assert code == 0 and TX_ID in out
    assert waits[0] > 20
    for timeout in (0.5, 600, 3600):
        assert cli.call_wait({"timeout": timeout}) > timeout
    assert cli.call_wait(None) > cli.DAEMON_DEFAULT_WAIT  # the daemon's default when none is given
    assert cli.call_wait({"timeout": 1e300}) < 2 * cli.DAEMON_MAX_WAIT  # still a valid socket timeout


async def test_a_transfer_not_committed_in_time_names_its_tx_id(
    served: tuple[ControlServer, Daemon], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    server, daemon = served
    with trio.fail_after(20):
        code, out, err = await trio.to_thread.run_sync(
            run_cli, monkeypatch, capsys, server.socket_path, "transfer", PEER, "5", "--timeout", "0.2"
        )
    line = assert_one_line_error(code, err)
    assert code == cli.EXIT_CALL_FAILED and out == ""
    assert f"tx {TX_ID} is still pending" in line and f"sovereign tx {TX_ID}" in line
    assert daemon.transfers[0].timeout == 0.2

    with trio.fail_after(20):
        code, out, err = await trio.to_thread.run_sync(
            run_cli, monkeypatch, capsys, server.socket_path, "--json", "transfer", PEER, "5", "--timeout", "0.2"
        )
    assert_one_line_error(code, err)
    assert json.loads(out)["tx_id"] == TX_ID and json.loads(out)["status"] == "pending"


async def test_no_answer_is_a_one_line_error_that_warns_against_resending(
    served: tuple[ControlServer, Daemon], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    server, daemon = served
    daemon.answer_transfers = False
    monkeypatch.setattr(cli, "call_wait", lambda params: 0.1)  # not the 35 s a real wait would be
    with trio.fail_after(20):
        code, _, err = await trio.to_thread.run_sync(
            run_cli, monkeypatch, capsys, server.socket_path, "transfer", PEER, "5", "--timeout", "1"
        )
    line = assert_one_line_error(code, err)
    assert code == cli.EXIT_CALL_FAILED
    assert "no answer from the daemon" in line and "may still commit" in line


async def test_cli_reports_the_daemons_refusal_at_its_client_limit(
    nursery: trio.Nursery, sock_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    server, _ = await serve(nursery, sock_dir / "c.sock", max_clients=1)
    holder = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        holder.connect(str(server.socket_path))
        with trio.fail_after(5):
            while len(server._connections) < 1:
                await trio.sleep(POLL_S)
        with trio.fail_after(20):
            code, _, err = await trio.to_thread.run_sync(
                run_cli, monkeypatch, capsys, server.socket_path, "call", "test.echo", '{"value": 1}'
            )
    finally:
        holder.close()
    line = assert_one_line_error(code, err)
    assert code == cli.EXIT_CALL_FAILED and "too many control clients" in line


async def test_a_daemon_that_hangs_up_is_a_one_line_error(
    served: tuple[ControlServer, Daemon], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    server, _ = served
    server.allowed_uids = frozenset({os.getuid() + 1})  # our connection is closed at once, without a word
    with trio.fail_after(20):
        code, _, err = await trio.to_thread.run_sync(run_cli, monkeypatch, capsys, server.socket_path, "status")
    line = assert_one_line_error(code, err)
    assert code == cli.EXIT_CALL_FAILED and "hung up" in line


async def test_the_async_client_sees_the_refusal_too(nursery: trio.Nursery, sock_dir: Path) -> None:
    from node.rpc import AsyncControlClient

    server, _ = await serve(nursery, sock_dir / "c.sock", max_clients=1)
    holder = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        holder.connect(str(server.socket_path))
        with trio.fail_after(5):
            while len(server._connections) < 1:
                await trio.sleep(POLL_S)
        with trio.fail_after(10):
            client = await AsyncControlClient.connect(server.socket_path)  # calls serialised
            with pytest.raises(RpcError) as err:
                await client.call("test.echo", {"value": 1})
            await client.aclose()
            assert err.value.code == UNAVAILABLE
            async with AsyncControlClient(server.socket_path) as client:  # calls routed by a reader
                with pytest.raises(RpcError) as err:
                    await client.call("test.echo", {"value": 1})
            assert err.value.code == UNAVAILABLE
    finally:
        holder.close()
