"""The routing model the lab's nginx implements, and the canary decision in plain Python.

The model is what ingress-nginx's controller hands its Lua balancer: per host/path a location served by a
main backend (an upstream named ``<namespace>-<service>-<port>``), and per main upstream at most one
alternative (canary) backend with its traffic-shaping policy. `decide` replays
``route_to_alternative_balancer`` from ingress-nginx's ``rootfs/etc/nginx/lua/balancer.lua`` step by step;
the Lua in `lab.render` implements the same steps inside nginx, and the integration tests hold the two
together.

Invariants:
- every dataclass is frozen, so two models compare equal exactly when nginx would behave the same;
- a `Route` whose main backend has no endpoints answers 503 whatever the canary says (ingress-nginx finds
  no balancer for the main upstream and exits with 503 in the rewrite phase);
- a canary backend without endpoints is skipped: the request goes to the main backend (the Lua logs
  "no alternative balancer for backend" and returns false).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum

DEFAULT_WEIGHT_TOTAL = 100
# ingress-nginx's default for `session-cookie-name` (annotations/sessionaffinity/main.go).
DEFAULT_AFFINITY_COOKIE = "INGRESSCOOKIE"
# balancer/sticky.lua separates the upstream key and the backend key in the affinity cookie with "|".
AFFINITY_COOKIE_DELIMITER = "|"


def backend_key(upstream: str) -> str:
    """The key ingress-nginx's sticky balancer writes after the ``|`` in its cookie: md5(md5(name) + name)."""
    inner = hashlib.md5(upstream.encode(), usedforsecurity=False).hexdigest()
    return hashlib.md5((inner + upstream).encode(), usedforsecurity=False).hexdigest()


@dataclass(frozen=True, kw_only=True)
class Backend:
    """One upstream: a Service port and the local addresses (host:port) of its ready endpoints."""

    namespace: str
    service: str
    port: str
    endpoints: tuple[str, ...] = ()

    @property
    def upstream(self) -> str:
        """ingress-nginx's upstream name, also the value of the ``canary`` metric label."""
        return f"{self.namespace}-{self.service}-{self.port}"

    @property
    def key(self) -> str:
        return backend_key(self.upstream)


@dataclass(frozen=True, kw_only=True)
class Affinity:
    """Cookie session affinity (``affinity: cookie``) of one backend."""

    cookie: str = DEFAULT_AFFINITY_COOKIE
    path: str | None = None  # None: the location's path, as sticky.lua does


@dataclass(frozen=True, kw_only=True)
class Canary:
    """The alternative backend of one main upstream and its traffic-shaping policy."""

    ingress: str
    backend: Backend
    header: str = ""
    header_value: str = ""
    header_pattern: str = ""
    cookie: str = ""
    weight: int = 0
    weight_total: int = DEFAULT_WEIGHT_TOTAL
    affinity: Affinity | None = None

    @property
    def effective_total(self) -> int:
        """balancer.lua uses the configured total only when it is greater than 100."""
        return self.weight_total if self.weight_total > DEFAULT_WEIGHT_TOTAL else DEFAULT_WEIGHT_TOTAL


class PathType(StrEnum):
    PREFIX = "Prefix"
    EXACT = "Exact"
    IMPLEMENTATION_SPECIFIC = "ImplementationSpecific"


@dataclass(frozen=True, kw_only=True)
class Route:
    """One host/path location: the main Ingress, its backend and (if merged) the canary."""

    host: str  # "" is the default server
    path: str
    path_type: PathType
    namespace: str
    ingress: str
    main: Backend
    affinity: Affinity | None = None
    canary: Canary | None = None


@dataclass(frozen=True, kw_only=True)
class RoutingModel:
    routes: tuple[Route, ...] = ()
    # Why an Ingress or one of its paths was left out ("canary without main", "second canary", ...).
    notes: tuple[str, ...] = ()

    @property
    def hosts(self) -> tuple[str, ...]:
        return tuple(sorted({r.host for r in self.routes}))

    def backends(self) -> tuple[Backend, ...]:
        """Every distinct backend the routes use, main and canary, sorted by upstream name."""
        found: dict[str, Backend] = {}
        for route in self.routes:
            found.setdefault(route.main.upstream, route.main)
            if route.canary is not None:
                found.setdefault(route.canary.backend.upstream, route.canary.backend)
        return tuple(found[name] for name in sorted(found))

    def route(self, host: str, path: str = "/") -> Route | None:
        for r in self.routes:
            if r.host == host and r.path == path:
                return r
        return None


class Reason(StrEnum):
    NO_ENDPOINTS = "main upstream has no endpoints (503)"
    AFFINITY_MAIN = "affinity cookie points at the main backend"
    NO_CANARY = "no canary backend"
    CANARY_NO_ENDPOINTS = "canary backend has no endpoints"
    AFFINITY_CANARY = "affinity cookie points at the canary backend"
    HEADER_VALUE = "header equals canary-by-header-value"
    HEADER_PATTERN = "header matches canary-by-header-pattern"
    HEADER_ALWAYS = "header is 'always'"
    HEADER_NEVER = "header is 'never'"
    COOKIE_ALWAYS = "cookie is 'always'"
    COOKIE_NEVER = "cookie is 'never'"
    WEIGHT_IN = "weight draw fell in the canary share"
    WEIGHT_OUT = "weight draw fell outside the canary share"


@dataclass(frozen=True)
class Decision:
    target: Backend | None  # None: 503
    canary: bool
    reason: Reason


def parse_affinity_cookie(raw: str | None) -> tuple[str | None, str | None]:
    """(upstream key, backend key) from a sticky cookie ``<key>|<backend key>``, split as sticky.lua does."""
    if not raw:
        return None, None
    parts = raw.split(AFFINITY_COOKIE_DELIMITER)
    return parts[0], parts[1] if len(parts) > 1 else None


def decide(
    route: Route,
    headers: Mapping[str, str],
    cookies: Mapping[str, str],
    draw: Callable[[int], int],
    pattern_match: Callable[[str, str], bool] | None = None,
) -> Decision:
    """Which backend ingress-nginx sends this request to, and why.

    ``headers`` keys are matched case-insensitively; ``draw(total)`` returns an integer in [1, total] (Lua's
    ``math.random(total)``); ``pattern_match(pattern, value)`` stands in for ``ngx.re.match`` (default:
    Python's ``re.search``).
    """
    main = route.main
    if not main.endpoints:
        return Decision(None, False, Reason.NO_ENDPOINTS)
    canary = route.canary
    if route.affinity is not None:
        _, key = parse_affinity_cookie(cookies.get(route.affinity.cookie))
        if key == main.key:
            return Decision(main, False, Reason.AFFINITY_MAIN)
    if canary is None:
        return Decision(main, False, Reason.NO_CANARY)
    if not canary.backend.endpoints:
        return Decision(main, False, Reason.CANARY_NO_ENDPOINTS)
    alt = canary.backend
    if canary.affinity is not None:
        _, key = parse_affinity_cookie(cookies.get(canary.affinity.cookie))
        if key == alt.key:
            return Decision(alt, True, Reason.AFFINITY_CANARY)

    lowered = {k.lower(): v for k, v in headers.items()}
    header = lowered.get(canary.header.lower()) if canary.header else None
    if header is not None:
        if canary.header_value:
            if header == canary.header_value:
                return Decision(alt, True, Reason.HEADER_VALUE)
        elif canary.header_pattern:
            if _matches(canary.header_pattern, header, pattern_match):
                return Decision(alt, True, Reason.HEADER_PATTERN)
        elif header == "always":
            return Decision(alt, True, Reason.HEADER_ALWAYS)
        elif header == "never":
            return Decision(main, False, Reason.HEADER_NEVER)

    cookie = cookies.get(canary.cookie) if canary.cookie else None
    if cookie == "always":
        return Decision(alt, True, Reason.COOKIE_ALWAYS)
    if cookie == "never":
        return Decision(main, False, Reason.COOKIE_NEVER)

    if draw(canary.effective_total) <= canary.weight:
        return Decision(alt, True, Reason.WEIGHT_IN)
    return Decision(main, False, Reason.WEIGHT_OUT)


def _matches(pattern: str, value: str, pattern_match: Callable[[str, str], bool] | None) -> bool:
    if pattern_match is not None:
        return pattern_match(pattern, value)
    try:
        return re.search(pattern, value) is not None
    except re.error:
        return False
