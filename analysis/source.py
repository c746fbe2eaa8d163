"""The narrow edge between the judge and Prometheus: one method, one number.

`analysis.prometheus.PrometheusSource` implements it over HTTP; tests use a real Prometheus server.
"""

from __future__ import annotations

from typing import Protocol

from songbird.config.errors import MetricsUnavailable


class PrometheusUnreachable(MetricsUnavailable):
    """Prometheus itself did not answer (refused, reset, no answer by the deadline, 5xx or 429 after the
    retries): later queries of the same evaluation would fare no better, so callers may skip them. A bad
    query or an unusable answer is the plain `MetricsUnavailable`: only that query is affected."""


class MetricsSource(Protocol):
    def query_scalar(self, promql: str, *, at: float) -> float | None:
        """Evaluate an instant query at epoch second ``at``.

        Returns the single sample's value (NaN when Prometheus answered NaN, for the caller to judge), or
        None when the result is empty (no data). Raises
        `config.errors.MetricsUnavailable` when Prometheus does not answer in time, refuses the query, or
        returns more than one series (a query bug the user must see).
        """
        ...
