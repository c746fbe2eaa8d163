"""The reconciler's `Evaluator` over Prometheus: which source a policy asks, the queries of one evaluation
(per rollout, or batched across rollouts), the forecast and the stable's history before a rollout.

This is the I/O half of an evaluation; the judgement itself is `analysis.evaluate.judge`, pure and free of
any HTTP library (an import-linter contract keeps it so), which the benchmarks and the lab call directly.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

from songbird.analysis import batch, history
from songbird.analysis.evaluate import (
    FORECAST_WINDOW,
    HISTORY_WINDOW,
    Evaluation,
    ceiling,
    error_result,
    evidence_window,
    judge,
)
from songbird.analysis.forecast import describe, forecast
from songbird.analysis.observe import observe
from songbird.analysis.prometheus import PrometheusSource
from songbird.analysis.queries import IngressTarget
from songbird.analysis.source import MetricsSource
from songbird.analysis.state import RolloutState
from songbird.config.errors import MetricsUnavailable, PolicyError
from songbird.config.policy import BUILTIN_METRICS, Policy
from songbird.config.scope import DEFAULT_LABEL


def _target(policy: Policy, namespace: str, state: RolloutState, label: str) -> IngressTarget:
    return IngressTarget(
        namespace=namespace,
        ingress=policy.ingress,
        canary=state.canary_service,
        stable=state.stable_service,
        namespace_label=label,
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
        namespace_label: str = DEFAULT_LABEL,
    ) -> None:
        """``max_timeout`` caps every policy's ``analysis.prometheus.timeout`` (the operator's maximum);
        ``wrap(url, source)`` lets the runtime put its per-endpoint guard around each source;
        ``grouped``, when given, answers the built-in metrics from queries batched across rollouts, over
        windows aligned to the cadence grid (`analysis.batch`); ``namespace_label`` is the label custom
        queries are scoped on (`config.scope`)."""
        self.default_url = default_url
        self.on_query = on_query
        self.max_timeout = max_timeout
        self.wrap = wrap
        self.grouped = grouped
        self.namespace_label = namespace_label
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
            target = _target(policy, namespace, state, self.namespace_label)
        except PolicyError as exc:
            return tuple(error_result(m.name, exc.describe()) for m in policy.analysis.metrics), dict(
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
            target = _target(policy, namespace, state, self.namespace_label)
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
            target = _target(policy, namespace, state, self.namespace_label)
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
