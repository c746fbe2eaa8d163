"""What the canary-vs-stable judge reads from the policy's ``analysis.compare``, with its grids."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from songbird.analysis import evidence as ev
from songbird.config.policy import Compare


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
