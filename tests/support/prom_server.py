"""The tests' name for the lab's Prometheus runner (`lab.prometheus`): the real server as a plain process.

Kept so that tests import their harness from ``tests.support``; the implementation ships with the lab,
which needs it at run time (see `lab.prometheus` for backfill pitfalls and live scraping).
"""

from songbird.lab.prometheus import (
    MISSING_BINARY,
    PrometheusNotInstalledError,
    PrometheusServer,
    PrometheusServerError,
    ScrapeTarget,
    Series,
    find_binary,
    free_port,
    to_openmetrics,
)

__all__ = [
    "MISSING_BINARY",
    "PrometheusNotInstalledError",
    "PrometheusServer",
    "PrometheusServerError",
    "ScrapeTarget",
    "Series",
    "find_binary",
    "free_port",
    "to_openmetrics",
]
