"""The controller's own /metrics as a rollout produces them: the real reconciler, emulator and Prometheus,
with `controller.tick_metrics.TickMetrics` feeding a `ControllerMetrics`, read back from its exposition
text. Covers: a rollback counted once with the metric as its reason (its two transitions counted as
decisions), step durations, the phase and weight gauges; an unanswering Prometheus counted as evaluation
errors per metric and a rollback for error-deadline; a promotion counted once."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

import pytest
from prometheus_client.parser import text_string_to_metric_families

from songbird.analysis.state import Phase
from songbird.controller.metrics import ControllerMetrics
from songbird.controller.tick_metrics import TickMetrics
from tests.support.nginx_series import Traffic
from tests.support.world import World

MakeWorld = Callable[..., AbstractContextManager[World]]
LATENCY = {0.02: 0.995, 1.0: 0.005}
HEALTHY = Traffic(rate=30.0, error_share=0.01, latency=LATENCY)
BAD = Traffic(rate=30.0, error_share=0.05, latency=LATENCY)

pytestmark = pytest.mark.slow


def sample(metrics: ControllerMetrics, series: str, /, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(metrics.render().decode()):
        for s in family.samples:
            if s.name == series and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


def test_rollback_is_counted_once_with_its_metric(make_world: MakeWorld) -> None:
    metrics = ControllerMetrics(version="test")
    with make_world(stable=HEALTHY, canary=BAD, listener=TickMetrics(metrics)) as w:
        assert w.run(300).phase is Phase.FAILED
    rollout = {"namespace": "default", "name": "nginx-rollout"}
    assert sample(metrics, "songbird_rollbacks_total", **rollout, reason="error-rate") == 1
    assert sample(metrics, "songbird_rollbacks_total", **rollout) == 1
    assert sample(metrics, "songbird_decisions_total", **rollout, action="rollback") == 2
    assert sample(metrics, "songbird_promotions_total", **rollout) == 0
    assert sample(metrics, "songbird_step_duration_seconds_count", **rollout) == 1
    assert sample(metrics, "songbird_rollout_phase", **rollout, phase="Failed") == 1
    assert sample(metrics, "songbird_rollout_phase", **rollout, phase="Progressing") == 0
    assert sample(metrics, "songbird_rollout_weight", **rollout) == 0


def test_silent_prometheus_counts_errors_and_an_error_deadline_rollback(make_world: MakeWorld) -> None:
    metrics = ControllerMetrics(version="test")
    with make_world(
        stable=HEALTHY, canary=HEALTHY, prometheus_url="http://127.0.0.1:9", listener=TickMetrics(metrics)
    ) as w:
        state = w.run(200)
    assert state.phase is Phase.FAILED
    evaluations = len(w.evaluations())
    for metric in ("error-rate", "latency"):
        assert sample(metrics, "songbird_evaluation_errors_total", metric=metric) == evaluations
    assert sample(metrics, "songbird_rollbacks_total", reason="error-deadline") == 1


def test_promotion_is_counted_once(make_world: MakeWorld) -> None:
    metrics = ControllerMetrics(version="test")
    with make_world(stable=HEALTHY, canary=HEALTHY, listener=TickMetrics(metrics)) as w:
        assert w.run(1200).phase is Phase.SUCCEEDED
    assert sample(metrics, "songbird_promotions_total") == 1
    assert sample(metrics, "songbird_decisions_total", action="promote") == 3  # start, switch, scale-down
    assert sample(metrics, "songbird_step_duration_seconds_count") == 5
    assert sample(metrics, "songbird_rollout_weight") == 100
