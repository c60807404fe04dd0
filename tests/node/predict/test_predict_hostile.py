"""The predict.* control methods under hostile input (issue 11, item 2 and the predictor part of
item 11), driven through a ControlServer in the test's process over a real Unix socket: bounds
are checked before anything is expanded, the BIF is stored as given, and no input, however
extreme, answers -32603 (internal error)."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from node.api.predict import register_predict
from node.api.predict_bounds import FORECAST_METHODS as METHODS
from node.api.predict_bounds import MAX_BIF, MAX_STORED_BIF, TREE_MODELS
from node.control import ControlServer
from node.rpc import CALL_FAILED, INTERNAL_ERROR, INVALID_PARAMS, INVALID_REQUEST

from .hostile_bif import all_pairs, one_default_row
from tests.node.line_client import Line

DATA = Path(__file__).resolve().parents[2] / "data"
ASIA = (DATA / "asia.bif").read_text()
HANG_GUARD_S = 120  # a call that has not answered by then is hung (never reached when all is well)


@asynccontextmanager
async def predictor() -> AsyncIterator[tuple[Line, Path]]:
    """A ControlServer with only the predict.* methods, over a home in a temp dir."""
    # pytest's tmp_path can exceed the 108-byte AF_UNIX path limit.
    home = Path(tempfile.mkdtemp(prefix="sov-pred-", dir="/tmp"))
    try:
        server = ControlServer(home / "c.sock")
        register_predict(server, home)
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve)
            stream = await trio.open_unix_socket(str(home / "c.sock"))
            try:
                yield Line(stream, HANG_GUARD_S), home
            finally:
                await stream.aclose()
                nursery.cancel_scope.cancel()
    finally:
        shutil.rmtree(home, ignore_errors=True)


def error(reply: dict[str, Any], code: int = INVALID_PARAMS) -> dict[str, Any]:
    assert "error" in reply, reply
    err: dict[str, Any] = reply["error"]
    assert err["code"] == code, err
    return err


def not_internal(method: str, params: Any, reply: dict[str, Any]) -> None:
    """What every answer must be: a result, invalid params naming the field, a call failure, or
    (params neither an object nor an array) an invalid request."""
    if "result" in reply:
        return
    err = reply["error"]
    assert err["code"] != INTERNAL_ERROR, (method, params, err)
    assert err["code"] in (INVALID_PARAMS, CALL_FAILED, INVALID_REQUEST), (method, params, err)
    if err["code"] == INVALID_PARAMS:
        assert err.get("data", {}).get("field") or err.get("data", {}).get("reason") == "too_many", (params, err)


# ---------------------------------------------------------------------------------------------
# Bayesian networks: bounded before expanding, stored as given, re-read under the same bounds


async def test_a_2kb_bif_with_21_parents_is_refused_quickly_and_nothing_is_written() -> None:
    async with predictor() as (rpc, home):
        for parents in (21, 18):
            err = error(await rpc.call("predict.bn.load", {"name": "hostile", "bif": one_default_row(parents)}))
            assert "parents=12" in err["message"] and f"has {parents} parents" in err["message"], err
            assert err["data"] == {"field": "bif", "limit": "parents", "value": 12}
        err = error(await rpc.call("predict.bn.load", {"name": "wide", "bif": one_default_row(12, states=4)}))
        assert err["data"]["limit"] == "table_entries" and "table_entries=262,144" in err["message"]
        assert not list((home / "bn").glob("*")) if (home / "bn").exists() else True


async def test_a_network_is_stored_as_given_and_queried() -> None:
    async with predictor() as (rpc, home):
        text = one_default_row(12)  # 8,192 entries once expanded: the stored file stays this text
        assert "result" in await rpc.call("predict.bn.load", {"name": "wide", "bif": text})
        assert (home / "bn" / "wide.bif").read_text() == text
        assert [p.name for p in (home / "bn").iterdir()] == ["wide.bif"]  # no temp file left
        reply = await rpc.call("predict.bn.query", {"name": "wide", "variable": "x", "evidence": {"p3": "s1"}})
        assert reply["result"]["distribution"] == {"s0": 0.5, "s1": 0.5}
        assert "result" in await rpc.call("predict.bn.load", {"name": "asia", "bif": ASIA})
        post = await rpc.call("predict.bn.query", {"name": "asia", "variable": "lung", "evidence": {"xray": "yes"}})
        assert post["result"]["distribution"]["yes"] > 0.055
        err = error(await rpc.call("predict.bn.query", {"name": "asia", "variable": "nope"}))
        assert err["data"]["field"] == "variable"


async def test_a_query_whose_plan_is_too_large_is_refused_before_it_runs() -> None:
    text, evidence = all_pairs(40)
    async with predictor() as (rpc, _):
        assert "result" in await rpc.call("predict.bn.load", {"name": "dense", "bif": text})
        err = error(await rpc.call("predict.bn.query", {"name": "dense", "variable": "r0", "evidence": evidence}))
        assert err["data"] == {"field": "evidence", "limit": "factor_entries", "value": 4_194_304}
        assert "factor over 40 variables" in err["message"]
        ok = await rpc.call("predict.bn.query", {"name": "dense", "variable": "r0"})
        assert ok["result"]["distribution"] == {"y": 0.5, "n": 0.5}


async def test_a_stored_file_is_reread_under_the_same_bounds() -> None:
    async with predictor() as (rpc, home):
        (home / "bn").mkdir()
        # Written into the home behind the daemon's back (or by an older version).
        (home / "bn" / "edited.bif").write_text(one_default_row(21))
        err = error(await rpc.call("predict.bn.query", {"name": "edited", "variable": "x"}), CALL_FAILED)
        assert "parents=12" in err["message"]
        (home / "bn" / "big.bif").write_text(ASIA + "//" + "x" * MAX_STORED_BIF)
        err = error(await rpc.call("predict.bn.query", {"name": "big", "variable": "lung"}), CALL_FAILED)
        assert "load it again" in err["message"]
        err = error(await rpc.call("predict.bn.load", {"name": "long", "bif": " " * (MAX_BIF + 1)}))
        assert err["data"]["field"] == "bif"
        err = error(await rpc.call("predict.bn.load", {"name": "odd", "bif": ASIA + "// \ud800"}))
        assert err["data"]["field"] == "bif"


# ---------------------------------------------------------------------------------------------
# Forecasts, simulations, scenarios: the cases, each a -32602 naming its field


async def test_extreme_values_are_invalid_params_naming_the_field() -> None:
    prices = [100.0 * 1.001**t for t in range(40)]
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("predict.forecast", {"y": [1e308, -1e308] * 10, "horizon": 3}, "y"),
        ("predict.forecast", {"y": [1.0, 2.0] * 10, "horizon": 3, "period": 1}, "period"),
        ("predict.forecast", {"y": [1.0, 2.0] * 10, "horizon": 3, "period": 11}, "period"),
        ("predict.forecast", {"y": [1.0, 2.0] * 10, "horizon": 10**6}, "horizon"),
        ("predict.scenarios", {"prices": [1e308, 1e-308, 1e308], "tree": {"steps": 3}}, "prices"),
        ("predict.scenarios", {"prices": [1e100, 1e-308, 1e100], "tree": {"steps": 3, "model": "gbm"}}, "tree"),
        ("predict.scenarios", {"prices": prices, "horizon_steps": 5, "shock_step": 9, "shock_multiply": 2.0},
         "shock_step"),
        ("predict.scenarios", {"prices": prices, "horizon_steps": 5, "paths": 10}, "paths"),
        ("predict.scenarios", {"prices": prices, "horizon_steps": 10**5, "paths": 100}, "horizon_steps"),
        ("predict.simulate", {"s0": 100, "mu": 800, "sigma": 0.2, "horizon": 1, "steps": 10, "paths": 10}, "mu"),
        ("predict.simulate", {"s0": 1e308, "mu": 0, "sigma": 0.2, "horizon": 1, "steps": 10, "paths": 10}, "s0"),
        ("predict.simulate", {"s0": 1, "mu": 0, "sigma": 0.2, "horizon": 1, "steps": 1, "paths": 10**7}, "paths"),
        ("predict.simulate", {"s0": 1, "mu": 0, "sigma": 0.2, "horizon": 1, "steps": 10, "paths": 10,
                              "seed": -1}, "seed"),
    ]
    async with predictor() as (rpc, _):
        for method, params, field in cases:
            err = error(await rpc.call(method, params))
            assert err["data"]["field"] == field, (method, params, err)


# ---------------------------------------------------------------------------------------------
# Generated hostile params: never -32603


EXTREME_FLOATS = st.sampled_from([1e308, -1e308, 5e-324, -5e-324, 1e-308, 1e100, -1e100, 1e150, 0.0, -0.0, 1.0])
HUGE_INTS = st.sampled_from([0, 1, -1, 2, 2**31, 2**53 + 1, 2**63 - 1, 2**63, -(2**63) - 1, 10**30, 10**400])
SCALARS = (
    st.none() | st.booleans() | HUGE_INTS | st.integers(-10, 50) | EXTREME_FLOATS
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12)
)
DEEP = st.integers(1, 60).map(lambda depth: json.loads("[" * depth + "1" + "]" * depth))
HOSTILE = st.recursive(
    SCALARS | DEEP, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
IN_RANGE = st.sampled_from([1e100, -1e100, 1e-308, 5e-324, 1e-200, 0.0, 1.0, 1e6])  # finite, within MAX_ABS
REALS = EXTREME_FLOATS | IN_RANGE | st.floats(-1e6, 1e6) | st.floats(allow_nan=False, allow_infinity=False)
SERIES = st.one_of(
    st.lists(IN_RANGE | st.floats(0.5, 200.0), max_size=24),
    st.lists(st.floats(50.0, 150.0), min_size=3, max_size=24),
    st.lists(REALS, max_size=24),
)


def params(required: dict[str, st.SearchStrategy[Any]], optional: dict[str, st.SearchStrategy[Any]]
           ) -> st.SearchStrategy[Any]:
    """Params of the right JSON types with extreme values (these reach the handler), params with
    any field of any shape (these reach the control server's checks), and params of any shape."""
    typed = st.fixed_dictionaries(required, optional=optional)
    messy = st.fixed_dictionaries({k: v | HOSTILE for k, v in required.items()},
                                  optional={k: v | HOSTILE for k, v in optional.items()} | {"extra": HOSTILE})
    return st.one_of(typed, typed, typed, typed, typed, messy, st.lists(HOSTILE, max_size=9), HOSTILE)


FORECAST = params(
    {"y": SERIES, "horizon": st.integers(1, 40) | HUGE_INTS},
    {"period": st.integers(2, 12) | HUGE_INTS, "method": st.sampled_from(list(METHODS.__args__)),
     "level": st.floats(0.01, 0.99) | REALS},
)
SIMULATE = params(
    {"s0": st.floats(1e-300, 1e100) | REALS, "mu": st.floats(-1e3, 1e3) | REALS, "sigma": st.floats(0, 50) | REALS,
     "horizon": st.floats(1e-6, 1e3) | REALS, "steps": st.integers(1, 60) | HUGE_INTS,
     "paths": st.integers(1, 3000) | HUGE_INTS},
    {"seed": st.integers(0, 10) | HUGE_INTS, "level": st.floats(0.01, 0.99) | REALS},
)
TREE = st.fixed_dictionaries({}, optional={
    "steps": st.integers(1, 4) | HUGE_INTS, "branching": st.sampled_from([2, 3]) | HUGE_INTS,
    "model": st.sampled_from(TREE_MODELS), "period": st.integers(2, 6) | HUGE_INTS,
})
SCENARIOS = params(
    {"prices": SERIES},
    {"horizon_steps": st.integers(1, 30) | HUGE_INTS, "paths": st.integers(50, 2000) | HUGE_INTS,
     "seed": st.integers(0, 10) | HUGE_INTS, "shock_step": st.integers(-1, 30) | HUGE_INTS,
     "shock_multiply": REALS, "tree": TREE},
)
BIFS = st.sampled_from([ASIA, one_default_row(21), one_default_row(12, states=4), all_pairs(12)[0], ASIA[:500],
                        "network x { }", "variable a { type discrete [ 99999999999 ] { a }; }"])
BN_LOAD = params({"name": st.sampled_from(["asia", "a-b_9", "../x", ""]) | st.text(max_size=70),
                  "bif": BIFS | st.text(max_size=200)}, {})
ASIA_VARS = st.sampled_from(["asia", "tub", "smoke", "lung", "bronc", "either", "xray", "dysp"])
BN_QUERY = params(
    {"name": st.sampled_from(["asia", "dense", "missing"]), "variable": ASIA_VARS | st.text(max_size=10)},
    {"evidence": st.dictionaries(ASIA_VARS | st.text(max_size=5), st.sampled_from(["yes", "no", "y"]) | st.text(max_size=5),
                                 max_size=4)},
)
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


async def drive(method: str, p: Any, *, preload: bool = False) -> None:
    async with predictor() as (rpc, _):
        if preload:
            assert "result" in await rpc.call("predict.bn.load", {"name": "asia", "bif": ASIA})
            assert "result" in await rpc.call("predict.bn.load", {"name": "dense", "bif": all_pairs(12)[0]})
        reply = await rpc.call(method, p)
        event(f"answered {reply['error']['code'] if 'error' in reply else 'a result'}")
        not_internal(method, p, reply)
        # ... and the server still answers.
        assert "result" in await rpc.call("predict.forecast", {"y": [1.0, 2.0, 3.0], "horizon": 1, "method": "naive"})


@FUZZ
@given(FORECAST)
async def test_forecast_never_answers_internal_error(p: Any) -> None:
    await drive("predict.forecast", p)


@FUZZ
@given(SIMULATE)
async def test_simulate_never_answers_internal_error(p: Any) -> None:
    await drive("predict.simulate", p)


@FUZZ
@given(SCENARIOS)
async def test_scenarios_never_answer_internal_error(p: Any) -> None:
    await drive("predict.scenarios", p)


@FUZZ
@given(BN_LOAD)
async def test_bn_load_never_answers_internal_error(p: Any) -> None:
    await drive("predict.bn.load", p)


@FUZZ
@given(BN_QUERY)
async def test_bn_query_never_answers_internal_error(p: Any) -> None:
    await drive("predict.bn.query", p, preload=True)
