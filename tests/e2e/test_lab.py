"""The local lab end to end: the real controller (`songbird run`) rolling out v2 behind a real nginx, judged
on a real Prometheus, with only the Kubernetes API emulated. No cluster needed; nginx and Prometheus must
be installed (``make system-deps``), else the module is skipped with the reason.

Covered, each scenario run once through `lab.run.Lab` at its default rate and measured from the traffic:
- healthy: v2 is promoted after passing every step, and then answers ~100% of plain requests;
- bad-errors (v2 answers 5% with 500): rolled back by the error-rate judge before the weight reaches 40%;
- bad-latency (v2 three times slower): rolled back by the latency judge;
- canary-ignored (nginx reads another annotation prefix than Songbird writes, so the canary Ingress is a
  plain Ingress the older main one outranks): held at 10% by the traffic split check, with its reason
  naming the annotation prefix among the likely causes, never rolled back, v2 answering nothing;
- at every weight nginx served, v2's measured share of plain requests is within 4.5 binomial standard
  deviations of that weight, given the number of requests counted (the write-up's curl-loop check);
- requests carrying ``Region: always`` reach v2 every time while the rollout progresses, and never once
  the rollback has withdrawn the canary route;
- the command line (``python -m songbird.controller.cli lab --scenario bad-errors --quiet``): exit code 0
  for the expected outcome, ``rolled back: error-rate: ...`` printed, ``timeline.json`` and
  ``report.png`` written;
- ``--kubeconfig`` mode end to end, with kmock's emulator and the lab's own data plane (nginx, backends,
  a Prometheus scraping nginx) started here as the "cluster": the lab starts none of them itself, applies
  the policy there, runs the controller against that kubeconfig and that Prometheus, sends its load to
  the given ingress address, and records the rollout from the cluster's ConfigMap and the answers.
  What only a real cluster shows (ingress-nginx's reload lag, real pods) is not covered here.

How likely each assertion is to fail by chance, and why the lab's rates and policy make that rare (at
most about 1e-4 each, about 2e-4 for the whole module), is derived in `lab.scenarios`.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from songbird.analysis.state import STATUS_ANNOTATION
from songbird.lab import scenarios
from songbird.lab.apiserver import KubeEmulator
from songbird.lab.nginx import NginxServer
from songbird.lab.prometheus import PrometheusServer, ScrapeTarget
from songbird.lab.replicas import ReplicaSupervisor
from songbird.lab.run import ClusterTarget, Lab, LabError, LabOptions, preflight
from songbird.lab.scenarios import Scenario
from songbird.lab.sync import DataPlaneSync
from songbird.lab.timeline import Timeline

pytestmark = [pytest.mark.slow, pytest.mark.timeout(480)]

ROOT = Path(__file__).resolve().parents[2]
SIGMAS = 4.5
HEALTHY_TIMEOUT = 330.0  # seconds from the policy; promotion usually comes at about 200 s
BAD_TIMEOUT = 240.0


@pytest.fixture(scope="module", autouse=True)
def installed() -> None:
    try:
        preflight()
    except LabError as exc:
        pytest.skip(str(exc))


def _run(scenario: Scenario, timeout: float = BAD_TIMEOUT) -> Timeline:
    return Lab(LabOptions(scenario=scenario, timeout=timeout)).run()


@pytest.fixture(scope="module")
def healthy() -> Iterator[Timeline]:
    yield _run(Scenario.HEALTHY, HEALTHY_TIMEOUT)


@pytest.fixture(scope="module")
def bad_errors() -> Iterator[Timeline]:
    yield _run(Scenario.BAD_ERRORS)


@pytest.fixture(scope="module")
def bad_latency() -> Iterator[Timeline]:
    yield _run(Scenario.BAD_LATENCY)


@pytest.fixture(scope="module")
def canary_ignored() -> Iterator[Timeline]:
    yield _run(Scenario.CANARY_IGNORED)


def test_a_canary_ignored_for_its_annotation_prefix_is_held_at_its_first_weight(
    canary_ignored: Timeline,
) -> None:
    assert canary_ignored.outcome == "held", canary_ignored.reason
    reason = canary_ignored.reason
    assert reason.startswith("step 1/5 at 10%: traffic split mismatch: canary received 0.0% of "), reason
    assert "expected 10%" in reason and "annotation prefix differs from the ingress controller's" in reason
    # nginx never served the canary, v2 answered no request, and the weight never went past 10%.
    assert all(s.nginx_weight is None for s in canary_ignored.samples)
    assert sum(b.plain.get("v2", 0) + b.header.get("v2", 0) for b in canary_ignored.buckets) == 0
    assert canary_ignored.max_weight() == 10.0
    assert any(s.split == "mismatch" and s.split_share == 0.0 for s in canary_ignored.samples)
    assert all(s.phase not in ("RollingBack", "Failed") for s in canary_ignored.samples)


def test_healthy_canary_is_promoted_and_then_serves_all_plain_traffic(healthy: Timeline) -> None:
    assert healthy.outcome == "promoted", healthy.reason
    assert healthy.reason.startswith("promoting: analysis passed at 80%"), healthy.reason
    served = {s.weight for s in healthy.step_shares()}
    assert {10.0, 20.0, 40.0, 60.0, 80.0} <= served
    v2, total = healthy.final_share()
    assert total >= 200
    assert v2 / total >= 0.99, f"v2 answered {v2} of {total} plain requests after promotion"


def test_canary_with_five_percent_errors_is_rolled_back_before_forty_percent(bad_errors: Timeline) -> None:
    assert bad_errors.outcome == "rolled back", bad_errors.reason
    assert bad_errors.reason.startswith("error-rate: "), bad_errors.reason
    assert bad_errors.max_weight() < 40.0


def test_canary_three_times_slower_is_rolled_back(bad_latency: Timeline) -> None:
    assert bad_latency.outcome == "rolled back", bad_latency.reason
    assert bad_latency.reason.startswith("latency: "), bad_latency.reason


@pytest.mark.parametrize("name", ["healthy", "bad_errors", "bad_latency"])
def test_measured_share_at_each_weight_is_within_binomial_noise(
    name: str, request: pytest.FixtureRequest
) -> None:
    timeline: Timeline = request.getfixturevalue(name)
    steps = [s for s in timeline.step_shares() if s.weight > 0]
    assert steps, "no weight was served long enough to be measured"
    assert max(s.requests for s in steps) >= 300
    for s in steps:
        assert abs(s.z) <= SIGMAS, (
            f"weight {s.weight:g}%: v2 answered {s.v2} of {s.requests} plain requests "
            f"({100 * s.share:.1f}%), {s.z:+.1f} sigma"
        )


# Header requests are one in 20: a whole healthy rollout sends hundreds; a rollback comes at the earliest one
# evaluation (10 s) into the first step, which leaves dozens at 150 requests/s.
@pytest.mark.parametrize(("name", "at_least"), [("healthy", 100), ("bad_errors", 10), ("bad_latency", 10)])
def test_header_requests_reach_v2_throughout_the_rollout(
    name: str, at_least: int, request: pytest.FixtureRequest
) -> None:
    timeline: Timeline = request.getfixturevalue(name)
    v2, total = timeline.header_share(lambda s: s.phase == "Progressing" and s.nginx_header)
    assert total >= at_least
    assert v2 == total, f"{total - v2} of {total} Region: always requests missed v2"


@pytest.mark.parametrize("name", ["bad_errors", "bad_latency"])
def test_header_requests_stay_on_v1_after_a_rollback(name: str, request: pytest.FixtureRequest) -> None:
    timeline: Timeline = request.getfixturevalue(name)
    v2, total = timeline.header_share(lambda s: s.phase == "Failed" and s.nginx_weight is None)
    assert total >= 5
    assert v2 == 0, f"{v2} of {total} Region: always requests reached v2 after the rollback"


def test_command_line_prints_the_outcome_and_writes_the_report(tmp_path: Path) -> None:
    out = tmp_path / "report"
    command = [
        "-m",
        "songbird.controller.cli",
        "lab",
        "--scenario",
        "bad-errors",
        "--quiet",
        "--timeout",
        "240",
    ]
    done = subprocess.run(
        [sys.executable, *command, "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=360,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "rolled back: error-rate: " in done.stdout
    assert f"report: {out / 'report.png'} and {out / 'timeline.json'}" in done.stdout
    assert (out / "report.png").read_bytes().startswith(b"\x89PNG")
    written = json.loads((out / "timeline.json").read_text())
    assert written["outcome"] == "rolled back"
    assert written["scenario"] == "bad-errors"
    assert written["steps"] and written["samples"] and written["series"]


class _EmulatedCluster:
    """`lab.sync.ClusterView` over the emulator: the data plane standing in for a cluster's ingress-nginx."""

    def __init__(self, kube: KubeEmulator) -> None:
        self.kube = kube

    def list_ingresses(self) -> list[dict[str, Any]]:
        return self.kube.objects("Ingress", "default")

    def list_services(self) -> list[dict[str, Any]]:
        return self.kube.objects("Service", "default")

    def list_deployments(self) -> list[dict[str, Any]]:
        return self.kube.objects("Deployment", "default")

    def patch_status(self, name: str, status: dict[str, Any]) -> None:
        self.kube.merge_status("Deployment", "default", name, status)


def _serving_stable(nginx: NginxServer) -> bool:
    route = nginx.model.route(scenarios.HOST) if nginx.model is not None else None
    return route is not None and len(route.main.endpoints) == 3


def test_kubeconfig_mode_runs_the_rollout_on_the_clusters_objects_and_traffic() -> None:
    with contextlib.ExitStack() as stack:
        kube = stack.enter_context(KubeEmulator())
        for kind, body in scenarios.seed_objects(Scenario.BAD_LATENCY, seed=7):
            kube.put(kind, "default", body)
        replicas = stack.enter_context(ReplicaSupervisor())
        nginx = stack.enter_context(NginxServer())
        view = _EmulatedCluster(kube)
        stack.enter_context(DataPlaneSync(view, view.patch_status, nginx=nginx, replicas=replicas))
        deadline = time.monotonic() + 30.0
        while not _serving_stable(nginx):  # the "cluster" is up before the lab is pointed at it
            assert time.monotonic() < deadline, "the stand-in cluster's nginx did not come up"
            time.sleep(0.2)
        prom = stack.enter_context(
            PrometheusServer(scrape_targets=[ScrapeTarget(address=f"127.0.0.1:{nginx.metrics_port}")])
        )
        target = ClusterTarget(
            kubeconfig=str(kube.kubeconfig_path),
            namespace="default",
            prometheus_url=prom.url,
            ingress_url=nginx.url,
        )
        timeline = Lab(LabOptions(scenario=Scenario.BAD_LATENCY, timeout=BAD_TIMEOUT, cluster=target)).run()

        assert timeline.outcome == "rolled back", timeline.reason
        assert timeline.reason.startswith("latency: "), timeline.reason
        assert timeline.seed == 0  # the lab started no backends of its own
        status = kube.get("ConfigMap", "default", scenarios.POLICY_NAME) or {}
        assert '"phase":"Failed"' in status["metadata"]["annotations"][STATUS_ANNOTATION]
        # The weights come from the cluster's Ingress objects, the versions from the answers.
        assert any(s.nginx_weight == 10.0 and s.phase == "Progressing" for s in timeline.samples)
        v2, total = timeline.header_share(lambda s: s.phase == "Progressing" and s.nginx_header)
        assert total >= 10
        assert v2 >= 0.9 * total, f"{v2} of {total} Region: always requests reached v2 during the rollout"
        plain = sum(b.plain_total for b in timeline.buckets)
        assert plain >= 1000
        unattributed = [(b.t, b.plain.get("none", 0)) for b in timeline.buckets if b.plain.get("none")]
        assert not unattributed, f"answers without a version (second, count): {unattributed}"
        assert any(s.name == "error_rate" and s.points for s in timeline.series)
