"""A whole rollout world for integration tests: the Kubernetes API emulator seeded with the scenario, a
real Prometheus holding ingress-nginx history, a virtual clock, and the real reconciler wired to both over
HTTP with the real clients.

The test plays the parts a cluster would: `kubelet` marks each Deployment's spec replicas ready (as the
Deployment controller would after a scale), and the clock is advanced by hand so each step is exact.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from analysis.evaluate import PrometheusEvaluator
from analysis.state import RolloutState
from controller.kube import ApiSettings, KubeClient
from controller.ports import Kind
from controller.reconciler import Reconciler, TickResult, read_state
from controller.router import make_router
from tests.support import scenario
from tests.support.kube_emulator import KubeEmulator
from tests.support.nginx_series import Traffic, ingress_nginx_series
from tests.support.prom_server import PrometheusServer

T0 = 1_790_000_000.0  # history starts here (November 2026); every test runs in virtual time after it
HISTORY = 3600.0  # seconds of backfilled ingress-nginx history
POLICY_NAME = "nginx-rollout"

BASE_POLICY = """
ingress: nginx
canary: {deployment: nginx-v2, service: nginx-v2}
steps: [10, 20, 40, 60, 80]
interval: 1m
routing:
  header: {name: Region, value: always}
replicas: {mode: proportional, min: 1}
analysis:
  prometheus: {url: PROM_URL, timeout: 2s}
  cadence: 15s
  window: 30s
  minRequests: 100
  metrics:
    - {name: error-rate, max: 0.02}
    - {name: latency, quantile: 0.99, max: 0.5}
  failureLimit: 2
  errorDeadline: 1m
promotion: {scaleDownDelay: 30s}
"""


class VirtualClock:
    def __init__(self, start: float) -> None:
        self.t = start

    def now(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def policy_configmap(text: str, *, name: str = POLICY_NAME) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": scenario.NAMESPACE,
            "labels": {"songbird.dev/policy": "true"},
        },
        "data": {"policy.yaml": textwrap.dedent(text)},
    }


@dataclass
class World:
    kube: KubeEmulator
    prom_url: str
    clock: VirtualClock
    reconciler: Reconciler
    client: KubeClient
    results: list[TickResult] = field(default_factory=list)

    # -- the cluster's part ------------------------------------------------------------------------------

    def kubelet(self) -> None:
        """Every Deployment's spec replicas become ready (what the Deployment controller would report)."""
        for dep in self.kube.list("Deployment", scenario.NAMESPACE):
            replicas = dep.get("spec", {}).get("replicas", 1)
            status = {
                "replicas": replicas,
                "readyReplicas": replicas,
                "availableReplicas": replicas,
                "updatedReplicas": replicas,
            }
            if dep.get("status") != status:
                dep["status"] = status
                self.kube.put("Deployment", scenario.NAMESPACE, dep)

    def apply_policy(self, text: str) -> None:
        self.kube.put(
            "ConfigMap", scenario.NAMESPACE, policy_configmap(text.replace("PROM_URL", self.prom_url))
        )

    # -- driving -----------------------------------------------------------------------------------------

    def tick(self) -> TickResult:
        result = self.reconciler.tick(scenario.NAMESPACE, POLICY_NAME)
        self.results.append(result)
        return result

    def run(self, seconds: float, *, every: float = 5.0, ready: bool = True) -> RolloutState:
        """Tick every ``every`` virtual seconds for ``seconds``, the kubelet following each tick."""
        end = self.clock.t + seconds
        while self.clock.t < end:
            self.tick()
            if ready:
                self.kubelet()
            self.clock.advance(every)
            if self.state().phase.finished:
                break
        return self.state()

    def state(self) -> RolloutState:
        cm = self.kube.get("ConfigMap", scenario.NAMESPACE, POLICY_NAME)
        assert cm is not None
        return read_state(cm)

    def ingress(self, name: str) -> dict[str, Any] | None:
        return self.kube.get("Ingress", scenario.NAMESPACE, name)

    def replicas(self, name: str) -> int:
        dep = self.kube.get("Deployment", scenario.NAMESPACE, name)
        assert dep is not None
        return int(dep["spec"]["replicas"])

    def events(self, reason: str | None = None) -> list[dict[str, Any]]:
        return [
            e for e in self.kube.events(scenario.NAMESPACE) if reason is None or e.get("reason") == reason
        ]


def seed(kube: KubeEmulator) -> None:
    kube.put("Namespace", None, scenario.namespace_object())
    for obj in scenario.objects():
        kube.put(obj["kind"], obj["metadata"]["namespace"], obj)


def build_reconciler(
    kube_url: str, clock: VirtualClock, *, prometheus_url: str | None = None
) -> tuple[Reconciler, KubeClient]:
    client = KubeClient.for_host(
        kube_url, settings=ApiSettings(connect_timeout=1.0, read_timeout=2.0), clock=clock
    )
    reconciler = Reconciler(
        reader=client,
        writer=client,
        recorder=client,
        router=make_router("ingress-nginx"),
        evaluator=PrometheusEvaluator(default_url=prometheus_url),
        clock=clock,
    )
    return reconciler, client


@contextmanager
def world(
    *,
    stable: Traffic,
    canary: Traffic,
    policy: str = BASE_POLICY,
    start: float = T0 + 600,
    prometheus_url: str | None = None,
) -> Iterator[World]:
    """A seeded emulator, a Prometheus with ``HISTORY`` seconds of traffic, the policy applied.

    ``prometheus_url`` replaces the real server's address in the policy (for an unreachable Prometheus)."""
    prom = PrometheusServer()
    prom.backfill(ingress_nginx_series(start=T0, end=T0 + HISTORY, step=5.0, stable=stable, canary=canary))
    with KubeEmulator() as kube, prom:
        seed(kube)
        clock = VirtualClock(start)
        reconciler, client = build_reconciler(kube.url, clock)
        w = World(
            kube=kube, prom_url=prometheus_url or prom.url, clock=clock, reconciler=reconciler, client=client
        )
        w.apply_policy(policy)
        try:
            yield w
        finally:
            client.close()


__all__ = ["BASE_POLICY", "HISTORY", "T0", "Kind", "VirtualClock", "World", "seed", "world"]
