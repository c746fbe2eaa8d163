"""The lab's scenarios: the seed objects, how the canary behaves in each scenario, and the lab's policy.

The objects are those of the seed scenario (one namespace ``default``; Deployments ``nginx-v1`` with 3
replicas and ``nginx-v2`` with 0; a Service per version selecting ``app`` + ``version``; the main Ingress
``nginx`` routing ``foo.example.com/`` to ``nginx-v1``), with ``lab.songbird.dev/*`` pod-template
annotations that set each version's error rate and latency (read by `lab.sync.profile_from_annotations`).

Scenarios (stable: 0.75% 5xx, latency log-normal with median 50 ms):
- ``healthy``: the canary behaves exactly like the stable;
- ``bad-errors``: the canary answers 5% of requests with 500;
- ``bad-latency``: the canary is 3 times slower (median 150 ms).

Why the policy's numbers (`lab_policy`): a rollout must finish in one to two minutes at the lab's default
50 requests/s, and both outcomes must be reliable, because the end-to-end tests assert them. Measured on
the controller's own judge (`analysis.compare.judge_metric`) with simulated binomial windows at this rate:
- promotion needs evidence that the canary is not ``badRatio`` times worse, which takes bad events. At
  0.75% 5xx and ``badRatio: 5`` a healthy canary is certified by the end of the last step in about 98% of
  runs (``maxWait`` gives the rest another minute); with ``badRatio: 2`` only half the runs were;
- a 5% canary is a ratio of 6.7: with ``tolerance: 1.0`` it is rolled back during the 10% or 20% step in
  about 93% of runs at 50 requests/s, and 99% at 60;
- latency is judged on requests slower than 250 ms (the ``max`` of the p99, a bucket bound): the stable
  has practically none, so a healthy canary passes under the sparse-events rule once its ceiling is
  certified, while the 3x canary has about 4.5% of them and is rolled back within seconds.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from lab.backend import BackendProfile
from lab.sync import PROFILE_ANNOTATION_PREFIX

Obj = dict[str, Any]

NAMESPACE = "default"
APP = "nginx"
HOST = "foo.example.com"
MAIN_INGRESS = "nginx"
STABLE = "nginx-v1"
CANARY = "nginx-v2"
POLICY_NAME = "nginx-rollout"
POLICY_LABEL = "songbird.dev/policy"
POLICY_KEY = "policy.yaml"
STATUS_ANNOTATION = "songbird.dev/status"
IMAGES = {"v1": "nginx:1.25", "v2": "nginx:1.27"}
# Which version each Service serves (the Services select on the ``version`` label).
SERVICE_VERSIONS = {STABLE: "v1", CANARY: "v2"}

STABLE_PROFILE = BackendProfile(error_rate=0.0075, latency_median=0.05, latency_sigma=0.3, seed=1)


class Scenario(StrEnum):
    HEALTHY = "healthy"
    BAD_ERRORS = "bad-errors"
    BAD_LATENCY = "bad-latency"


def canary_profile(scenario: Scenario) -> BackendProfile:
    """How ``nginx-v2`` behaves in ``scenario`` (seeded differently from the stable, same otherwise)."""
    if scenario is Scenario.BAD_ERRORS:
        return BackendProfile(error_rate=0.05, latency_median=0.05, latency_sigma=0.3, seed=2)
    if scenario is Scenario.BAD_LATENCY:
        return BackendProfile(error_rate=0.0075, latency_median=0.15, latency_sigma=0.3, seed=2)
    return BackendProfile(error_rate=0.0075, latency_median=0.05, latency_sigma=0.3, seed=2)


def expected_outcome(scenario: Scenario) -> str:
    return "promoted" if scenario is Scenario.HEALTHY else "rolled back"


@dataclass(frozen=True, kw_only=True)
class LabPolicy:
    """The knobs of the lab's policy; `text` renders the ConfigMap's ``policy.yaml``."""

    steps: tuple[int, ...] = (10, 20, 40, 60, 80)
    interval: str = "20s"
    cadence: str = "3s"
    window: str = "6s"
    min_requests: int = 200
    error_rate_max: float = 0.025
    latency_p99_max: float = 0.25
    tolerance: float = 1.0
    bad_ratio: float = 5.0
    max_wait: str = "60s"
    scale_down_delay: str = "5s"

    def text(self, prometheus_url: str) -> str:
        steps = ", ".join(str(s) for s in self.steps)
        return textwrap.dedent(
            f"""\
            ingress: {MAIN_INGRESS}
            canary: {{deployment: {CANARY}, service: {CANARY}}}
            steps: [{steps}]
            interval: {self.interval}
            routing:
              header: {{name: Region, value: always}}
            replicas: {{mode: proportional, min: 1}}
            analysis:
              prometheus: {{url: "{prometheus_url}", timeout: 2s}}
              cadence: {self.cadence}
              window: {self.window}
              minRequests: {self.min_requests}
              metrics:
                - {{name: error-rate, max: {self.error_rate_max}}}
                - {{name: latency, quantile: 0.99, max: {self.latency_p99_max}}}
              failureLimit: 2
              errorDeadline: 30s
              compare: {{tolerance: {self.tolerance}, badRatio: {self.bad_ratio}, maxWait: {self.max_wait}}}
            promotion: {{scaleDownDelay: {self.scale_down_delay}}}
            """
        )


def _labels(version: str) -> dict[str, str]:
    return {"app": APP, "version": version}


def _profile_annotations(profile: BackendProfile) -> dict[str, str]:
    p = PROFILE_ANNOTATION_PREFIX
    return {
        p + "error-rate": str(profile.error_rate),
        p + "latency-median": str(profile.latency_median),
        p + "latency-sigma": str(profile.latency_sigma),
        p + "seed": str(profile.seed),
    }


def deployment(version: str, *, replicas: int, profile: BackendProfile) -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": f"{APP}-{version}", "namespace": NAMESPACE, "labels": _labels(version)},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": _labels(version)},
            "template": {
                "metadata": {"labels": _labels(version), "annotations": _profile_annotations(profile)},
                "spec": {
                    "containers": [
                        {
                            "name": APP,
                            "image": IMAGES[version],
                            "ports": [{"name": "http", "containerPort": 80}],
                        }
                    ]
                },
            },
        },
    }


def service(version: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": f"{APP}-{version}", "namespace": NAMESPACE, "labels": _labels(version)},
        "spec": {
            "selector": _labels(version),
            "ports": [{"name": "http", "port": 80, "targetPort": 80, "protocol": "TCP"}],
        },
    }


def main_ingress() -> Obj:
    path = {
        "path": "/",
        "pathType": "Prefix",
        "backend": {"service": {"name": STABLE, "port": {"number": 80}}},
    }
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": MAIN_INGRESS, "namespace": NAMESPACE, "labels": {"app": APP}},
        "spec": {"ingressClassName": "nginx", "rules": [{"host": HOST, "http": {"paths": [path]}}]},
    }


def seed_objects(scenario: Scenario) -> list[tuple[str, Obj]]:
    """(kind, body) of every object the scenario starts with, in an order a real cluster accepts."""
    return [
        ("Deployment", deployment("v1", replicas=3, profile=STABLE_PROFILE)),
        ("Deployment", deployment("v2", replicas=0, profile=canary_profile(scenario))),
        ("Service", service("v1")),
        ("Service", service("v2")),
        ("Ingress", main_ingress()),
    ]


def policy_configmap(text: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": POLICY_NAME, "namespace": NAMESPACE, "labels": {POLICY_LABEL: "true"}},
        "data": {POLICY_KEY: text},
    }
