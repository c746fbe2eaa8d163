"""One grouped Prometheus query per (endpoint, kind, window, evaluation time), shared by every tick.

`QueryBatcher` is the evaluator's `analysis.batch.GroupedSource`. The first tick that needs a key sends the
grouped query (`analysis.batch.grouped_query`) through the endpoint's `Guard` (``controller.endpoints``:
concurrency limit, tick deadline, circuit breaker); ticks that need the same key while it is in flight wait
for that answer (never beyond their own deadline), and later ticks read it from the cache. Evaluation times
are aligned to the cadence grid (`analysis.batch.slot`), so every rollout on an endpoint with the same
cadence asks the same keys: Prometheus sees O(endpoints x kinds) queries per cadence, not O(rollouts).

Invariants:
- at most one grouped query per key is in flight; an answer is shared, never changed;
- a failed query is not cached: the ticks that waited for it get its error (their metrics are ERROR this
  evaluation), and the next tick asks again, through the circuit breaker;
- the cache is bounded (``capacity`` keys, least recently used dropped first); a key is only needed for
  one cadence, so a small bound holds every live key.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

from songbird.analysis.batch import GroupedAnswer, GroupKind, Sample, grouped_query
from songbird.analysis.prometheus import PrometheusSource
from songbird.config.endpoints import Endpoint
from songbird.config.errors import MetricsUnavailable
from songbird.controller import deadline
from songbird.controller.endpoints import Endpoints

Key = tuple[Endpoint, GroupKind, float, float]  # (endpoint, kind, window, at)


class VectorSource(Protocol):
    def query_vector(self, promql: str, *, at: float) -> list[tuple[dict[str, str], float]]:
        """Every series of an instant query at ``at``; raises `MetricsUnavailable`."""
        ...


class _Entry:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.answer: GroupedAnswer | None = None
        self.error: MetricsUnavailable | None = None


class _VectorCall:
    """Runs a vector query where the endpoint's `Guard` expects a scalar source (the samples are kept
    here; the guard sees None)."""

    def __init__(self, source: VectorSource) -> None:
        self.source = source
        self.samples: list[tuple[dict[str, str], float]] = []

    def query_scalar(self, promql: str, *, at: float) -> float | None:
        self.samples = self.source.query_vector(promql, at=at)
        return None


class QueryBatcher:
    """Grouped answers per endpoint; see the module docstring. Thread-safe."""

    def __init__(
        self,
        *,
        endpoints: Endpoints,
        timeout: float,
        capacity: int = 32,
        sources: Callable[[Endpoint], VectorSource] | None = None,
        on_query: Callable[[float, bool], None] | None = None,
    ) -> None:
        """``timeout``: each grouped query's Prometheus timeout (the operator's maximum);
        ``sources(endpoint)`` makes the vector source of an endpoint (default: `PrometheusSource`)."""
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._endpoints = endpoints
        self._timeout = timeout
        self._capacity = capacity
        self._make = sources or self._prometheus
        self._on_query = on_query
        self._lock = threading.Lock()
        self._entries: OrderedDict[Key, _Entry] = OrderedDict()
        self._sources: dict[Endpoint, VectorSource] = {}
        self._owned: list[PrometheusSource] = []
        self.queries = 0  # grouped queries sent (for tests and the benchmark)

    def _prometheus(self, endpoint: Endpoint) -> VectorSource:
        timeout = self._timeout if endpoint.timeout is None else min(endpoint.timeout, self._timeout)
        source = PrometheusSource(endpoint, timeout=timeout, retries=1)
        self._owned.append(source)
        return source

    def grouped(self, endpoint: Endpoint, kind: GroupKind, *, window: float, at: float) -> GroupedAnswer:
        key: Key = (endpoint, kind, window, at)
        with self._lock:
            entry = self._entries.get(key)
            owner = entry is None
            if entry is None:
                entry = _Entry()
                self._entries[key] = entry
                self._evict()
            else:
                self._entries.move_to_end(key)
            source = self._sources.get(endpoint)
            if source is None and owner:
                source = self._sources[endpoint] = self._make(endpoint)
        if owner:
            assert source is not None
            self._ask(key, entry, source)
        else:
            wait = deadline.remaining()
            if not entry.done.wait(None if wait == float("inf") else max(wait, 0.0)):
                raise MetricsUnavailable(
                    f"{endpoint.label}: grouped {kind.value} query still in flight at the deadline"
                )
        if entry.error is not None:
            raise entry.error
        assert entry.answer is not None
        return entry.answer

    def _ask(self, key: Key, entry: _Entry, source: VectorSource) -> None:
        endpoint, kind, window, at = key
        call = _VectorCall(source)
        began = time.monotonic()
        try:
            self._endpoints.guard(endpoint).query(call, grouped_query(kind, window), at=at)
            samples: list[Sample] = list(call.samples)
            entry.answer = GroupedAnswer.of(kind, window=window, at=at, samples=samples)
        except MetricsUnavailable as exc:
            entry.error = exc
            with self._lock:
                if self._entries.get(key) is entry:
                    del self._entries[key]
        finally:
            with self._lock:
                self.queries += 1
            if self._on_query is not None:
                self._on_query(time.monotonic() - began, entry.error is None)
            entry.done.set()

    def _evict(self) -> None:
        while len(self._entries) > self._capacity:
            self._entries.popitem(last=False)  # a waiter keeps its own reference to the entry

    def close(self) -> None:
        for source in self._owned:
            source.close()
        self._owned.clear()
        self._sources.clear()
