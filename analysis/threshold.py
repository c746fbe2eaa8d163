"""The absolute-limit judge: one `analysis.observe.MetricObservation` against the policy's ``max``/``min``.

Verdicts (``analysis.verdict``):
- ERROR when the metric could not be observed (Prometheus did not answer, a query was refused);
- INCONCLUSIVE when a built-in metric's canary served fewer than ``minRequests`` requests in the window, or
  a custom query (or the latency quantile) returned no data: no data is never a FAIL;
- FAIL when the value is above ``max`` (or below ``min``), PASS otherwise. A value equal to the limit passes:
  ``max`` is the highest acceptable value.
- A built-in metric with no absolute limit PASSES here ("no absolute limit") once it has enough requests;
  the canary-vs-stable comparison (`analysis.compare`) judges it further.

What is compared: for ``error-rate`` the canary's 5xx share of its requests in the window; for ``latency``
with ``quantile`` and ``max``, the canary's quantile in seconds (``max`` without ``quantile`` is only the
slow-request threshold of the comparison, not a limit here); for a custom metric, its query's number.

Reasons are for people and exact: the figures they print are those compared, with enough digits that a
FAIL never reads "0.01 > max 0.01". Pure: no I/O, no clock.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from songbird.analysis.figures import Figures
from songbird.analysis.verdict import MetricResult, Verdict
from songbird.config.policy import MetricSpec

if TYPE_CHECKING:  # only the type: importing analysis.observe would load the Prometheus adapter
    from songbird.analysis.observe import MetricObservation


def _digits(value: float, other: float | None = None) -> str:
    """``value`` to 3 significant digits, more when needed to look different from ``other``."""
    text = f"{value:.3g}"
    if other is not None and value != other:
        for digits in range(3, 16):
            text = f"{value:.{digits}g}"
            if text != f"{other:.{digits}g}":
                break
    return text


def _requests(n: float) -> str:
    count = round(n)
    return f"{count:,} request" + ("" if count == 1 else "s")


def _quantile_label(q: float) -> str:
    return f"p{q * 100:g}"


def _against_limits(
    spec: MetricSpec, label: str, value: float, unit: str, context: str
) -> tuple[Verdict, str, float | None]:
    """Compare with max, then min; the reason names the limit that decided."""
    if spec.max is not None and value > spec.max:
        return (
            Verdict.FAIL,
            f"{label} {_digits(value, spec.max)}{unit} > max {_digits(spec.max)}{unit}{context}",
            spec.max,
        )
    if spec.min is not None and value < spec.min:
        return (
            Verdict.FAIL,
            f"{label} {_digits(value, spec.min)}{unit} < min {_digits(spec.min)}{unit}{context}",
            spec.min,
        )
    bounds = [
        f"max {_digits(spec.max)}{unit}" if spec.max is not None else "",
        f"min {_digits(spec.min)}{unit}" if spec.min is not None else "",
    ]
    within = " and ".join(b for b in bounds if b)
    limit = spec.max if spec.max is not None else spec.min
    if not within:
        return Verdict.PASS, f"{label} {_digits(value)}{unit}: no absolute limit{context}", None
    return Verdict.PASS, f"{label} {_digits(value)}{unit} within {within}{context}", limit


def judge_threshold(observation: MetricObservation, spec: MetricSpec, *, min_requests: int) -> MetricResult:
    """The verdict of one metric against its absolute limits (see the module docstring)."""
    name = spec.name
    if observation.error is not None:
        return MetricResult(
            name=name, verdict=Verdict.ERROR, reason=f"{name}: no answer: {observation.error}"
        )

    counts = observation.counts
    if counts is None:  # a custom metric
        if observation.value is None:
            return MetricResult(
                name=name, verdict=Verdict.INCONCLUSIVE, reason=f"{name}: query returned no data"
            )
        verdict, reason, limit = _against_limits(spec, name, observation.value, "", "")
        return MetricResult(name=name, verdict=verdict, reason=reason, value=observation.value, limit=limit)

    n_c, n_s = counts.canary_total, counts.stable_total
    figures = Figures(
        canary_bad=counts.canary_bad,
        stable_bad=counts.stable_bad,
        slow_above_seconds=None if observation.bucket is None else observation.bucket.bound,
    )
    if n_c < min_requests:
        return MetricResult(
            name=name,
            verdict=Verdict.INCONCLUSIVE,
            figures=figures,
            canary_requests=n_c,
            stable_requests=n_s,
            reason=f"{name}: canary served {_requests(n_c)} < minRequests {min_requests:,}",
        )

    if name == "error-rate":
        share = counts.canary_bad / n_c if n_c > 0 else 0.0
        context = f" (canary {_digits(share * 100)}% of {_requests(n_c)})"
        verdict, reason, limit = _against_limits(spec, name, share, "", context)
        return MetricResult(
            name=name,
            verdict=verdict,
            reason=reason,
            value=share,
            limit=limit,
            figures=figures,
            canary_requests=n_c,
            stable_requests=n_s,
        )

    # latency
    slow = (
        f"; {_digits(counts.canary_bad)} slower than {observation.bucket.le} s" if observation.bucket else ""
    )
    if spec.quantile is None or spec.max is None:
        return MetricResult(
            name=name,
            verdict=Verdict.PASS,
            figures=figures,
            canary_requests=n_c,
            stable_requests=n_s,
            reason=f"{name}: no absolute limit (canary {_requests(n_c)}{slow})",
        )
    label = f"{name} {_quantile_label(spec.quantile)}"
    if observation.value is None:
        return MetricResult(
            name=name,
            verdict=Verdict.INCONCLUSIVE,
            figures=figures,
            canary_requests=n_c,
            stable_requests=n_s,
            reason=f"{label}: no latency data for the canary ({_requests(n_c)})",
        )
    verdict, reason, limit = _against_limits(
        spec, label, observation.value, " s", f" (canary {_requests(n_c)}{slow})"
    )
    return MetricResult(
        name=name,
        verdict=verdict,
        reason=reason,
        value=observation.value,
        limit=limit,
        figures=figures,
        canary_requests=n_c,
        stable_requests=n_s,
    )
