"""In-memory implementations of the controller's narrow ports, for the fast tier (`tests/unit`).

- `FakeCluster` (a `ClusterReader`, `ClusterWriter` and `Recorder` over a dict of objects), `FakeClock`,
  `Write`, `RecordedEvent` and `reconciler_over` live in `songbird.bench.fake_cluster` (the robustness
  benchmark drives the reconciler over them too) and are re-exported here; see that module for the API
  server rules kept.
- `ScriptedEvaluator` is the reconciler's `Evaluator`: it returns the verdicts it was given, one script
  entry per evaluation (the last one repeats), and counts its calls; `verdicts` builds such an entry.
"""

from __future__ import annotations

from dataclasses import dataclass

from songbird.analysis.state import RolloutState
from songbird.analysis.verdict import MetricResult, Verdict
from songbird.bench.fake_cluster import (
    Crashed,
    FakeClock,
    FakeCluster,
    RecordedEvent,
    Write,
    merge_patch,
    reconciler_over,
)
from songbird.config.policy import Policy

__all__ = [
    "Crashed",
    "FakeClock",
    "FakeCluster",
    "RecordedEvent",
    "ScriptedEvaluator",
    "Write",
    "merge_patch",
    "reconciler_over",
    "verdicts",
]


def verdicts(policy: Policy, verdict: Verdict, *, decisive: bool = False) -> tuple[MetricResult, ...]:
    """One evaluation in which every metric of ``policy`` has ``verdict``."""
    return tuple(
        MetricResult(
            name=metric.name,
            verdict=verdict,
            reason=f"scripted {verdict.value}",
            decisive=decisive and verdict is Verdict.FAIL,
        )
        for metric in policy.analysis.metrics
    )


@dataclass(kw_only=True)
class ScriptedEvaluator:
    """Answers each evaluation with the next entry of ``script`` (the last repeats): a test states the
    verdicts and reads how the reconciler acted on them. Forecast and history say nothing."""

    script: list[Verdict | tuple[Verdict, bool]]  # a verdict for every metric, or (FAIL, decisive)
    evaluations: int = 0

    def evaluate(
        self, policy: Policy, namespace: str, state: RolloutState, now: float
    ) -> tuple[tuple[MetricResult, ...], dict[str, dict[str, float]]]:
        entry = self.script[min(self.evaluations, len(self.script) - 1)]
        self.evaluations += 1
        verdict, decisive = entry if isinstance(entry, tuple) else (entry, False)
        return verdicts(policy, verdict, decisive=decisive), dict(state.evidence)

    def forecast(self, policy: Policy, namespace: str, state: RolloutState, now: float) -> str:
        return "no forecast (scripted evaluator)"

    def history(
        self, policy: Policy, namespace: str, state: RolloutState, now: float
    ) -> dict[str, dict[str, float]]:
        return {}
