"""Built-in queries batched across rollouts: the grouped PromQL, the aligned window, and one rollout's
figures picked out of a grouped answer. Pure; the runtime's ``controller.batch`` sends the queries.

For the built-in ingress-nginx metrics one grouped query per (Prometheus endpoint, `GroupKind`, window,
evaluation time) answers every rollout at once:
- ``requests``: ``sum by (namespace, ingress, canary) (increase(nginx_ingress_controller_requests[W]))``;
- ``5xx``: the same over ``status=~"5.."``;
- ``duration``: ``sum by (namespace, ingress, canary, le) (increase(..._request_duration_seconds_bucket[W]))``
  (every bucket: the timed requests are ``le="+Inf"``, the slow ones ``+Inf`` minus the threshold's bucket,
  whatever threshold each policy sets, and the latency quantile is interpolated from the buckets).
A rollout's figure is the sum of the groups with its namespace and main Ingress and, for the canary,
``canary!=""``, for the stable ``canary=""`` (the label trap of `analysis.queries` holds here too). This is
what the per-rollout queries of `analysis.queries` compute, summed in another order: the figures agree to
floating-point rounding (about 1e-15 relative), and an absent group answers exactly as the per-rollout
query's empty result does (`pick`).

Sharing a query needs a shared evaluation time and window. `slot` aligns them to a grid: evaluation times
are multiples of the cadence since the epoch (the latest at or before the tick), and a window runs from the
previous window's end to that grid time. The previous end is recorded in the evidence under `WINDOW_KEY`
(persisted with the sums it produced, so a restart reads the same value); without a record it is taken to
be the previous evaluation's tick time, which is never earlier than the end of its window. So:
- windows never overlap and every request is counted at most once (the validity condition of
  `analysis.compare`): each window starts at or after the previous one ended;
- traffic between a window's end and a later start (a clamp to ``MAX_EVIDENCE_WINDOW``, the first window
  after an unrecorded evaluation) is skipped, which `analysis.compare` allows;
- once one aligned window has been recorded, every later window starts on the grid and spans whole
  cadences, so rollouts with the same endpoint and cadence share their queries. The one window that does
  not start on the grid (the first one) is asked per rollout (`Slot.grouped` is False).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from songbird.analysis import queries
from songbird.analysis.queries import DURATION_BUCKET, REQUESTS, SERVER_ERROR, IngressTarget, Version
from songbird.analysis.source import MetricsSource
from songbird.analysis.state import RolloutState
from songbird.config.endpoints import Endpoint
from songbird.config.errors import PolicyError
from songbird.config.policy import MetricSpec, Policy

WINDOW_KEY = "~window"
"""Evidence entry holding ``{"end": <epoch seconds>}``: where the last judged window ended. Metric names
start with a letter, so it never collides with a metric's sums."""

MAX_EVIDENCE_WINDOW = (
    600.0  # as analysis.evaluate: after a long gap, older traffic is not worth a slower query
)
_GRID_TOLERANCE = 1e-6  # seconds: a recorded end within this of a grid time is on the grid

Labels = Mapping[str, str]
Sample = tuple[Labels, float]


class GroupKind(StrEnum):
    REQUESTS = "requests"
    SERVER_ERRORS = "5xx"
    DURATION = "duration"


def grouped_query(kind: GroupKind, window: float) -> str:
    """The one query that answers ``kind`` for every rollout of an endpoint."""
    w = queries.duration(window)
    if kind is GroupKind.REQUESTS:
        return f"sum by (namespace, ingress, canary) (increase({REQUESTS}[{w}]))"
    if kind is GroupKind.SERVER_ERRORS:
        return f'sum by (namespace, ingress, canary) (increase({REQUESTS}{{status=~"{SERVER_ERROR}"}}[{w}]))'
    return f"sum by (namespace, ingress, canary, le) (increase({DURATION_BUCKET}[{w}]))"


@dataclass(frozen=True, kw_only=True)
class GroupedAnswer:
    """A grouped query's samples, indexed by (namespace, ingress, is canary) and then ``le`` ("" for the
    kinds without buckets); values of one index entry are kept in arrival order and summed on demand."""

    kind: GroupKind
    window: float
    at: float
    groups: Mapping[tuple[str, str, bool], Mapping[str, tuple[float, ...]]]

    @classmethod
    def of(cls, kind: GroupKind, *, window: float, at: float, samples: Sequence[Sample]) -> GroupedAnswer:
        groups: dict[tuple[str, str, bool], dict[str, list[float]]] = {}
        for labels, value in samples:
            key = (labels.get("namespace", ""), labels.get("ingress", ""), labels.get("canary", "") != "")
            groups.setdefault(key, {}).setdefault(labels.get("le", ""), []).append(value)
        frozen = {k: {le: tuple(v) for le, v in by_le.items()} for k, by_le in groups.items()}
        return cls(kind=kind, window=window, at=at, groups=frozen)

    def total(self, target: IngressTarget, version: Version, le: str = "") -> float | None:
        """The version's sum (for one bucket ``le``), None when no group has it (an empty answer)."""
        by_le = self.groups.get((target.namespace, target.ingress, version is Version.CANARY))
        values = (by_le or {}).get(le)
        if not values:
            return None
        return math.fsum(values)

    def buckets(self, target: IngressTarget, version: Version) -> dict[str, float]:
        by_le = self.groups.get((target.namespace, target.ingress, version is Version.CANARY)) or {}
        return {le: math.fsum(values) for le, values in by_le.items() if values}


def read_vector(doc: object) -> list[tuple[dict[str, str], float]] | str:
    """The series of a decoded ``/api/v1/query`` answer holding an instant vector; or, as a string, why the
    answer cannot be used (a NaN or infinite sample included: every grouped query is a sum of counts)."""
    if not isinstance(doc, Mapping) or doc.get("status") != "success":
        return "the answer is not a successful query result"
    data = doc.get("data")
    if not isinstance(data, Mapping) or data.get("resultType") != "vector":
        return "the answer is not an instant vector"
    result = data.get("result")
    if not isinstance(result, list):
        return "the vector result is not an array"
    out: list[tuple[dict[str, str], float]] = []
    for series in result:
        metric = series.get("metric") if isinstance(series, Mapping) else None
        value = series.get("value") if isinstance(series, Mapping) else None
        if not isinstance(metric, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metric.items()
        ):
            return "a series' labels are not all strings"
        if not isinstance(value, list) or len(value) != 2 or not isinstance(value[1], str):
            return "a series has no [time, value] sample"
        try:
            number = float(value[1])
        except ValueError:
            return "a sample value is not a number"
        if not math.isfinite(number):
            return "a sample value is not a finite number (a grouped count is never NaN or infinite)"
        out.append((dict(metric), number))
    return out


def histogram_quantile(q: float, buckets: Mapping[str, float]) -> float | None:
    """Prometheus' ``histogram_quantile`` over one histogram's buckets (``le`` -> cumulative count):
    sorted by bound, same bounds merged, counts made monotonic, linear interpolation within the bucket
    holding the rank (``promql/quantile.go``, ``bucketQuantile``). None where Prometheus answers NaN."""
    if math.isnan(q):
        return None
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    merged: dict[float, float] = {}
    for le, count in buckets.items():
        try:
            bound = float(le)
        except ValueError:
            continue
        merged[bound] = merged.get(bound, 0.0) + count
    ordered = sorted(merged.items())
    if len(ordered) < 2 or not math.isinf(ordered[-1][0]):
        return None
    counts, top = [], -math.inf
    for _, count in ordered:
        top = max(top, count)
        counts.append(top)
    observations = counts[-1]
    if observations == 0:
        return None
    rank = q * observations
    b = next((i for i in range(len(ordered) - 1) if counts[i] >= rank), len(ordered) - 1)
    if b == len(ordered) - 1:
        return ordered[-2][0]
    if b == 0 and ordered[0][0] <= 0:
        return ordered[0][0]
    start, end, count = 0.0, ordered[b][0], counts[b]
    if b > 0:
        start = ordered[b - 1][0]
        count -= counts[b - 1]
        rank -= counts[b - 1]
    return start + (end - start) * (rank / count)


class GroupedSource(Protocol):
    """Grouped answers for one endpoint (the runtime's ``controller.batch.QueryBatcher`` is one)."""

    def grouped(self, endpoint: Endpoint, kind: GroupKind, *, window: float, at: float) -> GroupedAnswer:
        """The grouped answer; raises `config.errors.MetricsUnavailable` when there is none."""
        ...


@dataclass(frozen=True, kw_only=True)
class Pick:
    """How one per-rollout built-in query is answered from grouped answers."""

    kind: GroupKind
    version: Version
    le: str = ""  # DURATION: the bucket; with ``slow``, the bucket subtracted from +Inf
    slow: bool = False
    quantile: float | None = None
    default_zero: bool = False  # ``or vector(0)``: an absent group is 0, not "no data"

    def value(self, answer: GroupedAnswer, target: IngressTarget) -> float | None:
        if self.quantile is not None:
            rates = {le: v / answer.window for le, v in answer.buckets(target, self.version).items()}
            return histogram_quantile(self.quantile, rates) if rates else None
        if self.slow:
            every = answer.total(target, self.version, "+Inf")
            fast = answer.total(target, self.version, self.le)
            return None if every is None or fast is None else every - fast
        found = answer.total(target, self.version, self.le)
        return 0.0 if found is None and self.default_zero else found


def picks(metrics: Sequence[MetricSpec], target: IngressTarget, window: float) -> dict[str, Pick]:
    """The per-rollout queries `analysis.observe` sends for these built-in metrics, each with its `Pick`.

    Keyed by the exact PromQL the builders of `analysis.queries` produce, so `BatchedSource` recognises the
    queries observe asks and hands anything else (a custom query) to the per-rollout source."""
    found: dict[str, Pick] = {}
    for metric in metrics:
        for version in Version:
            if metric.name == "error-rate":
                found[queries.requests(target, version, window)] = Pick(
                    kind=GroupKind.REQUESTS, version=version
                )
                found[queries.server_errors(target, version, window)] = Pick(
                    kind=GroupKind.SERVER_ERRORS, version=version, default_zero=True
                )
            elif metric.name == "latency":
                found[queries.timed_requests(target, version, window)] = Pick(
                    kind=GroupKind.DURATION, version=version, le="+Inf"
                )
                try:
                    bucket = queries.latency_bucket(queries.slow_threshold(metric))
                except PolicyError:
                    continue  # observe reports it as the metric's error without a query
                found[queries.slow_requests(target, version, window, bucket)] = Pick(
                    kind=GroupKind.DURATION, version=version, le=bucket.le, slow=True
                )
        if metric.name == "latency" and metric.quantile is not None:
            found[queries.latency_quantile(target, metric.quantile, window)] = Pick(
                kind=GroupKind.DURATION, version=Version.CANARY, quantile=metric.quantile
            )
    return found


class BatchedSource:
    """The `MetricsSource` one rollout's built-in observation uses when batched: the queries `picks` knows
    are answered from grouped answers, anything else goes to ``fallback`` (the per-rollout source)."""

    def __init__(
        self,
        grouped: GroupedSource,
        endpoint: Endpoint,
        fallback: MetricsSource,
        *,
        target: IngressTarget,
        window: float,
        table: Mapping[str, Pick],
    ) -> None:
        self._grouped = grouped
        self._endpoint = endpoint
        self._fallback = fallback
        self._target = target
        self._window = window
        self._table = table

    def query_scalar(self, promql: str, *, at: float) -> float | None:
        pick = self._table.get(promql)
        if pick is None:
            return self._fallback.query_scalar(promql, at=at)
        answer = self._grouped.grouped(self._endpoint, pick.kind, window=self._window, at=at)
        return pick.value(answer, self._target)


@dataclass(frozen=True, kw_only=True)
class Slot:
    """When and over what an evaluation observes the built-in metrics: the window ending at ``at``.
    ``grouped``: the window starts on the grid, so it may be answered by grouped queries."""

    at: float
    window: float
    grouped: bool


def previous_end(state: RolloutState) -> float | None:
    """Where the last judged window ended, or an upper bound of it (see the module docstring)."""
    recorded = state.evidence.get(WINDOW_KEY, {}).get("end")
    if recorded is not None:
        return float(recorded)
    if state.last_evaluated_at is not None:
        return state.last_evaluated_at
    return state.step_started_at


def slot(policy: Policy, state: RolloutState, now: float) -> Slot:
    """The aligned evaluation time and window for a tick at ``now`` (see the module docstring)."""
    cadence = policy.analysis.cadence
    grid = math.floor(now / cadence) * cadence
    previous = previous_end(state)
    longest = max(cadence, math.floor(MAX_EVIDENCE_WINDOW / cadence) * cadence)
    if previous is None:
        return Slot(at=grid, window=cadence, grouped=True)
    start = max(previous, grid - longest)
    if grid - start < 1.0:
        # No grid time after the previous window's end yet: observe up to now, as without batching.
        return Slot(at=now, window=min(max(now - previous, 1.0), MAX_EVIDENCE_WINDOW), grouped=False)
    cells = (grid - start) / cadence
    if abs(cells - round(cells)) * cadence <= _GRID_TOLERANCE:
        return Slot(at=grid, window=round(cells) * cadence, grouped=True)
    # Whole milliseconds, rounded down (a PromQL range has no finer unit): the window never reaches back
    # over the previous one.
    return Slot(at=grid, window=math.floor((grid - start) * 1000) / 1000, grouped=False)


def recorded(evidence: Mapping[str, Mapping[str, float]], at: float) -> dict[str, dict[str, float]]:
    """``evidence`` with the judged window's end recorded under `WINDOW_KEY`."""
    out = {k: dict(v) for k, v in evidence.items()}
    out[WINDOW_KEY] = {"end": at}
    return out
