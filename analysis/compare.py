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
  least ``min_requests`` canary requests counted over the rollout;
* INCONCLUSIVE otherwise. The e-processes need no minimum sample: ``min_requests`` gates promotion only.
* Shared outage: when the stable's own bad share in the window is far above its history (at least
  ``OUTAGE_FACTOR`` times its running share, with at least ``OUTAGE_MIN_EVENTS`` bad events) or above the
  ceiling, and the excess is significant (``n_s KL(share || limit) >= ln OUTAGE_EVIDENCE``), the verdict is
  INCONCLUSIVE ("stable failing too (shared outage): pausing"), and the window is left out of every sum:
  it counts neither toward rollback (the ceiling guard cannot blame the canary for an outage that hits
  both) nor toward promotion (an outage says nothing about the canary's ordinary failure rate, and
  counting it would bury later evidence of a real regression). The rule reads the stable's counts only.

The stable's history (when the controller read it before the first step; keys ``history:total``,
``history:bad`` and ``history:seconds`` in the metric's sums): hours of the stable's traffic pin its
bad-event share down far better than the few stable requests of each window, which at high canary weights
carry most of the two-sample test's variance. The judge then runs a second, one-sample e-process on the
canary's counts:
* bounds: p_hi and p_lo, Chernoff confidence bounds on the history's share (`analysis.evidence.share_bound`)
  at levels ``HISTORY_SHARE`` x alpha / K and ``HISTORY_SHARE`` x beta;
* rollback: null ``tolerance x b_k``, alternatives ``r x b_k`` for the rollback ratios r above the
  tolerance, weighted towards the small ratios (`analysis.evidence.ROLLBACK_WEIGHTS`), where the base b_k
  is p_hi, or, when higher, the stable's concurrent share over the rollout shrunk toward p_hi
  (``(x_s + m p_hi) / (n_s + m)``, ``m = SHRINK_REQUESTS``): a stable that fails more than its history
  raises the bar the canary is held to. b_k depends on the stable's counts only, independent of the
  canary's given the rates, so each window's likelihood ratio keeps expectation at most 1 under the null;
  promotion: null ``badRatio x p_lo``, alternatives ``r x p_lo`` for the promotion ratios;
* the metric's evidence is ``(1 - HISTORY_SHARE) (w E_one + (1 - w) E_two)`` with ``w = ONE_SAMPLE_WEIGHT``:
  a convex combination of e-processes is one, and the factor 1 - HISTORY_SHARE pays for the chance that a
  bound is wrong, so a healthy canary is still rolled back with probability at most alpha (and a canary
  badRatio times worse promoted with probability at most beta), as long as the stable's share during the
  rollout is the share of its history.
That last assumption is what the two-sample test does not need, so the one-sample part is guarded:
* windows of a detected shared outage are left out of every sum, as above;
* a CUSUM on the stable's windows against p_hi (Page, 1954; alternatives ``DRIFT_MULTIPLES`` x p_hi) watches
  for the stable drifting above its history. Once it goes above ln ``GATE``, an episode starts: until the
  CUSUM is back at zero the one-sample part counts only with its value from before the episode, and when
  the episode ends the one-sample sums fall back to that value unless they fell meanwhile, so canary
  errors served while the stable looked unlike its history never count against the canary. When the
  CUSUM reaches ln ``FREEZE`` the one-sample part is frozen for the rest of the rollout and the verdicts
  rest on the two-sample comparison alone;
* a canary window does not count toward the one-sample rollback evidence when the stable's recent counts
  (the last few windows, decaying by ``RECENT_DECAY`` per window) are more likely under a surge
  (``SURGE_MULTIPLE`` x p_hi) than under its history, nor unless the stable served at least
  ``MIN_RECENT_STABLE`` requests over those windows: with fewer, a failure hitting both versions would go
  unseen on the stable and be blamed on the canary;
* for the same reason the one-sample part takes no part in the rollback evidence at all when the history
  shows fewer than ``ONE_SAMPLE_MIN_RATE`` requests a second (decided once, from the history, so the
  combination's weights are fixed in advance). At 1 req/s a 15 s window holds about 10 stable requests:
  a failure of 10% of all requests leaves them all clean one time in three and then looks exactly like a
  canary regression (measured: 1.4% of the benchmark's shared outages at 1 req/s were blamed on the
  canary when the one-sample part ran there). At such traffic the rollback rests on the two-sample
  comparison, and the history serves promotion only.
Windows are left out on the stable's counts alone, which are independent of the canary's given the rates,
and the other steps only ever lower the one-sample sums or use a value they had before, so every value
counted is at most one the plain one-sample process over the counted windows took: the false-rollback
bound under a stationary stable is unchanged. The gate and the freeze apply to the promotion side too.

`combine` adds the multi-metric rule: roll back when the mean of the metrics' E_bad reaches 1/alpha. A
mean of e-processes is an e-process, and any single E_m >= K/alpha implies the mean >= 1/alpha, so the
combined rule keeps the whole-rollout false-rollback bound alpha for the comparisons.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from analysis import evidence as ev
from analysis.verdict import MetricResult, Verdict, WindowCounts
from config.policy import Compare

OUTAGE_FACTOR = 5.0
OUTAGE_MIN_EVENTS = 5.0
OUTAGE_EVIDENCE = 1e4
# The stable's running share starts from a weak prior of 1 bad event in 100 requests.
PRIOR_BAD = 1.0
PRIOR_TOTAL = 100.0

# Running totals kept beside the log sums (outage windows excluded).
CANARY_TOTAL = "canary:total"
CANARY_BAD = "canary:bad"
STABLE_TOTAL = "stable:total"
STABLE_BAD = "stable:bad"

# The stable's history (persisted with the sums, read once before the first step) and the one-sample part.
HISTORY_TOTAL = "history:total"
HISTORY_BAD = "history:bad"
HISTORY_SECONDS = "history:seconds"
ONE_SAMPLE_MIN_RATE = 5.0  # req/s in the history below which the one-sample part does not roll back
HISTORY_SHARE = 0.1  # of alpha (beta) spent on the history's confidence bounds
ONE_SAMPLE_WEIGHT = 0.8
ONE_BAD = "one-bad"  # live one-sample log sums, per rollback ratio
ONE_GOOD = "one-good"
ONE_BAD_KEPT = "one-bad@"  # their values at the last window where the drift CUSUM was at zero
ONE_GOOD_KEPT = "one-good@"
DRIFT = "drift"  # Page's CUSUM of the stable against p_hi, per multiple
OUTAGE_MULTIPLE = 20.0
DRIFT_MULTIPLES: tuple[float, ...] = (1.5, OUTAGE_MULTIPLE)  # slow drift, and an outage
FROZEN = "history:frozen"
GATED = "history:gated"  # the CUSUM went above the gate since it was last at zero
GATE = 10.0
FREEZE = 1e4
RECENT_STABLE = "history:recent-stable"  # stable requests of the last windows, decaying by RECENT_DECAY
RECENT_STABLE_BAD = "history:recent-stable-bad"  # and their bad events
SURGE_MULTIPLE = 10.0
SHRINK_REQUESTS = 2000.0  # weight of p_hi, in stable requests, against the stable's concurrent share
RECENT_DECAY = 0.75
MIN_RECENT_STABLE = 100.0

SHARED_OUTAGE_REASON = "stable failing too (shared outage): pausing"
_LABELS = {"error-rate": "5xx", "latency": "slow-request"}


@dataclass(frozen=True, kw_only=True)
class CompareParams:
    """What the judge needs from ``analysis.compare`` in the policy, with the alternatives' grids."""

    tolerance: float = 1.2
    bad_ratio: float = 2.0
    alpha: float = 0.01
    beta: float = 0.05
    rollback_ratios: tuple[float, ...] = ev.ROLLBACK_RATIOS
    promotion_ratios: tuple[float, ...] = ev.PROMOTION_RATIOS
    # Prior weights of the one-sample rollback alternatives (the two-sample mixture keeps equal weights:
    # at low traffic its evidence comes from few events, where the large ratios matter as much).
    history_weights: Mapping[float, float] | None = field(default_factory=lambda: dict(ev.ROLLBACK_WEIGHTS))

    @classmethod
    def from_policy(cls, compare: Compare) -> CompareParams:
        return cls(
            tolerance=compare.tolerance,
            bad_ratio=compare.bad_ratio,
            alpha=compare.false_rollback,
            beta=compare.missed_regression,
        )

    @property
    def bad_alternatives(self) -> tuple[float, ...]:
        return ev.rollback_grid(self.tolerance, self.rollback_ratios)

    @property
    def good_alternatives(self) -> tuple[float, ...]:
        return ev.promotion_grid(self.bad_ratio, self.promotion_ratios)


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


@dataclass(frozen=True, kw_only=True)
class History:
    """The stable's share before the rollout, as bounds, with the one-sample grids they give."""

    bad: float  # bad events in the history
    share: float
    upper: float
    lower: float
    bad_ratios: tuple[float, ...]  # rollback alternatives (multiples of upper), null tolerance x upper
    good_ratios: tuple[float, ...]  # promotion alternatives (multiples of lower), null badRatio x lower

    @classmethod
    def of(cls, sums: Mapping[str, float], params: CompareParams, n_metrics: int) -> History | None:
        n, x = ev.usable(sums.get(HISTORY_TOTAL, 0.0)), ev.usable(sums.get(HISTORY_BAD, 0.0))
        seconds = ev.usable(sums.get(HISTORY_SECONDS, 0.0))
        if n <= 0 or seconds <= 0:
            return None
        upper = ev.share_bound(n, x, HISTORY_SHARE * params.alpha / n_metrics, upper=True)
        lower = ev.share_bound(n, x, HISTORY_SHARE * params.beta, upper=False)
        rolls_back = n / seconds >= ONE_SAMPLE_MIN_RATE and params.tolerance * upper < 1
        bad = tuple(r for r in params.bad_alternatives if r * upper < 1) if rolls_back else ()
        good = (
            tuple(r for r in params.good_alternatives if r * lower > 0)
            if params.bad_ratio * lower < 1
            else ()
        )
        return cls(
            bad=min(x, n), share=min(x, n) / n, upper=upper, lower=lower, bad_ratios=bad, good_ratios=good
        )


def _history_window(
    sums: Mapping[str, float], counts: WindowCounts, params: CompareParams, hist: History
) -> dict[str, float]:
    """The one-sample sums and the stable's drift CUSUM after one more (non-outage) window."""
    out = dict(sums)
    if out.get(FROZEN):
        return out
    n_c, x_c = ev.usable(counts.canary_total), ev.usable(counts.canary_bad)
    n_s, x_s = ev.usable(counts.stable_total), ev.usable(counts.stable_bad)
    recent = RECENT_DECAY * out.get(RECENT_STABLE, 0.0) + n_s
    recent_bad = RECENT_DECAY * out.get(RECENT_STABLE_BAD, 0.0) + x_s
    out[RECENT_STABLE], out[RECENT_STABLE_BAD] = recent, recent_bad
    p_surge = min(SURGE_MULTIPLE * hist.upper, (1 + hist.upper) / 2)
    suspect = ev.window_log_ceiling(p_surge, hist.upper, n=recent, x=recent_bad) > 0
    counted = recent >= MIN_RECENT_STABLE and not suspect
    # The one-sample base: p_hi, or the stable's concurrent share shrunk toward it when that is higher.
    n_cum, x_cum = out.get(STABLE_TOTAL, 0.0), out.get(STABLE_BAD, 0.0)
    base_bad = max(hist.upper, (x_cum + SHRINK_REQUESTS * hist.upper) / (n_cum + SHRINK_REQUESTS))
    for r in hist.bad_ratios if counted else ():
        if r * base_bad >= 1:
            continue
        k = ev.key(ONE_BAD, r)
        p0 = params.tolerance * base_bad
        out[k] = out.get(k, 0.0) + ev.window_log_ceiling(r * base_bad, p0, n=n_c, x=x_c)
    for r in hist.good_ratios:
        k = ev.key(ONE_GOOD, r)
        p0 = params.bad_ratio * hist.lower
        out[k] = out.get(k, 0.0) + ev.window_log_ceiling(r * hist.lower, p0, n=n_c, x=x_c)
    drift = []
    for m in DRIFT_MULTIPLES:
        k = ev.key(DRIFT, m)
        p1 = min(m * hist.upper, (1 + hist.upper) / 2)
        out[k] = max(out.get(k, 0.0), 0.0) + ev.window_log_ceiling(p1, hist.upper, n=n_s, x=x_s)
        drift.append(out[k])
    stat = max(drift)
    live = [(ev.key(ONE_BAD, r), ev.key(ONE_BAD_KEPT, r)) for r in hist.bad_ratios]
    live += [(ev.key(ONE_GOOD, r), ev.key(ONE_GOOD_KEPT, r)) for r in hist.good_ratios]
    if stat > math.log(GATE):
        out[GATED] = 1.0
    if stat >= math.log(FREEZE) or (stat <= 0 and out.get(GATED)):
        # The episode in which the stable looked unlike its history ends (frozen for good, or the CUSUM is
        # back at zero): the one-sample part goes back to its value before the episode unless it fell
        # meanwhile. Only ever lowering it keeps every value it takes at or below the plain process.
        for k, kept in live:
            out[k] = min(out.get(k, 0.0), out.get(kept, 0.0))
        out[GATED] = 0.0
        if stat >= math.log(FREEZE):
            out[FROZEN] = 1.0
    if stat <= 0 or out.get(FROZEN):
        for k, kept in live:
            out[kept] = out.get(k, 0.0)
    return out


def _one_sample_logs(
    sums: Mapping[str, float], hist: History, params: CompareParams
) -> tuple[float | None, float | None]:
    """ln E of the one-sample rollback and promotion parts as they count now (live, or the kept values
    while the stable's drift CUSUM is above the gate)."""
    gated = not sums.get(FROZEN) and bool(sums.get(GATED))
    bad_prefix, good_prefix = (ONE_BAD_KEPT, ONE_GOOD_KEPT) if gated else (ONE_BAD, ONE_GOOD)
    log_bad = (
        ev.log_evidence(sums, bad_prefix, hist.bad_ratios, params.history_weights)
        if hist.bad_ratios
        else None
    )
    log_good = ev.log_evidence(sums, good_prefix, hist.good_ratios) if hist.good_ratios else None
    return log_bad, log_good


def _blend(log_one: float | None, log_two: float) -> float:
    """ln of (1 - HISTORY_SHARE) (w E_one + (1 - w) E_two); E_two alone without a one-sample part."""
    if log_one is None:
        return log_two
    w = ONE_SAMPLE_WEIGHT
    top = max(log_one, log_two)
    mixed = w * math.exp(log_one - top) + (1 - w) * math.exp(log_two - top)
    return math.log(1 - HISTORY_SHARE) + top + math.log(mixed)


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
    hist = History.of(sums, params, n_metrics)
    if hist is not None and not outage:
        new = _history_window(new, counts, params, hist)

    alpha, beta = params.alpha, params.beta
    bad_threshold, good_threshold = n_metrics / alpha, 1 / beta
    log_bad_two = ev.log_evidence(new, ev.BAD, params.bad_alternatives)
    log_good_two = ev.log_evidence(new, ev.GOOD, params.good_alternatives)
    log_bad_one, log_good_one = _one_sample_logs(new, hist, params) if hist is not None else (None, None)
    log_bad, log_good = _blend(log_bad_one, log_bad_two), _blend(log_good_one, log_good_two)
    nc_sum, xc_sum = new.get(CANARY_TOTAL, 0.0), new.get(CANARY_BAD, 0.0)
    ns_sum, xs_sum = new.get(STABLE_TOTAL, 0.0), new.get(STABLE_BAD, 0.0)
    canary_share, stable_share = _share(xc_sum, nc_sum), _share(xs_sum, ns_sum)
    ratio: float | None = None
    if canary_share is not None and stable_share is not None:
        if stable_share > 0:
            ratio = canary_share / stable_share
        elif canary_share == 0:
            ratio = 1.0
    figures: dict[str, object] = {
        "canary_total": counts.canary_total,
        "canary_bad": counts.canary_bad,
        "stable_total": counts.stable_total,
        "stable_bad": counts.stable_bad,
        "canary_total_sum": nc_sum,
        "canary_bad_sum": xc_sum,
        "stable_total_sum": ns_sum,
        "stable_bad_sum": xs_sum,
        "ratio": ratio,
        "e_bad": ev.evidence(log_bad),
        "e_good": ev.evidence(log_good),
        "threshold_bad": bad_threshold,
        "threshold_good": good_threshold,
        "alpha": alpha,
        "beta": beta,
        "tolerance": params.tolerance,
        "bad_ratio": params.bad_ratio,
        "shared_outage": outage,
    }
    if hist is not None:
        figures.update(
            {
                "history_bad": hist.bad,
                "history_share": hist.share,
                "history_share_upper": hist.upper,
                "history_share_lower": hist.lower,
                "e_bad_stable": ev.evidence(log_bad_two),
                "e_good_stable": ev.evidence(log_good_two),
                "e_bad_history": None if log_bad_one is None else ev.evidence(log_bad_one),
                "e_good_history": None if log_good_one is None else ev.evidence(log_good_one),
                "history_frozen": bool(new.get(FROZEN)),
            }
        )
    ceiling_bad = ceiling_good = False
    log_ceil_bad = log_ceil_good = 0.0
    if ceiling is not None:
        above, below = ev.ceiling_grids(ceiling)
        log_ceil_bad = ev.log_evidence(new, ev.CEIL_BAD, above)
        log_ceil_good = ev.log_evidence(new, ev.CEIL_GOOD, below)
        ceiling_bad = log_ceil_bad >= math.log(bad_threshold)
        ceiling_good = log_ceil_good >= math.log(good_threshold)
        figures.update(
            {
                "ceiling": ceiling,
                "canary_share": canary_share,
                "e_ceiling_bad": ev.evidence(log_ceil_bad),
                "e_ceiling_good": ev.evidence(log_ceil_good),
            }
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
        figures["stable_share"] = _share(ev.usable(counts.stable_bad), ev.usable(counts.stable_total))
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
        alphas = [float(r.figures["alpha"]) for r in results if "alpha" in r.figures]
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
    outage = [r for r in results if r.figures.get("shared_outage")]
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
    values = [float(r.figures["e_bad"]) for r in results if r.figures.get("e_bad") is not None]
    return sum(values) / len(values) if values else None
