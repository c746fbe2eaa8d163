"""Dry-run metrics: a metric marked ``dryRun: true`` in the policy is queried, judged and shown, and never
acted on.

Invariants (the state machine and the judge read verdicts only through `enforced`, so these hold by
construction; `tests/unit/test_dryrun.py` checks the first as a property):
- for any verdicts of dry-run metrics, the decision is the one taken with those metrics removed: a
  dry-run FAIL (decisive or not) never rolls back and never counts toward ``failureLimit``, a dry-run
  ERROR never holds and never starts the ``errorDeadline`` clock, a dry-run shared outage never pauses,
  and a dry-run verdict is never needed (nor able to block) for a promotion;
- a dry-run metric takes no part in the statistical decision of the others: the comparison's
  alpha is split among the enforced built-in metrics only, and the mean rule combines only their evidence;
- a dry-run verdict is kept and shown as it is, marked ``dry_run`` (status, log line, Events, the
  ``dry_run`` label of ``songbird_metric_verdict``).
"""

from __future__ import annotations

from collections.abc import Iterable

from songbird.analysis.verdict import MetricResult, Verdict
from songbird.config.policy import MetricSpec


def enforced(results: Iterable[MetricResult]) -> tuple[MetricResult, ...]:
    """The verdicts a decision may act on: every one but the dry-run metrics'."""
    return tuple(r for r in results if not r.dry_run)


def dry_names(metrics: Iterable[MetricSpec]) -> frozenset[str]:
    """The names of the policy's dry-run metrics."""
    return frozenset(m.name for m in metrics if m.dry_run)


def newly_failed(before: Iterable[MetricResult], after: Iterable[MetricResult]) -> tuple[MetricResult, ...]:
    """The dry-run metrics whose verdict is FAIL in ``after`` and was not in ``before`` (the previous
    evaluation): each is said once, as a Warning Event, when it starts failing."""
    failing = {r.name for r in before if r.dry_run and r.verdict is Verdict.FAIL}
    return tuple(r for r in after if r.dry_run and r.verdict is Verdict.FAIL and r.name not in failing)


def describe(result: MetricResult) -> str:
    """One line for people: the dry-run verdict and that it had no effect."""
    return f"dry-run metric {result.name} {result.verdict.value} (no effect on the rollout): {result.reason}"
