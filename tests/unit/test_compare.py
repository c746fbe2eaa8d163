"""The canary-vs-stable judge of analysis.compare, as the controller sees it.

Covers: CompareParams from the policy; a clear regression is a decisive FAIL whose reason names the ratio,
the evidence and the threshold; K metrics raise the rollback threshold to K/alpha; early windows and
no-data windows are INCONCLUSIVE with both evidences in the reason; a healthy canary with enough traffic
PASSes, but not before minRequests canary requests; the ceiling guard rolls back a canary above the ceiling
and must certify one below it before PASS; a shared outage (stable failing too) is INCONCLUSIVE with the
shared_outage figure, leaves the sums alone and never blames the canary, with or without a ceiling; the
sums survive a JSON round trip so a restart keeps the evidence; figures are plain JSON; and `combine`'s
mean rule, outage and pass handling.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from songbird.analysis.compare import SHARED_OUTAGE_REASON, CompareParams, combine, fmt, judge_metric
from songbird.analysis.figures import Figures
from songbird.analysis.state import RolloutState
from songbird.analysis.verdict import MetricResult, Verdict, WindowCounts
from songbird.config.policy import Compare

PARAMS = CompareParams()  # tolerance 1.2, badRatio 2, alpha 1%, beta 5%


def window(n_c: float, x_c: float, n_s: float, x_s: float) -> WindowCounts:
    return WindowCounts(canary_total=n_c, canary_bad=x_c, stable_total=n_s, stable_bad=x_s)


def run(
    windows: list[WindowCounts],
    *,
    sums: dict[str, float] | None = None,
    ceiling: float | None = None,
    n_metrics: int = 1,
    min_requests: int = 100,
    name: str = "error-rate",
) -> tuple[list[MetricResult], dict[str, float]]:
    results = []
    current: dict[str, float] = dict(sums or {})
    for counts in windows:
        result, current = judge_metric(
            name=name,
            counts=counts,
            sums=current,
            params=PARAMS,
            ceiling=ceiling,
            n_metrics=n_metrics,
            min_requests=min_requests,
        )
        results.append(result)
    return results, current


def test_params_come_from_the_policy() -> None:
    params = CompareParams.from_policy(
        Compare(tolerance=1.1, bad_ratio=3.0, false_rollback=0.002, missed_regression=0.1)
    )
    assert (params.tolerance, params.bad_ratio, params.alpha, params.beta) == (1.1, 3.0, 0.002, 0.1)
    assert params.bad_alternatives[0] == 1.5 and params.good_alternatives == (0.5, 1.0, 1.5)


def test_a_clear_regression_is_a_decisive_fail_with_an_exact_reason() -> None:
    results, _ = run([window(500, 20, 4500, 22)])  # canary 4%, stable 0.49%
    r = results[0]
    assert r.verdict is Verdict.FAIL and r.decisive
    assert r.figures.e_bad >= 100 and r.figures.threshold_bad == 100
    assert r.figures.ratio == pytest.approx((20 / 500) / (22 / 4500))
    assert re.fullmatch(r"5xx ratio canary/stable 8\.18, evidence \S+ >= 100: rollback", r.reason), r.reason
    assert (r.canary_requests, r.stable_requests) == (500, 4500)
    assert set(r.figures.to_dict()) >= {"canary_total", "canary_bad", "stable_total", "stable_bad"}


def test_more_metrics_raise_the_rollback_threshold() -> None:
    counts = [window(200, 4, 1800, 9)]  # canary 2%, stable 0.5%
    single, _ = run(counts * 4)
    double, _ = run(counts * 4, n_metrics=2)
    e_values = [r.figures.e_bad for r in single]
    assert 100 <= e_values[-1] < 200, e_values  # enough for one metric, not for two
    assert single[-1].verdict is Verdict.FAIL
    assert double[-1].verdict is Verdict.INCONCLUSIVE and double[-1].figures.threshold_bad == 200


def test_early_windows_are_inconclusive_with_both_evidences_in_the_reason() -> None:
    results, _ = run([window(0, 0, 0, 0), window(150, 1, 1350, 7)])
    assert [r.verdict for r in results] == [Verdict.INCONCLUSIVE] * 2
    assert results[0].reason == (
        "evidence for rollback 1 < 100, for promotion 1 < 20, 0 canary requests < 100: inconclusive"
    )
    assert re.fullmatch(
        r"evidence for rollback \S+ < 100, for promotion \S+ < 20: inconclusive", results[1].reason
    )
    assert not results[1].decisive


def test_no_data_windows_change_nothing() -> None:
    _, sums = run([window(150, 1, 1350, 7)])
    results, after = run([window(0, 0, 0, 0), window(40, 0, 400, 0)], sums=sums)
    ratio_keys = {k: v for k, v in sums.items() if k.startswith(("bad:", "good:"))}
    assert {k: after[k] for k in ratio_keys} == ratio_keys
    assert results[-1].figures.e_bad == results[0].figures.e_bad


def test_a_healthy_canary_passes_once_evidence_suffices() -> None:
    # 10% weight, 0.5% errors on both sides: about 2,900 canary requests are needed
    results, _ = run([window(500, 2.5, 4500, 22.5)] * 12)
    verdicts = [r.verdict for r in results]
    assert Verdict.FAIL not in verdicts
    assert verdicts[0] is Verdict.INCONCLUSIVE and verdicts[-1] is Verdict.PASS
    last = results[-1]
    assert last.figures.e_good >= 20
    assert re.fullmatch(r"5xx ratio canary/stable 1, evidence for promotion \S+ >= 20: pass", last.reason)


def test_promotion_needs_min_requests() -> None:
    # few canary requests but strong evidence from many stable errors: not a PASS before minRequests
    results, _ = run([window(30, 0, 3000, 60)] * 7, min_requests=200)
    assert results[-2].figures.e_good >= 20
    assert results[-2].verdict is Verdict.INCONCLUSIVE
    assert results[-2].reason.endswith("for promotion 82.6 >= 20, 180 canary requests < 200: inconclusive")
    assert results[-1].verdict is Verdict.PASS


def test_the_ceiling_guard_rolls_back_a_canary_above_it() -> None:
    # canary 3% against a 2% ceiling, stable 1.8%: the comparison gathers evidence slowly, the ceiling fast
    results, _ = run([window(1000, 30, 1000, 18)] * 3, ceiling=0.02)
    assert [r.verdict for r in results] == [Verdict.INCONCLUSIVE, Verdict.INCONCLUSIVE, Verdict.FAIL]
    assert results[-1].decisive and results[-1].figures.e_bad < 2
    assert results[-1].reason == "5xx share 0.03 above ceiling 0.02, evidence 130 >= 100: rollback"


def test_promotion_also_needs_the_ceiling_certified() -> None:
    counts = [window(500, 2.5, 4500, 22.5)] * 12
    without, _ = run(counts)
    assert without[-1].verdict is Verdict.PASS
    close, _ = run(counts, ceiling=0.006)  # 0.5% observed against a 0.6% ceiling: not yet certified
    assert close[-1].verdict is Verdict.INCONCLUSIVE
    assert "below ceiling" in close[-1].reason
    loose, _ = run(counts, ceiling=0.05)
    assert loose[-1].verdict is Verdict.PASS


def _history() -> dict[str, float]:
    _, sums = run([window(500, 2.5, 4500, 22.5)] * 4)
    return sums


def test_a_shared_outage_pauses_without_blaming_the_canary() -> None:
    sums = _history()
    results, after = run([window(500, 150, 4500, 1300)], sums=sums)  # both about 30% errors
    r = results[0]
    assert r.verdict is Verdict.INCONCLUSIVE and not r.decisive
    assert r.reason == SHARED_OUTAGE_REASON == "stable failing too (shared outage): pausing"
    assert r.figures.shared_outage is True
    assert after == sums  # the window counts neither toward rollback nor toward promotion


def test_a_shared_outage_above_the_ceiling_is_not_a_rollback() -> None:
    sums = _history()
    outage = [window(500, 150, 4500, 1300)] * 5
    results, _ = run(outage, sums=sums, ceiling=0.02)
    assert all(r.verdict is Verdict.INCONCLUSIVE and r.figures.shared_outage for r in results)
    # the same canary counts with a healthy stable: rolled back by the ceiling guard and the comparison
    alone, _ = run([window(500, 150, 4500, 22.5)], sums=sums, ceiling=0.02)
    assert alone[0].verdict is Verdict.FAIL and alone[0].decisive


def test_a_noisy_stable_at_low_traffic_is_not_an_outage() -> None:
    results, _ = run([window(3, 0, 27, 2)] * 5)  # 7% of 27 requests: two errors prove nothing
    assert not any(r.figures.shared_outage for r in results)


def test_evidence_survives_a_restart() -> None:
    counts = [window(200, 3, 1800, 9)] * 4
    straight, _ = run(counts)
    _, half = run(counts[:2])
    restored = RolloutState.from_json(RolloutState(evidence={"error-rate": half}).to_json()).evidence
    resumed, _ = run(counts[2:], sums=restored["error-rate"])
    assert [r.to_dict() for r in resumed] == [r.to_dict() for r in straight[2:]]


def test_figures_are_plain_json() -> None:
    results, _ = run([window(500, 500, 4500, 0), window(0, 0, 0, 0)], ceiling=0.01)
    for r in results:
        text = json.dumps(r.to_dict(), allow_nan=False)
        assert MetricResult.from_dict(json.loads(text)) == r


def _result(verdict: Verdict, e_bad: float, **figures: Any) -> MetricResult:
    return MetricResult(
        name="m", verdict=verdict, reason="r", figures=Figures(e_bad=e_bad, alpha=0.01, **figures)
    )


def test_combine_rolls_back_on_the_mean_of_the_evidence() -> None:
    both = combine([_result(Verdict.INCONCLUSIVE, 60.0), _result(Verdict.INCONCLUSIVE, 150.0)])
    assert both.verdict is Verdict.FAIL and both.decisive and both.mean_e_bad == 105
    assert both.reason == "mean rollback evidence over 2 metrics 105 >= 100: rollback"
    below = combine([_result(Verdict.INCONCLUSIVE, 60.0), _result(Verdict.INCONCLUSIVE, 130.0)])
    assert below.verdict is Verdict.INCONCLUSIVE and not below.decisive


def test_combine_passes_only_when_every_metric_passes() -> None:
    assert combine([_result(Verdict.PASS, 0.1), _result(Verdict.PASS, 0.2)]).verdict is Verdict.PASS
    mixed = combine([_result(Verdict.PASS, 0.1), _result(Verdict.INCONCLUSIVE, 0.2)])
    assert mixed.verdict is Verdict.INCONCLUSIVE
    outage = combine([_result(Verdict.PASS, 0.1), _result(Verdict.INCONCLUSIVE, 0.2, shared_outage=True)])
    assert outage.verdict is Verdict.INCONCLUSIVE and outage.reason == SHARED_OUTAGE_REASON
    assert combine([_result(Verdict.ERROR, 1.0)]).verdict is Verdict.ERROR


def test_fmt_reads_like_a_person_wrote_it() -> None:
    assert [fmt(142.31), fmt(3.14159), fmt(0.02), fmt(1.0), fmt(2.5e7), fmt(None)] == [
        "142",
        "3.14",
        "0.02",
        "1",
        "2.50e+07",
        "n/a",
    ]
