"""Deterministic ingress-nginx metric history for backfilling a test Prometheus.

It emits what an ingress-nginx controller (v1.x, ``internal/ingress/metric/collectors/socket.go``) would have
exposed at every scrape: the cumulative counter ``nginx_ingress_controller_requests`` and the cumulative
histogram ``nginx_ingress_controller_request_duration_seconds_{bucket,sum,count}`` with Prometheus' default
buckets, labelled ``status, method, path, namespace, ingress, service, canary, host`` plus the controller's
constant labels.

The canary-label trap is reproduced exactly: a request routed to the canary carries the MAIN Ingress name and
the STABLE Service name, and ``canary="<namespace>-<canary service>-<port>"`` (the canary upstream's name);
stable traffic has ``canary=""``.

Invariants: counters start at 0 at ``start`` and never decrease; for every series ``+Inf`` bucket == count ==
the requests counter of the same status; bucket counts are monotone in ``le``. There is no randomness: the
cumulative count of each (status, latency value) cell is ``floor(expected cumulative count)``, so a traffic
shape whose ``rate x step x share`` is an integer gives exact integer increments per scrape.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from tests.support.prom_server import Series

REQUESTS = "nginx_ingress_controller_requests"
DURATION = "nginx_ingress_controller_request_duration_seconds"
# Prometheus client libraries' DefBuckets, which ingress-nginx uses for its time histograms.
DEFAULT_BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

Shape = float | Callable[[float], float]


def _at(shape: Shape, t: float) -> float:
    return shape(t) if callable(shape) else float(shape)


def le_label(bound: float) -> str:
    """A bucket bound as Prometheus renders it in ``le``: 0.5 -> "0.5", 1.0 -> "1", inf -> "+Inf"."""
    if math.isinf(bound):
        return "+Inf"
    return str(int(bound)) if float(bound).is_integer() else repr(float(bound))


@dataclass(frozen=True, kw_only=True)
class Traffic:
    """What one version serves: ``rate`` requests/s and ``error_share`` of 5xx (constants or functions of
    epoch seconds), and ``latency`` as {seconds: share of requests} (shares sum to 1), the same for
    successful and failed requests."""

    rate: Shape
    error_share: Shape = 0.0
    latency: Mapping[float, float] = field(default_factory=lambda: {0.02: 1.0})

    def __post_init__(self) -> None:
        if not math.isclose(sum(self.latency.values()), 1.0, abs_tol=1e-9):
            raise ValueError(f"latency shares must sum to 1, got {sum(self.latency.values())}")


@dataclass(frozen=True, kw_only=True)
class IngressNames:
    """The seed scenario's objects: main Ingress ``nginx`` -> Service ``nginx-v1``; canary ``nginx-v2``."""

    namespace: str = "default"
    ingress: str = "nginx"
    stable_service: str = "nginx-v1"
    canary_service: str = "nginx-v2"
    port: int = 80
    host: str = "foo.example.com"
    path: str = "/"
    method: str = "GET"
    ok_status: str = "200"
    error_status: str = "503"
    status_classes: bool = False  # --report-status-classes: "2xx" / "5xx"

    @property
    def canary_label(self) -> str:
        return f"{self.namespace}-{self.canary_service}-{self.port}"


def _labels(names: IngressNames, *, canary: bool, status: str) -> dict[str, str]:
    if names.status_classes:
        status = f"{status[0]}xx"
    return {
        "controller_class": "k8s.io/ingress-nginx",
        "controller_namespace": "ingress-nginx",
        "controller_pod": "ingress-nginx-controller-0",
        "namespace": names.namespace,
        # The trap: canary requests are reported under the main Ingress and the stable Service.
        "ingress": names.ingress,
        "service": names.stable_service,
        "canary": names.canary_label if canary else "",
        "status": status,
        "method": names.method,
        "path": names.path,
        "host": names.host,
    }


def _version_series(
    traffic: Traffic,
    *,
    canary: bool,
    names: IngressNames,
    times: Sequence[float],
    step: float,
    buckets: Sequence[float],
) -> list[Series]:
    latencies = sorted(traffic.latency)
    out: list[Series] = []
    for status, is_error in ((names.ok_status, False), (names.error_status, True)):
        expected = dict.fromkeys(latencies, 0.0)  # expected cumulative requests per latency value
        requests: list[tuple[float, float]] = []
        bucket_samples: dict[float, list[tuple[float, float]]] = {b: [] for b in (*buckets, math.inf)}
        sums: list[tuple[float, float]] = []
        for i, t in enumerate(times):
            if i > 0:
                share = _at(traffic.error_share, t)
                served = _at(traffic.rate, t) * step * (share if is_error else 1.0 - share)
                for v in latencies:
                    expected[v] += served * traffic.latency[v]
            cells = {v: math.floor(expected[v] + 1e-9) for v in latencies}
            total = sum(cells.values())
            requests.append((t, total))
            for b, samples in bucket_samples.items():
                samples.append((t, sum(c for v, c in cells.items() if v <= b)))
            sums.append((t, sum(v * c for v, c in cells.items())))
        labels = _labels(names, canary=canary, status=status)
        out.append(Series(REQUESTS, labels, tuple(requests)))
        for b, samples in bucket_samples.items():
            out.append(Series(f"{DURATION}_bucket", {**labels, "le": le_label(b)}, tuple(samples)))
        out.append(Series(f"{DURATION}_sum", labels, tuple(sums)))
        out.append(Series(f"{DURATION}_count", labels, tuple(requests)))
    return out


def ingress_nginx_series(
    *,
    start: float,
    end: float,
    step: float = 15.0,
    stable: Traffic | None,
    canary: Traffic | None,
    names: IngressNames | None = None,
    buckets: Sequence[float] = DEFAULT_BUCKETS,
) -> list[Series]:
    """Scrapes every ``step`` seconds from ``start`` to ``end`` inclusive of both versions' traffic.

    A version given as None exposes no series at all (as before its first request)."""
    names = names or IngressNames()
    count = math.floor((end - start) / step + 1e-9) + 1
    times = [start + i * step for i in range(count)]
    out: list[Series] = []
    if stable is not None:
        out += _version_series(stable, canary=False, names=names, times=times, step=step, buckets=buckets)
    if canary is not None:
        out += _version_series(canary, canary=True, names=names, times=times, step=step, buckets=buckets)
    return out
