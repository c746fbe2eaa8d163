"""One slow or silent Prometheus endpoint holds only its own rollouts.

`Endpoints.wrap(endpoint, source)` returns the `MetricsSource` the evaluator uses for that endpoint. Every
query goes through the endpoint's `Guard`, which keeps three promises:
- concurrency: at most ``limit`` queries to one endpoint run at once, each on its own daemon thread;
  a query that finds every slot busy fails at once ("endpoint busy") instead of waiting, so a
  silent endpoint can occupy ``limit`` background threads and no worker;
- deadline: the calling tick waits for its answer only until the tick's deadline (``controller.deadline``);
  past it the query fails and its thread finishes in the background, bounded by the source's own clamped
  timeout (see `clamp_timeout`);
- circuit breaker: after ``failures`` consecutive failed or abandoned queries the endpoint is open for
  ``cooldown`` seconds (queries fail at once); then one trial query is let through (half-open): its success
  closes the circuit, its failure opens it again.
Failures are `MetricsUnavailable`, which the judge already turns into ``error`` verdicts on the metrics it
concerns, so the rollout's own ``errorDeadline`` decides what a long outage means.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace

from songbird.analysis.source import MetricsSource
from songbird.config.endpoints import Endpoint
from songbird.config.errors import MetricsUnavailable
from songbird.controller import deadline


def clamp_timeout(requested: float, maximum: float) -> float:
    """A policy's Prometheus timeout, never above the operator's maximum."""
    return min(requested, maximum)


class Guard:
    """Concurrency limit and circuit breaker for one endpoint. Thread-safe."""

    def __init__(
        self,
        label: str,
        *,
        limit: int = 2,
        failures: int = 3,
        cooldown: float = 30.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if limit < 1 or failures < 1 or cooldown <= 0:
            raise ValueError("limit and failures must be at least 1, cooldown positive")
        self.label = label  # the endpoint as messages show it (`config.endpoints.Endpoint.label`)
        self._limit = limit
        self._failures = failures
        self._cooldown = cooldown
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._busy = 0
        self._consecutive = 0
        self._open_until: float | None = None
        self._trial = False

    @property
    def state(self) -> str:
        """ "closed", "open" or "half-open" (for logs and tests)."""
        with self._lock:
            if self._open_until is None:
                return "closed"
            return "open" if self._monotonic() < self._open_until else "half-open"

    def query(self, source: MetricsSource, promql: str, *, at: float) -> float | None:
        if deadline.remaining() <= 0:
            raise MetricsUnavailable(f"{self.label}: not asked, the tick's deadline has passed")
        self._enter()
        call = _Call(source, promql, at, done=self._leave)
        # A daemon thread per query (at most ``limit`` per endpoint at once): an abandoned query must
        # neither hold a worker nor keep the process alive at exit, as an executor's threads would.
        threading.Thread(target=call.run, name="songbird-prom", daemon=True).start()
        wait = deadline.remaining()
        if not call.finished.wait(None if wait == float("inf") else max(wait, 0.0)):
            raise MetricsUnavailable(f"{self.label}: no answer within the tick's deadline")
        if call.error is not None:
            raise call.error
        return call.value

    def close(self) -> None:
        return None

    def _enter(self) -> None:
        with self._lock:
            now = self._monotonic()
            if self._open_until is not None:
                if now < self._open_until:
                    raise MetricsUnavailable(
                        f"{self.label}: circuit open after {self._failures} failed queries in a row "
                        f"(tried again every {self._cooldown:g}s)"
                    )
                if self._trial:
                    raise MetricsUnavailable(f"{self.label}: circuit half-open, a trial query is in flight")
                self._trial = True
            if self._busy >= self._limit:
                if self._trial:
                    self._trial = False
                raise MetricsUnavailable(f"{self.label}: endpoint busy ({self._limit} queries in flight)")
            self._busy += 1

    def _leave(self, *, ok: bool) -> None:
        with self._lock:
            self._busy -= 1
            trial, self._trial = self._trial, False
            if ok:
                self._consecutive = 0
                self._open_until = None
                return
            self._consecutive += 1
            if trial or self._consecutive >= self._failures:
                self._open_until = self._monotonic() + self._cooldown


class _Call:
    """One query run on its own thread; ``done(ok=...)`` is called when it ends, however late."""

    def __init__(self, source: MetricsSource, promql: str, at: float, *, done: Callable[..., None]) -> None:
        self.source = source
        self.promql = promql
        self.at = at
        self.done = done
        self.finished = threading.Event()
        self.value: float | None = None
        self.error: Exception | None = None

    def run(self) -> None:
        try:
            self.value = self.source.query_scalar(self.promql, at=self.at)
        except MetricsUnavailable as exc:
            self.error = exc
        except Exception as exc:  # a source bug surfaces as an unavailable metric, never kills a thread
            self.error = MetricsUnavailable(f"query failed: {type(exc).__name__}: {exc}")
        finally:
            self.done(ok=self.error is None)
            self.finished.set()


class GuardedSource:
    """A `MetricsSource` whose queries go through an endpoint's `Guard`."""

    def __init__(self, guard: Guard, source: MetricsSource) -> None:
        self.guard = guard
        self.source = source

    def query_scalar(self, promql: str, *, at: float) -> float | None:
        return self.guard.query(self.source, promql, at=at)


class Endpoints:
    """One `Guard` per Prometheus endpoint (its name and settings, or the URL a policy gave), made on first
    use."""

    def __init__(self, *, limit: int = 2, failures: int = 3, cooldown: float = 30.0) -> None:
        self._settings = (limit, failures, cooldown)
        self._guards: dict[Endpoint, Guard] = {}
        self._lock = threading.Lock()

    def guard(self, endpoint: Endpoint) -> Guard:
        key = replace(endpoint, timeout=0.0)  # one guard per endpoint, whatever timeout a policy asks
        with self._lock:
            if key not in self._guards:
                limit, failures, cooldown = self._settings
                self._guards[key] = Guard(endpoint.label, limit=limit, failures=failures, cooldown=cooldown)
            return self._guards[key]

    def wrap(self, endpoint: Endpoint, source: MetricsSource) -> MetricsSource:
        return GuardedSource(self.guard(endpoint), source)

    def close(self) -> None:
        with self._lock:
            for guard in self._guards.values():
                guard.close()
