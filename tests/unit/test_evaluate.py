"""The controller's judgement of one evaluation (`analysis.evaluate.judge`, pure): observations in, verdicts
and evidence out. Covers the multi-metric mean rule (rollback when the mean of the metrics' evidence
reaches 1/alpha although none reaches K/alpha alone), the sparse rule (no bad events on either side: pass
once minRequests are served under the ceiling), an unobservable metric as ERROR without touching the
others' evidence, evidence carried from one evaluation to the next through the state, and the stable's
pre-rollout history taking the sparse rule's place when it holds bad events, and a custom metric's PASS
only when its window lies inside the current step."""

from __future__ import annotations

from dataclasses import replace

from songbird.analysis.evaluate import judge
from songbird.analysis.observe import MetricObservation
from songbird.analysis.state import RolloutState
from songbird.analysis.verdict import Verdict, WindowCounts
from songbird.config.loader import load_policy_yaml

POLICY = load_policy_yaml("""
ingress: nginx
canary: {deployment: v2, service: v2}
steps: [50]
analysis:
  minRequests: 100
  metrics: [{name: error-rate, max: 0.5}, {name: latency, quantile: 0.5, max: 0.5}]
""")


def seen(name: str, canary: tuple[float, float], stable: tuple[float, float]) -> MetricObservation:
    return MetricObservation(
        name=name,
        counts=WindowCounts(
            canary_total=canary[0], canary_bad=canary[1], stable_total=stable[0], stable_bad=stable[1]
        ),
    )


def test_mean_rule_rolls_back_before_any_single_metric_would() -> None:
    state = RolloutState()
    windows = 0
    for _ in range(200):
        windows += 1
        obs = (seen("error-rate", (200, 5), (200, 2)), seen("latency", (200, 5), (200, 2)))
        results, evidence = judge(POLICY, state, obs, ())
        state = replace(state, evidence=evidence)
        e_bad = [r.figures.e_bad or 0.0 for r in results]
        if any(r.verdict is Verdict.FAIL for r in results):
            break
    else:
        raise AssertionError("no rollback in 200 windows of a 2.5x regression")
    assert all(e < 200 for e in e_bad), "one metric alone crossed K/alpha: the mean rule was not needed"
    assert sum(e_bad) / 2 >= 100
    failed = [r for r in results if r.verdict is Verdict.FAIL]
    assert len(failed) == 1 and failed[0].decisive
    assert failed[0].reason.startswith("mean rollback evidence over 2 metrics") and windows > 1


def test_sparse_rule_passes_a_flawless_canary_under_its_ceilings() -> None:
    policy = load_policy_yaml("""
ingress: nginx
canary: {deployment: v2, service: v2}
steps: [50]
analysis: {minRequests: 100, metrics: [{name: error-rate, max: 0.05}]}
""")
    state = RolloutState()
    verdicts = []
    for _ in range(3):
        results, evidence = judge(policy, state, (seen("error-rate", (60, 0), (60, 0)),), ())
        state = replace(state, evidence=evidence)
        verdicts.append(results[0].verdict)
    # 60 requests: too few; 120 with no bad events and ln(20)/-ln(0.95) = 58 needed under the 5% ceiling.
    assert verdicts == [Verdict.INCONCLUSIVE, Verdict.PASS, Verdict.PASS]
    assert results[0].reason.startswith("too few bad events to compare (0 in 180 canary requests")


def test_unobservable_metric_is_an_error_and_leaves_the_others_alone() -> None:
    state = RolloutState()
    results, evidence = judge(
        POLICY,
        state,
        (
            seen("error-rate", (100, 10), (100, 10)),
            MetricObservation(name="latency", error="Prometheus at http://p:9090 did not answer"),
        ),
        (),
    )
    assert [r.verdict for r in results] == [Verdict.INCONCLUSIVE, Verdict.ERROR]
    assert results[1].reason == "Prometheus at http://p:9090 did not answer"
    assert "latency" not in evidence and evidence["error-rate"]["canary:total"] == 100


def test_the_stable_history_replaces_the_sparse_rule() -> None:
    policy = load_policy_yaml("""
ingress: nginx
canary: {deployment: v2, service: v2}
steps: [50]
analysis: {minRequests: 100, metrics: [{name: error-rate}]}
""")
    clean = (seen("error-rate", (200, 0), (200, 0)),)
    # no history, no bad events on either side: the sparse rule passes on minRequests
    results, _ = judge(policy, RolloutState(), clean, ())
    assert results[0].verdict is Verdict.PASS and results[0].figures.sparse
    # six hours of stable history with 1,080 errors in 216,000 requests: 200 clean canary requests are
    # not yet evidence that the canary is below twice that share; 3,000 are
    history = {"history:total": 216_000.0, "history:bad": 1_080.0, "history:seconds": 21_600.0}
    state = RolloutState(evidence={"error-rate": dict(history)})
    verdicts = []
    for _ in range(15):
        results, evidence = judge(policy, state, clean, ())
        state = replace(state, evidence=evidence)
        verdicts.append(results[0].verdict)
    assert verdicts[0] is Verdict.INCONCLUSIVE and verdicts[-1] is Verdict.PASS
    assert results[0].figures.sparse is None and (results[0].figures.e_good or 0.0) >= 20
    assert state.evidence["error-rate"]["history:bad"] == 1_080.0  # kept in the state as read


CUSTOM = load_policy_yaml("""
ingress: nginx
canary: {deployment: v2, service: v2}
steps: [10, 50]
analysis:
  window: 1m
  metrics: [{name: queue-depth, query: 'sum(q{namespace="{{ namespace }}"})', max: 10}]
""")


def test_a_custom_pass_needs_its_window_inside_the_step() -> None:
    """The query's window must have measured the canary at the weight in force: a window reaching back
    before the step started passes nothing (INCONCLUSIVE); a failing value still fails."""
    at = 1_000_000.0
    state = RolloutState(step=1, weight=50.0, step_started_at=at - 20)
    good = MetricObservation(name="queue-depth", value=3.0, at=at, window=60.0)
    (early,), _ = judge(CUSTOM, state, (), (good,))
    assert early.verdict is Verdict.INCONCLUSIVE
    assert early.reason.startswith("its 60s window reaches back before step 2 started at 50% (20s ago)")
    (later,), _ = judge(CUSTOM, replace(state, step_started_at=at - 60), (), (good,))
    assert later.verdict is Verdict.PASS
    bad = replace(good, value=30.0)
    (failed,), _ = judge(CUSTOM, state, (), (bad,))
    assert failed.verdict is Verdict.FAIL
