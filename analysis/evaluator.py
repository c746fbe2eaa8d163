"""The reconciler's `Evaluator` over Prometheus: which source a policy asks, the queries of one evaluation
(per rollout, or batched across rollouts), the forecast and the stable's history before a rollout.

Which Prometheus a policy asks is `config.endpoint_choice.choose` over the operator's `EndpointSettings`
(the same pure decision the reconciler refuses a policy with): a refused choice is an ERROR result naming
the field, and no request is sent anywhere.

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
from songbird.config import endpoints as operator
from songbird.config.endpoint_choice import Refusal, choose
from songbird.config.endpoints import Endpoint, EndpointSettings
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
    """The reconciler's `Evaluator`: the Prometheus endpoint `choose` gives for the policy."""

    def __init__(
        self,
        *,
        endpoints: EndpointSettings | None = None,
        default_url: str | None = None,
        on_query: Callable[[float, bool], None] | None = None,
        max_timeout: float | None = None,
        wrap: Callable[[Endpoint, MetricsSource], MetricsSource] | None = None,
        grouped: batch.GroupedSource | None = None,
        namespace_label: str = DEFAULT_LABEL,
    ) -> None:
        """``endpoints``: the operator's settings (the daemon always gives them); without them, in-process
        use (tests, benchmarks): ``default_url`` as the default and any policy URL that passes the static
        checks (`config.endpoints.unrestricted`). ``max_timeout`` caps every policy's
        ``analysis.prometheus.timeout`` (the operator's maximum); ``wrap(endpoint, source)`` lets the
        runtime put its per-endpoint guard around each source;
        ``grouped``, when given, answers the built-in metrics from queries batched across rollouts, over
        windows aligned to the cadence grid (`analysis.batch`); ``namespace_label`` is the label custom
        queries are scoped on (`config.scope`)."""
        self.endpoints = endpoints if endpoints is not None else operator.unrestricted(default_url)
        self.on_query = on_query
        self.max_timeout = max_timeout
        self.wrap = wrap
        self.grouped = grouped
        self.namespace_label = namespace_label
        self._sources: dict[Endpoint, PrometheusSource] = {}

    def _source(self, policy: Policy, namespace: str) -> tuple[Endpoint, MetricsSource] | Refusal:
        endpoint = choose(self.endpoints, policy.analysis.prometheus, namespace, max_timeout=self.max_timeout)
        if isinstance(endpoint, Refusal):
            return endpoint
        if endpoint not in self._sources:
            timeout = endpoint.timeout if endpoint.timeout is not None else policy.analysis.prometheus.timeout
            self._sources[endpoint] = PrometheusSource(endpoint, timeout=timeout, retries=1)
        source: MetricsSource = self._sources[endpoint]
        if self.wrap is not None:
            source = self.wrap(endpoint, source)
        return endpoint, (_Timed(source, self.on_query) if self.on_query is not None else source)

    def evaluate(self, policy: Policy, namespace: str, state: RolloutState, now: float) -> Evaluation:
        chosen = self._source(policy, namespace)
        try:
            if isinstance(chosen, Refusal):
                raise PolicyError(chosen.message, path=chosen.path)
            endpoint, source = chosen
            target = _target(policy, namespace, state, self.namespace_label)
        except PolicyError as exc:
            return tuple(error_result(m.name, exc.describe()) for m in policy.analysis.metrics), dict(
                state.evidence
            )
        if self.grouped is not None:
            return self._evaluate_batched(policy, endpoint, target, source, state, now)
        window = evidence_window(policy, state, now)
        builtin = observe(_only(policy, builtin=True), source, target, at=now, window=window)
        custom_policy = _only(policy, builtin=False)
        custom = observe(custom_policy, source, target, at=now) if custom_policy.analysis.metrics else ()
        return judge(policy, state, builtin, custom)

    def _evaluate_batched(
        self,
        policy: Policy,
        endpoint: Endpoint,
        target: IngressTarget,
        source: MetricsSource,
        state: RolloutState,
        now: float,
    ) -> Evaluation:
        """As `evaluate`, the built-in metrics over the aligned `analysis.batch.slot` (the window's end is
        recorded in the evidence, so the next window starts there); custom metrics as ever."""
        assert self.grouped is not None
        builtin_policy = _only(policy, builtin=True)
        chosen = batch.slot(policy, state, now)
        builtin_source = source
        if chosen.grouped:
            table = batch.picks(builtin_policy.analysis.metrics, target, chosen.window)
            builtin_source = batch.BatchedSource(
                self.grouped, endpoint, source, target=target, window=chosen.window, table=table
            )
        builtin = observe(builtin_policy, builtin_source, target, at=chosen.at, window=chosen.window)
        custom_policy = _only(policy, builtin=False)
        custom = observe(custom_policy, source, target, at=now) if custom_policy.analysis.metrics else ()
        results, evidence = judge(policy, state, builtin, custom)
        return results, batch.recorded(evidence, chosen.at)

    def forecast(self, policy: Policy, namespace: str, state: RolloutState, now: float) -> str:
        """Predicted time to promotion evidence, from the stable's traffic over the last few minutes."""
        chosen = self._source(policy, namespace)
        window = max(FORECAST_WINDOW, policy.analysis.window)
        try:
            if isinstance(chosen, Refusal):
                raise PolicyError(chosen.message, path=chosen.path)
            _, source = chosen
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
        chosen = self._source(policy, namespace)
        if isinstance(chosen, Refusal):
            return {}
        _, source = chosen
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
