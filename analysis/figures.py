"""The numbers a metric's verdict was reached on, as a typed record (`Figures`).

Why a record and not a dict: the judges (`analysis.compare`, `analysis.evaluate`, `analysis.threshold`)
write these numbers and the state machine, the controller's own metrics, the lab and the tests read them.
A typo in a string key would read as "absent" and silently change a decision or a dashboard; a field name
is checked by mypy.

Invariants:
- Every field is optional: a judge fills the ones it has (a threshold judge has no e-values, a custom
  metric has no counts). ``None`` means "not computed", never zero.
- `Figures.to_dict` writes the status annotation's and the log line's ``figures`` object: one key per
  field that is not None, named as the field, plain JSON values (floats and booleans).
- `Figures.from_dict` reads what any earlier version wrote: unknown keys are ignored, a missing key or a
  value of the wrong type (a string where a number belongs, a boolean where a count belongs) is None. It
  never raises, so an old or hand-edited status still loads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True, kw_only=True)
class Figures:
    """One metric's figures at one evaluation (see the module docstring)."""

    # This window's counts (``increase()`` over the window; real-valued).
    canary_total: float | None = None
    canary_bad: float | None = None
    stable_total: float | None = None
    stable_bad: float | None = None
    # The same, summed over the rollout's counted windows (shared-outage windows left out).
    canary_total_sum: float | None = None
    canary_bad_sum: float | None = None
    stable_total_sum: float | None = None
    stable_bad_sum: float | None = None
    # The canary-vs-stable comparison (`analysis.compare`): ratio of bad shares, e-values and bounds.
    ratio: float | None = None
    e_bad: float | None = None
    e_good: float | None = None
    threshold_bad: float | None = None
    threshold_good: float | None = None
    alpha: float | None = None
    beta: float | None = None
    tolerance: float | None = None
    bad_ratio: float | None = None
    shared_outage: bool | None = None
    # Bad shares: the canary's over the rollout (with a ceiling), the stable's in an outage window.
    canary_share: float | None = None
    stable_share: float | None = None
    # The ceiling (highest acceptable canary bad share) and its one-sample e-values.
    ceiling: float | None = None
    e_ceiling_bad: float | None = None
    e_ceiling_good: float | None = None
    # The one-sample comparison against the stable's history (`analysis.history`).
    history_bad: float | None = None
    history_share: float | None = None
    history_share_upper: float | None = None
    history_share_lower: float | None = None
    e_bad_stable: float | None = None
    e_good_stable: float | None = None
    e_bad_history: float | None = None
    e_good_history: float | None = None
    history_frozen: bool | None = None
    # Latency: the quantile asked for, the canary's value of it, the slow-request bound.
    quantile: float | None = None
    latency_quantile_seconds: float | None = None
    slow_above_seconds: float | None = None
    # The sparse rule passed this metric (`analysis.evaluate`).
    sparse: bool | None = None
    # Fresh evidence (`analysis.fresh`): the canary's requests and bad events counted at the current step
    # and weight, in windows that answered; a PASS needs at least max(minRequests, 1) of these requests.
    fresh_canary_requests: float | None = None
    fresh_canary_bad: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The figures as JSON: fields that are not None, under their own names."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: object) -> Figures:
        """Figures from a status written by this or an earlier version (tolerant; module docstring)."""
        if not isinstance(data, Mapping):
            return cls()
        kwargs: dict[str, Any] = {}
        for name in _FLAGS:
            value = data.get(name)
            if isinstance(value, bool):
                kwargs[name] = value
        for name in _NUMBERS:
            value = data.get(name)
            if isinstance(value, int | float) and not isinstance(value, bool):
                try:
                    kwargs[name] = float(value)
                except OverflowError:  # an integer beyond float range: not a figure we wrote
                    continue
        return cls(**kwargs)


# Every figure is a number or a flag (annotations are strings here: ``from __future__ import annotations``).
_FLAGS = frozenset(f.name for f in fields(Figures) if f.type == "bool | None")
_NUMBERS = frozenset(f.name for f in fields(Figures) if f.type == "float | None")
