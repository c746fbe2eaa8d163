"""The controller's own Prometheus metrics: what it is doing to each rollout, and how healthy it is.

This is the only module that imports ``prometheus_client``. Everything lives in a `CollectorRegistry` owned
by one `ControllerMetrics` (never the process-global registry), so several can coexist in one process and
tests start from zero.

Invariants:
- Per-rollout gauges are rewritten as a whole by `ControllerMetrics.observe_rollout`: phase and verdict are
  one-hot (every known value present, exactly one at 1), and a series that the new state no longer
  describes (a metric dropped from the policy, a replica count that became unknown) is removed rather than
  left at its last value.
- `ControllerMetrics.forget_rollout` removes every series labelled with that rollout, counters and
  histograms included, so a deleted policy leaves no stale series behind and label cardinality stays
  bounded by the rollouts that exist.
- Nothing here reads a clock or talks to the network; callers pass durations in seconds.

Names and labels follow the Prometheus naming guide: base units (seconds, percent for the weight because
that is the unit of the policy's steps), ``_total`` counters, ``_info``-style build metadata.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterable
from typing import Final, Literal, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

from songbird.analysis.state import Phase, RolloutState
from songbird.analysis.verdict import MetricResult, Verdict

#: Actions `ControllerMetrics.record_decision` accepts: the state machine's four actions, plus
#: ``inconclusive`` (a step ended without enough evidence) and ``error`` (a metric could not be evaluated;
#: its reason code is the metric name).
DecisionAction = Literal["advance", "hold", "promote", "rollback", "inconclusive", "error"]
DECISION_ACTIONS: Final = frozenset(get_args(DecisionAction))

#: Exported from `MetricResult.figures` when present: each version's bad-event share (5xx or slow
#: requests), else computed from its bad and total counts in the window; and the running e-values of the
#: sequential test, under the ``kind`` label: ``rollback`` (``e_bad``) and ``promotion`` (``e_good``).

ROLES: Final = ("canary", "stable")

# Steps last minutes; analysis queries and API calls last milliseconds to seconds.
_STEP_BUCKETS = (15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0)
_CALL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

_Key = tuple[str, str]
_GaugeSeries = tuple[Gauge, tuple[str, ...]]
_EventSeries = tuple[Counter | Histogram, tuple[str, ...]]


class ControllerMetrics:
    """The metrics the reconciler updates, rendered on ``/metrics`` by `controller.health`."""

    # The classic text format, which every Prometheus since 2.0 parses. prometheus_client >= 0.22 announces
    # "version=1.0.0" (UTF-8 names) by default; our names are plain, so the 0.0.4 rendering is identical.
    content_type: Final = "text/plain; version=0.0.4; charset=utf-8"

    def __init__(self, *, version: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        rollout = ("namespace", "name")
        per_metric = (*rollout, "metric")
        self._phase = Gauge(
            "songbird_rollout_phase",
            "1 for the rollout's current phase, 0 for the others.",
            (*rollout, "phase"),
            registry=r,
        )
        self._weight = Gauge(
            "songbird_rollout_weight", "Canary traffic weight in force, in percent.", rollout, registry=r
        )
        self._step = Gauge(
            "songbird_rollout_step",
            "Index of the current step in the policy's steps (-1 before the first).",
            rollout,
            registry=r,
        )
        self._replicas = Gauge(
            "songbird_rollout_replicas",
            "Replicas of the canary and stable Deployments.",
            (*rollout, "role"),
            registry=r,
        )
        self._verdict = Gauge(
            "songbird_metric_verdict",
            '1 for the metric\'s verdict at the last evaluation, 0 for the others; dry_run="true" for a '
            "dryRun metric (judged and shown, never acted on).",
            (*per_metric, "verdict", "dry_run"),
            registry=r,
        )
        self._canary_requests = Gauge(
            "songbird_metric_canary_requests",
            "Canary requests in the last evaluation's window.",
            per_metric,
            registry=r,
        )
        self._stable_requests = Gauge(
            "songbird_metric_stable_requests",
            "Stable requests in the last evaluation's window.",
            per_metric,
            registry=r,
        )
        self._canary_rate = Gauge(
            "songbird_metric_canary_rate",
            "Canary bad-event share (5xx or slow requests) in the last evaluation's window.",
            per_metric,
            registry=r,
        )
        self._stable_rate = Gauge(
            "songbird_metric_stable_rate",
            "Stable bad-event share (5xx or slow requests) in the last evaluation's window.",
            per_metric,
            registry=r,
        )
        self._evidence = Gauge(
            "songbird_metric_evidence",
            "Running e-value of the sequential test: evidence for rollback or for promotion.",
            (*per_metric, "kind"),
            registry=r,
        )
        self._promotions = Counter("songbird_promotions", "Rollouts promoted.", rollout, registry=r)
        self._rollbacks = Counter(
            "songbird_rollbacks",
            "Rollouts rolled back, by reason code (the failing metric, or error-deadline...).",
            (*rollout, "reason"),
            registry=r,
        )
        self._inconclusive = Counter(
            "songbird_inconclusive",
            "Steps that ended without enough evidence either way.",
            rollout,
            registry=r,
        )
        self._evaluation_errors = Counter(
            "songbird_evaluation_errors",
            "Metric evaluations that got no answer from Prometheus.",
            per_metric,
            registry=r,
        )
        self._decisions = Counter(
            "songbird_decisions", "Decisions taken, by action.", (*rollout, "action"), registry=r
        )
        self._step_duration = Histogram(
            "songbird_step_duration_seconds",
            "Time a rollout spent in one step.",
            rollout,
            buckets=_STEP_BUCKETS,
            registry=r,
        )
        self._query_duration = Histogram(
            "songbird_prometheus_query_duration_seconds",
            "Duration of Prometheus queries.",
            buckets=_CALL_BUCKETS,
            registry=r,
        )
        self._query_errors = Counter(
            "songbird_prometheus_query_errors", "Prometheus queries that failed or timed out.", registry=r
        )
        self._kube_requests = Counter(
            "songbird_kube_api_requests",
            "Kubernetes API requests, by verb, resource and status class.",
            ("verb", "resource", "code_class"),
            registry=r,
        )
        self._kube_duration = Histogram(
            "songbird_kube_api_request_duration_seconds",
            "Duration of Kubernetes API requests.",
            ("verb", "resource"),
            buckets=_CALL_BUCKETS,
            registry=r,
        )
        self._leader = Gauge("songbird_leader", "1 while this replica holds the leader lease.", registry=r)
        self._build = Gauge(
            "songbird_build_info",
            "Always 1; labelled with the controller's version.",
            ("version",),
            registry=r,
        )
        self._build.labels(version).set(1)
        self._leader.set(0)
        self._query_errors.inc(0)  # present from the start, so rate() sees the first error
        self._lock = threading.Lock()
        self._state_series: dict[_Key, set[_GaugeSeries]] = {}  # rewritten by observe_rollout
        self._event_series: dict[_Key, set[_EventSeries]] = {}  # counters and histograms, until forgotten

    # --- per rollout ---------------------------------------------------------------------------------------

    def observe_rollout(
        self,
        namespace: str,
        name: str,
        state: RolloutState,
        canary_replicas: int | None,
        stable_replicas: int | None,
    ) -> None:
        """Publish the rollout's state and the figures of its last evaluation, replacing what was there."""
        key = (namespace, name)
        values: dict[_GaugeSeries, float] = {}
        for phase in Phase:
            values[(self._phase, (namespace, name, phase.value))] = float(phase is state.phase)
        values[(self._weight, key)] = state.weight
        values[(self._step, key)] = float(state.step)
        for role, replicas in zip(ROLES, (canary_replicas, stable_replicas), strict=True):
            if replicas is not None:
                values[(self._replicas, (namespace, name, role))] = float(replicas)
        if state.history:
            for result in state.history[-1].results:
                values.update(self._result_series(namespace, name, result))
        with self._lock:
            # Counters without a free label start at 0, so a panel shows 0 rather than nothing, and the first
            # promotion is visible to increase().
            for counter in (self._promotions, self._inconclusive):
                counter.labels(namespace, name)
                self._event_series.setdefault(key, set()).add((counter, key))
            stale = self._state_series.get(key, set()) - values.keys()
            for metric, labels in stale:
                _remove(metric, labels)
            for (metric, labels), value in values.items():
                metric.labels(*labels).set(value)
            self._state_series[key] = set(values)

    def _result_series(self, namespace: str, name: str, result: MetricResult) -> dict[_GaugeSeries, float]:
        base = (namespace, name, result.name)
        f = result.figures
        out: dict[_GaugeSeries, float] = {}
        for verdict in Verdict:
            dry = "true" if result.dry_run else "false"
            out[(self._verdict, (*base, verdict.value, dry))] = float(verdict is result.verdict)
        for metric, value in (
            (self._canary_requests, result.canary_requests),
            (self._stable_requests, result.stable_requests),
            (self._canary_rate, _share(f.canary_share, f.canary_bad, f.canary_total)),
            (self._stable_rate, _share(f.stable_share, f.stable_bad, f.stable_total)),
        ):
            if value is not None:
                out[(metric, base)] = float(value)
        for kind, figure in (("rollback", f.e_bad), ("promotion", f.e_good)):
            value = _number(figure)
            if value is not None:
                out[(self._evidence, (*base, kind))] = value
        return out

    def forget_rollout(self, namespace: str, name: str) -> None:
        """Remove every series of a rollout whose policy is gone."""
        key = (namespace, name)
        with self._lock:
            for metric, labels in self._state_series.pop(key, set()):
                _remove(metric, labels)
            for event_metric, labels in self._event_series.pop(key, set()):
                _remove(event_metric, labels)

    def record_decision(
        self, namespace: str, name: str, action: DecisionAction, reason_code: str, *, outcome: bool = True
    ) -> None:
        """Count one decision. ``reason_code`` is short and bounded: a metric name or a code such as
        ``error-deadline``; it labels rollbacks, and for ``error`` it names the metric that failed."""
        if action not in DECISION_ACTIONS:
            raise ValueError(f"unknown action {action!r} (known: {', '.join(sorted(DECISION_ACTIONS))})")
        touched: list[tuple[Counter, tuple[str, ...]]] = [(self._decisions, (namespace, name, action))]
        if not outcome:
            pass  # one transition of a promotion or rollback: counted as a decision, not as an outcome
        elif action == "promote":
            touched.append((self._promotions, (namespace, name)))
        elif action == "rollback":
            touched.append((self._rollbacks, (namespace, name, reason_code)))
        elif action == "inconclusive":
            touched.append((self._inconclusive, (namespace, name)))
        elif action == "error":
            touched.append((self._evaluation_errors, (namespace, name, reason_code)))
        with self._lock:
            for counter, labels in touched:
                counter.labels(*labels).inc()
                self._event_series.setdefault((namespace, name), set()).add((counter, labels))

    def observe_step_duration(self, namespace: str, name: str, seconds: float) -> None:
        """Record how long a finished step lasted."""
        with self._lock:
            self._step_duration.labels(namespace, name).observe(seconds)
            self._event_series.setdefault((namespace, name), set()).add(
                (self._step_duration, (namespace, name))
            )

    # --- controller health ---------------------------------------------------------------------------------

    def observe_prometheus_query(self, seconds: float, ok: bool) -> None:
        self._query_duration.observe(seconds)
        if not ok:
            self._query_errors.inc()

    def observe_kube_call(
        self, verb: str, resource: str, ok: bool, seconds: float, *, status: int | None = None
    ) -> None:
        """Count one API request. The class is taken from ``status`` when known (``4xx``), else from
        ``ok`` (``2xx`` or ``error`` for a request that got no HTTP answer)."""
        code_class = f"{status // 100}xx" if status else ("2xx" if ok else "error")
        self._kube_requests.labels(verb, resource, code_class).inc()
        self._kube_duration.labels(verb, resource).observe(seconds)

    def set_leader(self, is_leader: bool) -> None:
        self._leader.set(1 if is_leader else 0)

    def render(self) -> bytes:
        """The registry in the Prometheus text exposition format (`content_type`)."""
        return generate_latest(self.registry)


def _number(value: float | None) -> float | None:
    """A figure as exported: None when it is absent or NaN."""
    return None if value is None or math.isnan(value) else value


def _share(share: float | None, bad: float | None, total: float | None) -> float | None:
    """``share`` if it is a number, else ``bad / total`` when both are numbers and total > 0."""
    given = _number(share)
    if given is not None:
        return given
    bad_count, total_count = _number(bad), _number(total)
    if bad_count is None or total_count is None or total_count <= 0:
        return None
    return bad_count / total_count


def _remove(metric: Gauge | Counter | Histogram, labels: Iterable[str]) -> None:
    with contextlib.suppress(KeyError):  # already gone
        metric.remove(*labels)
