"""The Grafana dashboard (charts/songbird/dashboards/songbird.json) against the metrics that really exist.

Covers:
- the dashboard's shape: a Prometheus ``datasource`` variable used by every panel, target and annotation;
  the ``namespace``, ``rollout`` and ``ingress`` variables (the ingress from ingress-nginx's own series,
  since the rollout's name is the policy ConfigMap's, not the Ingress's); unique panel ids;
- every metric name a query references is either served by the controller's running ``/metrics`` endpoint
  (a `ControllerMetrics` behind `controller.health.HealthServer` that has played a whole rollout, read over
  HTTP, not a hand-written list) or an ``nginx_ingress_controller_*`` metric;
- every panel query and every annotation query, with the variables filled as Grafana would, is valid PromQL
  for a real Prometheus holding a recorded rollout, and returns data;
- ingress-nginx queries select canary traffic with ``canary!=""`` and stable with ``canary=""`` and never
  filter on a Service name (the canary-label trap);
- what a user sees: the variables offer the recorded namespace, rollout and Ingress; the annotations mark the
  step changes, the rollback and the promotion at the moments they happened; the 5xx panel shows the failing
  canary's 8% against stable's 0.4%; the rollbacks panel names the reason; the live endpoint is scraped by
  real Prometheus.
"""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.chart.dashboard_scenario import (
    FAILING,
    INGRESS,
    NAMESPACE,
    ROLLOUT,
    TIMELINE,
    Recording,
    query_range,
    recorded_rollout,
    substitute,
)
from tests.chart.values_doc import CHART
from tests.support.prom_server import PrometheusServer

DASHBOARD = json.loads((CHART / "dashboards" / "songbird.json").read_text(encoding="utf-8"))
PANELS = [p for p in DASHBOARD["panels"] if p["type"] != "row"]
TARGETS = [(p["title"], t["refId"], t["expr"]) for p in PANELS for t in p["targets"]]
ANNOTATIONS = {a["name"]: a for a in DASHBOARD["annotations"]["list"] if "expr" in a}
VARIABLES = {v["name"]: v for v in DASHBOARD["templating"]["list"]}
# PromQL words that look like metric names in a query but are not.
_NOT_METRICS = {
    "sum",
    "max",
    "min",
    "rate",
    "increase",
    "changes",
    "histogram_quantile",
    "by",
    "and",
    "or",
    "vector",
    "le",
    "without",
    "on",
    "unless",
    "avg",
    "count",
}


def metric_names(expr: str) -> set[str]:
    """Metric names in a query: identifiers not inside {...} or [...], not functions or keywords."""
    bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\"[^\"]*\"", " ", expr)
    bare = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", " ", bare)
    names = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", bare))
    return {n for n in names if n not in _NOT_METRICS and not re.fullmatch(r"e|inf|nan", n, re.I)}


@pytest.fixture(scope="module")
def recording() -> Iterator[tuple[PrometheusServer, Recording, int]]:
    with recorded_rollout() as (prom, rec, health):
        yield prom, rec, health.port


def test_dashboard_shape() -> None:
    assert DASHBOARD["schemaVersion"] >= 39
    assert (
        VARIABLES["datasource"]["type"] == "datasource" and VARIABLES["datasource"]["query"] == "prometheus"
    )
    uses = [p["datasource"] for p in PANELS] + [t["datasource"] for p in PANELS for t in p["targets"]]
    uses += [a["datasource"] for a in ANNOTATIONS.values()]
    assert all(d == {"type": "prometheus", "uid": "${datasource}"} for d in uses)
    assert (
        VARIABLES["rollout"]["query"]["query"]
        == 'label_values(songbird_rollout_weight{namespace="$namespace"}, name)'
    )
    assert VARIABLES["ingress"]["query"]["query"] == (
        'label_values(nginx_ingress_controller_requests{namespace=~"$namespace"}, ingress)'
    )
    ids = [p["id"] for p in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids))
    assert set(ANNOTATIONS) == {"Step change", "Promotion", "Rollback"}


def test_ingress_queries_avoid_the_canary_label_trap() -> None:
    nginx = [e for _, _, e in TARGETS if "nginx_ingress_controller" in e]
    assert nginx
    for expr in nginx:
        for selector in re.findall(r"nginx_ingress_controller_\w+\{([^}]*)\}", expr):
            assert 'ingress=~"$ingress"' in selector and 'namespace=~"$namespace"' in selector, expr
            assert 'canary!=""' in selector or 'canary=""' in selector, expr
            assert "service" not in selector, expr
    assert any('canary!=""' in e for e in nginx) and any('canary=""' in e for e in nginx)


def test_every_metric_is_exported_or_from_ingress_nginx(
    recording: tuple[PrometheusServer, Recording, int],
) -> None:
    _, _, port = recording
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        page = response.read().decode()
    exported = set(re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]", page, re.M))
    queries = [e for _, _, e in TARGETS] + [a["expr"] for a in ANNOTATIONS.values()]
    queries += [
        re.sub(r"^label_values\((.*),\s*\w+\)$", r"\1", v["query"]["query"])  # the selector, not the label
        for v in VARIABLES.values()
        if isinstance(v.get("query"), dict)
    ]
    referenced = set().union(*(metric_names(q) for q in queries))
    assert {"songbird_rollout_weight", "nginx_ingress_controller_requests"} <= referenced  # the parser works
    unknown = {n for n in referenced if n not in exported and not n.startswith("nginx_ingress_controller_")}
    assert unknown == set(), f"the dashboard queries metrics the controller does not export: {unknown}"


@pytest.mark.parametrize(("title", "ref", "expr"), TARGETS, ids=[f"{t}-{r}" for t, r, _ in TARGETS])
def test_every_panel_query_returns_data(
    recording: tuple[PrometheusServer, Recording, int], title: str, ref: str, expr: str
) -> None:
    prom, rec, _ = recording
    result = query_range(prom, substitute(expr), rec)
    values = [float(v) for series in result for _, v in series["values"]]
    assert values, f"{title} {ref}: no data for {substitute(expr)}"
    assert any(v == v for v in values), f"{title} {ref}: only NaN"


def annotation_times(prom: PrometheusServer, rec: Recording, name: str) -> list[float]:
    result = query_range(prom, substitute(ANNOTATIONS[name]["expr"]), rec)
    return sorted({float(ts) - rec.start for series in result for ts, _ in series["values"]})


def assert_marks(times: list[float], moments: set[float], window: float = 20.0) -> None:
    """Each moment is marked when it happens, and nothing is marked away from one (within the
    ``$__interval`` of 20 s that `substitute` gives)."""
    missing = sorted(m for m in moments if m not in times)
    assert missing == [], f"changes without an annotation: {missing} (annotated: {times})"
    strays = [t for t in times if not any(0 <= t - m < window for m in moments)]
    assert strays == [], f"annotations away from any change: {strays}"


def test_annotations_mark_steps_rollback_and_promotion(
    recording: tuple[PrometheusServer, Recording, int],
) -> None:
    prom, rec, _ = recording
    step_changes = {
        float(m.at) for m, before in zip(TIMELINE[1:], TIMELINE, strict=False) if m.step != before.step
    }
    assert_marks(annotation_times(prom, rec, "Step change"), step_changes)
    assert_marks(
        annotation_times(prom, rec, "Rollback"), {float(m.at) for m in TIMELINE if m.decision == "rollback"}
    )
    assert_marks(
        annotation_times(prom, rec, "Promotion"), {float(m.at) for m in TIMELINE if m.decision == "promote"}
    )


def test_variables_offer_the_recorded_rollout(recording: tuple[PrometheusServer, Recording, int]) -> None:
    prom, rec, _ = recording
    window = {"start": repr(rec.start), "end": repr(rec.end)}

    def label_values(metric_selector: str, label: str) -> list[str]:
        data: Any = prom.api(f"label/{label}/values", {"match[]": metric_selector, **window})
        return list(data)

    assert NAMESPACE in label_values("songbird_rollout_weight", "namespace")
    assert label_values(f'songbird_rollout_weight{{namespace="{NAMESPACE}"}}', "name") == [ROLLOUT]
    assert label_values(f'nginx_ingress_controller_requests{{namespace=~"{NAMESPACE}"}}', "ingress") == [
        INGRESS
    ]


def panel_expr(title: str, legend: str) -> str:
    (panel,) = [p for p in PANELS if p["title"] == title]
    (target,) = [t for t in panel["targets"] if t["legendFormat"] == legend]
    return substitute(str(target["expr"]))


def test_error_ratio_panel_shows_the_failing_canary(
    recording: tuple[PrometheusServer, Recording, int],
) -> None:
    prom, rec, _ = recording
    during = rec.at(FAILING[1] - 10)
    canary = prom.value(panel_expr("5xx ratio", "canary"), at=during)
    stable = prom.value(panel_expr("5xx ratio", "stable"), at=during)
    assert canary is not None and stable is not None
    assert canary == pytest.approx(0.08, abs=0.02)
    assert stable == pytest.approx(0.004, abs=0.003)
    later = prom.value(panel_expr("5xx ratio", "canary"), at=rec.at(1100))
    assert later == pytest.approx(0.004, abs=0.003)


def test_rollbacks_panel_names_the_reason(recording: tuple[PrometheusServer, Recording, int]) -> None:
    prom, rec, _ = recording
    result = prom.query(panel_expr("Rollbacks by reason", "{{reason}}"), at=rec.end)
    assert [(r["metric"]["reason"], r["value"][1]) for r in result] == [("error-rate", "1")]


def test_live_endpoint_is_scraped_by_prometheus(recording: tuple[PrometheusServer, Recording, int]) -> None:
    prom, _, _ = recording
    prom.wait_for_targets(timeout=20)
    (up,) = prom.query('up{job="songbird-live"}')
    assert up["value"][1] == "1"
    (build,) = prom.query('songbird_build_info{job="songbird-live"}')
    assert build["metric"]["version"] == "0.1.0"
