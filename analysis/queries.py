"""PromQL for the ingress-nginx traffic provider: per-version request, 5xx and slow-request counts over a
window, the canary's latency quantile and error share, and custom queries rendered from the policy.

Invariants:
- Versions are told apart by the ``canary`` label ONLY. ingress-nginx reports a request routed to the canary
  under the MAIN Ingress and the STABLE Service, with ``canary="<namespace>-<service>-<port>"``; stable
  traffic has ``canary=""`` (``internal/ingress/metric/collectors/socket.go``, label set ``requestTags``).
  A selector on the canary Service name would find nothing, so none is ever built.
- 5xx is ``status=~"5.."``: it matches ``503`` and also ``5xx`` when the controller runs with
  ``--report-status-classes`` (which rewrites the status to ``"<first digit>xx"``).
- Slow requests are counted between real histogram buckets: ``le`` is written exactly as Prometheus renders
  the bound (Go's ``strconv.FormatFloat(v, 'g', -1, 64)``: "0.5", "1", "2.5"), and a threshold between two
  bounds is moved UP to the next bound (`LatencyBucket` says so), because a bucket query cannot count
  "slower than 0.3 s", only "slower than 0.5 s".
- Names are checked against the Kubernetes name pattern before they reach a query: no PromQL injection.
- A custom query is the tenant's: `custom` scopes every selector in it to ``target.namespace`` on the
  operator's ``namespace_label`` (`config.scope`), or refuses it.
- Every function is pure and returns a string; running it is `analysis.prometheus`' job.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from songbird.config.errors import PolicyError
from songbird.config.fields import NAME_PATTERN
from songbird.config.policy import MetricSpec
from songbird.config.scope import DEFAULT_LABEL, label_problem, scope
from songbird.config.template import render_template

REQUESTS = "nginx_ingress_controller_requests"
DURATION_BUCKET = "nginx_ingress_controller_request_duration_seconds_bucket"
# ingress-nginx's time histograms use the client libraries' default buckets unless --time-buckets is set.
DEFAULT_BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SERVER_ERROR = "5.."
DEFAULT_LATENCY_THRESHOLD = 0.5


class Version(StrEnum):
    CANARY = "canary"
    STABLE = "stable"


@dataclass(frozen=True, kw_only=True)
class IngressTarget:
    """The objects whose traffic is measured: the main Ingress and the two Services, in one namespace."""

    namespace: str
    ingress: str  # the MAIN Ingress: canary traffic is reported under it too
    canary: str  # canary Service (only for custom queries: ingress-nginx metrics never carry it)
    stable: str  # stable Service
    # The label that holds a series' namespace in this cluster's Prometheus (`songbird run
    # --namespace-label`): custom queries are scoped on it. Built-in queries do NOT use it: they match
    # the ``namespace`` label ingress-nginx itself writes (the Ingress's namespace). Where a scrape with
    # honor_labels=false renames that one to ``exported_namespace``, ``namespace`` is the target label
    # (the ingress-nginx Pod's own namespace), so the two settings differ exactly in the clusters that
    # relabel; one setting for both would make the built-ins find nothing there.
    namespace_label: str = DEFAULT_LABEL

    def __post_init__(self) -> None:
        for key in ("namespace", "ingress", "canary", "stable"):
            value = getattr(self, key)
            if not re.fullmatch(NAME_PATTERN, value):
                raise PolicyError(f"{value!r} is not a Kubernetes object name", path=key)
        problem = label_problem(self.namespace_label)
        if problem is not None:
            raise PolicyError(problem, path="namespace_label")


@dataclass(frozen=True, kw_only=True)
class LatencyBucket:
    """A latency threshold mapped onto a histogram bucket bound at or above it."""

    requested: float
    bound: float

    @property
    def le(self) -> str:
        return le_label(self.bound)

    @property
    def moved(self) -> bool:
        return not math.isclose(self.requested, self.bound)

    def describe(self) -> str:
        if self.moved:
            return (
                f"slower than {self.le} s (threshold {self.requested:g} s moved up to the next bucket bound)"
            )
        return f"slower than {self.le} s"


def le_label(bound: float) -> str:
    """A bucket bound as it appears in the ``le`` label: Go's shortest ``'g'`` formatting (exponent form
    below 1e-4 and from 1e6 on, as ``strconv.FormatFloat(v, 'g', -1, 64)``), ``+Inf`` for infinity."""
    if math.isinf(bound):
        return "+Inf" if bound > 0 else "-Inf"
    if bound == 0:
        return "0"
    exact = Decimal(repr(float(bound))).normalize()  # repr gives the shortest round-tripping digits
    exponent = exact.adjusted()
    if -4 <= exponent < 6:
        return format(exact, "f")
    sign, digits, _ = exact.as_tuple()
    mantissa = str(digits[0]) + ("." + "".join(map(str, digits[1:])) if len(digits) > 1 else "")
    return f"{'-' if sign else ''}{mantissa}e{'+' if exponent >= 0 else '-'}{abs(exponent):02d}"


def duration(seconds: float) -> str:
    """A PromQL range from seconds: 60 -> "60s", 1.5 -> "1500ms" (whole milliseconds, at least 1 ms)."""
    if not seconds > 0 or math.isinf(seconds):
        raise PolicyError(
            f"a query window must be a positive number of seconds, got {seconds!r}", path="analysis.window"
        )
    if float(seconds).is_integer():
        return f"{int(seconds)}s"
    return f"{max(1, round(seconds * 1000))}ms"


def latency_bucket(threshold: float, buckets: tuple[float, ...] = DEFAULT_BUCKETS) -> LatencyBucket:
    """The smallest bucket bound at or above ``threshold`` (PolicyError when it is above the largest)."""
    for bound in sorted(buckets):
        if bound >= threshold or math.isclose(bound, threshold):
            return LatencyBucket(requested=threshold, bound=bound)
    raise PolicyError(
        f"latency threshold {threshold:g} s is above the largest histogram bucket "
        f"({le_label(max(buckets))} s): slow requests could not be counted",
        path="threshold",
    )


def slow_threshold(metric: MetricSpec) -> float:
    """The latency metric's slow-request threshold in seconds, as the policy documents it: ``threshold``,
    else ``max``, else 0.5 s."""
    if metric.threshold is not None:
        return metric.threshold
    if metric.max is not None:
        return metric.max
    return DEFAULT_LATENCY_THRESHOLD


def selector(target: IngressTarget, version: Version, *extra: str) -> str:
    """Label matchers of one version's ingress-nginx series, plus any ``extra`` matchers."""
    canary = 'canary!=""' if version is Version.CANARY else 'canary=""'
    matchers = [f'namespace="{target.namespace}"', f'ingress="{target.ingress}"', canary, *extra]
    return "{" + ",".join(matchers) + "}"


def requests(target: IngressTarget, version: Version, window: float) -> str:
    """Requests served by ``version`` over the window (real-valued: increase() extrapolates)."""
    return f"sum(increase({REQUESTS}{selector(target, version)}[{duration(window)}]))"


def server_errors(target: IngressTarget, version: Version, window: float) -> str:
    """5xx responses of ``version`` over the window.

    A version that never answered 5xx has no 5xx series at all, so the sum alone would be empty (no data)
    when the true answer is 0: ``or vector(0)`` supplies it. Whether there was traffic at all is for
    `requests` to say.
    """
    sel = selector(target, version, f'status=~"{SERVER_ERROR}"')
    return f"(sum(increase({REQUESTS}{sel}[{duration(window)}])) or vector(0))"


def slow_requests(target: IngressTarget, version: Version, window: float, bucket: LatencyBucket) -> str:
    """Requests of ``version`` slower than the bucket bound: all observations minus those at or below it.

    Each side is summed first: the two sides differ in ``le``, so a vector subtraction would match nothing.
    """
    w = duration(window)
    every = selector(target, version, 'le="+Inf"')
    fast = selector(target, version, f'le="{bucket.le}"')
    return f"sum(increase({DURATION_BUCKET}{every}[{w}])) - sum(increase({DURATION_BUCKET}{fast}[{w}]))"


def timed_requests(target: IngressTarget, version: Version, window: float) -> str:
    """Requests of ``version`` observed by the duration histogram (its ``+Inf`` bucket) over the window:
    the population `slow_requests` is a part of, so slow <= timed within one evaluation."""
    every = selector(target, version, 'le="+Inf"')
    return f"sum(increase({DURATION_BUCKET}{every}[{duration(window)}]))"


def latency_quantile(
    target: IngressTarget, quantile: float, window: float, version: Version = Version.CANARY
) -> str:
    """The ``quantile`` of ``version``'s request duration in seconds, interpolated within buckets."""
    if not 0 < quantile <= 1:
        raise PolicyError(f"quantile must be in (0, 1], got {quantile!r}", path="quantile")
    rate = f"rate({DURATION_BUCKET}{selector(target, version)}[{duration(window)}])"
    return f"histogram_quantile({quantile!r}, sum by (le) ({rate}))"


def error_share(target: IngressTarget, window: float, version: Version = Version.CANARY) -> str:
    """5xx responses / requests of ``version`` over the window: 0 when it served no 5xx, NaN when it
    served nothing, empty when it has no series (both mean no data)."""
    return f"{server_errors(target, version, window)} / {requests(target, version, window)}"


def custom(query: str, target: IngressTarget, window: float, *, path: str = "query") -> str:
    """A policy's custom query with its placeholders filled (unknown or missing ones fail), every selector
    scoped to the target's namespace (`config.scope.scope`: a query that cannot be is a PolicyError)."""
    values = {
        "namespace": target.namespace,
        "ingress": target.ingress,
        "canary": target.canary,
        "stable": target.stable,
        "window": duration(window),
    }
    rendered = render_template(query, values, path=path)
    return scope(rendered, namespace=target.namespace, label=target.namespace_label, path=path)
