"""The translator and the canary decision against ingress-nginx's rules (pure, no processes).

Covers: the seed scenario (main + canary by header and weight); canary-weight-total used only above 100;
a 'never' header beats any weight; canary-by-header-value is an exact match, turns off always/never and
makes -pattern ignored; pattern without value; cookie counts only 'always'/'never'; precedence header >
cookie > weight; a second canary on the same host/path is ignored (the oldest wins); a canary without a
main Ingress (or with another pathType) is ignored; the alternative backend attaches to the main upstream;
ingress order (creationTimestamp, then namespace/name descending); session affinity (sticky default copies
the main affinity, legacy keeps the canary's own; an affinity cookie beats the header); endpoints (main
without endpoints -> 503, canary without endpoints -> main); upstream names; Go-style parsing of
annotations; a configurable annotation prefix; ingress classes (only the lab's class is served, by
``ingressClassName`` or the legacy annotation; a canary Ingress rendered by Songbird's router for a main
Ingress classed by the legacy annotation carries that class and is served); a canary Ingress rendered
under another annotation prefix than the controller reads is a plain Ingress for the main one's host/path,
skipped as the main Ingress is older: the canary-ignored scenario.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from songbird.analysis.plan import TrafficSplit
from songbird.config.loader import load_policy_yaml
from songbird.controller.routers import make_router
from songbird.controller.routers.base import RouteView
from songbird.lab import scenarios
from songbird.lab.model import DEFAULT_AFFINITY_COOKIE, Reason, Route, RoutingModel, backend_key, decide
from songbird.lab.translator import translate
from tests.lab.objects import HOST, canary, ingress, main

EPS = {"nginx-v1": ["127.0.0.1:1001", "127.0.0.1:1002"], "nginx-v2": ["127.0.0.1:2001"]}


def only_route(model: RoutingModel) -> Route:
    assert len(model.routes) == 1, model
    return model.routes[0]


def draw_always(value: int) -> Callable[[int], int]:
    return lambda total: value


def share(
    route: Route, headers: dict[str, str] | None = None, cookies: dict[str, str] | None = None
) -> float:
    """Exact share of requests sent to the canary, over every possible draw of math.random(total)."""
    seen: list[int] = []

    def record(total: int) -> int:
        seen.append(total)
        return 1

    decide(route, headers or {}, cookies or {}, record)
    if not seen:  # decided before the weight
        return 1.0 if decide(route, headers or {}, cookies or {}, draw_always(1)).canary else 0.0
    total = seen[0]
    hits = sum(
        decide(route, headers or {}, cookies or {}, draw_always(d)).canary for d in range(1, total + 1)
    )
    return hits / total


def test_seed_scenario_routes_ten_percent_and_region_always() -> None:
    model = translate([main(), canary(canary_by_header="Region", canary_weight="10")], EPS)
    route = only_route(model)
    assert (route.host, route.path, route.ingress, route.main.upstream) == (
        HOST,
        "/",
        "nginx",
        "default-nginx-v1-80",
    )
    assert route.canary is not None and route.canary.backend.upstream == "default-nginx-v2-80"
    assert route.canary.backend.endpoints == ("127.0.0.1:2001",)
    assert share(route) == pytest.approx(0.10)
    assert share(route, {"Region": "always"}) == 1.0
    assert share(route, {"region": "never"}) == 0.0
    assert model.notes == ()


@pytest.mark.parametrize(
    ("total", "weight", "expected"),
    [
        ("50", "10", 0.10),
        ("100", "10", 0.10),
        ("1000", "5", 0.005),
        ("10000", "1", 0.0001),
        ("0", "30", 0.30),
    ],
)
def test_weight_total_counts_only_above_100(total: str, weight: str, expected: float) -> None:
    route = only_route(translate([main(), canary(canary_weight=weight, canary_weight_total=total)], EPS))
    assert share(route) == pytest.approx(expected)


def test_never_header_beats_full_weight() -> None:
    route = only_route(translate([main(), canary(canary_by_header="Region", canary_weight="100")], EPS))
    decision = decide(route, {"Region": "never"}, {}, draw_always(1))
    assert (decision.canary, decision.reason) == (False, Reason.HEADER_NEVER)
    assert share(route) == 1.0


def test_header_value_is_an_exact_match_and_disables_always_never() -> None:
    route = only_route(
        translate([main(), canary(canary_by_header="Region", canary_by_header_value="eu-west")], EPS)
    )
    assert share(route, {"Region": "eu-west"}) == 1.0
    assert share(route, {"Region": "EU-WEST"}) == 0.0
    assert share(route, {"Region": "eu-west-1"}) == 0.0
    assert share(route, {"Region": "always"}) == 0.0


def test_header_value_that_does_not_match_falls_through_to_the_weight() -> None:
    route = only_route(
        translate(
            [main(), canary(canary_by_header="Region", canary_by_header_value="eu", canary_weight="100")], EPS
        )
    )
    assert decide(route, {"Region": "never"}, {}, draw_always(1)).reason is Reason.WEIGHT_IN


def test_pattern_is_ignored_when_a_value_is_set() -> None:
    route = only_route(
        translate(
            [
                main(),
                canary(canary_by_header="Region", canary_by_header_value="eu", canary_by_header_pattern=".*"),
            ],
            EPS,
        )
    )
    assert share(route, {"Region": "us"}) == 0.0
    assert share(route, {"Region": "eu"}) == 1.0


def test_pattern_without_value_matches() -> None:
    route = only_route(
        translate([main(), canary(canary_by_header="Region", canary_by_header_pattern="^eu-")], EPS)
    )
    assert share(route, {"Region": "eu-north"}) == 1.0
    assert share(route, {"Region": "us-east"}) == 0.0


def test_cookie_counts_only_always_and_never() -> None:
    route = only_route(translate([main(), canary(canary_by_cookie="beta", canary_weight="40")], EPS))
    assert share(route, cookies={"beta": "always"}) == 1.0
    assert share(route, cookies={"beta": "never"}) == 0.0
    assert share(route, cookies={"beta": "true"}) == pytest.approx(0.40)
    assert share(route, cookies={"beta": "1"}) == pytest.approx(0.40)


def test_precedence_header_then_cookie_then_weight() -> None:
    route = only_route(
        translate(
            [main(), canary(canary_by_header="Region", canary_by_cookie="beta", canary_weight="50")], EPS
        )
    )
    assert (
        decide(route, {"Region": "always"}, {"beta": "never"}, draw_always(100)).reason
        is Reason.HEADER_ALWAYS
    )
    assert (
        decide(route, {"Region": "never"}, {"beta": "always"}, draw_always(1)).reason is Reason.HEADER_NEVER
    )
    assert (
        decide(route, {"Region": "other"}, {"beta": "always"}, draw_always(100)).reason
        is Reason.COOKIE_ALWAYS
    )
    assert decide(route, {}, {"beta": "never"}, draw_always(1)).reason is Reason.COOKIE_NEVER
    assert decide(route, {}, {}, draw_always(50)).reason is Reason.WEIGHT_IN
    assert decide(route, {}, {}, draw_always(51)).reason is Reason.WEIGHT_OUT


def test_second_canary_on_the_same_host_path_is_ignored() -> None:
    first = canary("canary-a", "nginx-v2", canary_weight="10")
    second = canary("canary-b", "nginx-v3", canary_weight="90")
    second["metadata"]["creationTimestamp"] = "2026-01-03T00:00:00Z"
    model = translate([second, main(), first], {**EPS, "nginx-v3": ["127.0.0.1:3001"]})
    route = only_route(model)
    assert route.canary is not None and route.canary.ingress == "canary-a"
    assert share(route) == pytest.approx(0.10)
    assert any("canary-b" in n and "already has canary canary-a" in n for n in model.notes)


def test_canary_without_main_ingress_is_ignored() -> None:
    model = translate([canary(canary_weight="100")], EPS)
    assert model.routes == ()
    assert any("no non-canary Ingress" in n for n in model.notes)


def test_canary_for_another_path_or_path_type_is_ignored() -> None:
    other_path = ingress(
        "c1", "nginx-v2", path="/api", annotations={"canary": "true", "canary-weight": "100"}
    )
    other_type = ingress(
        "c2", "nginx-v2", path_type="Exact", annotations={"canary": "true", "canary-weight": "100"}
    )
    route = only_route(translate([main(), other_path, other_type], EPS))
    assert route.canary is None
    assert share(route) == 0.0


def test_canary_attaches_to_the_main_upstream_for_every_path_it_serves() -> None:
    api = ingress("nginx-api", "nginx-v1", path="/api")
    model = translate([main(), api, canary(canary_weight="100")], EPS)
    assert [r.path for r in model.routes] == ["/", "/api"]
    assert all(r.canary is not None and r.canary.ingress == "nginx-canary" for r in model.routes)


def test_canary_on_the_main_service_is_ignored() -> None:
    model = translate([main(), canary(service="nginx-v1", canary_weight="100")], EPS)
    assert only_route(model).canary is None
    assert any("main upstream" in n for n in model.notes)


def test_oldest_main_ingress_keeps_the_path_and_ties_go_to_the_greater_name() -> None:
    older = main("zz-old", "nginx-v1")
    older["metadata"]["creationTimestamp"] = "2025-01-01T00:00:00Z"
    newer = main("aa-new", "nginx-v2")
    assert only_route(translate([newer, older], EPS)).ingress == "zz-old"
    # Same timestamp: ingress-nginx sorts "namespace/name" descending, so "default/b" comes first.
    assert only_route(translate([main("a", "nginx-v1"), main("b", "nginx-v2")], EPS)).ingress == "b"


def test_sticky_canary_copies_main_affinity_and_cookies_beat_headers() -> None:
    route = only_route(
        translate([main(affinity="cookie"), canary(canary_by_header="Region", canary_weight="50")], EPS)
    )
    assert route.affinity is not None and route.affinity.cookie == DEFAULT_AFFINITY_COOKIE
    assert route.canary is not None and route.canary.affinity == route.affinity
    on_main = {DEFAULT_AFFINITY_COOKIE: f"k|{backend_key('default-nginx-v1-80')}"}
    on_canary = {DEFAULT_AFFINITY_COOKIE: f"k|{backend_key('default-nginx-v2-80')}"}
    # balancer.lua checks the main balancer's affinity before anything else, even the header.
    assert decide(route, {"Region": "always"}, on_main, draw_always(1)).reason is Reason.AFFINITY_MAIN
    assert decide(route, {"Region": "never"}, on_canary, draw_always(100)).reason is Reason.AFFINITY_CANARY
    assert (
        decide(route, {}, {DEFAULT_AFFINITY_COOKIE: "k|other"}, draw_always(100)).reason is Reason.WEIGHT_OUT
    )


def test_legacy_canary_keeps_its_own_affinity() -> None:
    legacy = canary(canary_weight="50", affinity_canary_behavior="legacy")
    route = only_route(translate([main(affinity="cookie", session_cookie_name="sb"), legacy], EPS))
    assert route.affinity is not None and route.affinity.cookie == "sb"
    assert route.canary is not None and route.canary.affinity is None
    on_canary = {"sb": f"k|{backend_key('default-nginx-v2-80')}"}
    assert decide(route, {}, on_canary, draw_always(100)).reason is Reason.WEIGHT_OUT


def test_endpoints_main_empty_is_503_and_canary_empty_goes_to_main() -> None:
    no_main = only_route(translate([main(), canary(canary_weight="100")], {"nginx-v2": ["127.0.0.1:2001"]}))
    decision = decide(no_main, {}, {}, draw_always(1))
    assert (decision.target, decision.reason) == (None, Reason.NO_ENDPOINTS)
    no_canary = only_route(
        translate([main(), canary(canary_by_header="Region")], {"nginx-v1": ["127.0.0.1:1"]})
    )
    decision = decide(no_canary, {"Region": "always"}, {}, draw_always(1))
    assert (decision.canary, decision.reason) == (False, Reason.CANARY_NO_ENDPOINTS)


def test_endpoints_keyed_by_namespace_and_name_win() -> None:
    route = only_route(
        translate([main()], {"default/nginx-v1": ["127.0.0.1:9"], "nginx-v1": ["127.0.0.1:8"]})
    )
    assert route.main.endpoints == ("127.0.0.1:9",)


def test_upstream_name_uses_port_number_or_name() -> None:
    assert only_route(translate([ingress("n", "web", port="http")], {})).main.upstream == "default-web-http"
    assert only_route(translate([ingress("n", "web", port=8080)], {})).main.upstream == "default-web-8080"


@pytest.mark.parametrize(("flag", "is_canary"), [("true", True), ("True", True), ("1", True), ("yes", False)])
def test_canary_flag_parsed_like_go(flag: str, is_canary: bool) -> None:
    maybe = ingress("maybe", "nginx-v2", annotations={"canary": flag, "canary-weight": "100"})
    maybe["metadata"]["creationTimestamp"] = "2026-02-01T00:00:00Z"
    route = only_route(translate([main(), maybe], EPS))
    assert (route.canary is not None) is is_canary
    assert route.ingress == "nginx"


def test_invalid_weight_is_zero() -> None:
    assert share(only_route(translate([main(), canary(canary_weight="30%")], EPS))) == 0.0


def test_annotation_prefix_is_configurable() -> None:
    custom = ingress("c", "nginx-v2", annotations={})
    custom["metadata"]["annotations"] = {"example.com/canary": "true", "example.com/canary-weight": "100"}
    custom["metadata"]["creationTimestamp"] = "2026-02-01T00:00:00Z"
    assert only_route(translate([main(), custom], EPS)).canary is None
    route = only_route(translate([main(), custom], EPS, annotation_prefix="example.com"))
    assert route.canary is not None and share(route) == 1.0


def _rendered_canary(main_ingress: dict[str, Any], weight: float) -> dict[str, Any]:
    """The canary Ingress Songbird's ingress-nginx router makes for ``main_ingress`` at ``weight``."""
    policy = load_policy_yaml(
        "ingress: nginx\ncanary: {deployment: nginx-v2, service: nginx-v2}\nsteps: [10, 50]\n"
        "routing: {header: {name: Region}}\n"
    )
    view = RouteView(
        namespace="default",
        main=main_ingress,
        canary=None,
        stable_service="nginx-v1",
        current=TrafficSplit(stable_service="nginx-v1"),
    )
    split = TrafficSplit(
        stable_service="nginx-v1", canary_service="nginx-v2", weight=weight, match_routes=True
    )
    return make_router("ingress-nginx").render_canary(view, policy, "nginx-rollout", split)


def test_ingress_class_serves_only_that_class() -> None:
    main_ingress = scenarios.main_ingress()
    canary_ingress = _rendered_canary(main_ingress, 10)
    served = only_route(translate([main_ingress, canary_ingress], EPS, ingress_class="nginx"))
    assert served.canary is not None and share(served) == pytest.approx(0.10)
    other = {**canary_ingress, "spec": {**canary_ingress["spec"], "ingressClassName": "internal"}}
    model = translate([main_ingress, other], EPS, ingress_class="nginx")
    assert only_route(model).canary is None
    assert model.notes == ("default/nginx-canary: ignored: ingress class 'internal', not 'nginx'",)
    # Without a class to serve, the lab serves every Ingress (as before classes were modelled).
    assert only_route(translate([main_ingress, other], EPS)).canary is not None


def test_a_main_ingress_classed_by_the_legacy_annotation_gives_a_canary_of_that_class() -> None:
    """The router copies ``kubernetes.io/ingress.class`` to the canary: the lab's nginx serves both."""
    main_ingress = scenarios.main_ingress(legacy_class=True)
    canary_ingress = _rendered_canary(main_ingress, 10)
    assert "ingressClassName" not in canary_ingress["spec"]
    model = translate([main_ingress, canary_ingress], EPS, ingress_class="nginx")
    route = only_route(model)
    assert route.ingress == "nginx" and route.canary is not None and share(route) == pytest.approx(0.10)
    assert model.notes == ()


def test_a_canary_under_another_annotation_prefix_is_a_plain_ingress_the_older_main_one_outranks() -> None:
    """The canary-ignored scenario: Songbird writes nginx.ingress.kubernetes.io/*, the controller reads
    ingress.example.com/*; the canary Ingress, a second plain Ingress for foo.example.com/, is skipped."""
    main_ingress = scenarios.main_ingress()
    main_ingress["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    canary_ingress = _rendered_canary(main_ingress, 10)
    canary_ingress["metadata"]["creationTimestamp"] = "2026-01-01T00:00:05Z"
    prefix = scenarios.annotations_prefix(scenarios.Scenario.CANARY_IGNORED)
    assert prefix != scenarios.SONGBIRD_ANNOTATION_PREFIX
    model = translate([canary_ingress, main_ingress], EPS, annotation_prefix=prefix, ingress_class="nginx")
    route = only_route(model)
    assert route.ingress == "nginx" and route.main.service == "nginx-v1" and route.canary is None
    assert share(route) == 0.0 and share(route, {"Region": "always"}) == 0.0
    assert model.notes == ("default/nginx-canary: foo.example.com/ already served by Ingress nginx; skipped",)
    # Read under Songbird's prefix (every other scenario), the same objects give the canary its 10%.
    served = only_route(translate([canary_ingress, main_ingress], EPS, ingress_class="nginx"))
    assert served.canary is not None and share(served) == pytest.approx(0.10)
