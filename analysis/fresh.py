"""Fresh evidence: what a built-in metric's PASS must rest on, besides the anytime-valid comparison.

The comparison's e-processes (`analysis.compare`, `analysis.history`) run over the whole rollout, which is
what keeps their error bounds: a window with no data multiplies them by exactly 1. That is right for the
bounds and wrong for a PASS on its own: a rollout whose canary was seen only at 10% would be certified at
50% by windows in which Prometheus said nothing, and promoted ("0 in 1000 canary requests", all at 10%).

Fresh, for one metric: the canary's (and the stable's) requests and bad events counted
- since the current step started, at the current weight (the step index and the weight in force when the
  window was judged; a new step or weight starts from zero);
- only in evaluation windows that lie inside the step: a window reaching back before the step started
  (after a missed tick or a restart) holds traffic at the previous weight and is left out;
- only in windows whose queries for that metric all answered with finite, non-negative counts (any other
  answer is ERROR in `analysis.observe` and the judge adds nothing from it);
- shared-outage windows left out, as from every other sum (`analysis.compare.stable_failing`).

The rule (applied by `analysis.evaluate.judge` to every built-in metric's PASS, the sparse rule's included):
a PASS stands only when the canary has served at least ``max(minRequests, 1)`` fresh requests and the
current window answered with canary requests in it; otherwise the verdict is INCONCLUSIVE and says why.
Why ``minRequests``: it is the policy's own statement of how much canary traffic a PASS needs, so one knob
says it for both routes to a PASS (the comparison and the sparse rule) and the sparse rule can never be
weaker than the comparison; at the weight being certified it costs ``minRequests / (rate x weight)``
seconds, which is what seeing the canary at that weight takes (measured on the decision benchmark: nothing
from 10 req/s up, where a 15 s window at the last weight already holds more). Why the current window must
hold canary requests: at a weight above 0, a canary answer of nothing is a lost series or no traffic, and
neither says anything about the canary now. The rule only ever turns a PASS into INCONCLUSIVE: the
rollback side (FAIL, decisive or not, the mean rule) is untouched, so the false-rollback bound alpha is
unchanged, and fewer PASSes can only lower the chance of promoting a regression.

The sums live in the metric's persisted evidence under the ``fresh:`` keys below: a fixed set of six, so
the status stays bounded however long the rollout.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from songbird.analysis import evidence as ev
from songbird.analysis.verdict import WindowCounts

STEP = "fresh:step"
WEIGHT = "fresh:weight"
CANARY_TOTAL = "fresh:canary:total"
CANARY_BAD = "fresh:canary:bad"
STABLE_TOTAL = "fresh:stable:total"
STABLE_BAD = "fresh:stable:bad"
KEYS = (STEP, WEIGHT, CANARY_TOTAL, CANARY_BAD, STABLE_TOTAL, STABLE_BAD)


@dataclass(frozen=True, kw_only=True)
class Fresh:
    """One metric's fresh counts at the current step (module docstring)."""

    canary_total: float = 0.0
    canary_bad: float = 0.0
    stable_total: float = 0.0
    stable_bad: float = 0.0

    @classmethod
    def of(cls, sums: Mapping[str, float], *, step: int, weight: float) -> Fresh:
        """The fresh counts kept in ``sums``, or none when they were counted at another step or weight."""
        if sums.get(STEP) != step or sums.get(WEIGHT) != weight:
            return cls()
        return cls(
            canary_total=sums.get(CANARY_TOTAL, 0.0),
            canary_bad=sums.get(CANARY_BAD, 0.0),
            stable_total=sums.get(STABLE_TOTAL, 0.0),
            stable_bad=sums.get(STABLE_BAD, 0.0),
        )


def counted(
    sums: Mapping[str, float], counts: WindowCounts | None, *, step: int, weight: float
) -> dict[str, float]:
    """``sums`` with the fresh counts moved to this step and weight, plus ``counts`` (a new dict).

    ``counts`` is None for a window that adds nothing (it began before the step, or was a shared outage);
    the fresh counts of an earlier step or weight are dropped either way.
    """
    before = Fresh.of(sums, step=step, weight=weight)
    out = dict(sums)
    out[STEP], out[WEIGHT] = float(step), weight
    out[CANARY_TOTAL], out[CANARY_BAD] = before.canary_total, before.canary_bad
    out[STABLE_TOTAL], out[STABLE_BAD] = before.stable_total, before.stable_bad
    if counts is not None:
        out[CANARY_TOTAL] += ev.usable(counts.canary_total)
        out[CANARY_BAD] += ev.usable(counts.canary_bad)
        out[STABLE_TOTAL] += ev.usable(counts.stable_total)
        out[STABLE_BAD] += ev.usable(counts.stable_bad)
    return out


def needed(min_requests: int) -> float:
    """Fresh canary requests a PASS needs (module docstring)."""
    return float(max(min_requests, 1))
