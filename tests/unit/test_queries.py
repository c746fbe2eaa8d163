"""PromQL built for the ingress-nginx provider (`analysis.queries`).

Covers, by evaluating every built query with ``promtool test rules`` (real PromQL engine, no server) on a tiny
synthetic history shaped like ingress-nginx's metrics:
- per-version request, 5xx and slow-request counts over a window; canary traffic found through the
  ``canary`` label although it carries the main Ingress and the stable Service (the canary-label trap);
- 5xx matched both as ``503`` and as ``5xx`` (``--report-status-classes``);
- other namespaces and Ingresses are not counted;
- the canary's latency quantile and error share; no traffic gives NaN (no data), not 0;
- custom queries rendered with namespace, ingress, canary, stable and window.
And without promtool: ``le`` formatting as Prometheus renders bucket bounds, thresholds moved up to the next
bucket bound (and said so), window durations, and names that would inject PromQL being refused.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from songbird.analysis import queries
from songbird.analysis.queries import IngressTarget, Version
from songbird.config.errors import PolicyError
from songbird.config.policy import MetricSpec

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not found: install Debian package prometheus, or run make test"
)

TARGET = IngressTarget(namespace="shop", ingress="web", canary="web-v2", stable="web-v1")
CANARY_UPSTREAM = "shop-web-v2-80"
WINDOW = 60.0
EVAL = "60s"  # samples every 15 s from 0 s: the 60 s window holds exactly four increments, no extrapolation
BOUNDS = ("0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf")


def _labels(*, canary: str, status: str, namespace: str = "shop", ingress: str = "web") -> dict[str, str]:
    # ingress-nginx labels canary requests with the main Ingress and the STABLE Service.
    return {
        "namespace": namespace,
        "ingress": ingress,
        "service": "web-v1",
        "canary": canary,
        "status": status,
        "method": "GET",
        "path": "/",
        "host": "shop.example.com",
    }


def _series(name: str, labels: dict[str, str], per_step: float) -> dict[str, str]:
    body = ",".join(f"{k}={json.dumps(v)}" for k, v in labels.items())
    return {"series": f"{name}{{{body}}}", "values": f"0+{per_step:g}x8"}


def _histogram(labels: dict[str, str], per_step_by_bound: dict[str, int]) -> list[dict[str, str]]:
    """Cumulative buckets: ``per_step_by_bound`` gives requests per scrape at or below each listed bound."""
    out, running = [], 0
    for bound in BOUNDS:
        running = per_step_by_bound.get(bound, running)
        out.append(_series(queries.DURATION_BUCKET, {**labels, "le": bound}, running))
    return out


def input_series() -> list[dict[str, str]]:
    """Per 15 s scrape: stable 27 x 200 + 3 x 503; canary 9 x 200 + 1 x "5xx" (status classes);
    a decoy in another namespace and one under another Ingress, each much larger."""
    stable_ok, stable_err = _labels(canary="", status="200"), _labels(canary="", status="503")
    canary_ok, canary_err = (
        _labels(canary=CANARY_UPSTREAM, status="200"),
        _labels(canary=CANARY_UPSTREAM, status="5xx"),
    )
    idle = [
        _labels(canary="", status="200", ingress="checkout"),
        _labels(canary="shop-checkout-v2-80", status="200", ingress="checkout"),
    ]
    healthy = [
        _labels(canary="", status="200", ingress="catalog"),
        _labels(canary="shop-catalog-v2-80", status="200", ingress="catalog"),
    ]
    decoys = [
        _labels(canary="", status="500", namespace="other"),
        _labels(canary="other-web-v2-80", status="500", namespace="other"),
        _labels(canary="", status="500", ingress="web-admin"),
    ]
    out = [
        _series(queries.REQUESTS, stable_ok, 27),
        _series(queries.REQUESTS, stable_err, 3),
        _series(queries.REQUESTS, canary_ok, 9),
        _series(queries.REQUESTS, canary_err, 1),
    ]
    out += [_series(queries.REQUESTS, d, 1000) for d in decoys]
    out += [_series(queries.REQUESTS, i, 0) for i in idle]
    out += [_series(queries.REQUESTS, h, 5) for h in healthy]
    # stable: 28 of 30 at or below 50 ms, 2 between 250 and 500 ms (all in the 200 series for brevity)
    out += _histogram(stable_ok, {"0.05": 28, "0.5": 30})
    # canary: 6 of 10 at or below 100 ms, 2 more by 250 ms, 1 more by 500 ms, the last by 2.5 s
    out += _histogram(canary_ok, {"0.1": 6, "0.25": 8, "0.5": 9, "2.5": 10})
    for decoy in decoys:
        out += _histogram(decoy, {"10": 500})
    return out


def run_promtool(tmp_path: Path, expr: str, expected: float | None) -> None:
    """Evaluate ``expr`` at 60 s and require one unlabelled sample ``expected`` (None: an empty result)."""
    assert PROMTOOL is not None
    samples = [] if expected is None else [{"labels": "{}", "value": float(expected)}]
    test = {
        "interval": "15s",
        "input_series": input_series(),
        "promql_expr_test": [{"expr": expr, "eval_time": EVAL, "exp_samples": samples}],
    }
    path = tmp_path / "rules_test.yml"
    path.write_text(yaml.safe_dump({"rule_files": [], "evaluation_interval": "15s", "tests": [test]}))
    result = subprocess.run(
        [PROMTOOL, "test", "rules", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, f"{expr}\n{result.stdout}{result.stderr}"


CASES = [
    ("stable requests", queries.requests(TARGET, Version.STABLE, WINDOW), 120.0),
    ("canary requests via the canary label", queries.requests(TARGET, Version.CANARY, WINDOW), 40.0),
    ("stable 5xx (503)", queries.server_errors(TARGET, Version.STABLE, WINDOW), 12.0),
    ("canary 5xx (status class 5xx)", queries.server_errors(TARGET, Version.CANARY, WINDOW), 4.0),
    ("canary error share", queries.error_share(TARGET, WINDOW), 0.1),
    ("stable error share", queries.error_share(TARGET, WINDOW, Version.STABLE), 0.1),
    (
        "canary slower than 100 ms",
        queries.slow_requests(TARGET, Version.CANARY, WINDOW, queries.latency_bucket(0.1)),
        16.0,
    ),
    (
        "canary slower than 0.3 s -> 0.5 s bucket",
        queries.slow_requests(TARGET, Version.CANARY, WINDOW, queries.latency_bucket(0.3)),
        4.0,
    ),
    (
        "stable slower than 100 ms",
        queries.slow_requests(TARGET, Version.STABLE, WINDOW, queries.latency_bucket(0.1)),
        8.0,
    ),
    ("canary requests seen by the histogram", queries.timed_requests(TARGET, Version.CANARY, WINDOW), 40.0),
    ("stable requests seen by the histogram", queries.timed_requests(TARGET, Version.STABLE, WINDOW), 120.0),
    (
        "stable slower than 1 s",
        queries.slow_requests(TARGET, Version.STABLE, WINDOW, queries.latency_bucket(1)),
        0.0,
    ),
    # rank 7.5 of 10 falls in (0.1, 0.25] holding 2 of them, 1.5 into it: 0.1 + 0.15 * 1.5 / 2
    ("canary p75", queries.latency_quantile(TARGET, 0.75, WINDOW), 0.2125),
    ("canary p90 at a bucket bound", queries.latency_quantile(TARGET, 0.9, WINDOW), 0.5),
    (
        "custom query with every placeholder",
        queries.custom(
            'sum(increase(nginx_ingress_controller_requests{namespace="{{ namespace }}",'
            'ingress="{{ ingress }}",service="{{ stable }}",canary!=""}[{{ window }}]))'
            ' + count(nginx_ingress_controller_requests{service="{{ canary }}"} or vector(0))',
            TARGET,
            WINDOW,
        ),
        41.0,
    ),
]


@needs_promtool
@pytest.mark.parametrize(("expr", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_built_query_evaluates_to_expected_number(tmp_path: Path, expr: str, expected: float) -> None:
    run_promtool(tmp_path, expr, expected)


@needs_promtool
def test_idle_canary_error_share_is_nan_not_zero(tmp_path: Path) -> None:
    """Series exist but nothing was served: 0/0 is NaN, which the adapter reports as no data."""
    idle = IngressTarget(namespace="shop", ingress="checkout", canary="checkout-v2", stable="checkout-v1")
    share = queries.error_share(idle, WINDOW)
    # promtool compares NaN unequal to itself; only NaN is unequal to itself, so test for that.
    run_promtool(tmp_path, f"({share}) != bool ({share})", 1.0)
    run_promtool(tmp_path, queries.requests(idle, Version.CANARY, WINDOW), 0.0)


@needs_promtool
def test_canary_that_never_answered_5xx_has_zero_errors_not_no_data(tmp_path: Path) -> None:
    """No 5xx series exist for it at all: the count is 0 and the share 0, not an empty result."""
    healthy = IngressTarget(namespace="shop", ingress="catalog", canary="catalog-v2", stable="catalog-v1")
    run_promtool(tmp_path, queries.server_errors(healthy, Version.CANARY, WINDOW), 0.0)
    run_promtool(tmp_path, queries.error_share(healthy, WINDOW), 0.0)
    run_promtool(tmp_path, queries.requests(healthy, Version.CANARY, WINDOW), 20.0)


@needs_promtool
def test_canary_without_series_is_an_empty_result(tmp_path: Path) -> None:
    absent = IngressTarget(namespace="shop", ingress="search", canary="search-v2", stable="search-v1")
    run_promtool(tmp_path, queries.error_share(absent, WINDOW), None)
    run_promtool(tmp_path, queries.requests(absent, Version.CANARY, WINDOW), None)
    run_promtool(
        tmp_path, queries.slow_requests(absent, Version.CANARY, WINDOW, queries.latency_bucket(1)), None
    )


@needs_promtool
def test_promtool_rejects_a_wrong_expectation(tmp_path: Path) -> None:
    """The harness itself can fail: a wrong number is reported."""
    with pytest.raises(AssertionError, match="FAILED"):
        run_promtool(tmp_path, queries.requests(TARGET, Version.CANARY, WINDOW), 41.0)


def test_canary_selector_never_names_the_canary_service() -> None:
    for version in Version:
        for expr in (
            queries.requests(TARGET, version, WINDOW),
            queries.server_errors(TARGET, version, WINDOW),
        ):
            assert "web-v2" not in expr
            assert 'ingress="web"' in expr
    assert 'canary!=""' in queries.requests(TARGET, Version.CANARY, WINDOW)
    assert 'canary=""' in queries.requests(TARGET, Version.STABLE, WINDOW)


@pytest.mark.parametrize(
    ("bound", "label"),
    [
        (0.005, "0.005"),
        (0.1, "0.1"),
        (0.5, "0.5"),
        (1.0, "1"),
        (2.5, "2.5"),
        (10.0, "10"),
        (float("inf"), "+Inf"),
        (0.00001, "1e-05"),
        (1e6, "1e+06"),
        (123456.0, "123456"),
        (0.0001, "0.0001"),
    ],
)
def test_le_label_matches_prometheus_rendering(bound: float, label: str) -> None:
    assert queries.le_label(bound) == label


def test_threshold_between_bounds_moves_up_and_says_so() -> None:
    bucket = queries.latency_bucket(0.3)
    assert (bucket.bound, bucket.le, bucket.moved) == (0.5, "0.5", True)
    assert "0.3 s moved up" in bucket.describe()
    exact = queries.latency_bucket(1.0)
    assert (exact.le, exact.moved) == ("1", False)
    assert exact.describe() == "slower than 1 s"


def test_threshold_above_largest_bucket_is_a_policy_error() -> None:
    with pytest.raises(PolicyError, match="above the largest histogram bucket"):
        queries.latency_bucket(30.0)


def test_slow_threshold_follows_policy_default() -> None:
    assert queries.slow_threshold(MetricSpec(name="latency", threshold=0.25, max=1.0)) == 0.25
    assert queries.slow_threshold(MetricSpec(name="latency", max=1.0)) == 1.0
    assert queries.slow_threshold(MetricSpec(name="latency")) == 0.5


def test_window_durations() -> None:
    assert queries.duration(60) == "60s"
    assert queries.duration(1.5) == "1500ms"
    with pytest.raises(PolicyError, match="positive"):
        queries.duration(0)


def test_names_that_would_inject_promql_are_refused() -> None:
    with pytest.raises(PolicyError, match="not a Kubernetes object name"):
        IngressTarget(namespace="shop", ingress='web"} or vector(1) #', canary="a", stable="b")


def test_custom_query_with_unknown_placeholder_fails() -> None:
    with pytest.raises(PolicyError, match="has no value"):
        queries.custom("up{job='{{ job }}'}", TARGET, WINDOW)
