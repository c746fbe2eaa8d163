"""ingress-nginx canary router: a second Ingress with ``canary: "true"`` annotations for the same hosts and
paths as the main Ingress, and the main Ingress's backend switched at promotion.

Facts relied on (ingress-nginx v1.x, docs/user-guide/nginx-configuration/annotations.md and
rootfs/etc/nginx/lua/balancer.lua):
- one canary Ingress per host/path: the balancer consults only the first alternative backend, so Songbird
  refuses to start when another canary for the main Ingress's host/path exists that it did not create;
- ``canary-weight`` is out of ``canary-weight-total``, which counts only above 100: sub-percent steps are
  written with a total of 10000;
- header (``always``/``never``, or an exact ``canary-by-header-value``) beats cookie beats weight;
- with cookie affinity and ``affinity-canary-behavior: sticky``, a client holding the canary's affinity
  cookie keeps reaching the canary whatever the weight: withdrawing traffic therefore removes the
  affinity annotations together with header and cookie routing, not only the weight.
The canary Ingress carries ``app.kubernetes.io/managed-by: songbird``; an Ingress without it is never
changed or deleted. It also carries ``songbird.dev/rollout: <policy>``: the policy that created it owns
it, and a second policy naming the same main Ingress is refused with an error naming the first.
"""

from __future__ import annotations

import copy
from typing import Any

from songbird.analysis.plan import TrafficSplit
from songbird.config.errors import PolicyError
from songbird.config.policy import Policy
from songbird.controller.errors import NotFound, OwnershipError
from songbird.controller.keys import MANAGED_BY_ANNOTATION, MANAGED_BY_VALUE
from songbird.controller.ports import ClusterReader, Kind, Obj
from songbird.controller.routers.base import Change, RouteView

ROLLOUT_LABEL = "songbird.dev/rollout"
# The deprecated class annotation, copied from the main Ingress (module docstring: why).
LEGACY_CLASS_ANNOTATION = "kubernetes.io/ingress.class"
# Annotation suffixes Songbird writes on the canary Ingress (and removes when it withdraws routing).
CANARY_KEYS = (
    "canary",
    "canary-weight",
    "canary-weight-total",
    "canary-by-header",
    "canary-by-header-value",
    "canary-by-cookie",
    "affinity",
    "session-cookie-name",
    "affinity-canary-behavior",
)


def canary_name(main: str) -> str:
    return f"{main}-canary"


def _meta(obj: Obj) -> dict[str, Any]:
    meta: dict[str, Any] = obj.get("metadata") or {}
    return meta


def _owned(obj: Obj) -> bool:
    return (_meta(obj).get("labels") or {}).get(MANAGED_BY_ANNOTATION) == MANAGED_BY_VALUE


def _backend_services(spec: dict[str, Any]) -> list[str]:
    names: list[str] = []
    default = ((spec.get("defaultBackend") or {}).get("service") or {}).get("name")
    if default:
        names.append(default)
    for rule in spec.get("rules") or []:
        for path in (rule.get("http") or {}).get("paths") or []:
            name = ((path.get("backend") or {}).get("service") or {}).get("name")
            if name:
                names.append(name)
    return names


def _host_paths(spec: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (rule.get("host", ""), path.get("path", "/"))
        for rule in spec.get("rules") or []
        for path in (rule.get("http") or {}).get("paths") or []
    }


def _retarget(spec: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    """A copy of an Ingress spec whose backends pointing at Service ``old`` point at ``new``."""
    out = copy.deepcopy(spec)
    backends = [out.get("defaultBackend")] + [
        path.get("backend")
        for rule in out.get("rules") or []
        for path in (rule.get("http") or {}).get("paths") or []
    ]
    for backend in backends:
        service = (backend or {}).get("service")
        if service and service.get("name") == old:
            service["name"] = new
    return out


class IngressNginxRouter:
    def __init__(self, *, prefix: str = "nginx.ingress.kubernetes.io") -> None:
        self.prefix = prefix

    def _key(self, suffix: str) -> str:
        return f"{self.prefix}/{suffix}"

    # -- read ------------------------------------------------------------------------------------------

    def read(self, reader: ClusterReader, namespace: str, policy: Policy, rollout: str) -> RouteView:
        main = reader.get(Kind.INGRESS, namespace, policy.ingress)
        if main is None:
            raise NotFound(
                f"main Ingress {namespace}/{policy.ingress} not found (policy field 'ingress')",
                obj=f"Ingress {namespace}/{policy.ingress}",
                status=404,
            )
        annotations = _meta(main).get("annotations") or {}
        if annotations.get(self._key("canary")) == "true":
            raise PolicyError(
                f"Ingress {namespace}/{policy.ingress} is itself a canary Ingress; name the main one",
                path="ingress",
            )
        services = sorted(set(_backend_services(main.get("spec") or {})))
        if len(services) != 1:
            found = ", ".join(services) or "none"
            raise PolicyError(
                f"Ingress {namespace}/{policy.ingress} must route to exactly one Service (found: {found})",
                path="ingress",
            )
        name = canary_name(policy.ingress)
        canary: Obj | None = None
        wanted = _host_paths(main.get("spec") or {})
        for other in reader.list_objects(Kind.INGRESS, namespace):
            other_name = _meta(other).get("name")
            if other_name == policy.ingress:
                continue
            if other_name == name:
                if not _owned(other):
                    raise OwnershipError(
                        f"an Ingress named {name} exists and is not managed by Songbird (label "
                        f"{MANAGED_BY_ANNOTATION}={MANAGED_BY_VALUE} missing); Songbird will not change it",
                        obj=f"Ingress {namespace}/{name}",
                        path="ingress",
                    )
                owner = (_meta(other).get("labels") or {}).get(ROLLOUT_LABEL)
                if owner and owner != rollout:
                    # Two policies naming one main Ingress would fight over its single canary Ingress
                    # (ingress-nginx honours one canary per host/path): the first one keeps it.
                    raise OwnershipError(
                        f"Ingress {namespace}/{name} belongs to policy {namespace}/{owner}, which names the "
                        f"same main Ingress {policy.ingress}; policy {namespace}/{rollout} is refused "
                        "until that rollout ends or that policy is deleted",
                        obj=f"Ingress {namespace}/{name}",
                        path="ingress",
                    )
                canary = other
                continue
            other_annotations = _meta(other).get("annotations") or {}
            shared = wanted & _host_paths(other.get("spec") or {})
            if other_annotations.get(self._key("canary")) == "true" and shared:
                host, path = sorted(shared)[0]
                raise OwnershipError(
                    f"Ingress {namespace}/{other_name} already carries a canary for {host}{path} and was not "
                    "created by Songbird; ingress-nginx honours only one canary per host/path",
                    obj=f"Ingress {namespace}/{other_name}",
                    path="ingress",
                )
        return RouteView(
            namespace=namespace,
            main=main,
            canary=canary,
            stable_service=services[0],
            current=self._read_split(services[0], canary),
        )

    def _read_split(self, stable_service: str, canary: Obj | None) -> TrafficSplit:
        if canary is None:
            return TrafficSplit(stable_service=stable_service)
        annotations = _meta(canary).get("annotations") or {}
        try:
            weight = float(annotations.get(self._key("canary-weight"), "0"))
            total = float(annotations.get(self._key("canary-weight-total"), "100"))
        except ValueError:
            weight, total = 0.0, 100.0
        total = total if total > 100 else 100.0
        services = _backend_services(canary.get("spec") or {})
        match = any(self._key(k) in annotations for k in ("canary-by-header", "canary-by-cookie"))
        return TrafficSplit(
            stable_service=stable_service,
            canary_service=services[0] if services else None,
            weight=weight * 100.0 / total,
            match_routes=match,
        )

    # -- plan ------------------------------------------------------------------------------------------

    def _annotations(self, policy: Policy, split: TrafficSplit) -> dict[str, str]:
        whole = all(float(w).is_integer() for w in policy.steps) and float(split.weight).is_integer()
        out = {self._key("canary"): "true"}
        if whole:
            out[self._key("canary-weight")] = str(int(split.weight))
        else:
            out[self._key("canary-weight")] = str(round(split.weight * 100))
            out[self._key("canary-weight-total")] = "10000"
        if split.match_routes:
            routing = policy.routing
            if routing.header is not None:
                out[self._key("canary-by-header")] = routing.header.name
                if routing.header.value != "always":
                    out[self._key("canary-by-header-value")] = routing.header.value
            if routing.cookie is not None:
                out[self._key("canary-by-cookie")] = routing.cookie
            if routing.sticky:
                out[self._key("affinity")] = "cookie"
                out[self._key("session-cookie-name")] = f"songbird-{policy.ingress}"
                out[self._key("affinity-canary-behavior")] = "sticky"
        return out

    def render_canary(self, view: RouteView, policy: Policy, rollout: str, split: TrafficSplit) -> Obj:
        """The whole canary Ingress for ``split`` (same hosts, paths, class and TLS as the main one)."""
        assert split.canary_service is not None
        main_spec = view.main.get("spec") or {}
        spec = _retarget(main_spec, view.stable_service, split.canary_service)
        spec = {k: v for k, v in spec.items() if k in ("ingressClassName", "rules", "tls", "defaultBackend")}
        annotations = self._annotations(policy, split)
        legacy_class = (_meta(view.main).get("annotations") or {}).get(LEGACY_CLASS_ANNOTATION)
        if legacy_class is not None:
            annotations[LEGACY_CLASS_ANNOTATION] = legacy_class
        return {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {
                "name": canary_name(policy.ingress),
                "namespace": view.namespace,
                "labels": {MANAGED_BY_ANNOTATION: MANAGED_BY_VALUE, ROLLOUT_LABEL: rollout},
                "annotations": annotations,
            },
            "spec": spec,
        }

    def plan(self, view: RouteView, policy: Policy, rollout: str, split: TrafficSplit) -> list[Change]:
        changes: list[Change] = []
        name = canary_name(policy.ingress)
        if split.canary_service is not None:
            desired = self.render_canary(view, policy, rollout, split)
            if view.canary is None:
                changes.append(
                    Change(
                        op="create",
                        kind=Kind.INGRESS,
                        name=name,
                        body=desired,
                        what=f"canary Ingress created at weight {split.weight:g}%",
                    )
                )
            else:
                patch = self._canary_patch(view.canary, desired)
                if patch:
                    changes.append(
                        Change(
                            op="patch",
                            kind=Kind.INGRESS,
                            name=name,
                            body=patch,
                            what=self._describe(view.current, split),
                        )
                    )
        if split.stable_service != view.stable_service:
            # Promotion: the main Ingress routes to the new version. The merge patch replaces the rules list
            # as a whole, so it carries the resourceVersion it was computed from: a concurrent edit of the
            # main Ingress makes the API server answer 409 instead of being overwritten.
            spec = _retarget(view.main.get("spec") or {}, view.stable_service, split.stable_service)
            body: dict[str, Any] = {"spec": {k: spec[k] for k in ("rules", "defaultBackend") if k in spec}}
            version = _meta(view.main).get("resourceVersion")
            if version:
                body["metadata"] = {"resourceVersion": version}
            changes.append(
                Change(
                    op="patch",
                    kind=Kind.INGRESS,
                    name=policy.ingress,
                    body=body,
                    what=f"main Ingress now routes to {split.stable_service}",
                )
            )
        if split.canary_service is None and view.canary is not None:
            changes.append(Change(op="delete", kind=Kind.INGRESS, name=name, what="canary Ingress removed"))
        return changes

    def _canary_patch(self, observed: Obj, desired: Obj) -> dict[str, Any]:
        patch: dict[str, Any] = {}
        have = _meta(observed).get("annotations") or {}
        want = desired["metadata"]["annotations"]
        ours = {self._key(k) for k in CANARY_KEYS} | {LEGACY_CLASS_ANNOTATION}
        delta: dict[str, Any] = {k: v for k, v in want.items() if have.get(k) != v}
        delta.update({k: None for k in have if k in ours and k not in want})
        if delta:
            patch["metadata"] = {"annotations": delta}
        observed_spec = observed.get("spec") or {}
        spec_delta = {k: v for k, v in desired["spec"].items() if observed_spec.get(k) != v}
        if spec_delta:
            patch["spec"] = spec_delta
        return patch

    @staticmethod
    def _describe(before: TrafficSplit, after: TrafficSplit) -> str:
        parts = []
        if before.weight != after.weight:
            parts.append(f"canary weight {before.weight:g}% -> {after.weight:g}%")
        if before.match_routes != after.match_routes:
            parts.append("header/cookie routing " + ("on" if after.match_routes else "off"))
        return ", ".join(parts) or "canary Ingress updated"
