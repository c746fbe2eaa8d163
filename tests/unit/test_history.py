"""The judge with the stable's pre-rollout history (analysis.compare's one-sample part, analysis.evidence's
confidence bounds and weighted mixtures).

Covers: the Chernoff bounds on the history's share against their defining equation and their coverage on
simulated histories; the weighted mixture against a hand-computed value; the alpha guarantee of the
combined evidence on simulated healthy canaries at the tolerance, with enough seeded runs that a rate of
2 alpha fails the test, beside the power gain over the comparison with the concurrent stable alone; a
regression decided and a healthy canary certified in fewer windows at high canary weight; a stable whose
error share rises during the rollout gates the one-sample part instead of blaming a canary that fails like
it (drifts of 1.5 to 5 times the history, at three canary weights), and a surge that ends leaves the
one-sample sums no higher than before it; at low traffic the canary's failures count once the stable has
served enough requests since, and not when the stable then shows the same failure; and the history
survives a restart with the rest of the evidence.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from songbird.analysis import evidence as ev
from songbird.analysis.compare import judge_metric
from songbird.analysis.history import (
    HISTORY_BAD,
    HISTORY_SECONDS,
    HISTORY_TOTAL,
    ONE_BAD,
)
from songbird.analysis.params import CompareParams
from songbird.analysis.state import RolloutState
from songbird.analysis.verdict import MetricResult, Verdict, WindowCounts
from tests.support.rollout_windows import rollout_windows

SIX_HOURS = 6 * 3600.0


def history(rate: float, share: float) -> dict[str, float]:
    total = rate * SIX_HOURS
    return {HISTORY_TOTAL: total, HISTORY_BAD: total * share, HISTORY_SECONDS: SIX_HOURS}


def window(n_c: float, x_c: float, n_s: float, x_s: float) -> WindowCounts:
    return WindowCounts(canary_total=n_c, canary_bad=x_c, stable_total=n_s, stable_bad=x_s)


def run(
    windows: list[WindowCounts], sums: dict[str, float], params: CompareParams | None = None
) -> tuple[list[MetricResult], dict[str, float]]:
    results = []
    current = dict(sums)
    for counts in windows:
        result, current = judge_metric(
            name="error-rate",
            counts=counts,
            sums=current,
            params=params or CompareParams(),
            ceiling=None,
            n_metrics=1,
            min_requests=100,
        )
        results.append(result)
    return results, current


def first(results: list[MetricResult], verdict: Verdict) -> int | None:
    return next((i for i, r in enumerate(results) if r.verdict is verdict), None)


def test_share_bounds_solve_their_equation() -> None:
    n, x, delta = 1000.0, 5.0, math.exp(-3)
    upper = ev.share_bound(n, x, delta, upper=True)
    lower = ev.share_bound(n, x, delta, upper=False)
    assert lower < 0.005 < upper
    assert n * ev.kl_bernoulli(0.005, upper) == pytest.approx(3.0, abs=1e-9)
    assert n * ev.kl_bernoulli(0.005, lower) == pytest.approx(3.0, abs=1e-9)
    assert ev.share_bound(0, 0, 0.1, upper=True) == 1.0 and ev.share_bound(0, 0, 0.1, upper=False) == 0.0
    assert ev.share_bound(100, 0, 0.1, upper=False) == 0.0
    assert ev.share_bound(100, 0, 0.1, upper=True) == pytest.approx(1 - 0.1 ** (1 / 100), rel=1e-9)


def test_share_bounds_cover_the_true_share() -> None:
    rng = np.random.default_rng(5)
    p, n, delta = 0.01, 2000, 0.05
    xs = rng.binomial(n, p, 4000)
    above = np.mean([ev.share_bound(n, float(x), delta, upper=True) < p for x in xs])
    below = np.mean([ev.share_bound(n, float(x), delta, upper=False) > p for x in xs])
    assert above <= delta and below <= delta
    assert above > 0.005 and below > 0.005  # not trivially wide


def test_weighted_mixture_matches_hand_computed_value() -> None:
    sums = {"bad:2": math.log(4.0), "bad:3": 0.0, "bad:5": 5.0}
    got = ev.log_evidence(sums, "bad", (2.0, 3.0), {2.0: 3.0, 3.0: 1.0, 5.0: 100.0})
    assert got == pytest.approx(math.log(0.75 * 4 + 0.25 * 1), abs=1e-12)
    assert ev.log_evidence(sums, "bad", (2.0, 3.0)) == pytest.approx(math.log(2.5), abs=1e-12)


def _crossing_rate(ratio: float, *, alpha: float, runs: int, seed: int, with_history: bool) -> float:
    """Share of simulated rollouts (weights 10% to 80%, 400 requests a window) ever rolled back."""
    rng = np.random.default_rng(seed)
    params = CompareParams(alpha=alpha)
    p0 = 0.01
    rate = 400 / 15
    crossed = 0
    for _ in range(runs):
        total_h = float(rng.poisson(rate * SIX_HOURS))
        sums: dict[str, float] = {}
        if with_history:
            sums = {
                HISTORY_TOTAL: total_h,
                HISTORY_BAD: float(rng.binomial(int(total_h), p0)),
                HISTORY_SECONDS: SIX_HOURS,
            }
        for n_c, x_c, n_s, x_s in rollout_windows(rng, ratio=ratio, p0=p0):
            result, sums = judge_metric(
                name="error-rate",
                counts=window(n_c, x_c, n_s, x_s),
                sums=sums,
                params=params,
                ceiling=None,
                n_metrics=1,
                min_requests=100,
            )
            if result.verdict is Verdict.FAIL:
                crossed += 1
                break
    return crossed / runs


def test_healthy_canaries_at_the_tolerance_are_rolled_back_at_most_alpha_with_history() -> None:
    # 1500 runs with alpha = 5%: the standard error of the observed rate is under 0.8 points up to 10%, so
    # a judge whose real rate were 2 alpha would exceed 1.5 alpha here with probability above 99.9%.
    rate = _crossing_rate(1.2, alpha=0.05, runs=1500, seed=17, with_history=True)
    assert rate <= 1.5 * 0.05  # measured: 1.2%


def test_history_adds_power_where_the_stable_is_thin() -> None:
    with_history = _crossing_rate(2.0, alpha=0.05, runs=300, seed=18, with_history=True)
    without = _crossing_rate(2.0, alpha=0.05, runs=300, seed=18, with_history=False)
    # measured: 81% with the history, 57% without (300 runs: standard errors under 3 points)
    assert with_history >= 0.72 and with_history >= without + 0.15


def test_at_high_weight_a_regression_fails_sooner_and_a_healthy_canary_passes_sooner() -> None:
    hist = history(50.0, 0.005)  # six hours at 50 req/s: p0 is known within a few percent
    bad = [window(600, 12, 150, 0.75)] * 40  # 80% weight, canary at 2%, stable at 0.5%
    fail_with = first(run(bad, hist)[0], Verdict.FAIL)
    fail_without = first(run(bad, {})[0], Verdict.FAIL)
    assert fail_with is not None and fail_without is not None and fail_with < fail_without
    good = [window(600, 3, 150, 0.75)] * 40  # canary like the stable
    pass_with = first(run(good, hist)[0], Verdict.PASS)
    pass_without = first(run(good, {})[0], Verdict.PASS)
    assert pass_with is not None and (pass_without is None or pass_with < pass_without)
    assert all(r.verdict is not Verdict.FAIL for r in run(good, hist)[0])


def test_a_stable_drifting_above_its_history_does_not_blame_a_canary_failing_like_it() -> None:
    hist = history(50.0, 0.005)
    drift = [window(600, 9, 150, 2.25)] * 40  # both versions at 1.5%: three times the history
    results, _ = run(drift, hist)
    assert all(r.verdict is not Verdict.FAIL for r in results)
    assert results[-1].figures.e_bad_history <= 1.0
    # the same canary with a stable like its history: rolled back
    alone, _ = run([window(600, 9, 150, 0.75)] * 40, hist)
    assert first(alone, Verdict.FAIL) is not None


def test_a_surge_on_both_versions_leaves_the_one_sample_sums_where_they_were() -> None:
    hist = history(50.0, 0.005)
    calm = [window(375, 1.875, 375, 1.875)] * 4
    _, before = run(calm, hist)
    surge = [window(375, 15, 375, 15)] * 3  # 4% on both: far above the history, below the outage rule
    results, during = run(surge, before)
    assert not any(r.figures.shared_outage for r in results)
    assert all(r.verdict is not Verdict.FAIL for r in results)
    _, after = run([window(375, 1.875, 375, 1.875)] * 30, during)
    for r in CompareParams().bad_alternatives:
        k = ev.key(ONE_BAD, r)
        assert after[k] <= before[k] + 1e-9


def test_at_low_traffic_canary_failures_count_once_the_stable_has_vouched_for_them() -> None:
    hist = history(1.0, 0.005)
    failing = window(8, 2, 4, 0)  # a quarter of the canary's requests fail; 4 stable requests a window
    waiting, sums = run([failing] * 4, hist)  # 16 stable requests since the first failure: not yet
    assert all(r.figures.e_bad_history == pytest.approx(1.0) for r in waiting)
    assert all(r.verdict is not Verdict.FAIL for r in waiting)
    vouched, _ = run([failing] * 2, sums)  # 20 and more: the waiting windows count, all at once
    assert vouched[0].figures.e_bad_history > 1e6
    assert vouched[0].verdict is Verdict.FAIL


@pytest.mark.parametrize("multiple", [1.5, 2.0, 3.0, 5.0])
@pytest.mark.parametrize(("canary", "stable"), [(600, 150), (375, 375), (150, 600)])
def test_a_stable_drifting_above_its_history_never_blames_a_canary_failing_like_it(
    multiple: float, canary: int, stable: int
) -> None:
    share = 0.005 * multiple
    results, _ = run([window(canary, canary * share, stable, stable * share)] * 60, history(50.0, 0.005))
    assert all(r.verdict is not Verdict.FAIL for r in results)
    assert max(r.figures.e_bad_history for r in results) < 10


def test_a_failure_the_stable_shows_later_is_not_blamed_on_the_canary_at_low_traffic() -> None:
    hist = history(1.0, 0.005)
    canary_first = [window(8, 2, 4, 0)] * 2  # the canary's requests fail first...
    stable_next = [window(8, 0, 4, 2)] * 3  # ...then the stable's: a failure hitting both versions
    calm = [window(8, 0, 8, 0)] * 8
    results, _ = run(canary_first + stable_next + calm, hist)
    assert all(r.verdict is not Verdict.FAIL for r in results)
    assert all(r.figures.e_bad_history <= 1.0 for r in results)


def test_the_history_survives_a_restart() -> None:
    counts = [window(600, 3, 150, 0.75)] * 6
    straight, _ = run(counts, history(50.0, 0.005))
    _, half = run(counts[:3], history(50.0, 0.005))
    restored = RolloutState.from_json(RolloutState(evidence={"error-rate": half}).to_json()).evidence
    resumed, _ = run(counts[3:], restored["error-rate"])
    assert [r.to_dict() for r in resumed] == [r.to_dict() for r in straight[3:]]
