"""The status record (`analysis.state.RolloutState.to_json`): small, bounded, and readable across versions.

Covers:
- the bound: a policy with the most metrics the loader accepts (two built-in ones with the real judge's
  figures and evidence sums, the rest custom, names at their longest), Deployment names at their longest,
  reasons and forecast of 10,000 characters outside the Basic Multilingual Plane, a full history: the
  annotation is at most ``STATUS_LIMIT`` bytes and everything a decision reads survives it unchanged;
- an ordinary rollout's record keeps every reason, every figure of its last evaluation, and its compact
  history;
- only the last evaluation keeps its figures and reasons; older ones keep time, step, weight, verdicts and
  canary requests, and reading then writing a record gives the same text;
- a record written by the previous version (every evaluation whole, twenty of them) is read, and a record
  that is not a status is a ValueError, never another exception.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from songbird.analysis.cause import Cause
from songbird.analysis.evaluate import judge
from songbird.analysis.history import HISTORY_BAD, HISTORY_SECONDS, HISTORY_TOTAL
from songbird.analysis.observe import MetricObservation
from songbird.analysis.state import (
    DECISION_FIGURES,
    HISTORY_LIMIT,
    STATUS_LIMIT,
    Evaluation,
    Phase,
    RolloutState,
)
from songbird.analysis.verdict import MetricResult, Verdict, WindowCounts
from songbird.config.fields import NAME_MAX, TOKEN_MAX
from songbird.config.loader import load_policy_yaml
from songbird.config.policy import MAX_METRICS, Policy

T0 = 1_790_000_000.0
HUGE = '\U0001f600\u2028"\\x' * 2_500  # 10,000 characters, each costly in JSON (escapes, surrogates)


def _custom_name(i: int) -> str:
    return f"m{i:02d}-" + "x" * (TOKEN_MAX - 4)


def _policy(metrics: int) -> Policy:
    lines = [
        "    - {name: error-rate, max: 0.02}",
        "    - {name: latency, quantile: 0.99, max: 0.5}",
    ]
    lines += [
        f"    - {{name: {_custom_name(i)}, max: 1.5, query: 'sum(rate(x[1m]))'}}" for i in range(metrics - 2)
    ]
    text = (
        "ingress: nginx\ncanary: {deployment: nginx-v2, service: nginx-v2}\nsteps: [10, 50]\n"
        "analysis:\n  prometheus: {url: 'http://prometheus:9090'}\n  metrics:\n" + "\n".join(lines) + "\n"
    )
    return load_policy_yaml(text)


def _evaluation(
    policy: Policy, state: RolloutState, at: float, reason: str
) -> tuple[Evaluation, RolloutState]:
    """One evaluation by the real judge (figures and evidence as they are), reasons replaced by ``reason``."""
    counts = WindowCounts(canary_total=1234.567, canary_bad=17.25, stable_total=9876.543, stable_bad=21.5)
    builtin = tuple(
        MetricObservation(name=m.name, counts=counts, value=0.123456789 if m.name == "latency" else None)
        for m in policy.analysis.metrics
        if m.name in ("error-rate", "latency")
    )
    custom = tuple(
        MetricObservation(name=m.name, value=1.0000000001 + i)
        for i, m in enumerate(policy.analysis.metrics)
        if m.name not in ("error-rate", "latency")
    )
    results, evidence = judge(policy, state, builtin, custom)
    if reason:
        results = tuple(replace(r, reason=reason) for r in results)
    evaluation = Evaluation(at=at, step=1, weight=50.0, results=results)
    return evaluation, replace(state.with_evaluation(evaluation), evidence=evidence)


def _rollout(policy: Policy, *, reason: str, evaluations: int) -> RolloutState:
    long_name = "d" * NAME_MAX
    state = RolloutState(
        phase=Phase.PROGRESSING,
        step=1,
        weight=50.0,
        canary=long_name,
        stable=long_name,
        canary_service="s" * 63,
        stable_service="t" * 63,
        revision="r" * 64,
        total_replicas=1000,
        started_at=T0,
        step_started_at=T0 + 0.125,
        updated_at=T0 + 1e6,
        error_since=T0 + 0.5,
        consecutive_failures=99,
        reason=reason,
        cause=Cause.METRIC_FAILED,
        cause_metric=_custom_name(0),
        forecast=reason,
        evidence={
            m: {HISTORY_TOTAL: 123456789.123, HISTORY_BAD: 98765.4321, HISTORY_SECONDS: 21600.0}
            for m in ("error-rate", "latency")
        },
    )
    for i in range(evaluations):
        _, state = _evaluation(policy, state, T0 + 15.000001 * (i + 1), reason)
    return state


def _decided(state: RolloutState) -> RolloutState:
    """Everything but text and the compact history."""
    return replace(state, reason="", forecast="", history=())


def test_worst_case_record_is_within_the_bound_and_keeps_what_decisions_read() -> None:
    policy = _policy(MAX_METRICS)
    state = _rollout(policy, reason=HUGE, evaluations=HISTORY_LIMIT + 5)
    text = state.to_json()
    size = len(text.encode())
    assert size <= STATUS_LIMIT, f"{size} bytes"
    back = RolloutState.from_json(text)
    assert _decided(back) == _decided(state)
    assert back.evidence == state.evidence and len(back.evidence["error-rate"]) > 10
    last, again = back.history[-1], state.history[-1]
    assert [(r.name, r.verdict, r.decisive, r.value, r.limit) for r in last.results] == [
        (r.name, r.verdict, r.decisive, r.value, r.limit) for r in again.results
    ]
    assert [{k: r.figures.get(k) for k in DECISION_FIGURES} for r in last.results] == [
        {k: r.figures.get(k) for k in DECISION_FIGURES} for r in again.results
    ]
    assert len(last.results) == MAX_METRICS


def test_ordinary_record_keeps_reasons_and_history() -> None:
    policy = _policy(2)
    reason = "step 2/2 at 50%: 45s of 1m; error-rate PASS: ratio 0.91, evidence 23.4 >= 20: pass"
    state = _rollout(policy, reason=reason, evaluations=HISTORY_LIMIT + 5)
    text = state.to_json()
    assert len(text.encode()) <= STATUS_LIMIT
    back = RolloutState.from_json(text)
    assert back.reason == reason and back.forecast == reason
    assert [r.reason for r in back.history[-1].results] == [reason, reason]
    assert back.history[-1].results == state.history[-1].results
    assert len(back.history) == HISTORY_LIMIT
    assert [e.at for e in back.history] == [e.at for e in state.history]


def test_only_the_last_evaluation_keeps_figures_and_reasons() -> None:
    policy = _policy(4)
    state = _rollout(policy, reason="a reason", evaluations=3)
    record = json.loads(state.to_json())
    *older, last = record["history"]
    assert {"results"} <= last.keys() and all("figures" in r for r in last["results"][:2])
    for entry in older:
        assert set(entry) == {"at", "step", "weight", "verdicts", "canary_requests"}
        assert len(entry["verdicts"]) == 4
    back = RolloutState.from_json(state.to_json())
    first = back.history[0]
    assert [(r.name, r.verdict) for r in first.results] == [
        (r.name, r.verdict) for r in state.history[0].results
    ]
    assert all(r.reason == "" and r.figures == {} for r in first.results)
    assert back.to_json() == state.to_json()


def test_compact_entry_of_other_metrics_names_its_own() -> None:
    verdict = MetricResult(name="error-rate", verdict=Verdict.FAIL, reason="r", canary_requests=10.0)
    other = MetricResult(name="latency", verdict=Verdict.INCONCLUSIVE, reason="r")
    state = RolloutState(
        history=(
            Evaluation(at=T0, step=0, weight=10.0, results=(verdict,)),
            Evaluation(at=T0 + 15, step=0, weight=10.0, results=(other,)),
        )
    )
    back = RolloutState.from_json(state.to_json())
    assert [(r.name, r.verdict, r.canary_requests) for r in back.history[0].results] == [
        ("error-rate", Verdict.FAIL, 10.0)
    ]


def test_record_of_the_previous_version_is_read() -> None:
    policy = _policy(2)
    state = _rollout(policy, reason="holding", evaluations=20)
    old = json.loads(state.to_json())
    old["history"] = [
        {"at": e.at, "step": e.step, "weight": e.weight, "results": [r.to_dict() for r in e.results]}
        for e in state.history
    ]
    back = RolloutState.from_json(json.dumps(old))
    assert _decided(back) == _decided(state)
    assert back.history[-1].results == state.history[-1].results


@pytest.mark.parametrize(
    "text",
    [
        "[]",
        "{",
        '{"phase": "Nowhere"}',
        '{"history": [{"at": "x", "step": 0, "weight": 1}]}',
        (
            '{"history": [{"at": 1, "step": 0, "weight": 1, "verdicts": "Z"}, '
            '{"at": 2, "step": 0, "weight": 1, "results": [{"name": "a", "verdict": "PASS"}]}]}'
        ),
        '{"history": [{"at": 1}]}',
        '{"evidence": {"m": 5}}',
    ],
)
def test_unreadable_record_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        RolloutState.from_json(text)
