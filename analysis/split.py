"""The traffic split verified: is the canary really receiving the share of requests its weight says?

Songbird trusts the router to do what it was told; this module checks it. After each weight change the
canary's and the stable's requests counted at the step (the fresh counts of `analysis.fresh`: since the
step started, at its weight, from evaluation windows inside the step, so the ingress controller's reload
after the weight change is behind them) are compared with the weight in force. Pure: counts in, a
`SplitCheck` out; `analysis.decision` holds the rollout on a mismatch.

The bound. With n requests, each reaching the canary with probability p (the weight), the canary count is
Binomial(n, p). For an observed share q, the Chernoff bound P(share <= q) <= exp(-n KL(q || p)) for q < p
(and the same for share >= q, q > p) holds for every n, needs no normal approximation, accepts the
real-valued counts Prometheus' ``increase()`` gives, and is exact at q = 0: (1 - p)^n. A side is flagged
when its bound is at most ``alpha / 2`` with ``alpha`` = `ALPHA` = 1e-6, so under a split that does what
it was told a false alarm comes at most once in a million checks (the bound is conservative; the unit
tests measure it by simulation). 0% at 20% is flagged from n = 66 requests: (0.8)^66 = 4.0e-7 <= 5e-7
(`detectable_from`).

Gross mismatch only. A flag also needs the share to be grossly off: below half the weight, or above the
weight plus half of what is left (`GROSS`): a 20% weight is flagged below 10% or above 60%. What it
guards against: a statistically significant but harmless offset, such as a few requests served at the
previous weight while the ingress controller reloaded, over a very large n. What it costs: a canary
receiving 15% at 20% is never flagged (nor is it a routing fault worth holding a rollout for).

Header and cookie routing (``routing.header`` / ``routing.cookie``) send requests to the canary beyond the
weight, so only a share too LOW is evidence then; and since ``always`` / ``never`` values also let a
client force the stable, a share too low is only flagged when it is grossly low (as above), which holds
as long as requests forcing the stable are under half of all requests.

Sticky sessions (``routing.sticky``): a client keeps the version it first reached, so requests are
correlated and the count is overdispersed: with m requests per client on average, the variance of the
canary count is about (2m - 1) times the binomial one (for geometric session lengths). We only see
requests, not clients, so the bound is widened by the factor `STICKY_DISPERSION` (n is divided by it):
valid for clients sending up to about 12 requests each on average at a step, and still, with the gross
gate, far from a false alarm beyond that. 0% at 20% is then flagged from 66 x 25 = 1,650 requests.

Which requests. Two checks are made at each evaluation: the step's requests (since the step started) and
the last evaluation window's alone (when that window lies inside the step). The window decides when it can
tell (consistent or mismatch), the step's requests otherwise: so a fault is seen at the first window with
enough requests (66 at 20%), a router fixed mid-step clears at the next window with enough requests rather
than after the step's whole history is outweighed, and at low traffic the step's requests add up to a
decision no single window could make. A false alarm then needs either check to fire: at most 2 x ALPHA
per evaluation.

Only enforced built-in metrics' counts are used (not a dry-run metric's: `analysis.dryrun`); a policy with
no enforced built-in metric has no split check.

A check is ``undecided`` while even a share of 0 would not be flagged: too few requests to tell. It never
rolls back anything: a mismatch holds the weight (never advances, never promotes) and clears when the
share comes back inside the bound.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from songbird.analysis import fresh
from songbird.analysis.verdict import MetricResult, WindowCounts
from songbird.config.policy import BUILTIN_METRICS, Policy

ALPHA = 1e-6  # false-alarm probability of one check (both sides together)
GROSS = 0.5  # a flagged share is also off by at least half the room on its side
STICKY_DISPERSION = 25.0  # requests per effective independent draw under sticky sessions

LIKELY_CAUSES = (
    "the canary Ingress has another ingress class than the main one",
    "the annotation prefix differs from the ingress controller's",
    "the ingress controller rejected the canary Ingress",
    "a stale admission webhook",
    "canary-by-header misconfigured",
)


class SplitStatus(StrEnum):
    CONSISTENT = "consistent"  # the share lies inside the bound, with enough requests to tell
    MISMATCH = "mismatch"  # grossly outside the bound: the rollout holds
    UNDECIDED = "undecided"  # too few requests to tell


@dataclass(frozen=True, kw_only=True)
class SplitCheck:
    """One check of the canary's share against the weight in force, at one step."""

    status: SplitStatus
    step: int
    weight: float  # percent in force
    canary: float  # canary requests counted at the step
    stable: float  # stable requests counted at the step
    bound: float | None = None  # the Chernoff bound of the share's tail on its side (None: share = weight)
    dispersion: float = 1.0
    low_only: bool = False  # header/cookie routing: only a share too low is evidence
    basis: str = "step"  # "step": the requests since the step started; "window": the last window's

    @property
    def requests(self) -> float:
        return self.canary + self.stable

    @property
    def share(self) -> float | None:
        """The canary's observed share of requests (0 to 1), None without requests."""
        return self.canary / self.requests if self.requests > 0 else None

    def describe(self) -> str:
        """One line for people: observed against expected."""
        share = "-" if self.share is None else f"{100 * self.share:.1f}%"
        return (
            f"canary received {share} of {self.requests:,.0f} requests "
            f"{'in the last window' if self.basis == 'window' else 'counted'} at step {self.step + 1}, "
            f"expected {self.weight:g}%"
        )

    def reason(self) -> str:
        """Why the rollout holds (a mismatch), naming the likely causes."""
        return (
            f"traffic split mismatch: {self.describe()} (outside the binomial bound: tail "
            f"{self.bound if self.bound is not None else 0:.1e}, at most {ALPHA / 2:g} flagged); likely "
            f"causes: {'; '.join(LIKELY_CAUSES)}; holding the weight (never rolled back for this alone)"
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "status": self.status.value,
            "step": self.step,
            "weight": self.weight,
            "canary": round(self.canary, 1),
            "stable": round(self.stable, 1),
            "dispersion": self.dispersion,
            "basis": self.basis,
        }
        if self.bound is not None:
            out["bound"] = float(f"{self.bound:.3g}")
        if self.low_only:
            out["low_only"] = True
        return out

    @classmethod
    def from_dict(cls, data: object) -> SplitCheck | None:
        """A check from a status; None for anything else (an older status has none)."""
        if not isinstance(data, Mapping):
            return None
        try:
            bound = data.get("bound")
            return cls(
                status=SplitStatus(str(data["status"])),
                step=int(data["step"]),
                weight=float(data["weight"]),
                canary=float(data["canary"]),
                stable=float(data["stable"]),
                bound=None if bound is None else float(bound),
                dispersion=float(data.get("dispersion", 1.0)),
                low_only=data.get("low_only") is True,
                basis="window" if data.get("basis") == "window" else "step",
            )
        except (KeyError, TypeError, ValueError):
            return None


def kl(q: float, p: float) -> float:
    """Kullback-Leibler divergence of Bernoulli(q) from Bernoulli(p), in nats (inf where p cannot
    produce q)."""

    def term(a: float, b: float) -> float:
        if a <= 0.0:
            return 0.0
        if b <= 0.0:
            return math.inf
        return a * math.log(a / b)

    return term(q, p) + term(1.0 - q, 1.0 - p)


def tail_bound(canary: float, n: float, p: float) -> float:
    """The Chernoff bound of the probability of a share at least as far from ``p`` as ``canary / n``, on
    its side (1 when the share equals p or n is 0)."""
    if n <= 0:
        return 1.0
    return math.exp(-n * kl(min(max(canary / n, 0.0), 1.0), p))


def detectable_from(p: float, *, alpha: float = ALPHA, dispersion: float = 1.0) -> int:
    """The fewest requests at which a canary receiving none at weight ``p`` (0 to 1) is flagged."""
    return math.ceil(dispersion * math.log(2.0 / alpha) / -math.log1p(-p))


def check(
    *,
    step: int,
    weight: float,
    canary: float,
    stable: float,
    low_only: bool = False,
    dispersion: float = 1.0,
    alpha: float = ALPHA,
    gross: float = GROSS,
) -> SplitCheck:
    """Compare ``canary`` of ``canary + stable`` requests with ``weight`` percent (module docstring)."""
    p = min(max(weight / 100.0, 0.0), 1.0)
    canary = canary if math.isfinite(canary) and canary > 0 else 0.0
    stable = stable if math.isfinite(stable) and stable > 0 else 0.0
    n = canary + stable
    n_eff = n / dispersion
    base = SplitCheck(
        status=SplitStatus.UNDECIDED,
        step=step,
        weight=weight,
        canary=canary,
        stable=stable,
        dispersion=dispersion,
        low_only=low_only,
    )
    if n <= 0 or p <= 0.0:
        return base
    q = canary / n
    low_side = q < p
    bound = tail_bound(n_eff * q, n_eff, p) if q != p else None
    checked = low_side or not low_only
    grossly = q < p * (1.0 - gross) if low_side else q > p + (1.0 - p) * gross
    if bound is not None and checked and grossly and bound <= alpha / 2.0:
        return replace(base, status=SplitStatus.MISMATCH, bound=bound)
    # Enough requests to tell? A canary receiving none would be flagged (the fault that matters most).
    can_tell = tail_bound(0.0, n_eff, p) <= alpha / 2.0
    return replace(base, status=SplitStatus.CONSISTENT if can_tell else SplitStatus.UNDECIDED, bound=bound)


def counted(
    policy: Policy, evidence: Mapping[str, Mapping[str, float]], *, step: int, weight: float
) -> fresh.Fresh | None:
    """The requests counted at the step: the fresh counts of the first enforced built-in metric that has
    any at this step and weight (every built-in counts all requests of each version), None without one."""
    for metric in policy.analysis.metrics:
        if metric.name not in BUILTIN_METRICS or metric.query is not None or metric.dry_run:
            continue
        at_step = fresh.Fresh.of(evidence.get(metric.name, {}), step=step, weight=weight)
        if at_step.canary_total + at_step.stable_total > 0:
            return at_step
    return None


def window(results: Iterable[MetricResult]) -> WindowCounts | None:
    """The last evaluation window's requests of each version, from the first enforced built-in metric
    that has them (custom metrics carry no counts)."""
    for r in results:
        if r.dry_run:
            continue
        f = r.figures
        if f.canary_total is not None and f.stable_total is not None and not f.shared_outage:
            return WindowCounts(
                canary_total=f.canary_total, canary_bad=0.0, stable_total=f.stable_total, stable_bad=0.0
            )
    return None


def verify(
    policy: Policy,
    evidence: Mapping[str, Mapping[str, float]],
    *,
    step: int,
    weight: float,
    last_window: WindowCounts | None = None,
) -> SplitCheck:
    """The check of the requests at the step against ``weight`` under ``policy``'s routing: the last
    window's (``last_window``, when it lies inside the step) when it can tell, else the step's."""
    at_step = counted(policy, evidence, step=step, weight=weight)
    routing = policy.routing
    low_only = routing.header is not None or routing.cookie is not None
    dispersion = STICKY_DISPERSION if routing.sticky else 1.0
    by_step = check(
        step=step,
        weight=weight,
        canary=at_step.canary_total if at_step else 0.0,
        stable=at_step.stable_total if at_step else 0.0,
        low_only=low_only,
        dispersion=dispersion,
    )
    if last_window is None:
        return by_step
    by_window = check(
        step=step,
        weight=weight,
        canary=last_window.canary_total,
        stable=last_window.stable_total,
        low_only=low_only,
        dispersion=dispersion,
    )
    if by_window.status is SplitStatus.UNDECIDED:
        return by_step
    return replace(by_window, basis="window")
