"""Per-metric verdicts: PASS, FAIL, INCONCLUSIVE (not enough traffic yet) or ERROR (no answer).

"No data" is never FAIL (as in Argo Rollouts' four-valued measurements): an INCONCLUSIVE or ERROR verdict
can hold a rollout but never rolls it back by itself, and never lets it advance past analysis.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from songbird.analysis.figures import Figures


class Verdict(StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"
    INCONCLUSIVE = "INCONCLUSIVE"
    ERROR = "ERROR"


@dataclass(frozen=True, kw_only=True)
class WindowCounts:
    """Requests and bad events (5xx, or slower than a threshold) of each version over one window.

    Counts may be real-valued: Prometheus' ``increase()`` extrapolates to the window's edges.
    """

    canary_total: float
    canary_bad: float
    stable_total: float
    stable_bad: float


@dataclass(frozen=True, kw_only=True)
class MetricResult:
    """One metric's verdict at one evaluation, with the figures and a reason a person can read."""

    name: str
    verdict: Verdict
    reason: str
    value: float | None = None  # the observed figure compared with the limit (share, seconds...)
    limit: float | None = None  # the policy's max (or min) it was compared with
    canary_requests: float | None = None
    stable_requests: float | None = None
    figures: Figures = field(default_factory=Figures)  # the numbers behind the verdict (ratio, e-values)
    # A FAIL that is conclusive on its own (anytime-valid evidence crossed its bound): roll back now,
    # without waiting for failureLimit consecutive FAILs.
    decisive: bool = False
    # The policy marks the metric ``dryRun``: judged and shown, never acted on (`analysis.dryrun`).
    dry_run: bool = False

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "verdict": self.verdict.value, "reason": self.reason}
        for key in ("value", "limit", "canary_requests", "stable_requests"):
            v = getattr(self, key)
            if v is not None:
                out[key] = v
        figures = self.figures.to_dict()
        if figures:
            out["figures"] = figures
        if self.decisive:
            out["decisive"] = True
        if self.dry_run:
            out["dry_run"] = True
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MetricResult:
        return cls(
            name=str(data["name"]),
            verdict=Verdict(data["verdict"]),
            reason=str(data.get("reason", "")),
            value=data.get("value"),
            limit=data.get("limit"),
            canary_requests=data.get("canary_requests"),
            stable_requests=data.get("stable_requests"),
            figures=Figures.from_dict(data.get("figures")),
            decisive=bool(data.get("decisive", False)),
            dry_run=data.get("dry_run") is True,
        )
