"""How long a healthy canary will take to earn promotion at the observed traffic, said before the rollout.

Pure. From the stable's request rate and bad-event share (measured before any traffic moves) and the
policy's schedule, it walks the steps, accumulating the canary requests each step would see, until the
promotion evidence is expected to be reached:
- canary-vs-stable: about ln(1/beta) / KL(p0 || badRatio p0) canary requests (`analysis.evidence`): the
  pace of the one-sample comparison with the stable's pre-rollout history (`analysis.compare`); without
  that history the comparison with the stable's concurrent windows alone is slower at high weights;
- with a ceiling (the metric's ``max``), also ln(1/beta) / KL(p0 || ceiling);
- when the stable shows no bad events at all there is nothing to compare, and the ceiling (or
  ``minRequests``) decides, as the judge's sparse rule does.
These are expectations (Wald's approximations), not bounds; the point is to tell a user up front when low
traffic means the honest outcome will be INCONCLUSIVE.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from songbird.analysis.evidence import certification_requests, kl_bernoulli
from songbird.config.fields import format_duration
from songbird.config.policy import Policy


@dataclass(frozen=True, kw_only=True)
class Forecast:
    metric: str
    requests: float  # canary requests needed (inf: never, at this traffic)
    seconds: float  # from the first step (inf: never)
    step: int | None  # 0-based step during which it is expected (None: after the schedule)


def requests_needed(
    *, p0: float, ceiling: float | None, bad_ratio: float, beta: float, min_requests: int
) -> float:
    ratio = certification_requests(p0=p0, bad_ratio=bad_ratio, beta=beta) if p0 > 0 else math.inf
    ceil = math.inf
    if ceiling is not None and p0 < ceiling:
        ceil = math.log(1 / beta) / kl_bernoulli(p0, ceiling)
    if math.isinf(ratio):  # no bad events to compare: the ceiling or minRequests decides (sparse rule)
        needed = ceil if ceiling is not None else float(min_requests)
    else:
        needed = ratio if ceiling is None else max(ratio, ceil)
    return max(needed, float(min_requests))


def walk(policy: Policy, *, rate: float, needed: float) -> tuple[float, int | None]:
    """Seconds into the rollout when ``needed`` canary requests have been served, and in which step."""
    if math.isinf(needed) or rate <= 0:
        return math.inf, None
    served, elapsed = 0.0, 0.0
    for i, weight in enumerate(policy.steps):
        per_second = rate * weight / 100.0
        if served + per_second * policy.interval >= needed:
            return elapsed + (needed - served) / per_second, i
        served += per_second * policy.interval
        elapsed += policy.interval
    return elapsed + (needed - served) / (rate * policy.steps[-1] / 100.0), None


def forecast(
    policy: Policy, *, rate: float, shares: Mapping[str, float], ceilings: Mapping[str, float | None]
) -> list[Forecast]:
    compare = policy.analysis.compare
    out = []
    for name, p0 in shares.items():
        needed = requests_needed(
            p0=p0,
            ceiling=ceilings.get(name),
            bad_ratio=compare.bad_ratio,
            beta=compare.missed_regression,
            min_requests=policy.analysis.min_requests,
        )
        seconds, step = walk(policy, rate=rate, needed=needed)
        out.append(Forecast(metric=name, requests=needed, seconds=seconds, step=step))
    return out


def describe(policy: Policy, items: list[Forecast], *, rate: float) -> str:
    """One line for the status and the log."""
    if not items:
        return "no built-in metric to forecast"
    nominal = policy.interval * len(policy.steps)
    worst = max(items, key=lambda f: f.seconds)
    parts = [f"{f.metric} ~{f.requests:,.0f} canary requests" for f in items]
    head = f"at {rate:.3g} req/s: " + ", ".join(parts)
    if math.isinf(worst.seconds):
        return f"{head}; promotion evidence cannot be reached at this traffic: expect INCONCLUSIVE"
    when = format_duration(round(worst.seconds))
    if worst.step is not None:
        return (
            f"{head}; promotion evidence expected after ~{when} (step {worst.step + 1}, schedule "
            f"{format_duration(nominal)})"
        )
    extra = worst.seconds - nominal
    verdict = "within" if extra <= policy.analysis.compare.max_wait else "beyond"
    return (
        f"{head}; promotion evidence expected after ~{when}, {format_duration(round(extra))} past the "
        f"schedule ({verdict} maxWait {format_duration(policy.analysis.compare.max_wait)})"
    )
