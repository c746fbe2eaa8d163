"""The persisted rollout state: what Songbird knows about one rollout between ticks.

It is serialised as JSON into the ``songbird.dev/status`` annotation of the policy ConfigMap, written after
the traffic change it records, so a restarted or newly elected controller resumes where the last one
stopped: it neither repeats a weight increase nor loses the evidence gathered so far.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from enum import StrEnum
from typing import Any

from songbird.analysis.cause import Cause, read_cause
from songbird.analysis.verdict import MetricResult

#: The annotation of the policy ConfigMap that holds the rollout status (`RolloutState.to_json`).
STATUS_ANNOTATION = "songbird.dev/status"

#: The statistical judge's running sums, per metric then per alternative (see `analysis.evidence`).
Evidence = dict[str, dict[str, float]]

HISTORY_LIMIT = 20  # evaluations kept in the status; the annotation must stay well below 256 KiB


class Phase(StrEnum):
    IDLE = "Idle"
    INITIALIZING = "Initializing"
    PROGRESSING = "Progressing"
    PAUSED = "Paused"
    PROMOTING = "Promoting"
    SUCCEEDED = "Succeeded"
    ROLLING_BACK = "RollingBack"
    FAILED = "Failed"

    @property
    def finished(self) -> bool:
        return self in (Phase.SUCCEEDED, Phase.FAILED)


@dataclass(frozen=True, kw_only=True)
class Evaluation:
    """One evaluation of all metrics at time ``at`` (epoch seconds)."""

    at: float
    step: int
    weight: float
    results: tuple[MetricResult, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "step": self.step,
            "weight": self.weight,
            "results": [r.to_dict() for r in self.results],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Evaluation:
        return cls(
            at=float(data["at"]),
            step=int(data["step"]),
            weight=float(data["weight"]),
            results=tuple(MetricResult.from_dict(r) for r in data.get("results", [])),
        )


@dataclass(frozen=True, kw_only=True)
class RolloutState:
    phase: Phase = Phase.IDLE
    step: int = -1  # index into policy.steps; -1 before the first step
    weight: float = 0.0  # canary weight in force (written to the canary Ingress)
    canary: str = ""  # canary Deployment
    stable: str = ""  # stable Deployment
    canary_service: str = ""
    stable_service: str = ""  # Service the main Ingress routed to when the rollout started
    revision: str = ""  # fingerprint of the canary pod template (placement excluded)
    total_replicas: int = 0  # replicas of the whole service, fixed when the rollout starts
    started_at: float | None = None
    step_started_at: float | None = None
    updated_at: float | None = None
    last_evaluated_at: float | None = None
    consecutive_failures: int = 0
    error_since: float | None = None  # start of the current run of ERROR evaluations
    promoted_at: float | None = None  # when the main Ingress was switched to the canary
    reason: str = ""
    cause: Cause = Cause.UNKNOWN  # why ``reason`` was said (code reads this, people the reason)
    cause_metric: str = ""  # the metric the cause is about, if any (a FAIL, a shared outage)
    forecast: str = ""  # predicted time to promotion evidence, said when the rollout starts
    history: tuple[Evaluation, ...] = ()
    evidence: Evidence = field(default_factory=dict)

    def with_evaluation(self, evaluation: Evaluation) -> RolloutState:
        history = (*self.history, evaluation)[-HISTORY_LIMIT:]
        return replace(self, history=history, last_evaluated_at=evaluation.at)

    def to_json(self) -> str:
        data = asdict(self)
        data["phase"] = self.phase.value
        data["cause"] = self.cause.value
        data["history"] = [e.to_dict() for e in self.history]
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> RolloutState:
        """Parse a status annotation. Unknown keys (from a newer controller) are ignored."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("the status annotation is not a JSON object")
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs["phase"] = Phase(kwargs.get("phase", Phase.IDLE.value))
        kwargs["cause"] = read_cause(kwargs.get("cause"))
        kwargs["cause_metric"] = str(kwargs.get("cause_metric") or "")
        kwargs["history"] = tuple(Evaluation.from_dict(e) for e in kwargs.get("history", []))
        kwargs["evidence"] = {
            str(m): {str(k): float(v) for k, v in alts.items()}
            for m, alts in (kwargs.get("evidence") or {}).items()
        }
        return cls(**kwargs)
