"""The canary-vs-stable judge the controller calls at every evaluation: counts and sums in, verdict out.

Where the counts come from: every ``analysis.cadence`` the controller queries Prometheus for four numbers
per metric over a window equal to the cadence, with ``increase()``: canary requests and bad events (5xx, or
requests slower than a latency bucket boundary: ``_bucket{le="+Inf"}`` minus ``_bucket{le="T"}``), and
the same for the stable. ``increase()`` extrapolates, so counts are real-valued; the formulas accept that.

Requirement for validity: the windows fed to `judge_metric` must not overlap (each request counted at
most once). The running sums multiply one likelihood ratio per window; a request seen in two windows would
be counted twice and void the alpha guarantee. A missed tick (a skipped window) is harmless.

Decision rule for one metric (see `analysis.evidence` for the e-processes and the literature):
* FAIL, decisive: rollback evidence E_bad >= K/alpha (K metrics share alpha, Bonferroni), or, with a
  ceiling, the one-sample evidence that the canary's bad share is above the ceiling >= K/alpha;
* PASS: promotion evidence E_good >= 1/beta, the ceiling certified the same way if one is set, and at
  least ``min_requests`` canary requests counted over the rollout; `analysis.evaluate` further holds a
  PASS to fresh evidence at the current step (`analysis.fresh`), which never touches the sums here;
* INCONCLUSIVE otherwise. The e-processes need no minimum sample: ``min_requests`` gates promotion only.
* Shared outage: when the stable's own bad share in the window is far above its history (at least
  ``OUTAGE_FACTOR`` times its running share, with at least ``OUTAGE_MIN_EVENTS`` bad events) or above the
  ceiling, and the excess is significant (``n_s KL(share || limit) >= ln OUTAGE_EVIDENCE``), the verdict is
  INCONCLUSIVE ("stable failing too (shared outage): pausing"), and the window is left out of every sum:
  it counts neither toward rollback (the ceiling guard cannot blame the canary for an outage that hits
  both) nor toward promotion (an outage says nothing about the canary's ordinary failure rate, and
  counting it would bury later evidence of a real regression). The rule reads the stable's counts only.

With the stable's history (read by the controller before the first step), a one-sample comparison of the
canary against it runs beside the two-sample one, and the metric's evidence is their blend; the
construction, its guards and why it keeps the alpha bound are in `analysis.history`.

`combine` adds the multi-metric rule: roll back when the mean of the metrics' E_bad reaches 1/alpha. A
mean of e-processes is an e-process, and any single E_m >= K/alpha implies the mean >= 1/alpha, so the
combined rule keeps the whole-rollout false-rollback bound alpha for the comparisons.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from songbird.analysis import evidence as ev
from songbird.analysis import history as hs
from songbird.analysis.evidence import CANARY_BAD, CANARY_TOTAL, STABLE_BAD, STABLE_TOTAL
from songbird.analysis.figures import Figures
from songbird.analysis.params import CompareParams
from songbird.analysis.verdict import MetricResult, Verdict, WindowCounts

OUTAGE_FACTOR = 5.0
OUTAGE_MIN_EVENTS = 5.0
OUTAGE_EVIDENCE = 1e4
# The stable's running share starts from a weak prior of 1 bad event in 100 requests.
PRIOR_BAD = 1.0
PRIOR_TOTAL = 100.0

SHARED_OUTAGE_REASON = "stable failing too (shared outage): pausing"
_LABELS = {"error-rate": "5xx", "latency": "slow-request"}

__all__ = ["SHARED_OUTAGE_REASON", "Combined", "CompareParams", "combine", "fmt", "judge_metric"]


@dataclass(frozen=True, kw_only=True)
class Combined:
    """The verdict over all metrics of one evaluation."""

    verdict: Verdict
    decisive: bool
    reason: str
    mean_e_bad: float | None


def fmt(x: float | None) -> str:
    """A figure for a reason: 3 significant digits, plain below a million ("142", "3.1", "0.02")."""
    if x is None or math.isnan(x):
        return "n/a"
    if math.isinf(x):
        return "inf"
    if x != 0 and (abs(x) >= 1e6 or abs(x) < 1e-3):
        return f"{x:.2e}"
    return f"{x:.3g}"


def _share(bad: float, total: float) -> float | None:
    return bad / total if total > 0 else None


def stable_failing(counts: WindowCounts, sums: Mapping[str, float], ceiling: float | None) -> bool:
    """The shared-outage rule (module docstring): the stable's window share is significantly far too high."""
    n_s, x_s = ev.usable(counts.stable_total), ev.usable(counts.stable_bad)
    if n_s == 0 or x_s < OUTAGE_MIN_EVENTS:
        return False
    reference = (sums.get(STABLE_BAD, 0.0) + PRIOR_BAD) / (sums.get(STABLE_TOTAL, 0.0) + PRIOR_TOTAL)
    limit = min(OUTAGE_FACTOR * reference, 1.0)
    if ceiling is not None:
        limit = min(limit, ceiling)
    share = min(x_s / n_s, 1.0)
    return share > limit and n_s * ev.kl_bernoulli(share, limit) >= math.log(OUTAGE_EVIDENCE)


def _updated(
    counts: WindowCounts, sums: Mapping[str, float], params: CompareParams, ceiling: float | None
) -> dict[str, float]:
    n_c, x_c = ev.usable(counts.canary_total), ev.usable(counts.canary_bad)
    n_s, x_s = ev.usable(counts.stable_total), ev.usable(counts.stable_bad)
    out = ev.add_ratio_window(
        sums,
        tolerance=params.tolerance,
        bad_ratio=params.bad_ratio,
        bad_alternatives=params.bad_alternatives,
        good_alternatives=params.good_alternatives,
        n_c=n_c,
        x_c=x_c,
        n_s=n_s,
        x_s=x_s,
    )
    if ceiling is not None:
        out = ev.add_ceiling_window(out, p_max=ceiling, n=n_c, x=x_c)
    for k, v in ((CANARY_TOTAL, n_c), (CANARY_BAD, x_c), (STABLE_TOTAL, n_s), (STABLE_BAD, x_s)):
        out[k] = out.get(k, 0.0) + v
    return out


def judge_metric(
    *,
    name: str,
    counts: WindowCounts,
    sums: Mapping[str, float],
    params: CompareParams,
    ceiling: float | None,
    n_metrics: int,
    min_requests: int,
) -> tuple[MetricResult, dict[str, float]]:
    """Judge one metric at one evaluation: the verdict and the sums to persist for the next one.

    ``counts`` covers one window that overlaps no earlier one; ``sums`` is what the previous call returned
    for this metric (empty at the start of a rollout; never reset between steps); ``ceiling`` is the highest
    acceptable canary bad-event share, or None; ``n_metrics`` is how many metrics share alpha.
    """
    if n_metrics < 1:
        raise ValueError(f"n_metrics must be at least 1, got {n_metrics}")
    outage = stable_failing(counts, sums, ceiling)
    new = dict(sums) if outage else _updated(counts, sums, params, ceiling)
    hist = hs.History.of(sums, params, n_metrics)
    if hist is not None and not outage:
        new = hs.add_window(new, counts, params, hist)

    alpha, beta = params.alpha, params.beta
    bad_threshold, good_threshold = n_metrics / alpha, 1 / beta
    log_bad_two = ev.log_evidence(new, ev.BAD, params.bad_alternatives)
    log_good_two = ev.log_evidence(new, ev.GOOD, params.good_alternatives)
    log_bad_one, log_good_one = hs.one_sample_logs(new, hist, params) if hist is not None else (None, None)
    log_bad, log_good = hs.blend(log_bad_one, log_bad_two), hs.blend(log_good_one, log_good_two)
    nc_sum, xc_sum = new.get(CANARY_TOTAL, 0.0), new.get(CANARY_BAD, 0.0)
    ns_sum, xs_sum = new.get(STABLE_TOTAL, 0.0), new.get(STABLE_BAD, 0.0)
    canary_share, stable_share = _share(xc_sum, nc_sum), _share(xs_sum, ns_sum)
    ratio: float | None = None
    if canary_share is not None and stable_share is not None:
        if stable_share > 0:
            ratio = canary_share / stable_share
        elif canary_share == 0:
            ratio = 1.0
    figures = Figures(
        canary_total=counts.canary_total,
        canary_bad=counts.canary_bad,
        stable_total=counts.stable_total,
        stable_bad=counts.stable_bad,
        canary_total_sum=nc_sum,
        canary_bad_sum=xc_sum,
        stable_total_sum=ns_sum,
        stable_bad_sum=xs_sum,
        ratio=ratio,
        e_bad=ev.evidence(log_bad),
        e_good=ev.evidence(log_good),
        threshold_bad=bad_threshold,
        threshold_good=good_threshold,
        alpha=alpha,
        beta=beta,
        tolerance=params.tolerance,
        bad_ratio=params.bad_ratio,
        shared_outage=outage,
    )
    if hist is not None:
        figures = replace(
            figures,
            history_bad=hist.bad,
            history_share=hist.share,
            history_share_upper=hist.upper,
            history_share_lower=hist.lower,
            e_bad_stable=ev.evidence(log_bad_two),
            e_good_stable=ev.evidence(log_good_two),
            e_bad_history=None if log_bad_one is None else ev.evidence(log_bad_one),
            e_good_history=None if log_good_one is None else ev.evidence(log_good_one),
            history_frozen=bool(new.get(hs.FROZEN)),
        )
    ceiling_bad = ceiling_good = False
    log_ceil_bad = log_ceil_good = 0.0
    if ceiling is not None:
        above, below = ev.ceiling_grids(ceiling)
        log_ceil_bad = ev.log_evidence(new, ev.CEIL_BAD, above)
        log_ceil_good = ev.log_evidence(new, ev.CEIL_GOOD, below)
        ceiling_bad = log_ceil_bad >= math.log(bad_threshold)
        ceiling_good = log_ceil_good >= math.log(good_threshold)
        figures = replace(
            figures,
            ceiling=ceiling,
            canary_share=canary_share,
            e_ceiling_bad=ev.evidence(log_ceil_bad),
            e_ceiling_good=ev.evidence(log_ceil_good),
        )
    label = _LABELS.get(name, name)

    def result(verdict: Verdict, reason: str, *, decisive: bool = False) -> MetricResult:
        return MetricResult(
            name=name,
            verdict=verdict,
            reason=reason,
            value=ratio,
            limit=params.tolerance,
            canary_requests=counts.canary_total,
            stable_requests=counts.stable_total,
            figures=figures,
            decisive=decisive,
        )

    if outage:
        stable_share = _share(ev.usable(counts.stable_bad), ev.usable(counts.stable_total))
        figures = replace(figures, stable_share=stable_share)
        return result(Verdict.INCONCLUSIVE, SHARED_OUTAGE_REASON), new
    if log_bad >= math.log(bad_threshold):
        reason = (
            f"{label} ratio canary/stable {fmt(ratio)}, evidence {fmt(ev.evidence(log_bad))} >= "
            f"{fmt(bad_threshold)}: rollback"
        )
        return result(Verdict.FAIL, reason, decisive=True), new
    if ceiling_bad and ceiling is not None:
        reason = (
            f"{label} share {fmt(canary_share)} above ceiling {fmt(ceiling)}, evidence "
            f"{fmt(ev.evidence(log_ceil_bad))} >= {fmt(bad_threshold)}: rollback"
        )
        return result(Verdict.FAIL, reason, decisive=True), new
    good = log_good >= math.log(good_threshold)
    if good and (ceiling is None or ceiling_good) and nc_sum >= min_requests:
        reason = (
            f"{label} ratio canary/stable {fmt(ratio)}, evidence for promotion "
            f"{fmt(ev.evidence(log_good))} >= {fmt(good_threshold)}: pass"
        )
        return result(Verdict.PASS, reason), new
    reason = (
        f"evidence for rollback {fmt(ev.evidence(log_bad))} < {fmt(bad_threshold)}, for promotion "
        f"{fmt(ev.evidence(log_good))} {'>=' if good else '<'} {fmt(good_threshold)}"
    )
    if ceiling is not None and not ceiling_good:
        reason += f", below ceiling {fmt(ev.evidence(log_ceil_good))} < {fmt(good_threshold)}"
    if nc_sum < min_requests:
        reason += f", {fmt(nc_sum)} canary requests < {min_requests}"
    return result(Verdict.INCONCLUSIVE, reason + ": inconclusive"), new


def combine(results: Sequence[MetricResult], *, alpha: float | None = None) -> Combined:
    """One verdict for an evaluation from its metrics' results (the mean rule, module docstring).

    ``alpha`` defaults to the ``alpha`` figure the results carry. A decisive FAIL wins; then the mean of
    ``e_bad`` reaching 1/alpha; then ERROR (no answer), a shared outage, and PASS only when all passed.
    """
    if not results:
        return Combined(verdict=Verdict.INCONCLUSIVE, decisive=False, reason="no metrics", mean_e_bad=None)
    for r in results:
        if r.verdict is Verdict.FAIL and r.decisive:
            return Combined(
                verdict=Verdict.FAIL,
                decisive=True,
                reason=f"{r.name}: {r.reason}",
                mean_e_bad=_mean_e_bad(results),
            )
    mean = _mean_e_bad(results)
    if alpha is None:
        alphas = [r.figures.alpha for r in results if r.figures.alpha is not None]
        alpha = min(alphas) if alphas else None
    if mean is not None and alpha is not None and mean >= 1 / alpha:
        return Combined(
            verdict=Verdict.FAIL,
            decisive=True,
            mean_e_bad=mean,
            reason=f"mean rollback evidence over {len(results)} metrics {fmt(mean)} >= "
            f"{fmt(1 / alpha)}: rollback",
        )
    for verdict in (Verdict.FAIL, Verdict.ERROR):
        failing = [r for r in results if r.verdict is verdict]
        if failing:
            return Combined(
                verdict=verdict,
                decisive=False,
                mean_e_bad=mean,
                reason="; ".join(f"{r.name}: {r.reason}" for r in failing),
            )
    outage = [r for r in results if r.figures.shared_outage]
    if outage:
        return Combined(
            verdict=Verdict.INCONCLUSIVE, decisive=False, reason=SHARED_OUTAGE_REASON, mean_e_bad=mean
        )
    if all(r.verdict is Verdict.PASS for r in results):
        return Combined(
            verdict=Verdict.PASS,
            decisive=False,
            mean_e_bad=mean,
            reason="; ".join(f"{r.name}: {r.reason}" for r in results),
        )
    waiting = [r for r in results if r.verdict is not Verdict.PASS]
    return Combined(
        verdict=Verdict.INCONCLUSIVE,
        decisive=False,
        mean_e_bad=mean,
        reason="; ".join(f"{r.name}: {r.reason}" for r in waiting),
    )


def _mean_e_bad(results: Sequence[MetricResult]) -> float | None:
    values = [r.figures.e_bad for r in results if r.figures.e_bad is not None]
    return sum(values) / len(values) if values else None
