"""The Prometheus adapter: `analysis.source.MetricsSource` over the HTTP API, with prometheus-api-client.

This is the only module that imports prometheus-api-client, requests or urllib3 (``.importlinter``).

What it guarantees to the caller:
- One answer, one number: an instant query evaluated at an explicit time (``time=`` of ``/api/v1/query``),
  so the same tick always asks about the same window. An empty result or NaN (for example 0/0 when a
  version served nothing) is None: no data. More than one series, or a range vector, is a query bug and
  raises `MetricsUnavailable` naming the query.
- A bounded wait. prometheus-api-client 0.7.2 defaults to ``Retry(total=3, backoff_factor=1)`` on its
  session, which hides about 6 s of reconnects behind a refused connection and honours ``Retry-After``;
  we pass our own urllib3 ``Retry``: connection and read failures (a dropped keep-alive connection is one)
  and 502/503/504 are retried at most ``retries`` (<= 2) times, the second retry after 0.2 s; 4xx (a bad
  query) is never retried; ``Retry-After`` is ignored. Every request carries ``timeout=(timeout, timeout)``
  (connect, read). So one call takes at most about ``(retries + 1) x timeout`` seconds plus the backoff.
  The read timeout bounds each wait for bytes, not the whole body: a server trickling a byte at a time could
  stretch it, which Prometheus does not do.
- Every failure (refused, timed out, HTTP error status, an answer that is not Prometheus JSON) becomes
  `MetricsUnavailable` with the URL and the cause, raised ``from`` the original exception; when the server
  itself is out of reach (refused, timed out, 5xx) it is the subclass `PrometheusUnreachable`.
"""

from __future__ import annotations

import math
import re
from types import TracebackType
from typing import Any

import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.exceptions import MaxRetryError, NewConnectionError
from urllib3.exceptions import TimeoutError as TimeoutError_
from urllib3.util.retry import Retry

from songbird.config.errors import MetricsUnavailable
from songbird.config.policy import PrometheusSource as PrometheusSettings

MAX_RETRIES = 2
_BACKOFF = 0.1  # urllib3 2.x: no sleep before the first retry, backoff * 2 ** (n - 1) before the n-th
_RETRY_STATUS = frozenset({502, 503, 504})
_STATUS = re.compile(r"HTTP Status Code (\d{3})")
_QUERY_IN_ERRORS = 200  # characters of a query quoted in an error


def _short(promql: str) -> str:
    flat = " ".join(promql.split())
    return flat if len(flat) <= _QUERY_IN_ERRORS else flat[: _QUERY_IN_ERRORS - 3] + "..."


def bounded_retry(retries: int) -> Retry:
    """Connection and read errors and 502/503/504 retried ``retries`` times; 4xx and redirects never."""
    return Retry(
        total=retries,
        connect=retries,
        read=retries,
        status=retries,
        other=0,
        redirect=0,
        backoff_factor=_BACKOFF,
        status_forcelist=_RETRY_STATUS,
        allowed_methods=frozenset({"GET", "POST"}),
        respect_retry_after_header=False,
        raise_on_status=False,  # hand the last 5xx answer back, so its status shows in the error
    )


class PrometheusUnreachable(MetricsUnavailable):
    """Prometheus itself did not answer (refused, timed out, 5xx after the retries): later queries of the
    same evaluation would wait just as long, so callers may skip them. A bad query is the plain
    `MetricsUnavailable`: only that query is affected."""


def _timed_out(exc: requests.RequestException) -> bool:
    """A timeout, also when requests reports it as a ConnectionError after the retries ran out (it wraps
    urllib3's MaxRetryError, whose ``reason`` is the ReadTimeoutError)."""
    if isinstance(exc, requests.Timeout):
        return True
    cause = exc.args[0] if exc.args else None
    reason = cause.reason if isinstance(cause, MaxRetryError) else None
    # urllib3's NewConnectionError (refused, unresolvable) subclasses ConnectTimeoutError: not a timeout.
    return isinstance(reason, TimeoutError_) and not isinstance(reason, NewConnectionError)


class PrometheusSource:
    """Instant queries against one Prometheus base URL. Use as a context manager or call `close`."""

    def __init__(self, url: str, *, timeout: float, retries: int = 1) -> None:
        if not timeout > 0:
            raise ValueError(f"timeout must be positive, got {timeout!r}")
        if not 0 <= retries <= MAX_RETRIES:
            raise ValueError(f"retries must be between 0 and {MAX_RETRIES}, got {retries!r}")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self._client = PrometheusConnect(url=self.url, retry=bounded_retry(retries), timeout=None)

    @classmethod
    def from_settings(
        cls, settings: PrometheusSettings, *, default_url: str, retries: int = 1
    ) -> PrometheusSource:
        """From the policy's ``analysis.prometheus`` (its ``url`` wins over the daemon's default)."""
        return cls(settings.url or default_url, timeout=settings.timeout, retries=retries)

    @property
    def worst_case_seconds(self) -> float:
        """The longest a `query_scalar` call can take: every attempt timing out, plus the backoff."""
        backoff = sum(_BACKOFF * 2.0 ** (n - 1) for n in range(2, self.retries + 1))
        return (self.retries + 1) * self.timeout + backoff

    def query_scalar(self, promql: str, *, at: float) -> float | None:
        result = self._query(promql, at)
        if isinstance(result, list) and len(result) == 2 and not isinstance(result[0], dict):
            raw = result[1]  # a scalar result: [timestamp, "value"]
        elif isinstance(result, list):
            if not result:
                return None
            if len(result) > 1:
                labels = ", ".join(
                    str(item.get("metric", {})) for item in result[:3] if isinstance(item, dict)
                )
                raise MetricsUnavailable(
                    f"query returned {len(result)} series where one number was expected (aggregate it, "
                    f"for example with sum()): {_short(promql)} -> {labels}"
                )
            first = result[0]
            if not isinstance(first, dict) or "value" not in first:
                raise MetricsUnavailable(f"query returned a range vector, not one number: {_short(promql)}")
            raw = first["value"][1]
        else:
            raise MetricsUnavailable(f"{self.url}: unexpected answer {result!r:.200} to {_short(promql)}")
        try:
            value = float(raw)
        except (TypeError, ValueError) as exc:
            raise MetricsUnavailable(
                f"{self.url}: value {raw!r} of {_short(promql)} is not a number"
            ) from exc
        return None if math.isnan(value) else value

    def query_vector(self, promql: str, *, at: float) -> list[tuple[dict[str, str], float]]:
        """Evaluate an instant query at ``at`` and return every series as (labels, value); NaN values are
        left out. For grouped queries (``analysis.batch``); same bounds and errors as `query_scalar`."""
        result = self._query(promql, at)
        if not isinstance(result, list) or (len(result) == 2 and not isinstance(result[0], dict)):
            raise MetricsUnavailable(f"{self.url}: expected an instant vector from {_short(promql)}")
        out: list[tuple[dict[str, str], float]] = []
        for item in result:
            try:
                labels = {str(k): str(v) for k, v in item["metric"].items()}
                value = float(item["value"][1])
            except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
                raise MetricsUnavailable(
                    f"{self.url}: unreadable series in the answer to {_short(promql)}"
                ) from exc
            if not math.isnan(value):
                out.append((labels, value))
        return out

    def _query(self, promql: str, at: float) -> Any:
        where = f"{self.url}/api/v1/query"
        try:
            return self._client.custom_query(
                query=promql, params={"time": f"{at:.3f}"}, timeout=(self.timeout, self.timeout)
            )
        except requests.JSONDecodeError as exc:  # 200 with a body that is not JSON (a login page...)
            raise MetricsUnavailable(f"{where}: unreadable answer ({exc}) to {_short(promql)}") from exc
        except requests.RequestException as exc:
            if _timed_out(exc):
                raise PrometheusUnreachable(
                    f"{where}: no answer within {self.timeout:g} s ({self.retries + 1} attempts) "
                    f"to {_short(promql)}"
                ) from exc
            raise PrometheusUnreachable(
                f"{where}: {type(exc).__name__}: {exc} (query {_short(promql)})"
            ) from exc
        except PrometheusApiClientException as exc:
            # The client reports "HTTP Status Code <n> (<body>)". After the retries a 5xx means the server
            # is in trouble; a 4xx means this query is wrong (400 bad_data, 422 execution).
            status = _STATUS.search(str(exc))
            error = (
                PrometheusUnreachable if status and status.group(1).startswith("5") else MetricsUnavailable
            )
            raise error(f"{where}: {str(exc)[:500]} (query {_short(promql)})") from exc
        except (ValueError, KeyError, TypeError) as exc:  # JSON, but not Prometheus' answer shape
            raise MetricsUnavailable(f"{where}: unreadable answer ({exc}) to {_short(promql)}") from exc

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> PrometheusSource:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
