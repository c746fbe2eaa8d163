"""The ingress-nginx router, on plain objects: the canary Ingress it renders (same hosts, paths, class and TLS
as the main one, backend the canary Service, ownership label), the annotations for weight, header, cookie
and stickiness, sub-percent weights with a total of 10000, minimal patches and no-op skipping, withdrawing
routing removes affinity too, promotion patches the main Ingress with its resourceVersion, the legacy class
annotation followed (copied, changed, removed with the main Ingress's), and the refusals: a hand-made canary
for the same host/path, a foreign Ingress with our name, a canary Ingress owned by another policy naming the
same main Ingress, a main Ingress routing to several Services."""

from __future__ import annotations

from typing import Any

import pytest

from songbird.analysis.plan import TrafficSplit
from songbird.config.errors import PolicyError
from songbird.config.loader import load_policy_yaml
from songbird.controller.errors import OwnershipError
from songbird.controller.ports import Kind, Obj
from songbird.controller.routers.ingress_nginx import IngressNginxRouter
from tests.support import scenario

P = "nginx.ingress.kubernetes.io"
LEGACY = "kubernetes.io/ingress.class"
POLICY = load_policy_yaml("""
ingress: nginx
canary: {deployment: nginx-v2, service: nginx-v2}
steps: [10, 20, 40, 60, 80]
routing: {header: {name: Region, value: always}, cookie: canary}
""")


class Objects:
    """A read-only in-memory ClusterReader holding plain objects."""

    def __init__(self, *objs: Obj) -> None:
        self.objs = {(o["kind"], o["metadata"]["name"]): o for o in objs}

    def get(self, kind: Kind, namespace: str, name: str) -> Obj | None:
        return self.objs.get((kind.value, name))

    def list_objects(self, kind: Kind, namespace: str) -> list[Obj]:
        return [o for (k, _), o in self.objs.items() if k == kind.value]

    def list_policies(self, namespaces: Any) -> list[Obj]:
        return []


def main_ingress() -> Obj:
    obj = scenario.main_ingress()
    obj.setdefault("kind", "Ingress")
    obj["metadata"]["resourceVersion"] = "41"
    return obj


def test_renders_canary_ingress_mirroring_the_main_one() -> None:
    router = IngressNginxRouter()
    view = router.read(Objects(main_ingress()), "default", POLICY, "nginx")
    assert view.stable_service == "nginx-v1" and view.canary is None
    split = TrafficSplit(stable_service="nginx-v1", canary_service="nginx-v2", weight=10, match_routes=True)
    (change,) = router.plan(view, POLICY, "nginx", split)
    assert change.op == "create" and change.name == "nginx-canary"
    body = change.body
    assert body["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "songbird"
    assert body["metadata"]["annotations"] == {
        f"{P}/canary": "true",
        f"{P}/canary-weight": "10",
        f"{P}/canary-by-header": "Region",
        f"{P}/canary-by-cookie": "canary",
    }
    main = main_ingress()["spec"]
    assert body["spec"]["tls"] == main["tls"] and body["spec"]["ingressClassName"] == main["ingressClassName"]
    rule = body["spec"]["rules"][0]
    assert rule["host"] == "foo.example.com"
    assert rule["http"]["paths"][0]["backend"]["service"]["name"] == "nginx-v2"


def test_the_canary_follows_a_main_ingress_classed_by_the_legacy_annotation() -> None:
    """ingress-nginx ignores a class-less Ingress (without --watch-ingress-without-class): the canary of a
    main Ingress classed only by ``kubernetes.io/ingress.class`` must carry that annotation too."""
    router = IngressNginxRouter()
    split = TrafficSplit(stable_service="nginx-v1", canary_service="nginx-v2", weight=10, match_routes=True)
    legacy = main_ingress()
    del legacy["spec"]["ingressClassName"]
    legacy["metadata"]["annotations"][LEGACY] = "nginx"
    (change,) = router.plan(router.read(Objects(legacy), "default", POLICY, "nginx"), POLICY, "nginx", split)
    assert change.op == "create" and change.body["metadata"]["annotations"][LEGACY] == "nginx"
    assert "ingressClassName" not in change.body["spec"]
    canary = {**change.body, "kind": "Ingress"}
    # The main Ingress moves to another class: the canary follows on the next plan, the weight untouched.
    legacy["metadata"]["annotations"][LEGACY] = "internal"
    (moved,) = router.plan(
        router.read(Objects(legacy, canary), "default", POLICY, "nginx"), POLICY, "nginx", split
    )
    assert moved.op == "patch" and moved.body == {"metadata": {"annotations": {LEGACY: "internal"}}}
    # The main Ingress trades the annotation for spec.ingressClassName: the canary follows.
    del legacy["metadata"]["annotations"][LEGACY]
    legacy["spec"]["ingressClassName"] = "nginx"
    (dropped,) = router.plan(
        router.read(Objects(legacy, canary), "default", POLICY, "nginx"), POLICY, "nginx", split
    )
    assert dropped.body == {
        "metadata": {"annotations": {LEGACY: None}},
        "spec": {"ingressClassName": "nginx"},
    }
    # A main Ingress without the annotation gives a canary without it.
    (plain,) = router.plan(
        router.read(Objects(main_ingress()), "default", POLICY, "nginx"), POLICY, "nginx", split
    )
    assert LEGACY not in plain.body["metadata"]["annotations"]


def test_weight_change_is_a_minimal_patch_and_no_op_is_skipped() -> None:
    router = IngressNginxRouter()
    first = TrafficSplit(stable_service="nginx-v1", canary_service="nginx-v2", weight=10, match_routes=True)
    view = router.read(Objects(main_ingress()), "default", POLICY, "nginx")
    canary = router.render_canary(view, POLICY, "nginx", first)
    view = router.read(Objects(main_ingress(), canary), "default", POLICY, "nginx")
    assert view.current == first
    assert router.plan(view, POLICY, "nginx", first) == []
    (change,) = router.plan(
        view,
        POLICY,
        "nginx",
        TrafficSplit(stable_service="nginx-v1", canary_service="nginx-v2", weight=20, match_routes=True),
    )
    assert change.op == "patch" and change.body == {"metadata": {"annotations": {f"{P}/canary-weight": "20"}}}
    assert change.what == "canary weight 10% -> 20%"


def test_withdrawing_removes_header_cookie_and_affinity() -> None:
    sticky = load_policy_yaml(POLICY_TEXT_STICKY)
    router = IngressNginxRouter()
    on = TrafficSplit(stable_service="nginx-v1", canary_service="nginx-v2", weight=40, match_routes=True)
    view = router.read(Objects(main_ingress()), "default", sticky, "nginx")
    canary = router.render_canary(view, sticky, "nginx", on)
    assert canary["metadata"]["annotations"][f"{P}/affinity-canary-behavior"] == "sticky"
    view = router.read(Objects(main_ingress(), canary), "default", sticky, "nginx")
    (change,) = router.plan(
        view,
        sticky,
        "nginx",
        TrafficSplit(stable_service="nginx-v1", canary_service="nginx-v2", weight=0, match_routes=False),
    )
    assert change.body["metadata"]["annotations"] == {
        f"{P}/canary-weight": "0",
        f"{P}/canary-by-header": None,
        f"{P}/canary-by-header-value": None,
        f"{P}/affinity": None,
        f"{P}/session-cookie-name": None,
        f"{P}/affinity-canary-behavior": None,
    }


POLICY_TEXT_STICKY = """
ingress: nginx
canary: {deployment: nginx-v2, service: nginx-v2}
steps: [10, 40]
routing: {header: {name: Region, value: eu}, sticky: true}
"""


def test_sub_percent_weights_use_a_total_above_100() -> None:
    fine = load_policy_yaml("ingress: nginx\ncanary: {deployment: a, service: a}\nsteps: [0.5, 5, 50]\n")
    router = IngressNginxRouter()
    view = router.read(Objects(main_ingress()), "default", fine, "nginx")
    body = router.render_canary(
        view, fine, "nginx", TrafficSplit(stable_service="nginx-v1", canary_service="a", weight=0.5)
    )
    ann = body["metadata"]["annotations"]
    assert ann[f"{P}/canary-weight"] == "50" and ann[f"{P}/canary-weight-total"] == "10000"
    view = router.read(Objects(main_ingress(), body), "default", fine, "nginx")
    assert view.current.weight == pytest.approx(0.5)


def test_promotion_switches_main_with_resource_version_and_removes_canary() -> None:
    router = IngressNginxRouter()
    on = TrafficSplit(stable_service="nginx-v1", canary_service="nginx-v2", weight=80, match_routes=True)
    view = router.read(Objects(main_ingress()), "default", POLICY, "nginx")
    canary = router.render_canary(view, POLICY, "nginx", on)
    view = router.read(Objects(main_ingress(), canary), "default", POLICY, "nginx")
    switch, delete = router.plan(view, POLICY, "nginx", TrafficSplit(stable_service="nginx-v2"))
    assert switch.op == "patch" and switch.name == "nginx"
    assert switch.body["metadata"] == {"resourceVersion": "41"}
    backend = switch.body["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == "nginx-v2"
    assert delete.op == "delete" and delete.name == "nginx-canary"


def test_refuses_a_canary_it_did_not_create() -> None:
    hand_made = main_ingress()
    hand_made["metadata"] = {
        "name": "by-hand",
        "annotations": {f"{P}/canary": "true", f"{P}/canary-weight": "10"},
    }
    with pytest.raises(OwnershipError, match="by-hand already carries a canary for foo.example.com/") as info:
        IngressNginxRouter().read(Objects(main_ingress(), hand_made), "default", POLICY, "nginx")
    assert info.value.obj == "Ingress default/by-hand"


def test_refuses_a_foreign_ingress_with_its_name() -> None:
    foreign = main_ingress()
    foreign["metadata"] = {"name": "nginx-canary"}
    foreign["spec"]["rules"][0]["host"] = "other.example.com"
    with pytest.raises(OwnershipError, match="not managed by Songbird"):
        IngressNginxRouter().read(Objects(main_ingress(), foreign), "default", POLICY, "nginx")


def test_a_second_policy_for_the_same_main_ingress_is_refused_naming_the_first() -> None:
    router = IngressNginxRouter()
    split = TrafficSplit(stable_service="nginx-v1", canary_service="nginx-v2", weight=10, match_routes=True)
    first = router.plan(
        router.read(Objects(main_ingress()), "default", POLICY, "first"), POLICY, "first", split
    )
    created = {**first[0].body, "kind": "Ingress"}
    objects = Objects(main_ingress(), created)
    with pytest.raises(OwnershipError, match="belongs to policy default/first") as info:
        router.read(objects, "default", POLICY, "second")
    assert info.value.obj == "Ingress default/nginx-canary" and info.value.path == "ingress"
    assert "policy default/second is refused" in str(info.value)
    # The owner itself still reads and changes its canary Ingress.
    view = router.read(objects, "default", POLICY, "first")
    assert view.canary is not None and view.current.weight == 10


def test_main_ingress_must_route_to_one_service() -> None:
    main = main_ingress()
    main["spec"]["defaultBackend"] = {"service": {"name": "other", "port": {"number": 80}}}
    with pytest.raises(PolicyError, match="exactly one Service") as info:
        IngressNginxRouter().read(Objects(main), "default", POLICY, "nginx")
    assert info.value.path == "ingress"
