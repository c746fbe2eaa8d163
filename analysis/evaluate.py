"""One evaluation of a rollout's metrics against Prometheus: observe, judge, and the evidence to persist.

Built-in metrics (``error-rate``, ``latency``) are judged by the anytime-valid canary-vs-stable comparison
(`analysis.compare`), with the policy's ``max`` as a ceiling evaluated the same anytime-valid way:
- error-rate: the ceiling is ``max``, a share of 5xx responses;
- latency: "the ``quantile`` (default 0.99) stays under ``max`` seconds" is the same statement as "at most
  1 - quantile of requests are slower than ``max``", so requests slower than the threshold bucket are the
  bad events and 1 - quantile is the ceiling. The histogram quantile itself is reported as a figure.
Their counts come from a window reaching back to the previous evaluation, so windows never overlap and
every request is counted once (the comparison's validity condition), whatever the tick timing. With
batching (``grouped``), the windows are aligned to the cadence grid instead and each one starts where the
previous one ended, as recorded in the evidence (`analysis.batch.slot` says how that keeps the condition).
Custom metrics are judged against their ``max``/``min`` over ``analysis.window`` (`analysis.threshold`).

Before the first step the controller calls `PrometheusEvaluator.history` once: the stable's counts over
the last ``HISTORY_WINDOW`` become part of the evidence, and `analysis.compare` runs a one-sample
comparison of the canary against them beside the canary-vs-stable one.

Sparse rule: when neither version has produced enough bad events for a comparison (fewer than
``SPARSE_EVENTS`` over the whole rollout, the stable's history included when the controller read it),
the ratio test has nothing to work with and would keep a flawless canary waiting forever. Then the metric
passes once the canary has served ``minRequests`` fresh requests (at the current step and weight, see
below) with a fresh bad share no higher than the stable's fresh share, and its ceiling (if any) is
certified. The bad-event evidence keeps running, so a canary that starts failing later is still rolled
back.

Fresh evidence (defined in `analysis.fresh`): counted since the current step started, at the current
weight, only from evaluation windows that lie inside the step and whose queries for the metric all
answered with finite, non-negative counts (shared-outage windows left out). Every built-in metric's PASS,
from the comparison or from the sparse rule, stands only when the canary has served ``max(minRequests, 1)``
fresh requests and the current window holds canary requests; otherwise it is INCONCLUSIVE. The fresh
counts are kept in the metric's evidence (``fresh:`` keys, reset when the step or weight changes) and
shown as ``fresh_canary_requests`` / ``fresh_canary_bad`` figures. The rollback side is never gated.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

from songbird.analysis import batch, compare, fresh, history, threshold
from songbird.analysis import evidence as ev
from songbird.analysis.forecast import describe, forecast
from songbird.analysis.observe import MetricObservation, observe
from songbird.analysis.params import CompareParams
from songbird.analysis.prometheus import PrometheusSource
from songbird.analysis.queries import IngressTarget
from songbird.analysis.source import MetricsSource
from songbird.analysis.state import RolloutState
from songbird.analysis.verdict import MetricResult, Verdict, WindowCounts
from songbird.config.errors import MetricsUnavailable, PolicyError
from songbird.config.policy import BUILTIN_METRICS, MetricSpec, Policy

SPARSE_EVENTS = 5.0
FORECAST_WINDOW = 300.0  # stable traffic looked at before a rollout, for the forecast
HISTORY_WINDOW = 6 * 3600.0  # stable traffic read before a rollout, for the one-sample comparison
MAX_EVIDENCE_WINDOW = 600.0  # after a long gap, older traffic is not worth a slower query

Evaluation = tuple[tuple[MetricResult, ...], dict[str, dict[str, float]]]


def ceiling(metric: MetricSpec) -> float | None:
    """The highest acceptable share of bad events for a built-in metric, from its ``max``."""
    if metric.max is None:
        return None
    if metric.name == "latency":
        return 1.0 - (metric.quantile if metric.quantile is not None else 0.99)
    return metric.max


def evidence_window(policy: Policy, state: RolloutState, now: float) -> float:
    """Seconds since the previous evaluation (or the step start): consecutive windows do not overlap."""
    last = state.last_evaluated_at if state.last_evaluated_at is not None else state.step_started_at
    span = now - last if last is not None else policy.analysis.cadence
    return min(max(span, 1.0), MAX_EVIDENCE_WINDOW)


def _error(name: str, reason: str) -> MetricResult:
    return MetricResult(name=name, verdict=Verdict.ERROR, reason=reason)


def _sparse(
    result: MetricResult, metric: MetricSpec, min_requests: int, at_step: fresh.Fresh, weight: float
) -> MetricResult:
    f = result.figures
    if result.verdict is not Verdict.INCONCLUSIVE or f.shared_outage:
        return result
    x_rollout = (f.canary_bad_sum or 0.0) + (f.stable_bad_sum or 0.0) + (f.history_bad or 0.0)
    n_c, x_c, n_s, x_s = at_step.canary_total, at_step.canary_bad, at_step.stable_total, at_step.stable_bad
    need = fresh.needed(min_requests)
    if x_rollout >= SPARSE_EVENTS or (f.canary_total_sum or 0.0) < need:
        return result
    if n_c < need:
        reason = (
            f"too few bad events to compare, and {compare.fmt(n_c)} canary requests at {weight:g}% this "
            f"step < minRequests {need:g}: inconclusive"
        )
        return replace(result, reason=reason)
    if x_c > 0 and (n_s <= 0 or x_c / n_c > x_s / n_s):
        return result
    if ceiling(metric) is not None and (f.e_ceiling_good or 0.0) < (
        f.threshold_good if f.threshold_good is not None else 1.0
    ):
        return result
    reason = (
        f"too few bad events to compare ({x_c:.0f} in {n_c:.0f} canary requests, {x_s:.0f} in "
        f"{n_s:.0f} stable at this step): pass on {min_requests} requests"
    )
    return replace(result, verdict=Verdict.PASS, reason=reason, figures=replace(f, sparse=True))


def _stale(
    result: MetricResult, counts: WindowCounts, at_step: fresh.Fresh, state: RolloutState, need: float
) -> str:
    """Why a PASS does not rest on fresh evidence (`analysis.fresh`), or "" when it does."""
    if result.verdict is not Verdict.PASS:
        return ""
    if ev.usable(counts.canary_total) <= 0:
        return f"no canary requests in this window at {state.weight:g}%"
    if at_step.canary_total < need:
        return (
            f"{compare.fmt(at_step.canary_total)} canary requests at {state.weight:g}% this step "
            f"< minRequests {need:g}"
        )
    return ""


def _inside_step(state: RolloutState) -> bool:
    """Whether this evaluation's window began no earlier than the step (`evidence_window`)."""
    last, began = state.last_evaluated_at, state.step_started_at
    return last is None or began is None or last >= began


def judge(
    policy: Policy,
    state: RolloutState,
    builtin: tuple[MetricObservation, ...],
    custom: tuple[MetricObservation, ...],
) -> Evaluation:
    """Pure: observations in, verdicts and updated evidence out (in the policy's metric order)."""
    params = CompareParams.from_policy(policy.analysis.compare)
    specs = {m.name: m for m in policy.analysis.metrics}
    n_builtin = max(1, len(builtin))
    min_requests = policy.analysis.min_requests
    evidence = {k: dict(v) for k, v in state.evidence.items()}
    by_name: dict[str, MetricResult] = {}
    for seen in builtin:
        metric = specs[seen.name]
        if seen.error is not None or seen.counts is None:
            by_name[seen.name] = _error(seen.name, seen.error or "no counts")
            continue
        result, sums = compare.judge_metric(
            name=seen.name,
            counts=seen.counts,
            sums=evidence.get(seen.name, {}),
            params=params,
            ceiling=ceiling(metric),
            n_metrics=n_builtin,
            min_requests=min_requests,
        )
        counted = seen.counts if _inside_step(state) and not result.figures.shared_outage else None
        sums = fresh.counted(sums, counted, step=state.step, weight=state.weight)
        evidence[seen.name] = sums
        at_step = fresh.Fresh.of(sums, step=state.step, weight=state.weight)
        figures = replace(
            result.figures, fresh_canary_requests=at_step.canary_total, fresh_canary_bad=at_step.canary_bad
        )
        if seen.value is not None:
            figures = replace(figures, quantile=metric.quantile, latency_quantile_seconds=seen.value)
        result = _sparse(replace(result, figures=figures), metric, min_requests, at_step, state.weight)
        stale = _stale(result, seen.counts, at_step, state, fresh.needed(min_requests))
        if stale:
            result = replace(
                result, verdict=Verdict.INCONCLUSIVE, reason=f"{stale}: inconclusive ({result.reason})"
            )
        by_name[seen.name] = result
    compared = [by_name[o.name] for o in builtin if by_name[o.name].verdict is not Verdict.ERROR]
    mean_rule = compare.combine(compared, alpha=params.alpha)
    if compared and mean_rule.decisive and not any(r.decisive for r in compared):
        # The mean of the metrics' rollback evidence crossed 1/alpha although none did alone: the verdict
        # lands on the metric with the most evidence, with the rule's own reason.
        worst = max(compared, key=lambda r: r.figures.e_bad or 0.0)
        by_name[worst.name] = replace(worst, verdict=Verdict.FAIL, decisive=True, reason=mean_rule.reason)
    for seen in custom:
        by_name[seen.name] = threshold.judge_threshold(seen, specs[seen.name], min_requests=min_requests)
    return tuple(by_name[m.name] for m in policy.analysis.metrics if m.name in by_name), evidence


def _target(policy: Policy, namespace: str, state: RolloutState) -> IngressTarget:
    return IngressTarget(
        namespace=namespace, ingress=policy.ingress, canary=state.canary_service, stable=state.stable_service
    )


def _only(policy: Policy, *, builtin: bool) -> Policy:
    """The policy with only its built-in metrics (or only its custom ones)."""
    metrics = tuple(m for m in policy.analysis.metrics if (m.name in BUILTIN_METRICS) == builtin)
    return replace(policy, analysis=replace(policy.analysis, metrics=metrics))


class _Timed:
    """A MetricsSource that reports each query's duration and outcome."""

    def __init__(self, source: MetricsSource, on_query: Callable[[float, bool], None]) -> None:
        self.source = source
        self.on_query = on_query

    def query_scalar(self, promql: str, *, at: float) -> float | None:
        began = time.monotonic()
        try:
            value = self.source.query_scalar(promql, at=at)
        except MetricsUnavailable:
            self.on_query(time.monotonic() - began, False)
            raise
        self.on_query(time.monotonic() - began, True)
        return value


class PrometheusEvaluator:
    """The reconciler's `Evaluator`: Prometheus from the policy (or the daemon's default URL)."""

    def __init__(
        self,
        *,
        default_url: str | None,
        on_query: Callable[[float, bool], None] | None = None,
        max_timeout: float | None = None,
        wrap: Callable[[str, MetricsSource], MetricsSource] | None = None,
        grouped: batch.GroupedSource | None = None,
    ) -> None:
        """``max_timeout`` caps every policy's ``analysis.prometheus.timeout`` (the operator's maximum);
        ``wrap(url, source)`` lets the runtime put its per-endpoint guard around each source;
        ``grouped``, when given, answers the built-in metrics from queries batched across rollouts, over
        windows aligned to the cadence grid (`analysis.batch`)."""
        self.default_url = default_url
        self.on_query = on_query
        self.max_timeout = max_timeout
        self.wrap = wrap
        self.grouped = grouped
        self._sources: dict[tuple[str, float], PrometheusSource] = {}

    def _source(self, policy: Policy) -> MetricsSource | None:
        url = policy.analysis.prometheus.url or self.default_url
        if not url:
            return None
        timeout = policy.analysis.prometheus.timeout
        if self.max_timeout is not None:
            timeout = min(timeout, self.max_timeout)
        key = (url, timeout)
        if key not in self._sources:
            self._sources[key] = PrometheusSource(url, timeout=timeout, retries=1)
        source: MetricsSource = self._sources[key]
        if self.wrap is not None:
            source = self.wrap(url, source)
        return _Timed(source, self.on_query) if self.on_query is not None else source

    def evaluate(self, policy: Policy, namespace: str, state: RolloutState, now: float) -> Evaluation:
        source = self._source(policy)
        try:
            if source is None:
                raise PolicyError(
                    "no Prometheus URL: set analysis.prometheus.url in the policy or --prometheus-url",
                    path="analysis.prometheus.url",
                )
            target = _target(policy, namespace, state)
        except PolicyError as exc:
            return tuple(_error(m.name, exc.describe()) for m in policy.analysis.metrics), dict(
                state.evidence
            )
        if self.grouped is not None:
            return self._evaluate_batched(policy, target, source, state, now)
        window = evidence_window(policy, state, now)
        builtin = observe(_only(policy, builtin=True), source, target, at=now, window=window)
        custom_policy = _only(policy, builtin=False)
        custom = observe(custom_policy, source, target, at=now) if custom_policy.analysis.metrics else ()
        return judge(policy, state, builtin, custom)

    def _evaluate_batched(
        self, policy: Policy, target: IngressTarget, source: MetricsSource, state: RolloutState, now: float
    ) -> Evaluation:
        """As `evaluate`, the built-in metrics over the aligned `analysis.batch.slot` (the window's end is
        recorded in the evidence, so the next window starts there); custom metrics as ever."""
        assert self.grouped is not None
        builtin_policy = _only(policy, builtin=True)
        chosen = batch.slot(policy, state, now)
        builtin_source = source
        if chosen.grouped:
            url = policy.analysis.prometheus.url or self.default_url or ""
            table = batch.picks(builtin_policy.analysis.metrics, target, chosen.window)
            builtin_source = batch.BatchedSource(
                self.grouped, url, source, target=target, window=chosen.window, table=table
            )
        builtin = observe(builtin_policy, builtin_source, target, at=chosen.at, window=chosen.window)
        custom_policy = _only(policy, builtin=False)
        custom = observe(custom_policy, source, target, at=now) if custom_policy.analysis.metrics else ()
        results, evidence = judge(policy, state, builtin, custom)
        return results, batch.recorded(evidence, chosen.at)

    def forecast(self, policy: Policy, namespace: str, state: RolloutState, now: float) -> str:
        """Predicted time to promotion evidence, from the stable's traffic over the last few minutes."""
        source = self._source(policy)
        window = max(FORECAST_WINDOW, policy.analysis.window)
        try:
            if source is None:
                raise PolicyError("no Prometheus URL", path="analysis.prometheus.url")
            target = _target(policy, namespace, state)
        except PolicyError as exc:
            return f"forecast unavailable: {exc.describe()}"
        seen = observe(_only(policy, builtin=True), source, target, at=now, window=window)
        errors = [o.error for o in seen if o.error]
        if errors:
            return f"forecast unavailable: {errors[0]}"
        counts = {o.name: o.counts for o in seen if o.counts is not None and o.counts.stable_total > 0}
        if not counts:
            return f"forecast unavailable: no stable traffic in the last {window:g}s"
        rate = max(c.stable_total for c in counts.values()) / window
        shares = {name: c.stable_bad / c.stable_total for name, c in counts.items()}
        specs = {m.name: m for m in policy.analysis.metrics}
        items = forecast(policy, rate=rate, shares=shares, ceilings={n: ceiling(specs[n]) for n in shares})
        return describe(policy, items, rate=rate)

    def history(
        self, policy: Policy, namespace: str, state: RolloutState, now: float
    ) -> dict[str, dict[str, float]]:
        """The stable's counts over the last ``HISTORY_WINDOW`` before the first step, per built-in metric,
        as the evidence entries the judge reads (`analysis.compare`: ``history:total``, ``history:bad``,
        ``history:seconds``). Called once when a rollout starts; its result is merged into the state's
        evidence, so it is persisted with it and a restart keeps it. Metrics that cannot be observed, or
        that show no stable traffic, get no entry: the judge then compares with the stable's concurrent
        counts alone, as without history.
        """
        source = self._source(policy)
        if source is None:
            return {}
        try:
            target = _target(policy, namespace, state)
        except PolicyError:
            return {}
        seen = observe(_only(policy, builtin=True), source, target, at=now, window=HISTORY_WINDOW)
        return {
            o.name: {
                history.HISTORY_TOTAL: o.counts.stable_total,
                history.HISTORY_BAD: o.counts.stable_bad,
                history.HISTORY_SECONDS: HISTORY_WINDOW,
            }
            for o in seen
            if o.error is None and o.counts is not None and o.counts.stable_total > 0
        }

    def close(self) -> None:
        for source in self._sources.values():
            source.close()
        self._sources.clear()
