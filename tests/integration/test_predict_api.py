"""The predictor through a real daemon's control socket: forecast, simulate, scenarios and scenario
trees, Bayesian networks."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.rpc import RpcError

from .conftest import Cluster

ASIA = (Path(__file__).parent.parent / "data" / "asia.bif").read_text()


def test_predict_methods_answer_and_refuse_bad_input(cluster: Cluster) -> None:
    node = cluster.start("p")

    y = [10.0 + 0.5 * t for t in range(40)]
    f = node.call("predict.forecast", {"y": y, "horizon": 5, "method": "drift", "level": 0.9})
    assert f["method"] == "drift" and len(f["mean"]) == 5
    assert f["mean"][0] == pytest.approx(30.0, abs=0.01)
    assert all(lo <= m <= hi for lo, m, hi in zip(f["lower"], f["mean"], f["upper"]))
    auto = node.call("predict.forecast", {"y": y, "horizon": 3})
    assert auto["method"] and len(auto["upper"]) == 3

    sim = node.call("predict.simulate", {"s0": 100, "mu": 0.05, "sigma": 0.2, "horizon": 1, "steps": 50, "paths": 20000, "seed": 7})
    assert sim["terminal"]["low"] < 100 * 2.718281828 ** 0.05 < sim["terminal"]["high"]
    assert sim["quantiles"]["p05"] < sim["quantiles"]["p50"] < sim["quantiles"]["p95"]
    assert sim["cvar"] >= sim["var"]
    again = node.call("predict.simulate", {"s0": 100, "mu": 0.05, "sigma": 0.2, "horizon": 1, "steps": 50, "paths": 20000, "seed": 7})
    assert again == sim  # seeded: reproducible

    prices = [100.0 * 1.001 ** t * (1.0 + 0.01 * ((t * 7919) % 13 - 6) / 6) for t in range(250)]
    sc = node.call("predict.scenarios", {"prices": prices, "horizon_steps": 20, "paths": 2000, "seed": 3})
    by_name = {s["name"]: s for s in sc["scenarios"]}
    assert set(by_name) >= {"stress", "bear", "base", "bull"}
    assert abs(sum(s["probability"] for s in sc["scenarios"]) - 1.0) < 1e-9
    assert by_name["stress"]["terminal"] < by_name["bear"]["terminal"] < by_name["base"]["terminal"] < by_name["bull"]["terminal"]
    shocked = node.call("predict.scenarios", {"prices": prices, "horizon_steps": 20, "paths": 2000, "seed": 3,
                                              "shock_step": 5, "shock_multiply": 0.5})
    assert {s["name"]: s for s in shocked["scenarios"]}["base"]["terminal"] < by_name["base"]["terminal"]

    loaded = node.call("predict.bn.load", {"name": "asia", "bif": ASIA})
    assert "lung" in loaded["variables"]
    prior = node.call("predict.bn.query", {"name": "asia", "variable": "lung"})
    assert prior["distribution"]["yes"] == pytest.approx(0.055)
    post = node.call("predict.bn.query", {"name": "asia", "variable": "lung", "evidence": {"xray": "yes", "dysp": "yes"}})
    assert post["distribution"]["yes"] > 0.5

    def refused(method: str, params: dict, code: int = -32602, needle: str = "") -> None:
        with pytest.raises(RpcError) as info:
            node.call(method, params)
        assert info.value.code == code and needle in info.value.message, info.value.message

    refused("predict.forecast", {"y": [1.0, float(2)], "horizon": 3, "method": "holt_winters", "period": 12})
    refused("predict.forecast", {"y": y, "horizon": 0}, needle="horizon")
    refused("predict.forecast", {"y": y, "horizon": 3, "method": "magic"})
    refused("predict.simulate", {"s0": 100, "mu": 0, "sigma": -1, "horizon": 1, "steps": 1, "paths": 10})
    refused("predict.simulate", {"s0": 100, "mu": 0, "sigma": 0.2, "horizon": 1, "steps": 10_000, "paths": 10_000}, needle="paths")
    refused("predict.scenarios", {"prices": [1.0, 2.0], "horizon_steps": 5, "shock_step": 1})
    refused("predict.scenarios", {"prices": [1.0, -2.0, 3.0], "horizon_steps": 5})
    refused("predict.bn.load", {"name": "../evil", "bif": ASIA}, needle="name")
    refused("predict.bn.load", {"name": "bad", "bif": "network x {\n variable"}, needle="line")
    refused("predict.bn.query", {"name": "nope", "variable": "lung"}, code=-32000, needle="no network")
    refused("predict.bn.query", {"name": "asia", "variable": "lung", "evidence": {"xray": "maybe"}})
    # ... and the daemon is still fine.
    assert node.call("node.status")["peer_id"]


def test_predict_scenario_trees(cluster: Cluster) -> None:
    node = cluster.start("t")
    prices = [100.0 * 1.001 ** t * (1.0 + 0.01 * ((t * 7919) % 13 - 6) / 6) for t in range(250)]

    def check_levels(tree: dict, branching: int, steps: int) -> None:
        assert tree["branching"] == branching and tree["steps"] == steps and tree["leaves"] == branching**steps
        assert [lv["step"] for lv in tree["levels"]] == list(range(steps + 1))
        for lv in tree["levels"]:
            assert lv["nodes"] == len(lv["values"]) == len(lv["probabilities"]) == branching ** lv["step"]
            assert abs(sum(lv["probabilities"]) - 1.0) < 1e-9
            assert lv["expected"] == pytest.approx(sum(v * q for v, q in zip(lv["values"], lv["probabilities"])))
            assert lv["min"] <= lv["expected"] <= lv["max"]
        sds = [lv["sd"] for lv in tree["levels"]]
        assert sds[0] == 0 and all(a < b for a, b in zip(sds, sds[1:]))

    gbm = node.call("predict.scenarios", {"prices": prices, "tree": {"steps": 4, "branching": 3, "model": "gbm"}})
    assert gbm["horizon_steps"] == 4 and gbm["tree"]["model"] == "gbm"
    check_levels(gbm["tree"], 3, 4)
    fit = gbm["tree"]["fitted"]
    assert gbm["tree"]["levels"][0]["values"] == [prices[-1]] == [fit["s0"]]
    for lv in gbm["tree"]["levels"]:
        assert lv["expected"] == pytest.approx(prices[-1] * 2.718281828459045 ** (fit["mu"] * lv["step"]), rel=1e-6)

    # a fitted model: level k's expected value is the model's k-step point forecast
    y = [2.0 + 0.7 * ((t * 37) % 11 - 5) / 5 + 0.2 * t for t in range(80)]
    for model in ("ar", "auto"):
        ar = node.call("predict.scenarios", {"prices": y, "horizon_steps": 5, "tree": {"branching": 2, "model": model}})
        tree = ar["tree"]
        check_levels(tree, 2, 5)
        assert tree["requested"] == model and tree["model"]
        f = node.call("predict.forecast", {"y": y, "horizon": 5, "method": model})
        assert tree["model"] == f["method"]
        assert [lv["expected"] for lv in tree["levels"][1:]] == pytest.approx(f["mean"], rel=1e-9)
        assert tree["forecast"]["mean"] == pytest.approx(f["mean"])
        assert tree["fitted"]["sigma"] > 0 and tree["fitted"]["mean_gap"] < 1e-9
    seasonal = [10.0 + (3.0 if t % 4 == 1 else 0.0) + 0.1 * t + 0.3 * ((t * 7) % 5 - 2) for t in range(48)]
    hw = node.call("predict.scenarios", {"prices": seasonal, "tree": {"steps": 6, "model": "holt_winters", "period": 4}})
    assert hw["tree"]["model"] == "holt_winters_additive"
    check_levels(hw["tree"], 3, 6)
    # the non-tree answer is unchanged
    sc = node.call("predict.scenarios", {"prices": prices, "horizon_steps": 5, "paths": 500, "seed": 1})
    assert "tree" not in sc and {s["name"] for s in sc["scenarios"]} >= {"bear", "base", "bull"}

    def refused(params: dict, needle: str) -> None:
        with pytest.raises(RpcError) as info:
            node.call("predict.scenarios", params)
        assert info.value.code == -32602 and needle in info.value.message, info.value.message

    refused({"prices": prices, "tree": {"steps": 9, "branching": 3}}, "6,561")  # 3**9 leaves
    refused({"prices": prices, "tree": {"steps": 13, "branching": 2}}, "6,561")
    refused({"prices": prices, "tree": {"steps": 0}}, "steps")
    refused({"prices": prices, "tree": {"steps": "3"}}, "integer")
    refused({"prices": prices, "tree": {"steps": 3, "branching": 4}}, "branching")
    refused({"prices": prices, "tree": {"steps": 3, "model": "magic"}}, "tree.model")
    refused({"prices": prices, "tree": {"steps": 3, "depth": 2}}, "unknown tree option 'depth'")
    refused({"prices": prices, "tree": {}}, "tree.steps")
    refused({"prices": prices, "horizon_steps": 4, "tree": {"steps": 3}}, "disagree")
    refused({"prices": prices, "tree": {"steps": 3}, "shock_step": 1, "shock_multiply": 0.5}, "shocks")
    refused({"prices": prices, "tree": {"steps": 3, "model": "gbm", "period": 4}}, "period")
    refused({"prices": prices, "tree": {"steps": 3, "model": "holt_winters"}}, "period")  # from the model
    refused({"prices": [1.0, -2.0, 3.0], "tree": {"steps": 3, "model": "gbm"}}, "positive")
    refused({"prices": [1.0, 2.0], "tree": {"steps": 3, "model": "ar"}}, "too short")
    refused({"prices": prices}, "horizon_steps")
    refused({"prices": prices, "tree": [3]}, "tree")
    assert node.call("node.status")["peer_id"]


def test_predict_cli(cluster: Cluster, tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    node = cluster.start("q")

    def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "node", "--home", str(node.home), *args],
                              capture_output=True, text=True, timeout=60, input=stdin)

    r = cli("predict", "forecast", "--horizon", "2", "--method", "naive", "1", "2", "3", "4")
    assert r.returncode == 0 and "method naive" in r.stdout, r.stderr
    r = cli("predict", "forecast", "--horizon", "2", "--method", "drift", "-", stdin="1, 2, 3, 4, 5")
    assert r.returncode == 0 and "drift" in r.stdout, r.stderr
    assert cli("predict", "forecast", "--horizon", "2", "1", "x").returncode == 2
    r = cli("predict", "simulate", "--s0", "100", "--mu", "0", "--sigma", "0.2", "--horizon", "1", "--steps", "10", "--paths", "1000", "--seed", "1")
    assert r.returncode == 0 and "VaR" in r.stdout, r.stderr
    prices = " ".join(f"{100.0 * 1.001 ** t * (1.0 + 0.01 * ((t * 7919) % 13 - 6) / 6):.4f}" for t in range(120))
    r = cli("predict", "scenarios", "--horizon-steps", "10", "--paths", "500", "-", stdin=prices)
    assert r.returncode == 0 and "SCENARIO" in r.stdout and "bear" in r.stdout, r.stderr
    r = cli("predict", "scenarios", "--tree-steps", "3", "--tree-model", "gbm", "-", stdin=prices)
    assert r.returncode == 0 and "tree gbm, trinomial, 3 steps, 27 leaves" in r.stdout, r.stderr
    lines = r.stdout.splitlines()
    assert lines[2].split() == ["STEP", "NODES", "EXPECTED", "SD", "MIN", "MAX"]
    assert [ln.split()[:2] for ln in lines[3:]] == [["0", "1"], ["1", "3"], ["2", "9"], ["3", "27"]]
    r = cli("--json", "predict", "scenarios", "--tree-steps", "4", "--branching", "2", "--tree-model", "ar", "-",
            stdin=prices)
    assert r.returncode == 0, r.stderr
    answer = json.loads(r.stdout)
    tree = answer["tree"]
    assert tree["model"].startswith("ar(") and tree["leaves"] == 16 and len(tree["levels"]) == 5
    assert [lv["expected"] for lv in tree["levels"][1:]] == pytest.approx(tree["forecast"]["mean"])
    r = cli("predict", "scenarios", "--tree-steps", "4", "-", stdin=prices)  # auto by default
    assert r.returncode == 0 and "requested auto" in r.stdout, r.stderr
    r = cli("predict", "scenarios", "--tree-steps", "9", "-", stdin=prices)
    assert r.returncode == 1 and "6,561" in r.stderr
    r = cli("predict", "scenarios", "--tree-steps", "3", "--tree-model", "magic", "-", stdin=prices)
    assert r.returncode == 1 and "magic" in r.stderr
    assert cli("predict", "scenarios", "--tree-steps", "3", "--branching", "4", "1", "2", "3").returncode == 2
    assert cli("predict", "scenarios", "1", "2", "3").returncode == 2  # neither --horizon-steps nor --tree-steps
    assert cli("predict", "scenarios", "--tree-model", "ar", "--horizon-steps", "3", "1", "2", "3").returncode == 2
    bif = tmp_path / "asia.bif"
    bif.write_text(ASIA)
    assert cli("predict", "bn", "load", "asia", str(bif)).returncode == 0
    r = cli("predict", "bn", "query", "asia", "lung", "xray=yes")
    assert r.returncode == 0 and "LUNG" in r.stdout, r.stderr
    assert cli("predict", "bn", "query", "asia", "lung", "xray").returncode == 2
    r = cli("predict", "bn", "query", "asia", "lung", "xray=maybe")
    assert r.returncode == 1 and "maybe" in r.stderr
