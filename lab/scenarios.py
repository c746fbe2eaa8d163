"""The lab's scenarios: the seed objects, how the canary behaves in each scenario, and the lab's policy.

The objects are those of the seed scenario (one namespace ``default``; Deployments ``nginx-v1`` with 3
replicas and ``nginx-v2`` with 0; a Service per version selecting ``app`` + ``version``; the main Ingress
``nginx`` routing ``foo.example.com/`` to ``nginx-v1`` with TLS from ``foo-tls``), with ``lab.songbird.dev/*``
pod-template annotations that set each version's error rate and latency (read by
`lab.sync.profile_from_annotations`). This is their only definition: ``tests/support/scenario.py`` builds
the cluster tests' objects with the same functions, without a profile (so without those annotations).
Every workload object opts in to the scenario's policy with ``songbird.dev/accept-policy: nginx-rollout``
(`controller.consent`: Songbird changes nothing that does not), as its owner would set it.

Scenarios (stable: 0.75% 5xx, latency log-normal with median 50 ms):
- ``healthy``: the canary behaves exactly like the stable;
- ``bad-errors``: the canary answers 5% of requests with 500;
- ``bad-latency``: the canary is 3 times slower (median 150 ms);
- ``canary-ignored``: the canary behaves like the stable, but the lab's ingress controller reads its
  annotations under another prefix (``ingress.example.com``, as ingress-nginx's ``--annotations-prefix``)
  than the one Songbird writes (``nginx.ingress.kubernetes.io``, Songbird's ``--annotation-prefix``), a
  misconfiguration Songbird cannot see or fix from the Ingress objects. The canary Ingress's ``canary``
  annotations are not recognised, so the lab's nginx takes it for a second plain Ingress for the same
  host and path, and the older one (the main Ingress) keeps serving it (`lab.translator`, as ingress-nginx
  does: the first Ingress to claim a location keeps it): the canary receives 0% at 10%. Songbird's split
  check (`analysis.split`) holds the rollout at its first step with that reason; the outcome is ``held``.
  At 150 requests/s a 10 s window holds about 1,000 plain requests, far above the 132 that make 0% at 10%
  detectable, and a 10% weight is never advanced past.

Why the policy's numbers (`LabPolicy`) and the rates (`DEFAULT_RATES`): the end-to-end tests assert each
scenario's outcome and measurements, and CI fails on any one of them, so each must come out wrong by
chance at most about once in 10,000 runs (1e-4), within minutes. The chances below come from
``python -m songbird.lab.odds`` (the lab simulated with the controller's own `analysis.evaluate.judge` and
`analysis.decision.decide`, nginx's counters and Prometheus' ``increase()`` extrapolation; see there) and
from bounds computed by hand; the backends draw from a new seed each run (`stable_profile`,
`canary_profile`; ``--seed`` replays one), so the chances are per run. With the policy before (20 s
steps, 3 s cadence, tolerance 1.0, falseRollback 0.01) at 60 requests/s the simulation showed a 5%
canary reaching 40% in 11% of runs, a 3x-slow canary rolled back 3 s into step 1 (leaving fewer than the
300 plain and 10 header requests the measurements need) in 1 run in 6, and a 4-sigma share check failing
1.3e-4 of the time per step.

- The false rollback of a healthy canary: ``tolerance: 1.2`` puts a canary exactly as good as the stable
  strictly inside the null, so each alternative's likelihood ratio E_j stays a supermartingale when raised
  to a power lambda_j > 1: by the root of theta (t_j/t_0)^l + (1 - theta)((1 - t_j)/(1 - t_0))^l = 1, at
  the worst weight from 10% to 80% (header traffic included), lambda is 2.55, 1.65, 1.35, 1.21, 1.14, 1.10
  and 1.08 for the ratios 1.5 to 50. Prometheus' extrapolation scales a 10 s window's counts by 10/9,
  i.e. the evidence by that power. A rollback needs the two metrics' mean E_bad >= 1/falseRollback = 1e5,
  hence some E_j >= 2e5: P <= sum_j (2e5)^(-0.9 lambda_j) = 1.8e-5 (4.7e-6 without extrapolation). The
  error-rate ceiling (2.5% against 0.75%) adds 1e-7, the latency ceiling less. In 400 simulated runs at
  80 requests/s no rollback evidence came within e^4 of its bound.
- A healthy canary not promoted within the tests' 330 s: at 80 requests/s all of 400 simulated runs were
  promoted at the first chance, 201-202 s after the policy (5 steps of 40 s); the promotion evidence 330 s
  after the policy is e^(37.8 +- 10.0) above its bound, so even that single evaluation falls short with
  probability about 8e-5 (normal tail), and every one from 200 s to 330 s would have to.
- The 5% canary not rolled back before 40%: at 150 requests/s all of 2,000 simulated runs were rolled
  back by the error-rate judge, 10 to 60 s (median 30) into the 80 s at 10% and 20%; the rollback evidence
  before the step to 40% exceeds its bound by e^(49.7 +- 12.8): P(short) ~ 5e-5 (normal tail).
  falseRollback 1e-5 costs ln(10) of that margin, the 40 s steps buy it back.
- The 3x-slow canary: latency is judged on requests slower than 250 ms (the p99 ``max``, a bucket bound),
  which the stable practically never is and the canary is 4.5% of the time. Rolled back by the latency
  judge in all of 1,000 runs at 150 requests/s, at the first evaluation (10 s into step 1) in most; the
  evidence within 240 s is e^(531 +- 47) above its bound.
- The minimum counts of the bad scenarios' measurements cannot fail: no rollback comes before the first
  evaluation, one cadence (10 s, less the 0.5 s tick tolerance) into step 1, which leaves at least about
  5.8 whole seconds inside the 1 s edge margins of the 10% stretch: 800 plain requests at 150 requests/s
  (300 needed) and 37 header requests during the rollout (10 needed); the 8 s kept after the outcome give
  about 37 header requests after a rollback (5 needed).
- The traffic share at each weight within 4.5 binomial standard deviations: from the exact binomial
  distribution, a stretch of 300 requests at 10% (the worst case here) is outside with probability
  1.7e-5, 800 requests 1.1e-5, and the healthy run's 2,900 per step 8e-6; with 5 stretches in the healthy
  run and 1 or 2 in each bad one, about 8e-5 in all.
- The split check (`analysis.split`) holding a healthy rollout: at most 2e-6 per evaluation by its bound,
  about 25 evaluations a run: 5e-5.
In all, a CI run of the lab module fails by chance with probability about 3e-4, and takes about 6 minutes.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from songbird.config.policy import POLICY_KEY, POLICY_LABEL
from songbird.lab.backend import BackendProfile
from songbird.lab.sync import PROFILE_ANNOTATION_PREFIX

Obj = dict[str, Any]

NAMESPACE = "default"
APP = "nginx"
HOST = "foo.example.com"
TLS_SECRET = "foo-tls"
INGRESS_CLASS = "nginx"
MAIN_INGRESS = "nginx"
STABLE = "nginx-v1"
CANARY = "nginx-v2"
POLICY_NAME = "nginx-rollout"
ACCEPTED = (POLICY_NAME,)  # the policies the scenario's workloads opt in to (`controller.consent`)
# `controller.keys.ACCEPT_POLICY_ANNOTATION`, spelled out: the lab never imports the controller (a unit
# test keeps the two equal).
ACCEPT_POLICY_ANNOTATION = "songbird.dev/accept-policy"
IMAGES = {"v1": "nginx:1.25", "v2": "nginx:1.27"}

STABLE_PROFILE = BackendProfile(error_rate=0.0075, latency_median=0.05, latency_sigma=0.3, seed=1)
# Requests per second each scenario is run at by default (`lab.scenarios` docstring: why).
DEFAULT_RATES = {"healthy": 80.0, "bad-errors": 150.0, "bad-latency": 150.0, "canary-ignored": 150.0}
LEGACY_CLASS_ANNOTATION = "kubernetes.io/ingress.class"
# The annotation prefix Songbird writes (its --annotation-prefix default) and the one the lab's ingress
# controller reads in the canary-ignored scenario (ingress-nginx's --annotations-prefix, set otherwise).
SONGBIRD_ANNOTATION_PREFIX = "nginx.ingress.kubernetes.io"
MISCONFIGURED_ANNOTATION_PREFIX = "ingress.example.com"


class Scenario(StrEnum):
    HEALTHY = "healthy"
    BAD_ERRORS = "bad-errors"
    BAD_LATENCY = "bad-latency"
    CANARY_IGNORED = "canary-ignored"


def default_rate(scenario: Scenario) -> float:
    return DEFAULT_RATES[scenario.value]


def stable_profile(seed: int = 1) -> BackendProfile:
    """How ``nginx-v1`` behaves, its replicas' draws seeded from ``seed``."""
    return replace(STABLE_PROFILE, seed=seed)


def canary_profile(scenario: Scenario, seed: int = 2) -> BackendProfile:
    """How ``nginx-v2`` behaves in ``scenario`` (seeded differently from the stable, same otherwise)."""
    if scenario is Scenario.BAD_ERRORS:
        return BackendProfile(error_rate=0.05, latency_median=0.05, latency_sigma=0.3, seed=seed)
    if scenario is Scenario.BAD_LATENCY:
        return BackendProfile(error_rate=0.0075, latency_median=0.15, latency_sigma=0.3, seed=seed)
    return BackendProfile(error_rate=0.0075, latency_median=0.05, latency_sigma=0.3, seed=seed)


def annotations_prefix(scenario: Scenario) -> str:
    """The annotation prefix the lab's ingress controller reads in ``scenario`` (ingress-nginx's
    ``--annotations-prefix``): Songbird's own, except in ``canary-ignored``."""
    if scenario is Scenario.CANARY_IGNORED:
        return MISCONFIGURED_ANNOTATION_PREFIX
    return SONGBIRD_ANNOTATION_PREFIX


def expected_outcome(scenario: Scenario) -> str:
    if scenario is Scenario.CANARY_IGNORED:
        return "held"
    return "promoted" if scenario is Scenario.HEALTHY else "rolled back"


@dataclass(frozen=True, kw_only=True)
class LabPolicy:
    """The knobs of the lab's policy; `text` renders the ConfigMap's ``policy.yaml``."""

    steps: tuple[int, ...] = (10, 20, 40, 60, 80)
    interval: str = "40s"
    cadence: str = "10s"
    window: str = "10s"
    min_requests: int = 200
    error_rate_max: float = 0.025
    latency_p99_max: float = 0.25
    tolerance: float = 1.2
    bad_ratio: float = 5.0
    false_rollback: float = 1e-5
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
              compare:
                tolerance: {self.tolerance}
                badRatio: {self.bad_ratio}
                falseRollback: {_decimal(self.false_rollback)}
                maxWait: {self.max_wait}
            promotion: {{scaleDownDelay: {self.scale_down_delay}}}
            """
        )


def _decimal(x: float) -> str:
    """``x`` without an exponent: YAML 1.1 (PyYAML) reads ``1e-05`` as a string."""
    return f"{x:.12f}".rstrip("0").rstrip(".")


def labels(version: str) -> dict[str, str]:
    return {"app": APP, "version": version}


def _profile_annotations(profile: BackendProfile) -> dict[str, str]:
    p = PROFILE_ANNOTATION_PREFIX
    return {
        p + "error-rate": str(profile.error_rate),
        p + "latency-median": str(profile.latency_median),
        p + "latency-sigma": str(profile.latency_sigma),
        p + "seed": str(profile.seed),
    }


def accepting(policies: Sequence[str]) -> Obj:
    """The workload owner's opt-in: the annotation naming the policies that may change the object."""
    return {ACCEPT_POLICY_ANNOTATION: ",".join(policies)} if policies else {}


def deployment(
    version: str,
    *,
    replicas: int,
    namespace: str = NAMESPACE,
    profile: BackendProfile | None = None,
    accept: Sequence[str] = ACCEPTED,
) -> Obj:
    """Deployment ``nginx-<version>`` whose selector and pod template carry ``app`` and ``version``; with a
    ``profile``, the pod template's ``lab.songbird.dev/*`` annotations set how the lab's backends behave.
    It opts in to the policies ``accept`` names."""
    template_meta: Obj = {"labels": labels(version)}
    if profile is not None:
        template_meta["annotations"] = _profile_annotations(profile)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": f"{APP}-{version}",
            "namespace": namespace,
            "labels": labels(version),
            "annotations": accepting(accept),
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels(version)},
            "template": {
                "metadata": template_meta,
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


def service(version: str, *, namespace: str = NAMESPACE, accept: Sequence[str] = ACCEPTED) -> Obj:
    """Service ``nginx-<version>`` on port 80 selecting the pods of that version only, opted in to the
    policies ``accept`` names."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": f"{APP}-{version}",
            "namespace": namespace,
            "labels": labels(version),
            "annotations": accepting(accept),
        },
        "spec": {
            "selector": labels(version),
            "ports": [{"name": "http", "port": 80, "targetPort": 80, "protocol": "TCP"}],
        },
    }


def main_ingress(
    *,
    backend: str = STABLE,
    namespace: str = NAMESPACE,
    accept: Sequence[str] = ACCEPTED,
    legacy_class: bool = False,
) -> Obj:
    """The user's Ingress: ``foo.example.com/`` (Prefix) to ``backend`` port 80, TLS from ``foo-tls``,
    opted in to the policies ``accept`` names, of class ``nginx`` (with ``legacy_class``, by the
    ``kubernetes.io/ingress.class`` annotation only)."""
    path = {
        "path": "/",
        "pathType": "Prefix",
        "backend": {"service": {"name": backend, "port": {"number": 80}}},
    }
    ingress: Obj = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": MAIN_INGRESS,
            "namespace": namespace,
            "labels": {"app": APP},
            "annotations": accepting(accept),
        },
        "spec": {
            "ingressClassName": INGRESS_CLASS,
            "tls": [{"hosts": [HOST], "secretName": TLS_SECRET}],
            "rules": [{"host": HOST, "http": {"paths": [path]}}],
        },
    }
    if legacy_class:
        del ingress["spec"]["ingressClassName"]
        ingress["metadata"]["annotations"][LEGACY_CLASS_ANNOTATION] = INGRESS_CLASS
    return ingress


def namespace_object(name: str = NAMESPACE) -> Obj:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def objects(
    namespace: str = NAMESPACE,
    *,
    stable: BackendProfile | None = None,
    canary: BackendProfile | None = None,
    accept: Sequence[str] = ACCEPTED,
) -> list[Obj]:
    """Every namespaced seed object, in an order a real cluster accepts them (profiles: see `deployment`);
    each opts in to the policies ``accept`` names, as the owner of a real workload would."""
    return [
        deployment("v1", replicas=3, namespace=namespace, profile=stable, accept=accept),
        deployment("v2", replicas=0, namespace=namespace, profile=canary, accept=accept),
        service("v1", namespace=namespace, accept=accept),
        service("v2", namespace=namespace, accept=accept),
        main_ingress(namespace=namespace, accept=accept),
    ]


def seed_objects(scenario: Scenario, namespace: str = NAMESPACE, *, seed: int = 1) -> list[tuple[str, Obj]]:
    """(kind, body) of every object the scenario starts with, in an order a real cluster accepts; the
    backends' draws are seeded from ``seed`` (the stable's from ``seed``, the canary's from ``seed + 1``)."""
    stable, canary = stable_profile(seed), canary_profile(scenario, seed + 1)
    return [(obj["kind"], obj) for obj in objects(namespace, stable=stable, canary=canary)]


def policy_configmap(text: str, namespace: str = NAMESPACE) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": POLICY_NAME, "namespace": namespace, "labels": {POLICY_LABEL: "true"}},
        "data": {POLICY_KEY: text},
    }
