"""Observe: ask a `MetricsSource` for the figures each policy metric is judged on, at one evaluation time.

For the built-in metrics it gathers one window's `analysis.verdict.WindowCounts`:
- ``error-rate``: requests and 5xx responses of the canary and of the stable;
- ``latency``: requests seen by the duration histogram and those slower than the metric's threshold (moved
  up to a bucket bound, see `analysis.queries.latency_bucket`), plus the canary's latency quantile in
  seconds when the metric sets ``quantile``.
For a custom metric it returns the rendered query's single number.

Invariants:
- No judging here: figures in, figures out (`analysis.threshold` and `analysis.compare` judge).
- One failing query never hides the others: a `MetricsUnavailable` becomes ``error`` on the metrics that
  needed that query, and every other metric is still observed. When Prometheus itself is out of reach
  (`analysis.prometheus.PrometheusUnreachable`) the remaining queries of this evaluation are not sent: each
  would wait the full timeout again, and the verdict (ERROR) would be the same.
- A query asked for by several metrics is sent once per evaluation.
- An empty answer for a count means nothing was served in the window: 0, never an error. Counts are real
  (``increase()`` extrapolates), with bad events at most the total. A negative count never comes from a
  counter: it is an error on the metric (ERROR), never clamped to 0 (`analysis.answer.count_problem`).
- Whatever the source returns or raises, the outcome is an observation: a value that is not a finite
  number, or an exception other than `MetricsUnavailable` (a source's bug), becomes ``error`` (bounded,
  `config.text`), so no answer can crash an evaluation or freeze a rollout on a stale reason.
- Every query is evaluated at the same explicit time ``at`` over the same window, so the figures of one
  evaluation describe the same stretch of traffic.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

from songbird.analysis import queries
from songbird.analysis.answer import count_problem
from songbird.analysis.queries import IngressTarget, LatencyBucket, Version
from songbird.analysis.source import MetricsSource, PrometheusUnreachable
from songbird.analysis.verdict import WindowCounts
from songbird.config.errors import MetricsUnavailable, PolicyError
from songbird.config.policy import MetricSpec, Policy
from songbird.config.text import LABEL_LIMIT, MESSAGE_LIMIT, bounded


@dataclass(frozen=True, kw_only=True)
class MetricObservation:
    """What was measured for one policy metric at one evaluation.

    ``counts``: built-in metrics' window counts (None for custom metrics or on error).
    ``value``: the custom query's number, or the canary's latency quantile in seconds; None when there was
    no data or nothing to measure.
    ``error``: why the metric could not be observed (then the verdict is ERROR); one line, at most
    `config.text.MESSAGE_LIMIT` characters.
    ``bucket``: the latency metric's slow-request bound, with the threshold it came from.
    """

    name: str
    counts: WindowCounts | None = None
    value: float | None = None
    error: str | None = None
    bucket: LatencyBucket | None = None
    at: float = 0.0
    window: float = 0.0


class _Asker:
    """Sends each distinct query once; after Prometheus proved unreachable, sends nothing more."""

    def __init__(self, source: MetricsSource, at: float) -> None:
        self.source = source
        self.at = at
        self.answers: dict[str, float | MetricsUnavailable | None] = {}
        self.unreachable: PrometheusUnreachable | None = None

    def __call__(self, promql: str) -> float | None:
        """The finite number answered, or None for an empty answer; anything else (NaN included: a count
        or a custom metric is never NaN) raises `MetricsUnavailable`."""
        answer = self._answer(promql)
        if isinstance(answer, MetricsUnavailable):
            raise answer
        if answer is not None and math.isnan(answer):
            raise MetricsUnavailable(f"answer NaN is not a number: {_short(promql)}")
        return answer

    def figure(self, promql: str) -> float | None:
        """Like a call, but NaN is no data: a histogram quantile over no observations is NaN."""
        answer = self._answer(promql)
        if isinstance(answer, MetricsUnavailable):
            raise answer
        return None if answer is None or math.isnan(answer) else answer

    def _answer(self, promql: str) -> float | MetricsUnavailable | None:
        if promql not in self.answers:
            if self.unreachable is not None:
                self.answers[promql] = MetricsUnavailable(f"not asked: {self.unreachable}")
            else:
                self.answers[promql] = self._ask(promql)
        return self.answers[promql]

    def _ask(self, promql: str) -> float | MetricsUnavailable | None:
        try:
            value = self.source.query_scalar(promql, at=self.at)
        except PrometheusUnreachable as exc:
            self.unreachable = exc
            return exc
        except MetricsUnavailable as exc:
            return exc
        except Exception as exc:  # a source's bug must still end as ERROR, not as a crashed evaluation
            return MetricsUnavailable(
                f"query failed ({type(exc).__name__}: {bounded(str(exc), LABEL_LIMIT)}): {_short(promql)}"
            )
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            return MetricsUnavailable(
                f"answer of type {type(value).__name__} is not a number: {_short(promql)}"
            )
        try:
            number = float(value)
        except OverflowError:  # an int beyond float range
            number = math.inf
        if math.isinf(number):
            return MetricsUnavailable(f"answer {number} is not a finite number: {_short(promql)}")
        return number  # NaN is kept: `__call__` refuses it, `figure` reads it as no data


def _short(promql: str) -> str:
    """A query as quoted in an error: one line, bounded."""
    return bounded(" ".join(promql[:800].split()), 200)


def _count(ask: Callable[[str], float | None], promql: str) -> float:
    """A count of requests: no data is 0 (nothing served); a negative one is an error."""
    value = ask(promql)
    if value is None:
        return 0.0
    problem = count_problem(value)
    if problem is not None:
        raise MetricsUnavailable(f"{problem}: {_short(promql)}")
    return value


def _counts(
    ask: Callable[[str], float | None], total: Callable[[Version], str], bad: Callable[[Version], str]
) -> WindowCounts:
    n_c, n_s = _count(ask, total(Version.CANARY)), _count(ask, total(Version.STABLE))
    x_c, x_s = _count(ask, bad(Version.CANARY)), _count(ask, bad(Version.STABLE))
    return WindowCounts(
        canary_total=n_c, canary_bad=min(x_c, n_c), stable_total=n_s, stable_bad=min(x_s, n_s)
    )


def _observe_one(
    metric: MetricSpec, ask: _Asker, target: IngressTarget, window: float, path: str
) -> MetricObservation:
    name = metric.name
    if metric.name == "error-rate":
        counts = _counts(
            ask,
            lambda v: queries.requests(target, v, window),
            lambda v: queries.server_errors(target, v, window),
        )
        return MetricObservation(name=name, counts=counts)
    if metric.name == "latency":
        try:
            bucket = queries.latency_bucket(queries.slow_threshold(metric))
        except PolicyError as exc:
            return MetricObservation(name=name, error=f"{path}.{exc.path}: {exc.message}")
        counts = _counts(
            ask,
            lambda v: queries.timed_requests(target, v, window),
            lambda v: queries.slow_requests(target, v, window, bucket),
        )
        value = None
        if metric.quantile is not None:
            value = ask.figure(queries.latency_quantile(target, metric.quantile, window))
        return MetricObservation(name=name, counts=counts, value=value, bucket=bucket)
    if metric.query is None:
        return MetricObservation(name=name, error=f"{path}.query: a custom metric needs a query")
    try:
        promql = queries.custom(metric.query, target, window, path=f"{path}.query")
    except PolicyError as exc:
        return MetricObservation(name=name, error=str(exc))
    return MetricObservation(name=name, value=ask(promql))


def observe(
    policy: Policy, source: MetricsSource, target: IngressTarget, *, at: float, window: float | None = None
) -> tuple[MetricObservation, ...]:
    """One observation per metric of ``policy.analysis.metrics``, in the policy's order.

    ``window`` defaults to ``analysis.window``. Callers that feed the counts to the canary-vs-stable
    comparison pass windows that do not overlap (for example the cadence), as `analysis.compare` requires.
    """
    span = policy.analysis.window if window is None else window
    ask = _Asker(source, at)
    out: list[MetricObservation] = []
    for index, metric in enumerate(policy.analysis.metrics):
        path = f"analysis.metrics[{index}]"
        try:
            seen = _observe_one(metric, ask, target, span, path)
        except MetricsUnavailable as exc:
            seen = MetricObservation(name=metric.name, error=str(exc))
        except PolicyError as exc:  # a window Prometheus cannot express
            seen = MetricObservation(name=metric.name, error=str(exc))
        error = None if seen.error is None else bounded(seen.error, MESSAGE_LIMIT)
        out.append(replace(seen, at=at, window=span, error=error))
    return tuple(out)
