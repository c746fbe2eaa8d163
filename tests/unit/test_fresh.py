"""Fresh evidence for a PASS (`analysis.fresh`, applied by `analysis.evaluate.judge`), driven tick by tick
through the real pure step with Prometheus answers scripted per weight (an in-memory `MetricsSource`
behind the real `analysis.observe`).

Covers:
- a canary seen healthy only at 10%, then empty answers at the last step (50%): never PASS there, never
  promoted (both routes to a PASS: the sparse rule and the anytime-valid comparison);
- the same with the canary's series gone at 50% (stable still answering) and with NaN answers: never PASS,
  never promoted;
- a window that errors after PASS evidence: the metric is ERROR and the step does not advance;
- the fresh counts on the figures: reset when the step changes, counted only from answered windows; and
  a healthy canary that keeps answering at the last step is still promoted, on fresh evidence;
- a window that reaches back before the step started counts for the rollout but not as fresh, and the
  persisted evidence keeps the same keys however many windows are judged; so does a batched window
  aligned to the cadence grid that starts before the step, although the previous tick started the step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

from songbird.analysis.batch import WINDOW_KEY, recorded, slot
from songbird.analysis.decision import Action, Decision, Facts
from songbird.analysis.evaluate import evidence_window, judge
from songbird.analysis.observe import observe
from songbird.analysis.queries import IngressTarget
from songbird.analysis.state import Evidence, Phase, RolloutState
from songbird.analysis.step import step
from songbird.analysis.verdict import MetricResult, Verdict
from songbird.config.errors import MetricsUnavailable
from songbird.config.loader import load_policy_yaml
from songbird.config.policy import Policy

POLICY = load_policy_yaml("""
ingress: web
canary: {deployment: web-v2, service: web-v2}
steps: [10, 50]
interval: 1m
analysis:
  cadence: 15s
  minRequests: 100
  errorDeadline: 10m
  metrics: [{name: error-rate}, {name: latency, threshold: 0.5}]
  compare: {maxWait: 5m, onInconclusive: pause}
""")
FACTS = Facts(
    canary="web-v2",
    stable="web-v1",
    canary_service="web-v2",
    stable_service="web-v1",
    revision="r1",
    stable_replicas=4,
    canary_replicas=4,
    canary_ready=4,
)
TARGET = IngressTarget(namespace="shop", ingress="web", canary="web-v2", stable="web-v1")
T0 = 1_700_000_000.0
GRID = T0 - T0 % 15  # a time on the 15 s cadence grid


@dataclass(frozen=True)
class Counts:
    """One 15 s window's answers: (requests, bad events) per version; ``None`` answers nothing."""

    canary: tuple[float, float] | None
    stable: tuple[float, float] | None


HEALTHY_SPARSE = Counts(canary=(150.0, 0.0), stable=(1350.0, 0.0))  # no bad events at all: sparse rule
HEALTHY_COMPARED = Counts(canary=(3000.0, 3.0), stable=(27000.0, 270.0))  # canary 0.1%, stable 1%
EMPTY = Counts(canary=None, stable=None)
CANARY_GONE = Counts(canary=None, stable=(1350.0, 0.0))

Answer = Counts | float | MetricsUnavailable  # counts, one number for every query (NaN), or no answer
Script = Callable[[float, float], Answer]  # (weight in force, evaluation time) -> the answers


class ScriptedPrometheus:
    """A `MetricsSource` answering ingress-nginx's queries from the script for the weight in force."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.weight = 0.0

    def query_scalar(self, promql: str, *, at: float) -> float | None:
        answer = self.script(self.weight, at)
        if isinstance(answer, MetricsUnavailable):
            raise answer
        if isinstance(answer, float):
            return answer
        if "histogram_quantile" in promql:
            return None
        pair = answer.canary if 'canary!=""' in promql else answer.stable
        if pair is None:
            return None
        bad = 'status=~"5.."' in promql or " - sum(" in promql
        return pair[1] if bad else pair[0]


def ready(decision: Decision, facts: Facts) -> Facts:
    if decision.target is None:
        return facts
    n = decision.target.canary_replicas
    return replace(facts, canary_replicas=n, canary_ready=n)


@dataclass
class Run:
    decisions: list[Decision]
    evaluations: list[tuple[RolloutState, tuple[MetricResult, ...]]]  # (state judged at, verdicts)

    @property
    def promoted(self) -> bool:
        return any(d.action is Action.PROMOTE for d in self.decisions)

    def verdicts_at(self, weight: float) -> list[tuple[MetricResult, ...]]:
        return [results for state, results in self.evaluations if state.weight == weight]


def drive(script: Script, *, seconds: float, policy: Policy = POLICY) -> Run:
    """Ticks every 5 s from a fresh rollout, judging with the real observe + judge when due."""
    source = ScriptedPrometheus(script)
    state, facts = RolloutState(), FACTS
    run = Run(decisions=[], evaluations=[])
    now = T0
    while now <= T0 + seconds and not state.phase.finished:

        def verdicts(s: RolloutState, at: float = now) -> tuple[tuple[MetricResult, ...], Evidence]:
            source.weight = s.weight
            seen = observe(policy, source, TARGET, at=at, window=evidence_window(policy, s, at))
            results, evidence = judge(policy, s, seen, ())
            run.evaluations.append((s, results))
            return results, evidence

        decisions = step(policy, state, facts, now, verdicts=verdicts, acted=ready)
        run.decisions += decisions
        state = decisions[-1].state
        facts = ready(decisions[-1], facts)
        now += 5.0
        if state.phase is Phase.PROMOTING:
            break
    return run


def at_ten_then(last: Answer, healthy: Counts) -> Script:
    return lambda weight, at: healthy if weight <= 10 else last


def test_healthy_at_ten_then_empty_at_the_last_step_never_passes_nor_promotes() -> None:
    for healthy, why in (
        (
            HEALTHY_SPARSE,
            "too few bad events to compare, and 0 canary requests at 50% this step < minRequests 100",
        ),
        (HEALTHY_COMPARED, "no canary requests in this window at 50%"),
    ):
        run = drive(at_ten_then(EMPTY, healthy), seconds=600)
        # At 10% the canary earned its PASS (so the evidence over the rollout is there) ...
        assert all(r.verdict is Verdict.PASS for r in run.verdicts_at(10.0)[-1]), healthy
        # ... but at 50% nothing answered: no PASS, no promotion, paused once maxWait ran out.
        at_fifty = run.verdicts_at(50.0)
        assert len(at_fifty) >= 20
        assert not any(r.verdict is Verdict.PASS for results in at_fifty for r in results), healthy
        assert all(r.figures.fresh_canary_requests == 0 for results in at_fifty for r in results)
        assert at_fifty[-1][0].reason.startswith(f"{why}: inconclusive"), at_fifty[-1][0].reason
        assert not run.promoted
        assert run.decisions[-1].state.phase is Phase.PAUSED


def test_canary_series_gone_at_the_last_step_never_promotes() -> None:
    run = drive(at_ten_then(CANARY_GONE, HEALTHY_SPARSE), seconds=600)
    assert not any(r.verdict is Verdict.PASS for results in run.verdicts_at(50.0) for r in results)
    assert not run.promoted


def test_nan_answers_at_the_last_step_are_errors_and_never_promote() -> None:
    run = drive(at_ten_then(math.nan, HEALTHY_COMPARED), seconds=600)
    at_fifty = run.verdicts_at(50.0)
    assert at_fifty and all(r.verdict is Verdict.ERROR for results in at_fifty for r in results)
    assert not run.promoted


def test_a_window_that_errors_after_pass_evidence_is_an_error_and_holds_the_step() -> None:
    def script(weight: float, at: float) -> Answer:
        # Healthy for the first three evaluations of the first step (15, 30, 45 s into it), then
        # Prometheus stops answering, from the step's last evaluation (60 s) on.
        if at < T0 + 60:
            return HEALTHY_COMPARED
        return MetricsUnavailable("Prometheus at http://p:9090 did not answer within 5 s")

    run = drive(script, seconds=120)
    at_ten = run.verdicts_at(10.0)
    assert any(all(r.verdict is Verdict.PASS for r in results) for results in at_ten)
    assert all(r.verdict is Verdict.ERROR for r in at_ten[-1])
    # The step's time ran out with the last evaluation an ERROR: held at 10%, never raised to 50%.
    assert not any(d.action is Action.ADVANCE and d.state.weight == 50.0 for d in run.decisions)
    assert run.decisions[-1].state.weight == 10.0
    assert run.decisions[-1].reason.startswith("step 1/2 at 10%: holding: error-rate ERROR:")


def test_fresh_counts_restart_at_each_step_and_a_healthy_canary_is_still_promoted() -> None:
    # The canary's share follows the weight, as a router does (the split is verified, `analysis.split`).
    at_half = Counts(canary=(15000.0, 15.0), stable=(15000.0, 150.0))
    run = drive(lambda weight, at: HEALTHY_COMPARED if weight < 50 else at_half, seconds=600)
    first = [results[0].figures.fresh_canary_requests for results in run.verdicts_at(10.0)]
    last = [results[0].figures.fresh_canary_requests for results in run.verdicts_at(50.0)]
    assert first[:2] == [3000.0, 6000.0] and last[:2] == [15000.0, 30000.0]
    assert run.promoted
    final = run.verdicts_at(50.0)[-1]
    assert all(r.verdict is Verdict.PASS and (r.figures.fresh_canary_requests or 0) >= 100 for r in final)


def test_a_window_reaching_back_before_the_step_is_not_fresh_and_the_keys_stay_bounded() -> None:
    window = observe(POLICY, ScriptedPrometheus(lambda weight, at: HEALTHY_SPARSE), TARGET, at=T0, window=15)
    # The step started at T0 - 10, the previous evaluation was at T0 - 30: this window holds 20 s of the
    # previous weight, so it counts for the rollout's evidence but not as fresh.
    state = RolloutState(
        phase=Phase.PROGRESSING, step=1, weight=50.0, step_started_at=T0 - 10, last_evaluated_at=T0 - 30
    )
    results, evidence = judge(POLICY, state, window, ())
    assert all(r.figures.fresh_canary_requests == 0 for r in results)
    assert all(r.figures.canary_total_sum == 150 for r in results)
    keys = {name: set(sums) for name, sums in evidence.items()}
    script = ScriptedPrometheus(lambda weight, at: HEALTHY_SPARSE)
    for i in range(1, 40):
        state = replace(state, evidence=evidence, last_evaluated_at=T0 + 15 * (i - 1))
        # Each later window runs from the previous evaluation to this one, inside the step.
        later = observe(POLICY, script, TARGET, at=T0 + 15 * i, window=15)
        results, evidence = judge(POLICY, state, later, ())
    assert all(r.figures.fresh_canary_requests == 39 * 150 for r in results)
    assert {name: set(sums) for name, sums in evidence.items()} == keys


def test_a_batched_window_starting_on_the_grid_before_the_step_is_not_fresh() -> None:
    # The previous window ended on the grid at GRID - 15; the tick at GRID - 7 evaluated and started step 2
    # (so the previous evaluation is not before the step). The next aligned window runs from GRID - 15 to
    # GRID: 8 of its 15 s are at the previous weight, so it is not fresh; the one after it is.
    state = RolloutState(
        phase=Phase.PROGRESSING,
        step=1,
        weight=50.0,
        step_started_at=GRID - 7,
        last_evaluated_at=GRID - 7,
        evidence={WINDOW_KEY: {"end": GRID - 15}},
    )
    chosen = slot(POLICY, state, GRID + 8)
    assert (chosen.at, chosen.window) == (GRID, 15.0)
    script = ScriptedPrometheus(lambda weight, at: HEALTHY_SPARSE)
    results, evidence = judge(POLICY, state, observe(POLICY, script, TARGET, at=chosen.at, window=15), ())
    assert all(r.figures.fresh_canary_requests == 0 for r in results)
    state = replace(state, evidence=recorded(evidence, GRID), last_evaluated_at=GRID + 8)
    chosen = slot(POLICY, state, GRID + 23)
    assert (chosen.at, chosen.window) == (GRID + 15, 15.0)
    results, _ = judge(POLICY, state, observe(POLICY, script, TARGET, at=chosen.at, window=15), ())
    assert all(r.figures.fresh_canary_requests == 150 for r in results)
