"""Forecast accuracy: sMAPE and MASE on held-out tails of every `node.predict.timeseries` method,
of 'auto', and of the `node.predict.ensemble` combination (inverse-error weighted and plain
mean), on the real series in tests/data/series/ and on synthetic series made with a fixed seed.

    .venv/bin/python bench/bench_forecast.py [--origins 3] [--series NAME ...] [--no-synthetic]
                                             [--no-real] [--seeds SEED ...]

``--no-real --seeds 1 2 3 4 5 6`` runs 30 further synthetic series (the same five generators with
other seeds): the independent check used when the ensemble's rule was chosen.

Protocol. For each series, with horizon h and seasonal period m (table below), the last h
points after each of ``--origins`` rolling origins are held out: origin k = 0, 1, ... trains on
y[:n - h - k*s] and scores the next h points, with step s = m for seasonal series and
s = max(1, h // 2) otherwise. Every method is fitted on the training part only. Horizons:
two seasonal periods (h = 2m) for seasonal series, 8 quarters for quarterly real GDP (which is
seasonally adjusted, so no period), 10 years for the annual series, 12 steps for the
non-seasonal synthetic ones and 6 months for the 36-point shampoo series.

* sMAPE in % (0..200) and MASE scaled by the in-sample MAE of the lag-m naive forecast (m = 1
  when there is no period), both from `node.predict.ensemble`; averaged over origins.
* cov90: the fraction of held-out points inside the method's nominal 90% interval.
* 'ensemble' = `ensemble_forecast` with its default members and default weighting (trimmed
  inverse-MSE: rolling-origin CV MSE relative to naive, near-duplicate members merged into one
  vote, the best 2 groups weighted by 1 / score; see node/predict/ensemble.py); 'ens_mean' = the
  same members with equal weights. Per window, "avg member" is the mean sMAPE (MASE) of the
  members the ensemble fitted (weighted or not) and "best member" the one of them that was best
  on that very window (known only in hindsight).

"Beats the average of its members and rarely loses to the best one", operationally (the per-series
table): per series, origin-averaged sMAPE of the ensemble against (a) the mean over its default
members (`default_methods(period)`) and (b) the default member that is best on that series over
all its held-out windows - one fixed member, chosen in hindsight. A *loss* is ensemble > (b); the
bench counts losses, their size in points and as the ratio ensemble / (b), and the *big losses*
(ratio > 1.25, i.e. more than 25% worse than the best member). It also compares with 'auto'
(the library's own CV selection of one method), which is what a user would otherwise call.

Everything is deterministic (fixed seeds; bootstrap intervals use the library's default seed).
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from node.predict.ensemble import default_methods, ensemble_forecast, mase, smape  # noqa: E402
from node.predict.timeseries import forecast  # noqa: E402

DATA = ROOT / "tests" / "data" / "series"
LEVEL = 0.9

# name -> (period, horizon); the files are described in tests/data/series/README.md
REAL: dict[str, tuple[int | None, int]] = {
    "air_passengers": (12, 24),
    "co2_mauna_loa_monthly": (12, 24),
    "elnino_sst_monthly": (12, 24),
    "eu_elec_equip_monthly": (12, 24),
    "us_realgdp_quarterly": (None, 8),
    "nile": (None, 10),
    "sunspots_yearly": (None, 10),
    "lynx": (None, 10),
    "shampoo_sales": (None, 6),
}

SEASONAL = ("seasonal_naive", "holt_winters_additive", "holt_winters_multiplicative")
METHODS = ("naive", "seasonal_naive", "drift", "ses", "holt", "holt_damped", "holt_winters_additive",
           "holt_winters_multiplicative", "ar")
COMBOS = ("auto", "ensemble", "ens_mean")
SHORT = {
    "naive": "naive", "seasonal_naive": "snaive", "drift": "drift", "ses": "ses", "holt": "holt",
    "holt_damped": "holt_damped", "holt_winters_additive": "hw_add", "holt_winters_multiplicative": "hw_mul",
    "ar": "ar", "auto": "auto", "ensemble": "ensemble", "ens_mean": "ens_mean",
}


# ----------------------------------------------------------------------------- series


def load_csv(path: Path) -> np.ndarray:
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    if rows[0] != ["t", "value"]:
        raise ValueError(f"{path}: header must be t,value, got {rows[0]}")
    return np.array([float(r[1]) for r in rows[1:]])


SEED = 20261126


def synthetic(seed: int = SEED) -> dict[str, tuple[np.ndarray, int | None, int]]:
    """name -> (series, period, horizon). One generator, fixed seed, fixed order."""
    rng = np.random.default_rng(seed)
    out: dict[str, tuple[np.ndarray, int | None, int]] = {}
    m = 12
    t = np.arange(144, dtype=float)
    season = np.sin(2 * np.pi * t / m) + 0.5 * np.cos(4 * np.pi * t / m)
    out["syn_trend_add_season"] = (50 + 0.5 * t + 8 * season + rng.normal(0, 2.0, t.size), m, 2 * m)
    out["syn_mult_season"] = ((100 + 1.5 * t) * (1 + 0.25 * season) * (1 + rng.normal(0, 0.03, t.size)), m, 2 * m)
    out["syn_random_walk"] = (100 + np.cumsum(rng.normal(0, 1.0, 200)), None, 12)
    e = rng.normal(0, 1.0, 300)
    x = np.zeros(300)
    for i in range(2, 300):
        x[i] = 1.3 * x[i - 1] - 0.6 * x[i - 2] + e[i]  # stationary AR(2), complex roots (cycles ~ 11 steps)
    out["syn_ar2"] = (50 + x[100:], None, 12)
    n = 160
    b = np.empty(n)
    lvl = np.empty(n)
    b_prev, l_prev = 3.0, 100.0
    for i in range(n):  # local level with a damped (AR(1), phi = 0.9) slope: the damped-Holt model
        b_prev = 0.9 * b_prev + rng.normal(0, 0.3)
        l_prev = l_prev + b_prev
        b[i], lvl[i] = b_prev, l_prev
    out["syn_damped_trend"] = (lvl + rng.normal(0, 1.0, n), None, 12)
    return out


# ----------------------------------------------------------------------------- scoring


@dataclass
class Score:
    smape: list[float] = field(default_factory=list)
    mase: list[float] = field(default_factory=list)
    hits: int = 0
    points: int = 0

    def add(self, test: np.ndarray, train: np.ndarray, period: int | None, mean: np.ndarray,
            lower: np.ndarray, upper: np.ndarray) -> None:
        self.smape.append(smape(test, mean))
        self.mase.append(mase(test, mean, train, period))
        self.hits += int(np.sum((test >= lower) & (test <= upper)))
        self.points += test.size


@dataclass
class EnsCase:
    """One (series, origin) comparison of a combination with the members it used."""

    series: str
    origin: int
    ens: tuple[float, float]
    avg: tuple[float, float]
    best: tuple[float, float]
    best_name: str
    members: dict[str, tuple[float, float]]


def applicable(name: str, y: np.ndarray, period: int | None) -> bool:
    if name in SEASONAL and period is None:
        return False
    if name == "holt_winters_multiplicative" and np.any(y <= 0):
        return False
    return True


def run_series(name: str, y: np.ndarray, period: int | None, h: int, n_origins: int,
               cases: dict[str, list[EnsCase]]) -> tuple[dict[str, Score], list[str], list[str]]:
    step = period if period else max(1, h // 2)
    scores: dict[str, Score] = {}
    auto_choice: list[str] = []
    failures: list[str] = []
    for k in range(n_origins):
        cut = y.size - h - k * step
        train, test = y[:cut], y[cut: cut + h]
        member_scores: dict[str, tuple[float, float]] = {}
        for meth in METHODS:
            if not applicable(meth, train, period):
                continue
            try:
                fc = forecast(train, h, period=period, method=meth, level=LEVEL)
            except (ValueError, np.linalg.LinAlgError) as exc:
                failures.append(f"{meth}@{k}: {exc}")
                continue
            sc = scores.setdefault(meth, Score())
            sc.add(test, train, period, fc.mean, fc.lower, fc.upper)
            member_scores[meth] = (sc.smape[-1], sc.mase[-1])
        fc = forecast(train, h, period=period, method="auto", level=LEVEL)
        auto_choice.append(fc.method)
        scores.setdefault("auto", Score()).add(test, train, period, fc.mean, fc.lower, fc.upper)
        for label, weighting in (("ensemble", "inverse_error"), ("ens_mean", "mean")):
            ens = ensemble_forecast(train, h, period=period, weighting=weighting, level=LEVEL)
            sc = scores.setdefault(label, Score())
            sc.add(test, train, period, ens.mean, ens.lower, ens.upper)
            skipped = [SHORT[mb] for mb in default_methods(period) if mb not in ens.members]
            if skipped:
                failures.append(f"{label} at origin {k} (train {train.size}) dropped member {', '.join(skipped)} "
                                f"(no fit at the full training part or at any CV origin)")
            used = [member_scores[mb] for mb in ens.members]
            best_name = min(ens.members, key=lambda mb: member_scores[mb][0])
            cases[label].append(EnsCase(
                series=name, origin=k, ens=(sc.smape[-1], sc.mase[-1]),
                avg=(float(np.mean([u[0] for u in used])), float(np.mean([u[1] for u in used]))),
                best=(min(u[0] for u in used), min(u[1] for u in used)), best_name=best_name,
                members={mb: member_scores[mb] for mb in default_methods(period) if mb in member_scores}))
    return scores, auto_choice, failures


# ----------------------------------------------------------------------------- printing


def print_series(name: str, n: int, period: int | None, h: int, n_origins: int, scores: dict[str, Score],
                 auto_choice: list[str], failures: list[str], weights_note: str) -> None:
    print(f"\n== {name}: n={n}, period={period or '-'}, h={h}, origins={n_origins}")
    print(f"  {'method':<12} {'sMAPE%':>8} {'MASE':>7} {'cov90':>6}")
    for meth in METHODS + COMBOS:
        if meth not in scores:
            continue
        sc = scores[meth]
        print(f"  {SHORT[meth]:<12} {np.mean(sc.smape):8.2f} {np.mean(sc.mase):7.3f} {sc.hits / sc.points:6.2f}")
    print(f"  auto chose: {', '.join(auto_choice)} (origin 0 = latest)")
    print(f"  {weights_note}")
    for f in failures:
        print(f"  note: {f}")


def ranks(values: dict[str, float]) -> dict[str, float]:
    """Average ranks (1 = best), ties share the mean rank."""
    names = sorted(values, key=lambda k: values[k])
    out: dict[str, float] = {}
    i = 0
    while i < len(names):
        j = i
        while j + 1 < len(names) and values[names[j + 1]] == values[names[i]]:
            j += 1
        for k in range(i, j + 1):
            out[names[k]] = (i + j) / 2 + 1
        i = j + 1
    return out


def print_summary(per_series: dict[str, dict[str, Score]]) -> None:
    rows = METHODS + COMBOS
    sm_vals: dict[str, list[float]] = {r: [] for r in rows}
    ms_vals: dict[str, list[float]] = {r: [] for r in rows}
    sm_rank: dict[str, list[float]] = {r: [] for r in rows}
    ms_rank: dict[str, list[float]] = {r: [] for r in rows}
    cover: dict[str, list[int]] = {r: [0, 0] for r in rows}
    for scores in per_series.values():
        sm = {k: float(np.mean(v.smape)) for k, v in scores.items()}
        ms = {k: float(np.mean(v.mase)) for k, v in scores.items()}
        rs, rm = ranks(sm), ranks(ms)
        for k in scores:
            sm_vals[k].append(sm[k])
            ms_vals[k].append(ms[k])
            sm_rank[k].append(rs[k])
            ms_rank[k].append(rm[k])
            cover[k][0] += scores[k].hits
            cover[k][1] += scores[k].points
    n_series = len(per_series)
    print(f"\n== summary over {n_series} series (origin-averaged per series; ranks among the methods "
          f"applicable to a series, 1 = best)")
    print(f"  {'method':<12} {'series':>6} {'sMAPE%':>8} {'rank':>5} {'MASE':>7} {'rank':>5} {'medMASE':>8} "
          f"{'cov90':>6}")
    for k in sorted(rows, key=lambda r: np.mean(ms_rank[r]) if ms_rank[r] else math.inf):
        if not sm_vals[k]:
            continue
        print(f"  {SHORT[k]:<12} {len(sm_vals[k]):6d} {np.mean(sm_vals[k]):8.2f} {np.mean(sm_rank[k]):5.2f} "
              f"{np.mean(ms_vals[k]):7.3f} {np.mean(ms_rank[k]):5.2f} {np.median(ms_vals[k]):8.3f} "
              f"{cover[k][0] / cover[k][1]:6.2f}")
    print("  (seasonal methods only on the seasonal series; hw_mul only where the data are positive, so\n"
          "   their means are over fewer series: compare ranks, or values within one series)")


def print_ensemble(cases: dict[str, list[EnsCase]], auto_smape: dict[str, float]) -> None:
    print("\n== ensemble vs its members, per (series, origin) held-out window")
    for label in ("ensemble", "ens_mean"):
        cs = cases[label]
        n = len(cs)
        for mi, metric in enumerate(("sMAPE", "MASE")):
            beat_avg = sum(c.ens[mi] < c.avg[mi] for c in cs)
            lose = [c for c in cs if c.ens[mi] > c.best[mi]]
            gap = [c.ens[mi] - c.best[mi] for c in lose]
            rel = [(c.ens[mi] - c.best[mi]) / c.best[mi] for c in lose if c.best[mi] > 0]
            ens_mean = np.mean([c.ens[mi] for c in cs])
            avg_mean = np.mean([c.avg[mi] for c in cs])
            best_mean = np.mean([c.best[mi] for c in cs])
            unit = " pts" if metric == "sMAPE" else ""
            print(f"  {SHORT[label]:<9} {metric:<5}: beats avg member in {beat_avg}/{n}; "
                  f"loses to best member in {len(lose)}/{n}"
                  + (f" (by mean {np.mean(gap):.2f}{unit}, max {max(gap):.2f}{unit}; "
                     f"median {100 * np.median(rel):.0f}% relative)" if lose else ""))
            print(f"  {'':<9} {'':<5}  mean over windows: ensemble {ens_mean:.3f}, avg member {avg_mean:.3f}, "
                  f"best member (hindsight) {best_mean:.3f}")
    print("\n== per series (origin-averaged sMAPE %): ensemble vs the mean of its default members and vs the\n"
          "   default member that was best on that series over all its origins (a fixed choice, known only in\n"
          "   hindsight); default members = ensemble.default_methods(period), even where the ensemble dropped one;\n"
          "   ratio = ensemble / best member (> 1: the ensemble loses; > 1.25: a big loss)")
    print(f"  {'series':<24} {'ensemble':>8} {'ens_mean':>8} {'avg mbr':>8} {'best member':>24} {'ratio':>6} "
          f"{'auto':>8}")
    labels = ("ensemble", "ens_mean")
    n_beat = dict.fromkeys(labels, 0)
    gaps: dict[str, list[float]] = {lb: [] for lb in labels}
    ratios: dict[str, list[float]] = {lb: [] for lb in labels}
    ens_vals: dict[str, list[float]] = {lb: [] for lb in labels}
    auto_vals: list[float] = []
    series_names = list(dict.fromkeys(c.series for c in cases["ensemble"]))
    for name in series_names:
        row: dict[str, tuple[float, float, str, float]] = {}
        auto_v = auto_smape.get(name, float("nan"))
        auto_vals.append(auto_v)
        for label in labels:
            cs = [c for c in cases[label] if c.series == name]
            common = set.intersection(*(set(c.members) for c in cs))
            per_member = {mb: float(np.mean([c.members[mb][0] for c in cs])) for mb in common}
            ens_v = float(np.mean([c.ens[0] for c in cs]))
            avg_v = float(np.mean(list(per_member.values())))
            best_mb = min(per_member, key=lambda mb: per_member[mb])
            row[label] = (ens_v, avg_v, best_mb, per_member[best_mb])
            n_beat[label] += ens_v < avg_v
            if ens_v > per_member[best_mb]:
                gaps[label].append(ens_v - per_member[best_mb])
            ratios[label].append(ens_v / per_member[best_mb] if per_member[best_mb] > 0 else float("inf"))
            ens_vals[label].append(ens_v)
        e, a, bm, bv = row["ensemble"]
        print(f"  {name:<24} {e:8.2f} {row['ens_mean'][0]:8.2f} {a:8.2f} {SHORT[bm]:>15} {bv:8.2f} "
              f"{ratios['ensemble'][-1]:6.2f} {auto_v:8.2f}")
    n = len(series_names)
    for label in labels:
        g, r = gaps[label], np.array(ratios[label])
        ev, av = np.array(ens_vals[label]), np.array(auto_vals)
        print(f"  {SHORT[label]}: below its members' mean on {n_beat[label]}/{n} series; above the best member on "
              f"{len(g)}/{n}" + (f" (by mean {np.mean(g):.2f} pts, max {max(g):.2f} pts)" if g else "")
              + f"; more than 10% above on {int(np.sum(r > 1.10))}/{n}, more than 25% above (big loss) on "
              f"{int(np.sum(r > 1.25))}/{n}; ratio to best member: median {np.median(r):.2f}, max {np.max(r):.2f}")
        print(f"  {'':<{len(SHORT[label])}}  vs auto: below auto on {int(np.sum(ev < av))}/{n} series; mean sMAPE "
              f"{np.mean(ev):.2f} vs auto {np.mean(av):.2f}; ratio to auto: median {np.median(ev / av):.2f}, "
              f"max {np.max(ev / av):.2f}")
    worst = sorted(cases["ensemble"], key=lambda c: c.ens[0] - c.avg[0], reverse=True)[:5]
    print("  windows where the weighted ensemble is furthest above its avg member (sMAPE):")
    for c in worst:
        print(f"    {c.series}@{c.origin}: ensemble {c.ens[0]:.2f}, avg member {c.avg[0]:.2f}, "
              f"best {c.best_name} {c.best[0]:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--origins", type=int, default=3)
    ap.add_argument("--series", nargs="*", help="only these series (names as printed)")
    ap.add_argument("--no-synthetic", action="store_true")
    ap.add_argument("--no-real", action="store_true")
    ap.add_argument("--seeds", type=int, nargs="*", default=[SEED],
                    help="seeds of the synthetic series (names get a _<seed> suffix unless the default)")
    args = ap.parse_args()
    t0 = time.process_time()

    all_series: dict[str, tuple[np.ndarray, int | None, int]] = {}
    for name, (period, h) in ({} if args.no_real else REAL).items():
        all_series[name] = (load_csv(DATA / f"{name}.csv"), period, h)
    if not args.no_synthetic:
        for seed in args.seeds:
            all_series.update({(k if seed == SEED else f"{k}_{seed}"): v for k, v in synthetic(seed).items()})
    if args.series:
        all_series = {k: v for k, v in all_series.items() if k in args.series}

    print(f"forecast accuracy: {len(all_series)} series, {args.origins} rolling origins each, "
          f"nominal interval {LEVEL:.0%}")
    cases: dict[str, list[EnsCase]] = {"ensemble": [], "ens_mean": []}
    per_series: dict[str, dict[str, Score]] = {}
    for name, (y, period, h) in all_series.items():
        scores, choice, failures = run_series(name, y, period, h, args.origins, cases)
        ens = ensemble_forecast(y[: y.size - h], h, period=period, level=LEVEL)
        weighted = [f"{SHORT[mb]} {w:.2f}" for mb, w in zip(ens.members, ens.weights) if w > 0]
        unweighted = [SHORT[mb] for mb, w in zip(ens.members, ens.weights) if w == 0]
        merged = ["+".join(SHORT[mb] for mb in g) for g in ens.groups if len(g) > 1]
        note = ("ensemble weights (origin 0): " + ", ".join(weighted)
                + (f"; weight 0: {', '.join(unweighted)}" if unweighted else "")
                + (f"; near-duplicates merged: {', '.join(merged)}" if merged else ""))
        print_series(name, y.size, period, h, args.origins, scores, choice, failures, note)
        per_series[name] = scores
    print_summary(per_series)
    print_ensemble(cases, {k: float(np.mean(v['auto'].smape)) for k, v in per_series.items()})
    print(f"\n{time.process_time() - t0:.1f} s CPU")


if __name__ == "__main__":
    main()
