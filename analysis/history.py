"""The one-sample part of the canary-vs-stable judge (`analysis.compare`): the canary against the stable's
history, run beside the two-sample comparison.

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
* windows of a detected shared outage are left out of every sum (`analysis.compare.stable_failing`);
* a CUSUM on the stable's windows against p_hi (Page, 1954; alternatives ``DRIFT_MULTIPLES`` x p_hi) watches
  for the stable drifting above its history. Once it goes above ln ``GATE``, an episode starts: until the
  CUSUM is back at zero the one-sample part counts only with its value from before the episode, and when
  the episode ends the one-sample sums fall back to that value unless they fell meanwhile, so canary
  errors served while the stable looked unlike its history never count against the canary. When the
  CUSUM reaches ln ``FREEZE`` the one-sample part is frozen for the rest of the rollout and the verdicts
  rest on the two-sample comparison alone. The gate is high (ln 1000) because a stable just like its
  history crosses a low one by chance every few minutes, and each false episode throws away the canary's
  evidence gathered meanwhile (measured with the gate at ln 10: ratio-2 regressions at 50 req/s caught
  in 92% of runs, 99% with ln 1000, no change in false rollbacks). Fast, large drifts are the next
  rule's job;
* a canary window's rollback terms do not count while the stable's recent counts (the last few windows,
  decaying by ``RECENT_DECAY`` per window) are more likely under a surge (``SURGE_MULTIPLE`` x p_hi) than
  under its history. A stable failing at three times its history thus stops the one-sample part within a
  window or two, before the canary failing like it is blamed;
* a canary window's rollback terms count only once the stable has vouched for them: at once when the
  stable's recent counts hold at least ``MIN_RECENT_STABLE`` requests, otherwise they wait (summed under
  ``one-bad-pending``) until the stable has served ``CONFIRM_STABLE`` requests since, and are dropped if a
  surge shows meanwhile. At 1 req/s a 15 s window holds a handful of stable requests: a failure of 10%
  of all requests often leaves them all clean, and the canary's failures would then look exactly like a
  regression; waiting for the stable's next requests catches the outage there too (measured over 3000
  benchmark runs at 1 req/s: 0.33% of shared outages rolled back; 1.4% in an earlier measurement, with
  windows counted at once and the surge rule at 10x).
Windows are left out on the stable's counts alone, which are independent of the canary's given the rates,
and the other steps only ever lower the one-sample sums or use a value they had before, so every value
counted is at most one the plain one-sample process over the counted windows took: the false-rollback
bound under a stationary stable is unchanged. The gate and the freeze apply to the promotion side too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

from songbird.analysis import evidence as ev
from songbird.analysis.params import CompareParams
from songbird.analysis.verdict import WindowCounts

HISTORY_TOTAL = "history:total"
HISTORY_BAD = "history:bad"
HISTORY_SECONDS = "history:seconds"
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
GATE = 1000.0
FREEZE = 1e4
RECENT_STABLE = "history:recent-stable"  # stable requests of the last windows, decaying by RECENT_DECAY
RECENT_STABLE_BAD = "history:recent-stable-bad"  # and their bad events
SURGE_MULTIPLE = 4.0
SHRINK_REQUESTS = 2000.0  # weight of p_hi, in stable requests, against the stable's concurrent share
RECENT_DECAY = 0.75
MIN_RECENT_STABLE = 100.0
PENDING = "one-bad-pending"  # rollback terms of the windows the stable has not vouched for yet
PENDING_STABLE = "history:pending-stable"  # stable requests served since the first of those windows
CONFIRM_STABLE = 20.0


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
        return _history(
            n,
            x,
            alpha=params.alpha,
            beta=params.beta,
            tolerance=params.tolerance,
            bad_ratio=params.bad_ratio,
            bad_alternatives=params.bad_alternatives,
            good_alternatives=params.good_alternatives,
            n_metrics=n_metrics,
        )


@lru_cache(maxsize=1024)
def _history(
    n: float,
    x: float,
    *,
    alpha: float,
    beta: float,
    tolerance: float,
    bad_ratio: float,
    bad_alternatives: tuple[float, ...],
    good_alternatives: tuple[float, ...],
    n_metrics: int,
) -> History:
    """`History.of` for one history and policy: the same at every window of a rollout, so computed once."""
    upper = ev.share_bound(n, x, HISTORY_SHARE * alpha / n_metrics, upper=True)
    lower = ev.share_bound(n, x, HISTORY_SHARE * beta, upper=False)
    bad = tuple(r for r in bad_alternatives if r * upper < 1) if tolerance * upper < 1 else ()
    good = tuple(r for r in good_alternatives if r * lower > 0) if bad_ratio * lower < 1 else ()
    return History(
        bad=min(x, n), share=min(x, n) / n, upper=upper, lower=lower, bad_ratios=bad, good_ratios=good
    )


def add_window(
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
    # The one-sample base: p_hi, or the stable's concurrent share shrunk toward it when that is higher.
    n_cum, x_cum = out.get(ev.STABLE_TOTAL, 0.0), out.get(ev.STABLE_BAD, 0.0)
    base_bad = max(hist.upper, (x_cum + SHRINK_REQUESTS * hist.upper) / (n_cum + SHRINK_REQUESTS))
    # This window's rollback terms wait (with any earlier ones still waiting) until the stable has served
    # enough requests since then to vouch for them, and are dropped when it shows a surge meanwhile.
    for r in hist.bad_ratios:
        if r * base_bad < 1:
            k = ev.key(PENDING, r)
            p0 = params.tolerance * base_bad
            out[k] = out.get(k, 0.0) + ev.window_log_ceiling(r * base_bad, p0, n=n_c, x=x_c)
    out[PENDING_STABLE] = out.get(PENDING_STABLE, 0.0) + n_s
    confirmed = recent >= MIN_RECENT_STABLE or out[PENDING_STABLE] >= CONFIRM_STABLE
    if suspect or confirmed:
        for r in hist.bad_ratios:
            k = ev.key(PENDING, r)
            if not suspect:
                one = ev.key(ONE_BAD, r)
                out[one] = out.get(one, 0.0) + out.get(k, 0.0)
            out[k] = 0.0
        out[PENDING_STABLE] = 0.0
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


def one_sample_logs(
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


def blend(log_one: float | None, log_two: float) -> float:
    """ln of (1 - HISTORY_SHARE) (w E_one + (1 - w) E_two); E_two alone without a one-sample part."""
    if log_one is None:
        return log_two
    w = ONE_SAMPLE_WEIGHT
    top = max(log_one, log_two)
    mixed = w * math.exp(log_one - top) + (1 - w) * math.exp(log_two - top)
    return math.log(1 - HISTORY_SHARE) + top + math.log(mixed)
