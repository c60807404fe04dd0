"""The control API's surface is pinned: every method's name, params schema and doc, as `rpc.methods`
lists them, against tests/node/data/rpc_methods.json.

A change there is a change for every script and client of the control socket, so it must be
deliberate: on an intended change, regenerate the fixture (SOVEREIGN_UPDATE_FIXTURES=1 and run
this file) and update README's control API to match.
"""

from __future__ import annotations

import difflib
import json
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
import trio

from node import api
from node.control import ControlServer
from node.federation.service import Federation
from node.rpc import CALL_FAILED, INVALID_PARAMS
from node.runtime.service import Protocols
from tests.node.line_client import Line

FIXTURE = Path(__file__).resolve().parent / "data" / "rpc_methods.json"
ANSWER_TIMEOUT_S = 30  # a guard against a hang, never reached when all is well


@asynccontextmanager
async def served(fed: Federation | None) -> AsyncIterator[Line]:
    """A control server with every method the daemon registers. The handlers are never called
    with a real service behind them here: only their registration (and refusals) are looked at."""
    home = Path(tempfile.mkdtemp(prefix="sov-api-", dir="/tmp"))  # AF_UNIX paths are short
    try:
        server = ControlServer(home / "c.sock")
        api.register_all(server, cast(api.NodeContext, SimpleNamespace()), fed, home, cast(Protocols, SimpleNamespace()))
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve)
            stream = await trio.open_unix_socket(str(home / "c.sock"))
            try:
                yield Line(stream, ANSWER_TIMEOUT_S)
            finally:
                await stream.aclose()
                nursery.cancel_scope.cancel()
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _dump(listing: Any) -> str:
    return json.dumps(listing, indent=1, sort_keys=True) + "\n"


@pytest.mark.parametrize("with_federation", [False, True], ids=["no-genesis", "federation"])
async def test_the_method_list_and_params_schemas_match_the_fixture(with_federation: bool) -> None:
    # A node without a genesis file lists ledger.* and federation.* exactly as a member does.
    fed = cast(Federation, object()) if with_federation else None
    async with served(fed) as rpc:
        reply = await rpc.call("rpc.methods")
    got = _dump(reply["result"])
    if os.environ.get("SOVEREIGN_UPDATE_FIXTURES"):
        FIXTURE.parent.mkdir(exist_ok=True)
        FIXTURE.write_text(got)
    want = FIXTURE.read_text()
    if got != want:
        diff = "".join(difflib.unified_diff(want.splitlines(True), got.splitlines(True), str(FIXTURE), "rpc.methods"))
        pytest.fail(
            "the control API changed (a method's name, params schema or doc). If that is intended, regenerate "
            "the fixture with SOVEREIGN_UPDATE_FIXTURES=1 .venv/bin/python -m pytest tests/node/test_rpc_methods.py "
            f"and update README's control API to match; if not, undo it.\n{diff}",
            pytrace=False,
        )


async def test_without_a_federation_each_ledger_and_federation_method_says_why() -> None:
    async with served(None) as rpc:
        listing = (await rpc.call("rpc.methods"))["result"]
        names = [m["name"] for m in listing if m["name"].startswith(("ledger.", "federation."))]
        assert len(names) == 7
        for name in names:
            reply = await rpc.call(name, {})
            if "error" in reply and reply["error"]["code"] == INVALID_PARAMS:  # a required field: give it
                reply = await rpc.call(name, {"to": "x", "amount": 1} if name == "ledger.transfer" else {"id": "x"})
            assert reply["error"]["code"] == CALL_FAILED, (name, reply)
            assert reply["error"]["message"] == api.NO_FEDERATION
        # Params are still checked first, by the schema the listing shows.
        bad = await rpc.call("ledger.transfer", {"to": "x", "amount": "one"})
        assert bad["error"]["code"] == INVALID_PARAMS
