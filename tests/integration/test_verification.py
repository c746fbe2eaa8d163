"""Dry-run metrics and the traffic split check, end to end in virtual time: the real reconciler with the
real Kubernetes client against kmock's emulator over HTTP, and the real Prometheus adapter against a real
Prometheus holding ingress-nginx-shaped history.

Covers: a dry-run metric failing at every evaluation without effect (the healthy canary is promoted, the
status marks the verdicts dry-run, one DryRunMetricFailed Warning Event says so); a canary receiving 0% of
the requests while its weight is 20% held at 20% past the step's interval with a reason naming the observed
and expected shares and the likely causes, a TrafficSplitMismatch Warning Event, no rollback; and the hold
clearing (TrafficSplitRestored) once the canary receives its share, the rollout then advancing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager

import pytest

from songbird.analysis.cause import Cause
from songbird.analysis.split import LIKELY_CAUSES, SplitStatus
from songbird.analysis.state import STATUS_ANNOTATION, Phase
from songbird.controller.routers.ingress_nginx import canary_name
from tests.support import scenario
from tests.support.nginx_series import Traffic
from tests.support.world import BASE_POLICY, POLICY_NAME, World

MakeWorld = Callable[..., AbstractContextManager[World]]

P = "nginx.ingress.kubernetes.io"
CANARY_INGRESS = canary_name(scenario.MAIN_INGRESS)
LATENCY = {0.02: 0.995, 1.0: 0.005}
HEALTHY = Traffic(rate=30.0, error_share=0.01, latency=LATENCY)
LATENCY_LINE = "    - {name: latency, quantile: 0.99, max: 0.5}\n"
DRY_RUN_POLICY = BASE_POLICY.replace(
    LATENCY_LINE, LATENCY_LINE + "    - {name: shadow, query: 'vector(1)', max: 0.5, dryRun: true}\n"
)
AT_TWENTY = BASE_POLICY.replace("steps: [10, 20, 40, 60, 80]", "steps: [20, 40, 60, 80]")
START = 1_790_000_600.0  # tests.support.world's default start

pytestmark = pytest.mark.slow


def weight_of(w: World) -> float | None:
    ing = w.ingress(CANARY_INGRESS)
    return None if ing is None else float(ing["metadata"]["annotations"][f"{P}/canary-weight"])


def test_a_failing_dry_run_metric_has_no_effect(make_world: MakeWorld) -> None:
    assert DRY_RUN_POLICY != BASE_POLICY
    with make_world(stable=HEALTHY, canary=HEALTHY, policy=DRY_RUN_POLICY) as w:
        state = w.run(2000)
        assert state.phase is Phase.SUCCEEDED, state.reason
        evaluations = w.evaluations()
        shadows = [r for e in evaluations for r in e.results if r.name == "shadow"]
        assert len(shadows) > 10 and all(r.verdict.value == "FAIL" and r.dry_run for r in shadows)
        assert all(not r.dry_run for e in evaluations for r in e.results if r.name != "shadow")
        # The status says which verdicts were dry-run.
        cm = w.get("ConfigMap", POLICY_NAME)
        assert cm is not None
        last = json.loads(cm["metadata"]["annotations"][STATUS_ANNOTATION])["history"][-1]["results"]
        assert {r["name"]: r.get("dry_run", False) for r in last} == {
            "error-rate": False,
            "latency": False,
            "shadow": True,
        }
        warned = w.events("DryRunMetricFailed")
        assert len(warned) == 1 and warned[0]["type"] == "Warning"
        assert warned[0]["message"].startswith("dry-run metric shadow FAIL (no effect on the rollout)")
        assert w.events("RollingBack") == []


def test_a_canary_receiving_nothing_at_twenty_percent_is_held_until_it_receives_its_share(
    make_world: MakeWorld,
) -> None:
    fixed_at = START + 240

    def canary_rate(t: float) -> float:  # nothing reaches the canary until the router is fixed
        return 0.0 if t < fixed_at else 10.0

    canary = Traffic(rate=canary_rate, error_share=0.01, latency=LATENCY)
    with make_world(stable=HEALTHY, canary=canary, policy=AT_TWENTY) as w:
        state = w.run(200)
        # Far past the step's 1m interval, and still at 20%.
        assert (state.phase, state.step, weight_of(w)) == (Phase.PROGRESSING, 0, 20.0), state.reason
        assert state.cause is Cause.SPLIT_MISMATCH
        assert state.split is not None and state.split.status is SplitStatus.MISMATCH
        assert "traffic split mismatch: canary received 0.0% of " in state.reason
        assert "expected 20%" in state.reason
        assert all(cause in state.reason for cause in LIKELY_CAUSES)
        warned = w.events("TrafficSplitMismatch")
        assert len(warned) == 1 and warned[0]["type"] == "Warning"
        assert "expected 20%" in warned[0]["message"]
        assert w.events("RollingBack") == [] and w.replicas("nginx-v2") >= 1
        # The router is fixed: the next window with the canary's share clears the hold; the rollout goes on.
        w.clock.advance(fixed_at - w.clock.t)
        for _ in range(24):
            state = w.run(5)
            if weight_of(w) != 20.0:
                break
        assert weight_of(w) == 40.0 and state.step == 1, state.reason
        assert state.cause is not Cause.SPLIT_MISMATCH
        restored = w.events("TrafficSplitRestored")
        assert len(restored) == 1 and restored[0]["type"] == "Normal"
        assert len(w.events("TrafficSplitMismatch")) == 1
