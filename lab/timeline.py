"""What a lab run observed, over time, and the measurements a person (or a test) checks it with.

A `Timeline` holds three kinds of records, all timed in seconds since the run started:
- `Sample`: every half second, the rollout as the controller reports it (phase, step, weight, reason,
  the latest per-metric verdicts and the last operator command, from the policy ConfigMap's status)
  beside the routing nginx actually serves (the canary weight and the main route's Service in the
  applied model);
- `Bucket`: per second of load, the answers per version of plain requests and of requests carrying the
  routing header, and plain 5xx answers per version (from `lab.load`);
- `Series`: error rate and latency per version as Prometheus recorded them (filled at the end of a run).

Measurements are pure functions of those records:
- `step_shares`: for every stretch during which nginx served one canary weight on the stable main route,
  the plain requests of the seconds fully inside it (one second of margin at each end, as a reload and
  in-flight requests blur the edges), how many v2 answered, and how far that is from the weight in
  binomial standard deviations;
- `header_share`: the share of header-carrying requests answered by v2 in the seconds a predicate holds;
- `final_share`: v2's share of plain requests once the main route serves v2.

Invariant: a record is appended, never changed; `to_dict` / `from_dict` round-trip through JSON.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

CANARY_VERSION = "v2"
EDGE_MARGIN = 1.0  # seconds left out at each end of a stretch of constant routing


@dataclass(frozen=True, kw_only=True)
class Sample:
    t: float
    phase: str
    step: int  # 1-based; 0 before the first step
    weight: float  # the controller's weight in force
    reason: str
    verdicts: dict[str, str] = field(default_factory=dict)  # metric -> PASS/FAIL/INCONCLUSIVE/ERROR
    nginx_weight: float | None = None  # canary weight nginx serves; None: no canary route
    nginx_header: bool = False  # the canary route answers the routing header
    main_service: str = ""  # the Service nginx's main route sends plain traffic to
    share_recent: float | None = None  # v2 share of plain requests over the last few seconds
    header_recent: float | None = None  # v2 share of header requests over the last few seconds
    cause: str = ""  # the status's cause (`analysis.cause.Cause` value)
    split: str = ""  # the traffic split check's status (`analysis.split.SplitStatus`; "" before one)
    split_share: float | None = None  # the canary share the check measured (0 to 1)
    # The status's ``lastCommand`` as written (id, command, at, result, message, by); None before any.
    last_command: dict[str, Any] | None = None


@dataclass(frozen=True, kw_only=True)
class Bucket:
    t: float  # start of the second
    plain: dict[str, int]  # answering version -> plain requests
    header: dict[str, int]  # answering version -> header-carrying requests
    errors: dict[str, int]  # answering version -> plain 5xx answers
    failures: int = 0

    @property
    def plain_total(self) -> int:
        return sum(self.plain.values())


@dataclass(frozen=True, kw_only=True)
class Series:
    name: str  # e.g. "error_rate", "latency_p50", "latency_p99"
    version: str
    points: list[tuple[float, float]]


@dataclass(frozen=True, kw_only=True)
class StepShare:
    weight: float  # percent nginx served
    start: float
    end: float
    requests: int  # plain requests counted
    v2: int  # of which v2 answered

    @property
    def share(self) -> float:
        return self.v2 / self.requests if self.requests else math.nan

    @property
    def sigma(self) -> float:
        """Binomial standard deviation of the v2 count at this weight."""
        p = self.weight / 100.0
        return math.sqrt(self.requests * p * (1 - p))

    @property
    def z(self) -> float:
        """(observed - expected) / sigma; 0 when the weight leaves no room for noise and none was seen."""
        expected = self.requests * self.weight / 100.0
        if self.sigma == 0:
            return 0.0 if self.v2 == expected else math.inf
        return (self.v2 - expected) / self.sigma


@dataclass(kw_only=True)
class Timeline:
    scenario: str
    rate: float
    started_at: float  # epoch seconds of t = 0
    policy: str = ""
    samples: list[Sample] = field(default_factory=list)
    buckets: list[Bucket] = field(default_factory=list)
    series: list[Series] = field(default_factory=list)
    outcome: str = ""  # "promoted", "rolled back", "held" (a traffic split mismatch) or "timed out"
    reason: str = ""  # the decision that ended the rollout
    final_reason: str = ""  # the status reason when the run ended
    duration: float = 0.0  # seconds from the policy being applied to the outcome
    seed: int = 0  # the backends' draws (0: not the lab's backends, e.g. a real cluster)

    # -- measurements ----------------------------------------------------------------------------------

    def max_weight(self) -> float:
        return max((max(s.weight, s.nginx_weight or 0.0) for s in self.samples), default=0.0)

    def step_shares(self) -> list[StepShare]:
        out: list[StepShare] = []
        for weight, start, end in self._stretches(lambda s: s.nginx_weight if _on_stable(s) else None):
            inside = [b for b in self.buckets if b.t >= start + EDGE_MARGIN and b.t + 1 <= end - EDGE_MARGIN]
            total = sum(b.plain_total for b in inside)
            v2 = sum(b.plain.get(CANARY_VERSION, 0) for b in inside)
            if total:
                out.append(StepShare(weight=weight, start=start, end=end, requests=total, v2=v2))
        return out

    def header_share(self, holds: Callable[[Sample], bool]) -> tuple[int, int]:
        """(header requests answered by v2, header requests) over the seconds fully inside stretches where
        ``holds`` is true of the samples (with the edge margin)."""
        v2 = total = 0
        for _, start, end in self._stretches(lambda s: True if holds(s) else None):
            for b in self.buckets:
                if b.t >= start + EDGE_MARGIN and b.t + 1 <= end - EDGE_MARGIN:
                    v2 += b.header.get(CANARY_VERSION, 0)
                    total += sum(b.header.values())
        return v2, total

    def final_share(self) -> tuple[int, int]:
        """(plain requests answered by v2, plain requests) once nginx's main route serves the canary."""
        v2 = total = 0
        for _, start, end in self._stretches(lambda s: True if s.main_service.endswith("-v2") else None):
            for b in self.buckets:
                if b.t >= start + EDGE_MARGIN and b.t + 1 <= end:
                    v2 += b.plain.get(CANARY_VERSION, 0)
                    total += b.plain_total
        return v2, total

    def _stretches(self, key: Callable[[Sample], Any]) -> list[tuple[Any, float, float]]:
        """Maximal runs of consecutive samples with the same non-None key: (key, first t, first t after)."""
        out: list[tuple[Any, float, float]] = []
        current: Any = None
        start = 0.0
        for s in self.samples:
            k = key(s)
            if k != current:
                if current is not None:
                    out.append((current, start, s.t))
                current, start = k, s.t
        if current is not None and self.samples:
            out.append((current, start, self.samples[-1].t))
        return out

    # -- JSON ------------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["steps"] = [
            {**asdict(s), "share": s.share, "sigma": s.sigma, "z": s.z if math.isfinite(s.z) else None}
            for s in self.step_shares()
        ]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Timeline:
        return cls(
            scenario=data["scenario"],
            rate=data["rate"],
            started_at=data["started_at"],
            policy=data.get("policy", ""),
            samples=[Sample(**s) for s in data.get("samples", [])],
            buckets=[Bucket(**b) for b in data.get("buckets", [])],
            series=[
                Series(name=s["name"], version=s["version"], points=[(p[0], p[1]) for p in s["points"]])
                for s in data.get("series", [])
            ],
            outcome=data.get("outcome", ""),
            reason=data.get("reason", ""),
            final_reason=data.get("final_reason", ""),
            duration=data.get("duration", 0.0),
            seed=data.get("seed", 0),
        )


def _on_stable(s: Sample) -> bool:
    return s.main_service.endswith("-v1")
