"""Ingress objects -> `RoutingModel`, with the canary semantics of ingress-nginx (pure, no I/O).

Input: Ingresses as plain dicts in the networking.k8s.io/v1 JSON shape, and the local addresses of the
ready endpoints of each Service (keyed ``"namespace/name"`` or just ``"name"``; the first wins).

What is reproduced, with where ingress-nginx does it:
- order: Ingresses are taken oldest first (``creationTimestamp``), ties broken by ``namespace/name``
  DESCENDING (``sortIngressSlice`` in internal/ingress/controller/store/store.go); the first non-canary
  Ingress to claim a host/path (and pathType) keeps it, a later one is skipped ("Location ... already
  configured for server ..." in ``getBackendServers``, internal/ingress/controller/controller.go);
- the canary annotations are read under ``annotation_prefix`` (ingress-nginx's ``--annotations-prefix``):
  a canary Ingress written under another prefix is not a canary here but a plain Ingress, skipped for a
  host/path an older Ingress already serves (the canary-ignored scenario);
- ``canary`` is parsed like Go's ``strconv.ParseBool``; integers like ``strconv.Atoi`` (an invalid
  ``canary-weight`` is 0, an invalid ``canary-weight-total`` keeps the default 100);
- a canary path merges only into a location of a non-canary Ingress with the same host, path and pathType,
  and the alternative backend is attached to that location's main UPSTREAM, so it also applies to other
  locations served by the same upstream (``mergeAlternativeBackends`` in internal/ingress/controller/
  controller.go); a canary without such a location is ignored, and so is one whose Service is the main one;
- only the first alternative backend of an upstream is consulted (balancer.lua: "TODO: support traffic
  shaping for n > 1 alternative backends"); later canaries are ignored and noted;
- session affinity: with ``affinity-canary-behavior`` other than ``legacy`` the canary backend copies the
  main backend's affinity (``mergeAlternativeBackend``), with ``legacy`` it keeps its own annotations;
- every other annotation of a canary Ingress is ignored.

- ingress classes, when the lab is given one (``ingress_class``, as ingress-nginx's ``--ingress-class``):
  an Ingress is served when its ``spec.ingressClassName`` is that class or, without one, when its legacy
  ``kubernetes.io/ingress.class`` annotation is; any other Ingress (another class, or none at all, as
  ingress-nginx without ``--watch-ingress-without-class``) is ignored and noted. Without a class every
  Ingress is served.

What is not: ``spec.defaultBackend``, resource backends, TLS. They are noted, not served.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from songbird.lab.model import (
    DEFAULT_AFFINITY_COOKIE,
    DEFAULT_WEIGHT_TOTAL,
    Affinity,
    Backend,
    Canary,
    PathType,
    Route,
    RoutingModel,
)

DEFAULT_ANNOTATION_PREFIX = "nginx.ingress.kubernetes.io"
LEGACY_CLASS_ANNOTATION = "kubernetes.io/ingress.class"

_GO_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_GO_INT = re.compile(r"^[+-]?[0-9]+$")

Obj = Mapping[str, Any]


def translate(
    ingresses: Iterable[Obj],
    endpoints: Mapping[str, Sequence[str]],
    *,
    annotation_prefix: str = DEFAULT_ANNOTATION_PREFIX,
    ingress_class: str | None = None,
) -> RoutingModel:
    """The routing model ingress-nginx would build from these Ingresses and endpoints (only those of
    ``ingress_class`` when one is given)."""
    notes: list[str] = []
    if ingress_class is not None:
        ingresses = list(_of_class(ingresses, ingress_class, notes))
    ordered = _ingress_order(ingresses)
    routes: dict[tuple[str, str, PathType], Route] = {}

    mains = [i for i in ordered if not _is_canary(i, annotation_prefix)]
    canaries = [i for i in ordered if _is_canary(i, annotation_prefix)]

    for ing in mains:
        ns, name = _ns_name(ing)
        if _spec(ing).get("defaultBackend"):
            notes.append(f"{ns}/{name}: spec.defaultBackend is not served by the lab")
        affinity = _affinity(ing, annotation_prefix)
        for host, path, path_type, svc, port in _paths(ing, notes):
            key = (host, path, path_type)
            if key in routes:
                owner = routes[key].ingress
                notes.append(f"{ns}/{name}: {host or '_'}{path} already served by Ingress {owner}; skipped")
                continue
            routes[key] = Route(
                host=host,
                path=path,
                path_type=path_type,
                namespace=ns,
                ingress=name,
                main=_backend(ns, svc, port, endpoints),
                affinity=affinity,
            )

    alternatives: dict[str, Canary] = {}
    for ing in canaries:
        ns, name = _ns_name(ing)
        for host, path, path_type, svc, port in _paths(ing, notes):
            where = f"{host or '_'}{path}"
            primary = routes.get((host, path, path_type))
            if primary is None:
                notes.append(f"{ns}/{name}: canary for {where} ignored: no non-canary Ingress serves it")
                continue
            alt = _backend(ns, svc, port, endpoints)
            if alt.upstream == primary.main.upstream:
                notes.append(f"{ns}/{name}: canary for {where} ignored: its upstream is the main upstream")
                continue
            existing = alternatives.get(primary.main.upstream)
            if existing is not None:
                if existing.backend.upstream != alt.upstream or existing.ingress != name:
                    notes.append(
                        f"{ns}/{name}: canary for {where} ignored: upstream {primary.main.upstream} already "
                        f"has canary {existing.ingress}"
                    )
                continue
            alternatives[primary.main.upstream] = _canary(ing, name, alt, primary, annotation_prefix)

    merged = tuple(
        _with_canary(r, alternatives.get(r.main.upstream))
        for r in sorted(routes.values(), key=lambda r: (r.host, r.path, r.path_type))
    )
    return RoutingModel(routes=merged, notes=tuple(notes))


def _with_canary(route: Route, canary: Canary | None) -> Route:
    if canary is None:
        return route
    return Route(
        host=route.host,
        path=route.path,
        path_type=route.path_type,
        namespace=route.namespace,
        ingress=route.ingress,
        main=route.main,
        affinity=route.affinity,
        canary=canary,
    )


def _canary(ing: Obj, name: str, alt: Backend, primary: Route, prefix: str) -> Canary:
    ann = _annotations(ing)

    def get(key: str) -> str:
        return str(ann.get(f"{prefix}/{key}", ""))

    affinity = _affinity(ing, prefix) if get("affinity-canary-behavior") == "legacy" else primary.affinity
    return Canary(
        ingress=name,
        backend=alt,
        header=get("canary-by-header"),
        header_value=get("canary-by-header-value"),
        header_pattern=get("canary-by-header-pattern"),
        cookie=get("canary-by-cookie"),
        weight=_go_int(get("canary-weight"), 0),
        weight_total=_go_int(get("canary-weight-total"), DEFAULT_WEIGHT_TOTAL),
        affinity=affinity,
    )


def _affinity(ing: Obj, prefix: str) -> Affinity | None:
    ann = _annotations(ing)
    if ann.get(f"{prefix}/affinity") != "cookie":
        return None
    cookie = str(ann.get(f"{prefix}/session-cookie-name") or DEFAULT_AFFINITY_COOKIE)
    path = ann.get(f"{prefix}/session-cookie-path")
    return Affinity(cookie=cookie, path=str(path) if path else None)


def _backend(ns: str, svc: str, port: str, endpoints: Mapping[str, Sequence[str]]) -> Backend:
    found = endpoints.get(f"{ns}/{svc}")
    if found is None:
        found = endpoints.get(svc, ())
    return Backend(namespace=ns, service=svc, port=port, endpoints=tuple(sorted(set(found))))


def _paths(ing: Obj, notes: list[str]) -> Iterable[tuple[str, str, PathType, str, str]]:
    """(host, path, pathType, service, port) for every service-backed path of the Ingress."""
    ns, name = _ns_name(ing)
    for rule in _spec(ing).get("rules") or ():
        host = str(rule.get("host") or "")
        for p in (rule.get("http") or {}).get("paths") or ():
            path = str(p.get("path") or "/")
            raw_type = p.get("pathType") or PathType.IMPLEMENTATION_SPECIFIC.value
            try:
                path_type = PathType(raw_type)
            except ValueError:
                notes.append(f"{ns}/{name}: unknown pathType {raw_type!r} for {host or '_'}{path}; skipped")
                continue
            service = (p.get("backend") or {}).get("service")
            if not service or not service.get("name"):
                notes.append(f"{ns}/{name}: {host or '_'}{path} has no service backend; skipped")
                continue
            port = service.get("port") or {}
            number = port.get("number")
            port_id = str(number) if number else str(port.get("name") or "")
            yield host, path, path_type, str(service["name"]), port_id


def _of_class(ingresses: Iterable[Obj], ingress_class: str, notes: list[str]) -> Iterable[Obj]:
    for ing in ingresses:
        declared = _spec(ing).get("ingressClassName")
        if declared is None:
            declared = _annotations(ing).get(LEGACY_CLASS_ANNOTATION)
        if declared == ingress_class:
            yield ing
        else:
            ns, name = _ns_name(ing)
            said = "no ingress class" if declared is None else f"ingress class {declared!r}"
            notes.append(f"{ns}/{name}: ignored: {said}, not {ingress_class!r}")


def _ingress_order(ingresses: Iterable[Obj]) -> list[Obj]:
    # Two stable passes give "timestamp ascending, then namespace/name descending".
    by_name = sorted(ingresses, key=lambda i: "/".join(_ns_name(i)), reverse=True)
    return sorted(by_name, key=lambda i: str(_meta(i).get("creationTimestamp") or ""))


def _is_canary(ing: Obj, prefix: str) -> bool:
    return str(_annotations(ing).get(f"{prefix}/canary", "")) in _GO_TRUE


def _go_int(raw: str, default: int) -> int:
    return int(raw) if _GO_INT.match(raw) else default


def _meta(ing: Obj) -> Mapping[str, Any]:
    return ing.get("metadata") or {}


def _spec(ing: Obj) -> Mapping[str, Any]:
    return ing.get("spec") or {}


def _annotations(ing: Obj) -> Mapping[str, Any]:
    return _meta(ing).get("annotations") or {}


def _ns_name(ing: Obj) -> tuple[str, str]:
    meta = _meta(ing)
    return str(meta.get("namespace") or "default"), str(meta.get("name") or "")
