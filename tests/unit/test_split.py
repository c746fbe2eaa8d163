"""The traffic split check (`analysis.split`) and the hold it causes (`analysis.decision`).

Covers: the bound's detection point (0% at 20% flagged from 66 requests, not at 65) and real-valued
counts; the false-alarm rate under a split that does what it was told, by simulation, within 4 standard
errors of alpha (alpha = 0.01 so that a rate can be measured; the gross gate off), for plain binomial
traffic and for sticky sessions (clients with geometric session lengths, mean 10 requests) with the
sticky dispersion factor, which the same traffic without it exceeds; no false alarm at all at the
default alpha in 10^5 draws per weight; the gross gate (15% at 20% never flagged, 5% flagged); header
routing (only a share too low is evidence); the window deciding over the step's counts when it can tell;
the status record round trip; and the decision: a mismatch holds past the step's interval with a reason
naming observed and expected shares and the likely causes, never rolls back, never promotes, a metric's
decisive FAIL still rolls back, and the hold clears when the share comes back.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from songbird.analysis import split
from songbird.analysis.cause import Cause
from songbird.analysis.decision import Action, Facts, decide
from songbird.analysis.figures import Figures
from songbird.analysis.split import SplitCheck, SplitStatus, check
from songbird.analysis.state import Evaluation, Phase, RolloutState
from songbird.analysis.verdict import MetricResult, Verdict, WindowCounts
from songbird.config.loader import load_policy_yaml

ALPHA_TEST = 0.01
DRAWS = 20_000


def _flagged_counts(n: int, p: float, **kw: float | bool) -> np.ndarray:
    """For each canary count k in 0..n, whether ``check`` flags it (a lookup table for simulations)."""
    return np.array(
        [
            check(step=0, weight=100 * p, canary=k, stable=n - k, **kw).status is SplitStatus.MISMATCH  # type: ignore[arg-type]
            for k in range(n + 1)
        ]
    )


def test_zero_at_twenty_percent_is_detectable_from_66_requests() -> None:
    assert split.detectable_from(0.2) == 66
    assert check(step=1, weight=20, canary=0, stable=66).status is SplitStatus.MISMATCH
    assert check(step=1, weight=20, canary=0, stable=65).status is SplitStatus.UNDECIDED
    assert check(step=1, weight=20, canary=0, stable=65.0).status is SplitStatus.UNDECIDED
    assert check(step=1, weight=20, canary=0.0, stable=65.1).status is SplitStatus.MISMATCH
    assert split.detectable_from(0.2, dispersion=split.STICKY_DISPERSION) == 1626
    # 20% at 20% with plenty of requests: consistent, not merely undecided.
    assert check(step=1, weight=20, canary=200, stable=800).status is SplitStatus.CONSISTENT


@pytest.mark.parametrize("p", [0.05, 0.2, 0.5, 0.8])
@pytest.mark.parametrize("n", [60, 400, 3000])
def test_false_alarm_rate_under_the_null_is_within_alpha(p: float, n: int) -> None:
    flagged = _flagged_counts(n, p, alpha=ALPHA_TEST, gross=0.0)
    rng = np.random.default_rng(int(1000 * p) + n)
    rate = flagged[rng.binomial(n, p, size=DRAWS)].mean()
    tolerance = 4 * math.sqrt(ALPHA_TEST * (1 - ALPHA_TEST) / DRAWS)
    assert rate <= ALPHA_TEST + tolerance
    # The exact rate (binomial probabilities of the flagged counts) is within alpha too: Chernoff is a bound.
    k = np.arange(n + 1)
    log_pmf = np.array([math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) for i in k])
    log_pmf += k * math.log(p) + (n - k) * math.log1p(-p)
    assert float(np.exp(log_pmf)[flagged].sum()) <= ALPHA_TEST


@pytest.mark.parametrize("p", [0.1, 0.2, 0.5, 0.9])
def test_no_false_alarm_at_the_default_alpha(p: float) -> None:
    n = 5000
    flagged = _flagged_counts(n, p)
    rng = np.random.default_rng(7)
    assert not flagged[rng.binomial(n, p, size=100_000)].any()


def _sticky_rates(p: float, dispersion: float, rng: np.random.Generator) -> float:
    """False-alarm rate for sticky clients: each client sends a geometric number of requests (mean 10)
    and all of them reach the version it was first sent to."""
    alarms = 0
    trials = 4000
    for _ in range(trials):
        lengths = rng.geometric(0.1, size=60)
        on_canary = rng.random(60) < p
        canary = float(lengths[on_canary].sum())
        stable = float(lengths[~on_canary].sum())
        c = check(
            step=0,
            weight=100 * p,
            canary=canary,
            stable=stable,
            dispersion=dispersion,
            alpha=ALPHA_TEST,
            gross=0.0,
        )
        alarms += c.status is SplitStatus.MISMATCH
    return alarms / trials


def test_sticky_sessions_widen_the_bound_enough() -> None:
    rng = np.random.default_rng(11)
    tolerance = 4 * math.sqrt(ALPHA_TEST * (1 - ALPHA_TEST) / 4000)
    for p in (0.2, 0.5):
        assert _sticky_rates(p, split.STICKY_DISPERSION, rng) <= ALPHA_TEST + tolerance
    # Without the factor, the correlated requests raise false alarms far beyond alpha.
    assert _sticky_rates(0.2, 1.0, rng) > 5 * ALPHA_TEST


def test_gross_gate_and_header_routing() -> None:
    assert check(step=0, weight=20, canary=150_000, stable=850_000).status is SplitStatus.CONSISTENT
    assert check(step=0, weight=20, canary=5_000, stable=95_000).status is SplitStatus.MISMATCH
    assert check(step=0, weight=20, canary=90_000, stable=10_000).status is SplitStatus.MISMATCH
    # Header routing sends more to the canary: a share too high is no evidence, one too low still is.
    assert (
        check(step=0, weight=20, canary=90_000, stable=10_000, low_only=True).status is SplitStatus.CONSISTENT
    )
    assert check(step=0, weight=20, canary=0, stable=1000, low_only=True).status is SplitStatus.MISMATCH


POLICY = load_policy_yaml("""
ingress: nginx
canary: {deployment: nginx-v2, service: nginx-v2}
steps: [20, 50]
interval: 1m
analysis: {cadence: 15s, window: 15s, failureLimit: 2, compare: {maxWait: 1m}}
""")
FACTS = Facts(
    canary="nginx-v2",
    stable="nginx-v1",
    canary_service="nginx-v2",
    stable_service="nginx-v1",
    revision="r1",
    stable_replicas=4,
    canary_replicas=4,
    canary_ready=4,
)


def result(
    canary: float, stable: float, verdict: Verdict = Verdict.INCONCLUSIVE, *, decisive: bool = False
) -> MetricResult:
    return MetricResult(
        name="error-rate",
        verdict=verdict,
        reason="r",
        decisive=decisive,
        figures=Figures(canary_total=canary, stable_total=stable),
    )


def at_step(canary: float, stable: float, *, step: int = 0, weight: float = 20.0) -> RolloutState:
    """Progressing at ``step``, started at t=1000, with two evaluations whose last window holds these
    counts."""
    history = tuple(
        Evaluation(at=t, step=step, weight=weight, results=(result(canary, stable),))
        for t in (1015.0, 1030.0)
    )
    return RolloutState(
        phase=Phase.PROGRESSING,
        step=step,
        weight=weight,
        canary="nginx-v2",
        stable="nginx-v1",
        canary_service="nginx-v2",
        stable_service="nginx-v1",
        revision="r1",
        total_replicas=4,
        started_at=990.0,
        step_started_at=1000.0,
        last_evaluated_at=1030.0,
        history=history,
    )


def test_a_canary_receiving_nothing_holds_with_the_reason_and_never_rolls_back() -> None:
    state = at_step(0, 450)
    now = 1100.0  # past the step's interval: without the check it would advance to 50%
    for _ in range(20):
        d = decide(POLICY, state, FACTS, (result(0, 450),), now)
        assert d.action is Action.HOLD and d.cause is Cause.SPLIT_MISMATCH
        assert d.target is not None and d.target.traffic.weight == 20
        state, now = d.state, now + 15
    assert state.phase is Phase.PROGRESSING and state.step == 0
    assert state.split is not None and state.split.status is SplitStatus.MISMATCH
    assert "canary received 0.0% of 450 requests in the last window at step 1, expected 20%" in d.reason
    for cause in split.LIKELY_CAUSES:
        assert cause in d.reason
    # A decisive FAIL still rolls back.
    d = decide(POLICY, state, FACTS, (result(0, 450, Verdict.FAIL, decisive=True),), now)
    assert d.action is Action.ROLLBACK and d.cause is Cause.METRIC_FAILED


def test_the_hold_clears_when_the_share_comes_back_and_never_promotes_meanwhile() -> None:
    last = at_step(0, 450, step=1, weight=50)
    d = decide(POLICY, last, FACTS, (result(0, 450, Verdict.PASS),), 1100.0)
    assert d.action is Action.HOLD and d.cause is Cause.SPLIT_MISMATCH  # all PASS, still no promotion
    back = replace(
        d.state,
        history=(
            *d.state.history,
            Evaluation(at=1100.0, step=1, weight=50, results=(result(230, 220, Verdict.PASS),)),
        ),
    )
    d = decide(POLICY, back, FACTS, (result(230, 220, Verdict.PASS),), 1115.0)
    assert d.action is Action.PROMOTE, d.reason
    assert d.state.split is not None and d.state.split.status is SplitStatus.CONSISTENT


def test_the_window_decides_when_it_can_tell_else_the_step() -> None:
    evidence = {
        "error-rate": {
            "fresh:step": 0.0,
            "fresh:weight": 20.0,
            "fresh:canary:total": 0.0,
            "fresh:stable:total": 2000.0,
        }
    }
    by_step = split.verify(POLICY, evidence, step=0, weight=20)
    assert by_step.status is SplitStatus.MISMATCH and by_step.basis == "step"
    small = WindowCounts(canary_total=2, canary_bad=0, stable_total=8, stable_bad=0)
    assert split.verify(POLICY, evidence, step=0, weight=20, last_window=small).basis == "step"
    fixed = WindowCounts(canary_total=100, canary_bad=0, stable_total=400, stable_bad=0)
    cleared = split.verify(POLICY, evidence, step=0, weight=20, last_window=fixed)
    assert cleared.status is SplitStatus.CONSISTENT and cleared.basis == "window"


def test_the_check_survives_the_status_record() -> None:
    c = check(step=2, weight=40, canary=0, stable=900, low_only=True)
    state = RolloutState(phase=Phase.PROGRESSING, split=c)
    again = RolloutState.from_json(state.to_json()).split
    assert again is not None and again.status is SplitStatus.MISMATCH
    assert (again.step, again.weight, again.canary, again.stable, again.low_only) == (2, 40, 0, 900, True)
    assert again.bound is not None and again.bound < 1e-80
    assert SplitCheck.from_dict({"status": "nonsense"}) is None
    assert RolloutState.from_json('{"phase": "Idle"}').split is None
