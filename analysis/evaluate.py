"""The judgement of one evaluation of a rollout's metrics, pure: observations in, verdicts and the evidence
to persist out (`judge`). The queries that produce the observations are `analysis.evaluator`'s.

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

Before the first step the controller calls `analysis.evaluator.PrometheusEvaluator.history` once: the
stable's counts over the last ``HISTORY_WINDOW`` become part of the evidence, and `analysis.compare` runs
a one-sample comparison of the canary against them beside the canary-vs-stable one.

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
shown as ``fresh_canary_requests`` / ``fresh_canary_bad`` figures. A custom metric's PASS stands only when
its ``analysis.window`` lies inside the current step (`_custom_fresh`). The rollback side is never gated.

Dry-run metrics (`analysis.dryrun`) are judged like the others and marked ``dry_run``; alpha is split among
the enforced built-ins only, and the mean rule combines only their evidence.
"""

from __future__ import annotations

from dataclasses import replace

from songbird.analysis import compare, dryrun, fresh, threshold
from songbird.analysis import evidence as ev
from songbird.analysis.decision import tick_tolerance
from songbird.analysis.observe import MetricObservation
from songbird.analysis.params import CompareParams
from songbird.analysis.state import RolloutState
from songbird.analysis.verdict import MetricResult, Verdict, WindowCounts
from songbird.config.policy import MetricSpec, Policy

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


def error_result(name: str, reason: str) -> MetricResult:
    """An ERROR verdict for ``name`` with ``reason``."""
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


def _inside_step(policy: Policy, state: RolloutState, seen: MetricObservation) -> bool:
    """Whether this evaluation's window began no earlier than the step (to the tick tolerance). The
    observation's own window says where it began (`seen.at - seen.window`): with batching it starts on the
    cadence grid, where the previous window ended, which can be before the previous tick and so before a
    step that began at that tick. An observation without a window falls back to the previous evaluation's
    time, where the unbatched window (`evidence_window`) begins."""
    began = state.step_started_at
    if began is None:
        return True
    if seen.window > 0:
        return seen.at - seen.window >= began - tick_tolerance(policy.analysis.cadence)
    last = state.last_evaluated_at
    return last is None or last >= began


def _custom_fresh(result: MetricResult, seen: MetricObservation, state: RolloutState) -> MetricResult:
    """A custom metric's PASS stands only when its query window lies inside the current step (so the value
    measured the canary at the weight being certified); otherwise it is INCONCLUSIVE. FAIL and ERROR stand
    as they are: the rollback side is never gated."""
    started = state.step_started_at
    if result.verdict is not Verdict.PASS or started is None or seen.at - seen.window >= started - 1e-6:
        return result
    reason = (
        f"its {seen.window:g}s window reaches back before step {state.step + 1} started at "
        f"{state.weight:g}% ({seen.at - started:.0f}s ago): inconclusive ({result.reason})"
    )
    return replace(result, verdict=Verdict.INCONCLUSIVE, reason=reason)


def judge(
    policy: Policy,
    state: RolloutState,
    builtin: tuple[MetricObservation, ...],
    custom: tuple[MetricObservation, ...],
) -> Evaluation:
    """Pure: observations in, verdicts and updated evidence out (in the policy's metric order)."""
    params = CompareParams.from_policy(policy.analysis.compare)
    specs = {m.name: m for m in policy.analysis.metrics}
    dry = dryrun.dry_names(policy.analysis.metrics)
    # Alpha is split among the enforced built-ins; a dry-run one is judged as if it were one more of them.
    n_enforced = sum(1 for o in builtin if o.name not in dry)
    n_builtin = max(1, n_enforced)
    min_requests = policy.analysis.min_requests
    evidence = {k: dict(v) for k, v in state.evidence.items()}
    by_name: dict[str, MetricResult] = {}
    for seen in builtin:
        metric = specs[seen.name]
        if seen.error is not None or seen.counts is None:
            by_name[seen.name] = error_result(seen.name, seen.error or "no counts")
            continue
        result, sums = compare.judge_metric(
            name=seen.name,
            counts=seen.counts,
            sums=evidence.get(seen.name, {}),
            params=params,
            ceiling=ceiling(metric),
            n_metrics=n_enforced + 1 if seen.name in dry else n_builtin,
            min_requests=min_requests,
        )
        inside = _inside_step(policy, state, seen)
        counted = seen.counts if inside and not result.figures.shared_outage else None
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
    compared = [
        by_name[o.name] for o in builtin if by_name[o.name].verdict is not Verdict.ERROR and o.name not in dry
    ]
    mean_rule = compare.combine(compared, alpha=params.alpha)
    if compared and mean_rule.decisive and not any(r.decisive for r in compared):
        # The mean of the metrics' rollback evidence crossed 1/alpha although none did alone: the verdict
        # lands on the metric with the most evidence, with the rule's own reason.
        worst = max(compared, key=lambda r: r.figures.e_bad or 0.0)
        by_name[worst.name] = replace(worst, verdict=Verdict.FAIL, decisive=True, reason=mean_rule.reason)
    for seen in custom:
        result = threshold.judge_threshold(seen, specs[seen.name], min_requests=min_requests)
        by_name[seen.name] = _custom_fresh(result, seen, state)
    results = tuple(
        replace(by_name[m.name], dry_run=m.dry_run) for m in policy.analysis.metrics if m.name in by_name
    )
    return results, evidence
