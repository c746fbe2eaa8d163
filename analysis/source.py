"""The narrow edge between the judge and Prometheus: one method, one number.

`analysis.prometheus.PrometheusSource` implements it over HTTP; tests use a real Prometheus server.
"""

from __future__ import annotations

from typing import Protocol


class MetricsSource(Protocol):
    def query_scalar(self, promql: str, *, at: float) -> float | None:
        """Evaluate an instant query at epoch second ``at``.

        Returns the single sample's value, or None when the result is empty or NaN (no data). Raises
        `config.errors.MetricsUnavailable` when Prometheus does not answer in time, refuses the query, or
        returns more than one series (a query bug the user must see).
        """
        ...
