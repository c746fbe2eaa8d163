"""Anytime-valid evidence about a canary: the e-processes behind Songbird's verdicts (pure math).

Two constructions, both products of per-window likelihood ratios mixed over a fixed grid of alternatives:

* Canary versus stable. In window k the canary served ``n_c`` requests with ``x_c`` bad events (5xx, or
  slower than a latency threshold) and the stable ``n_s`` with ``x_s``. Let r be the ratio of the canary's
  bad-event rate to the stable's. Given the window's counts, each bad event is the canary's with probability
  ``theta_k(r) = r n_c / (r n_c + n_s)``, so the window's log-likelihood ratio of r against a null r0 is

      l_k(r) = x_c ln(theta_k(r) / theta_k(r0)) + x_s ln((1 - theta_k(r)) / (1 - theta_k(r0)))
             = x_c ln(r / r0) + (x_c + x_s) ln((r0 n_c + n_s) / (r n_c + n_s)).

  Rollback evidence ``E_bad`` is the mean over alternatives r_j above the tolerated ratio of
  ``exp(sum_k l_k(r_j))`` with r0 = tolerance; promotion evidence ``E_good`` is the same with r0 = badRatio
  and alternatives below it. This is the conditional (binomial) form of the Poisson rate comparison used by
  Lindon, Sanden and Shirikian for canaries (KDD 2022, "Rapid regression detection in software
  deployments through sequential testing").
* Canary against an absolute ceiling p_max (one-sample): ``x`` bad events in ``n`` canary requests,
  ``l_k(p) = x ln(p / p0) + (n - x) ln((1 - p) / (1 - p0))``; rollback evidence mixes alternatives above
  p_max (null p0 = p_max), certification mixes alternatives below it.

Why it is valid: under the null each window's likelihood ratio has conditional expectation at most 1
(the binomial family has a monotone likelihood ratio, so every r <= r0 is covered, not only r = r0), the
product over windows is a nonnegative supermartingale (Wald's likelihood ratio martingale), a mean of
such processes is one too, and by Ville's inequality P(sup_t E_t >= 1/alpha) <= alpha. A healthy canary is
therefore rolled back with probability at most alpha over the whole rollout, however often it is looked
at, whatever the weights do (Johari, Pekelis and Walsh, "Always valid inference", 2017/2022).

Invariants kept here:
* windows without canary requests, without stable requests, or without bad events contribute a factor of
  exactly 1 (their log sums are unchanged): no data is never evidence;
* counts may be real-valued (Prometheus ``increase()`` extrapolates); NaN or negative counts are no data;
* the persisted state is a flat ``dict[str, float]`` of per-alternative log sums with keys such as
  ``"bad:2"``, ``"good:0.5"``, ``"ceil-bad:0.02"``, ``"ceil-good:0.005"``; it round-trips through JSON
  and never holds an infinity or a NaN;
* evidence is computed as a log-mean-exp, so no sum overflows however long the rollout.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache

# Alternatives of the rollback mixture (canary/stable ratios); only those above the tolerance are used.
ROLLBACK_RATIOS: tuple[float, ...] = (1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0)
# Prior weights of the one-sample rollback alternatives (`analysis.compare`): more on the small ratios,
# whose evidence grows slowly (a weight w costs ln(1/w) nats, paid in canary requests at the rate KL of
# the alternative), less on the large ones, which a few bad events decide anyway.
ROLLBACK_WEIGHTS: dict[float, float] = {
    1.5: 0.15,
    2.0: 0.25,
    3.0: 0.2,
    5.0: 0.15,
    10.0: 0.13,
    20.0: 0.07,
    50.0: 0.05,
}
# Alternatives of the promotion mixture; only those below badRatio are used.
PROMOTION_RATIOS: tuple[float, ...] = (0.5, 1.0, 1.5)
# Ceiling alternatives, as multiples of p_max (kept only while below 1).
CEILING_BAD_MULTIPLES: tuple[float, ...] = (1.5, 2.0, 3.0, 5.0, 10.0, 20.0)
CEILING_GOOD_MULTIPLES: tuple[float, ...] = (0.25, 0.5, 0.75)

BAD = "bad"
GOOD = "good"
CEIL_BAD = "ceil-bad"
CEIL_GOOD = "ceil-good"
# Running totals kept beside the log sums (outage windows excluded).
CANARY_TOTAL = "canary:total"
CANARY_BAD = "canary:bad"
STABLE_TOTAL = "stable:total"
STABLE_BAD = "stable:bad"

# Exponents beyond this are reported as exp(LOG_CAP): far past any threshold, still finite JSON.
LOG_CAP = 690.0


@lru_cache(maxsize=1024)
def key(prefix: str, value: float) -> str:
    """The state key of one alternative, e.g. ``key("bad", 2.0) == "bad:2"``."""
    return f"{prefix}:{value:g}"


def usable(value: float) -> float:
    """A count as the formulas accept it: NaN and negative values (broken extrapolation) become 0."""
    return value if value > 0 and math.isfinite(value) else 0.0


def theta(r: float, n_c: float, n_s: float) -> float:
    """Probability that one of the window's bad events is the canary's, when the rate ratio is r."""
    return r * n_c / (r * n_c + n_s)


def window_log_ratio(r: float, r0: float, *, n_c: float, x_c: float, n_s: float, x_s: float) -> float:
    """l_k(r) against r0 for one window; 0 when the window has no canary, no stable or no bad events."""
    n_c, x_c, n_s, x_s = usable(n_c), usable(x_c), usable(n_s), usable(x_s)
    if n_c == 0 or n_s == 0 or x_c + x_s == 0:
        return 0.0
    q = n_c / n_s
    return x_c * math.log(r / r0) + (x_c + x_s) * (math.log1p(r0 * q) - math.log1p(r * q))


def window_log_ceiling(p: float, p0: float, *, n: float, x: float) -> float:
    """One-sample log-likelihood ratio of bad-event probability p against p0 for one window (0 if n == 0)."""
    n = usable(n)
    if n == 0:
        return 0.0
    x = min(usable(x), n)
    return x * math.log(p / p0) + (n - x) * (math.log1p(-p) - math.log1p(-p0))


@lru_cache(maxsize=256)
def rollback_grid(tolerance: float, ratios: tuple[float, ...] = ROLLBACK_RATIOS) -> tuple[float, ...]:
    """The rollback alternatives strictly above the tolerated ratio."""
    grid = tuple(r for r in ratios if r > tolerance)
    if not grid:
        raise ValueError(f"no rollback alternative above tolerance {tolerance:g}")
    return grid


@lru_cache(maxsize=256)
def promotion_grid(bad_ratio: float, ratios: tuple[float, ...] = PROMOTION_RATIOS) -> tuple[float, ...]:
    """The promotion alternatives strictly below badRatio."""
    grid = tuple(r for r in ratios if r < bad_ratio)
    if not grid:
        raise ValueError(f"no promotion alternative below badRatio {bad_ratio:g}")
    return grid


@lru_cache(maxsize=256)
def ceiling_grids(p_max: float) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(alternatives above p_max, alternatives below it) for the one-sample ceiling e-process."""
    if not 0 < p_max < 1:
        raise ValueError(f"a ceiling is a share in (0, 1), got {p_max:g}")
    above = tuple(m * p_max for m in CEILING_BAD_MULTIPLES if m * p_max < 1)
    if not above:  # p_max close to 1: a single alternative halfway to 1
        above = ((1 + p_max) / 2,)
    below = tuple(m * p_max for m in CEILING_GOOD_MULTIPLES)
    return above, below


def add_ratio_window(
    sums: Mapping[str, float],
    *,
    tolerance: float,
    bad_ratio: float,
    bad_alternatives: Sequence[float],
    good_alternatives: Sequence[float],
    n_c: float,
    x_c: float,
    n_s: float,
    x_s: float,
) -> dict[str, float]:
    """Sums after one more canary-vs-stable window (a new dict; ``sums`` is not changed)."""
    out = dict(sums)
    for r in bad_alternatives:
        k = key(BAD, r)
        out[k] = out.get(k, 0.0) + window_log_ratio(r, tolerance, n_c=n_c, x_c=x_c, n_s=n_s, x_s=x_s)
    for r in good_alternatives:
        k = key(GOOD, r)
        out[k] = out.get(k, 0.0) + window_log_ratio(r, bad_ratio, n_c=n_c, x_c=x_c, n_s=n_s, x_s=x_s)
    return out


def add_ceiling_window(sums: Mapping[str, float], *, p_max: float, n: float, x: float) -> dict[str, float]:
    """Sums after one more window of the one-sample e-process against the ceiling p_max."""
    above, below = ceiling_grids(p_max)
    out = dict(sums)
    for p in above:
        k = key(CEIL_BAD, p)
        out[k] = out.get(k, 0.0) + window_log_ceiling(p, p_max, n=n, x=x)
    for p in below:
        k = key(CEIL_GOOD, p)
        out[k] = out.get(k, 0.0) + window_log_ceiling(p, p_max, n=n, x=x)
    return out


def log_mean_exp(values: Iterable[float]) -> float:
    """ln(mean(exp(v))) without overflow."""
    vs = list(values)
    if not vs:
        raise ValueError("log_mean_exp of nothing")
    top = max(vs)
    return top + math.log(sum(math.exp(v - top) for v in vs) / len(vs))


def log_evidence(
    sums: Mapping[str, float],
    prefix: str,
    alternatives: Sequence[float],
    weights: Mapping[float, float] | None = None,
) -> float:
    """ln E for the mixture over ``alternatives``; a missing key counts as 0 (E = 1).

    Equal weights by default; ``weights`` (alternative -> weight) are renormalised over ``alternatives``,
    so a grid cut by the null's side keeps a proper mixture.
    """
    if weights is None:
        return log_mean_exp(sums.get(key(prefix, a), 0.0) for a in alternatives)
    w = [weights.get(a, 0.0) for a in alternatives]
    total = sum(w)
    if total <= 0:
        raise ValueError("the alternatives have no weight")
    logs = [
        sums.get(key(prefix, a), 0.0) + math.log(wi / total)
        for a, wi in zip(alternatives, w, strict=True)
        if wi > 0
    ]
    top = max(logs)
    return top + math.log(sum(math.exp(v - top) for v in logs))


def evidence(log_e: float) -> float:
    """E from ln E, capped at exp(LOG_CAP) so figures stay finite."""
    return math.exp(min(log_e, LOG_CAP))


def kl_bernoulli(a: float, b: float) -> float:
    """KL(a || b) = a ln(a/b) + (1-a) ln((1-a)/(1-b)) in nats, for shares a in [0, 1], b in (0, 1)."""
    out = 0.0
    if a > 0:
        out += a * math.log(a / b)
    if a < 1:
        out += (1 - a) * math.log((1 - a) / (1 - b))
    return out


@lru_cache(maxsize=4096)
def share_bound(n: float, x: float, delta: float, *, upper: bool) -> float:
    """Chernoff (KL) confidence bound on a binomial share from ``x`` bad events in ``n`` requests.

    The upper bound is the largest q >= x/n with n KL(x/n || q) <= ln(1/delta), the lower bound the smallest
    q <= x/n with the same property; by the Chernoff-Hoeffding inequality the true share lies above the
    upper bound (below the lower bound) with probability at most delta. Without requests the bounds are 1
    and 0: nothing is known.
    """
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta:g}")
    n = usable(n)
    if n == 0:
        return 1.0 if upper else 0.0
    share = min(usable(x), n) / n
    level = math.log(1 / delta) / n
    lo, hi = (share, 1.0) if upper else (0.0, share)
    if (upper and share >= 1) or (not upper and share <= 0):
        return share
    for _ in range(64):
        mid = (lo + hi) / 2
        inside = kl_bernoulli(share, mid) <= level
        if upper:
            lo, hi = (mid, hi) if inside else (lo, mid)
        else:
            lo, hi = (lo, mid) if inside else (mid, hi)
    return hi if upper else lo


def certification_requests(*, p0: float, bad_ratio: float, beta: float) -> float:
    """About how many canary requests it takes to certify that the canary is not ``bad_ratio`` times worse.

    ln(1/beta) / KL(p0 || bad_ratio p0): the expected drift of the promotion e-process per canary request
    for a canary exactly as good as the stable (Wald's approximation; the mixture costs a little more).
    Infinite when the stable has no bad events (p0 == 0): there is nothing to compare.
    """
    if p0 <= 0 or bad_ratio * p0 >= 1:
        return math.inf
    return math.log(1 / beta) / kl_bernoulli(p0, bad_ratio * p0)


def certification_seconds(
    *, p0: float, rate: float, weight_percent: float, bad_ratio: float, beta: float
) -> float:
    """Predicted seconds to certify a healthy canary at a constant weight (percent) and request rate (req/s).

    ln(1/beta) / (rate x weight x KL(p0 || bad_ratio p0)), with p0 the stable's observed bad share. Shown
    before a rollout: at low traffic the honest prediction is hours, and the outcome will be INCONCLUSIVE.
    """
    per_second = rate * weight_percent / 100.0
    if per_second <= 0:
        return math.inf
    return certification_requests(p0=p0, bad_ratio=bad_ratio, beta=beta) / per_second
