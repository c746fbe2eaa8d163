"""Decision-quality benchmark: how often each rollout rule rolls back a healthy canary, how fast it catches a
bad one, and how many failed requests the canary serves meanwhile.

    python -m songbird.bench.decision_quality [--quick|--full] [--runs N] [--seed S] [--jobs J] [--out DIR]

For each traffic level (0.2, 1, 10, 50, 500 req/s) it simulates (`bench.simulate`) healthy canaries
(0.5% and 0.8% errors like the stable, a shared outage, a stable whose error share rose by half when the
rollout started, and traffic nuisances: diurnal rate, counter resets, missed scrapes, zero-traffic gaps)
and regressions (canary error ratio 2, 4, 10, 40 over a 0.5% stable). Each run starts with six hours of
the stable's counts, as the controller reads them before the first step. The runs are judged by
Songbird through the controller's own code path (`analysis.evaluate.judge` and `analysis.decision.decide`
with one rollout state per run, `bench.methods.Songbird`), emulations of Flagger's and Argo Rollouts'
rules, and Wald's SPRT as an oracle that knows p0 and p1 (per request, and at the 15 s cadence). It
prints one table per traffic level, checks the targets below, and writes
``decision_quality.md``, ``.json`` and ``.png`` (failed requests served against regression size) to --out.

Targets: false rollback <= 1% in every healthy scenario; at >= 10 req/s detection >= 99.5% for ratio >= 2,
failed requests <= 1.5x the 15 s SPRT and <= 1/3 of Flagger's for ratio >= 4, <= 1/10 of Flagger's for
ratio >= 10; at <= 1 req/s no promotion of a regression without evidence (at most beta) and >= 99%
detection within 10 minutes for ratio >= 10; healthy canaries at 50 req/s promoted within 1.6x the nominal
schedule. --quick (CI) always exits 0 and prints which targets do not hold; --full exits 1 when one fails.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from songbird.analysis.evidence import kl_bernoulli
from songbird.analysis.params import CompareParams
from songbird.bench import methods as mt
from songbird.bench.simulate import Outage, Scenario, Schedule, Traffic, history

RATES = (0.2, 1.0, 10.0, 50.0, 500.0)
RATIOS = (2.0, 4.0, 10.0, 40.0)
P0 = 0.005
QUICK_RUNS = 200
FULL_RUNS = 10_000


def healthy_scenarios(rate: float) -> list[Scenario]:
    return [
        Scenario(name="healthy 0.5%", rate=rate, p_stable=0.005),
        Scenario(name="healthy 0.8%", rate=rate, p_stable=0.008),
        Scenario(
            name="shared outage",
            rate=rate,
            p_stable=P0,
            outage=Outage(start=90.0, end=210.0, share=0.1),
        ),
        Scenario(name="stable drift", rate=rate, p_stable=0.0075, stable_drift=1.5),
        Scenario(
            name="nuisances",
            rate=rate,
            p_stable=P0,
            diurnal=0.5,
            reset_prob=0.02,
            missed_scrape=0.05,
            gap_prob=0.02,
        ),
    ]


def regression_scenarios(rate: float) -> list[Scenario]:
    return [Scenario(name=f"ratio {r:g}", rate=rate, p_stable=P0, ratio=r) for r in RATIOS]


MethodFactory = Callable[[int, Schedule, Scenario], mt.Method]


def method_factories(params: CompareParams) -> dict[str, MethodFactory]:
    return {
        "Songbird": lambda runs, s, sc: mt.Songbird(runs, s),
        "Flagger": lambda runs, s, sc: mt.Flagger(runs, s, threshold=5),
        "Argo limit 0": lambda runs, s, sc: mt.Argo(runs, s, failure_limit=0),
        "Argo limit 3": lambda runs, s, sc: mt.Argo(runs, s, failure_limit=3),
        "SPRT 15 s": lambda runs, s, sc: mt.SprtCadence(runs, s, bounds=mt.oracle_bounds(sc)),
    }


def simulate(method: mt.Method, scenario: Scenario, schedule: Schedule, seed: Sequence[int]) -> np.ndarray:
    """Drive one method over ``method.runs`` runs; returns the failed canary requests served per run."""
    traffic = Traffic(scenario, method.runs, np.random.default_rng(list(seed)))
    method.start(history(scenario, method.runs, np.random.default_rng([*seed, 7])))
    failed = np.zeros(method.runs)
    for _ in range(schedule.windows):
        active = method.outcome == mt.ACTIVE
        if not active.any():
            break
        window = traffic.window(method.weights())
        failed += np.where(active, window.served_canary_bad, 0.0)
        method.observe(window, active)
    return failed


def summarize(
    outcome: np.ndarray, times: np.ndarray, failed: np.ndarray, schedule: Schedule
) -> dict[str, Any]:
    runs = len(outcome)
    rolled = outcome == mt.ROLLBACK
    promoted = outcome == mt.PROMOTE

    def stat(values: np.ndarray, fn: Callable[[np.ndarray], Any]) -> float | None:
        return float(fn(values)) if len(values) else None

    return {
        "runs": runs,
        "rollback": float(rolled.mean()),
        "promote": float(promoted.mean()),
        "paused": float((outcome == mt.PAUSED).mean()),
        "undecided": float((outcome == mt.ACTIVE).mean()),
        "rollback_within_600s": float((rolled & (times <= 600.0)).mean()),
        "time_rollback_median": stat(times[rolled], np.median),
        "time_rollback_mean": stat(times[rolled], np.mean),
        "failed_mean": float(failed.mean()),
        "failed_rollback_mean": stat(failed[rolled], np.mean),
        "time_promote_median": stat(times[promoted], np.median),
        "promote_within_1.6x": float((promoted & (times <= 1.6 * schedule.nominal)).mean()),
    }


def per_request_oracle(
    scenario: Scenario, schedule: Schedule, runs: int, seed: Sequence[int]
) -> dict[str, Any]:
    rng = np.random.default_rng(list(seed))
    bounds = mt.oracle_bounds(scenario)
    horizon_requests = (
        scenario.rate * sum(w / 100.0 * schedule.interval for w in schedule.steps)
        + scenario.rate * schedule.steps[-1] / 100.0 * schedule.max_wait
    )
    result = mt.sprt_per_request(
        bounds, p_true=scenario.p_canary, runs=runs, rng=rng, max_requests=horizon_requests * 1.5
    )
    times = mt.canary_request_times(schedule, scenario.rate, result.requests, rng)
    decided = np.isfinite(times)
    outcome = np.where(result.rollback, mt.ROLLBACK, mt.PROMOTE)
    outcome = np.where(decided, outcome, mt.ACTIVE).astype(np.int8)  # no decision within the rollout
    return summarize(outcome, np.where(decided, times, np.nan), result.failed, schedule)


def rate_cells(runs: int, seed: int, ri: int, rate: float) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Every cell of one traffic level (seeded by its position, so the split over processes changes
    nothing), with the seconds each method took."""
    schedule = Schedule()
    factories = method_factories(CompareParams())
    cells: list[dict[str, Any]] = []
    timings: dict[str, float] = {}
    scenarios = healthy_scenarios(rate) + regression_scenarios(rate)
    for si, scenario in enumerate(scenarios):
        for mi, (label, factory) in enumerate(factories.items()):
            method = factory(runs, schedule, scenario)
            started = time.perf_counter()
            failed = simulate(method, scenario, schedule, (seed, ri, si, mi))
            timings[label] = timings.get(label, 0.0) + time.perf_counter() - started
            stats = summarize(method.outcome, method.time, failed, schedule)
            if isinstance(method, mt.Songbird):
                stats["evaluations"] = method.judged
            cells.append({"rate": rate, "scenario": scenario.name, "method": label, **stats})
        if scenario.outage is None and scenario.reset_prob == 0 and not scenario.diurnal:
            started = time.perf_counter()
            stats = per_request_oracle(scenario, schedule, runs, (seed, ri, si, 99))
            timings["SPRT per request"] = timings.get("SPRT per request", 0.0) + time.perf_counter() - started
            cells.append({"rate": rate, "scenario": scenario.name, "method": "SPRT per request", **stats})
    return cells, timings


def _rate_cells(args: tuple[int, int, int, float]) -> tuple[list[dict[str, Any]], dict[str, float]]:
    return rate_cells(*args)


def run_all(
    runs: int,
    seed: int,
    *,
    rates: Sequence[float] = RATES,
    jobs: int = 1,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    schedule = Schedule()
    params = CompareParams()
    cells: list[dict[str, Any]] = []
    timings: dict[str, float] = {}
    tasks = [(runs, seed, ri, rate) for ri, rate in enumerate(rates)]
    if jobs > 1:
        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            done = pool.imap(_rate_cells, tasks)
            outputs = list(done)
    else:
        outputs = []
        for task in tasks:
            outputs.append(_rate_cells(task))
            log(f"  {task[3]:g} req/s done ({sum(sum(o[1].values()) for o in outputs):.0f} s so far)")
    for rate_cells_, rate_timings in outputs:
        cells += rate_cells_
        for label, seconds in rate_timings.items():
            timings[label] = timings.get(label, 0.0) + seconds
    calls = sum(c.get("evaluations", 0) for c in cells)
    return {
        "runs": runs,
        "seed": seed,
        "schedule": asdict(schedule),
        "params": asdict(params),
        "cells": cells,
        "seconds": timings,
        "evaluations": calls,
        "us_per_evaluation": 1e6 * timings.get("Songbird", 0.0) / calls if calls else None,
    }


METHOD_ORDER = ("Songbird", "Flagger", "Argo limit 0", "Argo limit 3", "SPRT 15 s", "SPRT per request")


def cell(report: dict[str, Any], rate: float, scenario: str, method: str) -> dict[str, Any] | None:
    for c in report["cells"]:
        if c["rate"] == rate and c["scenario"] == scenario and c["method"] == method:
            return dict(c)
    return None


def need(report: dict[str, Any], rate: float, scenario: str, method: str) -> dict[str, Any]:
    """A cell the target checks cannot do without (every run of the benchmark computes it)."""
    found = cell(report, rate, scenario, method)
    if found is None:
        raise KeyError(f"no cell for {method} at {rate:g} req/s, {scenario}")
    return found


def _pct(x: float | None) -> str:
    return "n.a." if x is None else f"{100 * x:.2f}%"


def _num(x: float | None, unit: str = "") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.3g}{unit}" if x < 1000 else f"{x:.0f}{unit}"


def table(report: dict[str, Any], rate: float) -> str:
    healthy = [s.name for s in healthy_scenarios(rate)]
    bad = [s.name for s in regression_scenarios(rate)]
    head = [
        "method",
        *(f"false rollback: {h}" for h in healthy),
        *(f"{b}: caught, time, failed" for b in bad),
    ]
    lines = [f"### {rate:g} req/s", "", "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for m in METHOD_ORDER:
        row = [m]
        for h in healthy:
            c = cell(report, rate, h, m)
            row.append(_pct(c["rollback"]) if c else "n.a.")
        for b in bad:
            c = cell(report, rate, b, m)
            row.append(
                f"{_pct(c['rollback'])}, {_num(c['time_rollback_median'], ' s')}, {_num(c['failed_mean'])}"
                if c
                else "n.a."
            )
        lines.append("| " + " | ".join(row) + " |")
    ratios = []
    for b in bad:
        s = cell(report, rate, b, "Songbird")
        r = cell(report, rate, b, "SPRT per request")
        c = cell(report, rate, b, "SPRT 15 s")
        if s and r and c:
            ratios.append(
                f"{b}: {_num(s['failed_mean'] / max(r['failed_mean'], 1e-9))}x per request, "
                f"{_num(s['failed_mean'] / max(c['failed_mean'], 1e-9))}x at 15 s"
            )
    lines += ["", "Songbird failed requests / SPRT oracle: " + "; ".join(ratios), ""]
    promoted = cell(report, rate, "healthy 0.5%", "Songbird")
    if promoted:
        lines.append(
            f"Songbird, healthy 0.5%: promoted {_pct(promoted['promote'])} "
            f"(median {_num(promoted['time_promote_median'], ' s')}),"
            f" paused {_pct(promoted['paused'])}, promoted within 1.6x nominal "
            f"{_pct(promoted['promote_within_1.6x'])}"
        )
        lines.append("")
    return "\n".join(lines)


def canary_requests_by(schedule: Schedule, rate: float, seconds: float) -> float:
    """Expected canary requests served by ``seconds`` into a rollout whose steps advance on time."""
    served = 0.0
    for i, weight in enumerate(schedule.steps):
        start, end = i * schedule.interval, min((i + 1) * schedule.interval, seconds)
        served += rate * weight / 100.0 * max(end - start, 0.0)
    return served + rate * schedule.steps[-1] / 100.0 * max(seconds - schedule.nominal, 0.0)


def _poisson_sf(mean: float, k: int) -> float:
    """P(X >= k) for X ~ Poisson(mean), summing the terms in log space (no underflow at large means)."""
    if k <= 0:
        return 1.0
    below = (
        sum(math.exp(-mean + i * math.log(mean) - math.lgamma(i + 1)) for i in range(k)) if mean > 0 else 1.0
    )
    return max(1.0 - below, 0.0)


def fixed_horizon_power(
    schedule: Schedule, *, rate: float, seconds: float, ratio: float, p0: float = P0, alpha: float = 0.01
) -> float:
    """Power of the most powerful test of p0 against ratio x p0 that knows p0 exactly and looks once, at
    ``seconds``, at all the canary's requests (Neyman-Pearson on the Poisson count of bad events, level
    alpha): no rule that decides by then, sequential or not, with the same false-rollback rate for a canary
    exactly like p0, detects more often. It ignores the tolerance and the second metric, so it is generous."""
    n = canary_requests_by(schedule, rate, seconds)
    lo, hi = 0, max(int(n * p0 + 10 * math.sqrt(n * p0) + 10), 1)  # the smallest k with level alpha
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if _poisson_sf(n * p0, mid) <= alpha else (mid + 1, hi)
    return _poisson_sf(n * p0 * ratio, lo)


def tolerance_cost(
    ratio: float, *, p0: float = P0, tolerance: float, metrics: int, alpha: float, oracle_alpha: float = 0.01
) -> float:
    """How many times the oracle's canary requests a test needs that knows p0 and p1 too, but holds the
    policy's null (canary at ``tolerance`` x p0) and shares alpha over ``metrics`` metrics: Wald's
    approximation ln(K / alpha) / KL(p1 || tolerance p0) against the oracle's ln((1 - beta) / alpha) /
    KL(p1 || p0), with the oracle's alpha = beta. What the targets' 1.5x leaves for everything else."""
    p1 = ratio * p0
    own = math.log(metrics / alpha) / kl_bernoulli(p1, tolerance * p0)
    oracle = math.log((1 - oracle_alpha) / oracle_alpha) / kl_bernoulli(p1, p0)
    return own / oracle


def targets(report: dict[str, Any], beta: float) -> list[dict[str, Any]]:
    rates = sorted({c["rate"] for c in report["cells"]})
    schedule = Schedule(**report["schedule"])
    out: list[dict[str, Any]] = []

    def add(name: str, holds: bool, detail: str, limit: str = "", beyond: bool = False) -> None:
        out.append({"target": name, "holds": bool(holds), "detail": detail, "limit": limit, "beyond": beyond})

    worst = max(
        (
            c
            for c in report["cells"]
            if c["method"] == "Songbird" and c["scenario"].startswith(("healthy", "shared", "stable", "nuis"))
        ),
        key=lambda c: c["rollback"],
    )
    add(
        "false rollback <= 1% in every healthy scenario",
        worst["rollback"] <= 0.01,
        f"worst {_pct(worst['rollback'])} ({worst['scenario']}, {worst['rate']:g} req/s)",
    )
    for rate in (r for r in rates if r >= 10):
        for ratio in RATIOS:
            name = f"ratio {ratio:g}"
            s = cell(report, rate, name, "Songbird")
            if not s:
                continue
            f, o = cell(report, rate, name, "Flagger"), cell(report, rate, name, "SPRT 15 s")
            r = cell(report, rate, name, "SPRT per request")
            best = fixed_horizon_power(schedule, rate=rate, seconds=schedule.horizon, ratio=ratio)
            add(
                f"{rate:g} req/s, {name}: detection >= 99.5%",
                s["rollback"] >= 0.995,
                _pct(s["rollback"]),
                f"most powerful test knowing p0, by the horizon: {_pct(best)}"
                + (f"; SPRT 15 s {_pct(o['rollback'])}" if o else ""),
                best < 0.995,
            )
            if ratio >= 4 and f and o:
                params = report["params"]
                cost = tolerance_cost(ratio, tolerance=params["tolerance"], metrics=2, alpha=params["alpha"])
                add(
                    f"{rate:g} req/s, {name}: failed <= 1.5x SPRT 15 s and <= 1/3 Flagger",
                    s["failed_mean"] <= 1.5 * o["failed_mean"] and s["failed_mean"] <= f["failed_mean"] / 3,
                    f"{_num(s['failed_mean'])} vs SPRT 15 s {_num(o['failed_mean'])}, "
                    f"Flagger {_num(f['failed_mean'])}",
                    (f"SPRT per request {_num(r['failed_mean'])}; " if r else "")
                    + f"knowing p0 and p1 but with tolerance {params['tolerance']:g} and 2 metrics "
                    f"sharing alpha: {cost:.2f}x the 15 s oracle's requests (Wald)",
                    r is not None and r["failed_mean"] > f["failed_mean"] / 3,
                )
            if ratio >= 10 and f:
                add(
                    f"{rate:g} req/s, {name}: failed <= 1/10 Flagger",
                    s["failed_mean"] <= f["failed_mean"] / 10,
                    f"{_num(s['failed_mean'])} vs Flagger {_num(f['failed_mean'])}",
                    f"SPRT per request {_num(r['failed_mean'])}" if r else "",
                    r is not None and r["failed_mean"] > f["failed_mean"] / 10,
                )
    for rate in (r for r in rates if r <= 1):
        promoted = max(need(report, rate, f"ratio {r:g}", "Songbird")["promote"] for r in RATIOS)
        add(
            f"{rate:g} req/s: no promotion of a regression without evidence (<= beta {beta:g})",
            promoted <= beta,
            f"highest promotion rate of a regression {_pct(promoted)}",
        )
        for ratio in (r for r in RATIOS if r >= 10):
            s = need(report, rate, f"ratio {ratio:g}", "Songbird")
            best = fixed_horizon_power(schedule, rate=rate, seconds=600.0, ratio=ratio)
            add(
                f"{rate:g} req/s, ratio {ratio:g}: >= 99% detected within 10 minutes",
                s["rollback_within_600s"] >= 0.99,
                _pct(s["rollback_within_600s"]),
                f"most powerful test knowing p0, at 10 minutes: {_pct(best)}",
                best < 0.99,
            )
    if 50.0 in rates:
        h = need(report, 50.0, "healthy 0.5%", "Songbird")
        add(
            "50 req/s: healthy canaries promoted within 1.6x the nominal schedule (95% of runs)",
            h["promote_within_1.6x"] >= 0.95,
            f"{_pct(h['promote_within_1.6x'])} within {1.6 * report['schedule']['interval'] * 5:.0f} s, "
            f"median {_num(h['time_promote_median'], ' s')}",
        )
    return out


def plot(report: dict[str, Any], path: Path) -> None:
    # Imported here so that `songbird bench decisions --help` does not pay for matplotlib.
    import matplotlib  # noqa: PLC0415
    import matplotlib.ticker  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    rates = sorted({c["rate"] for c in report["cells"]})
    fig, axes = plt.subplots(1, len(rates), figsize=(4 * len(rates), 4), sharey=True, squeeze=False)
    for ax, rate in zip(axes[0], rates, strict=True):
        for m in METHOD_ORDER:
            ys = [cell(report, rate, f"ratio {r:g}", m) for r in RATIOS]
            if all(y is not None for y in ys):
                ax.plot(RATIOS, [max(y["failed_mean"], 0.1) for y in ys if y], marker="o", label=m)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(RATIOS, labels=[f"{r:g}" for r in RATIOS])
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_title(f"{rate:g} req/s")
        ax.set_xlabel("canary/stable error ratio")
    axes[0][0].set_ylabel("failed canary requests served (mean)")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def render(report: dict[str, Any]) -> str:
    rates = sorted({c["rate"] for c in report["cells"]})
    parts = [
        "# Decision quality",
        "",
        f"{report['runs']} runs per cell, seed {report['seed']}; steps {report['schedule']['steps']} every "
        f"{report['schedule']['interval']:g} s, evaluations every 15 s, "
        f"maxWait {report['schedule']['max_wait']:g} s. "
        "Cells: false-rollback rate; for regressions: share rolled back, median time to rollback, "
        "mean failed canary requests served until the decision (all runs).",
        "",
    ]
    parts += [table(report, r) for r in rates]
    parts += ["## Targets", ""]
    parts += [
        f"- {'holds' if t['holds'] else 'DOES NOT HOLD'}: {t['target']} ({t['detail']})"
        + (f"; limit: {t['limit']}" if t.get("limit") and not t["holds"] else "")
        + (" (beyond any method: the oracle misses it too)" if t.get("beyond") and not t["holds"] else "")
        for t in report["targets"]
    ]
    us = report.get("us_per_evaluation")
    songbird_runs = report["runs"] * sum(1 for c in report["cells"] if c["method"] == "Songbird")
    per_run = 1e3 * report["seconds"].get("Songbird", 0.0) / max(songbird_runs, 1)
    parts += [
        "",
        f"Songbird: {report['evaluations']} evaluations (one run, one window: `judge` for both metrics, then "
        f"`decide`), {_num(us)} us each in pure Python, {_num(per_run)} ms per simulated rollout; "
        f"wall time {report['wall_seconds']:.0f} s.",
    ]
    return "\n".join(parts) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="songbird bench decisions", description=__doc__.split("\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help=f"{QUICK_RUNS} runs per cell (the default; CI)")
    mode.add_argument(
        "--full", action="store_true", help=f"{FULL_RUNS} runs per cell; exit 1 if a target fails"
    )
    parser.add_argument("--runs", type=int, help="runs per cell (overrides the mode)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--jobs", type=int, default=1, help="processes, one traffic level each (same figures)"
    )
    parser.add_argument("--out", type=Path, default=Path("out/bench"))
    parser.add_argument(
        "--report",
        type=Path,
        help="re-render the Markdown and the plot from a JSON report instead of running",
    )
    args = parser.parse_args(argv)
    runs = args.runs or (FULL_RUNS if args.full else QUICK_RUNS)
    started = time.perf_counter()
    if args.report is not None:
        report = json.loads(args.report.read_text())
    else:
        print(f"decision quality: {runs} runs per cell, seed {args.seed}")
        report = run_all(runs, args.seed, jobs=args.jobs)
        report["wall_seconds"] = time.perf_counter() - started
    report["targets"] = targets(report, CompareParams().beta)
    text = render(report)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "decision_quality.md").write_text(text)
    (args.out / "decision_quality.json").write_text(json.dumps(report, indent=1, allow_nan=False))
    plot(report, args.out / "decision_quality.png")
    failing = [t for t in report["targets"] if not t["holds"]]
    print(
        f"{len(failing)} of {len(report['targets'])} targets do not hold; wrote {args.out} "
        f"in {report['wall_seconds']:.0f} s"
    )
    return 1 if failing and args.full else 0


if __name__ == "__main__":
    sys.exit(main())
