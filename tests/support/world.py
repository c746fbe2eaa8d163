"""A whole rollout world for scenario tests: a cluster (kmock's emulator, or a real one for e2e) seeded
with the scenario, a real Prometheus holding ingress-nginx history, a virtual clock, and the real
reconciler wired to both over HTTP with the real clients.

The test plays the parts a cluster would not play here: `kubelet` makes each Deployment's replicas ready
(written on the emulator, awaited on a real cluster), and the clock is advanced by hand so each step is
exact. Fault injection and the request log exist only on the emulator (`World.emulator`).
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

from songbird.analysis.evaluator import PrometheusEvaluator
from songbird.analysis.state import Evaluation, RolloutState
from songbird.bench.fake_cluster import FakeClock
from songbird.controller.kube import KubeClient
from songbird.controller.reconciler import Reconciler, TickListener, TickResult, read_state
from songbird.controller.routers import make_router
from tests.support import scenario
from tests.support.clusters import Cluster, EmulatedCluster
from tests.support.kube_emulator import KubeEmulator
from tests.support.nginx_series import IngressNames, Traffic, ingress_nginx_series
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


VirtualClock = FakeClock  # a `Clock` that moves only when the test says so


def policy_configmap(
    text: str, *, name: str = POLICY_NAME, namespace: str = scenario.NAMESPACE
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": {"songbird.dev/policy": "true"}},
        "data": {"policy.yaml": textwrap.dedent(text)},
    }


@dataclass
class World:
    cluster: Cluster
    prom_url: str
    clock: VirtualClock
    reconciler: Reconciler
    client: KubeClient
    results: list[TickResult] = field(default_factory=list)

    @property
    def namespace(self) -> str:
        return self.cluster.namespace

    @property
    def emulator(self) -> KubeEmulator:
        """The API emulator, for request logs and fault injection (skips on a real cluster)."""
        if not isinstance(self.cluster, EmulatedCluster):
            pytest.skip(
                "needs the API emulator's request log or fault injection; not available on a real cluster"
            )
        return self.cluster.kube

    def kubelet(self) -> None:
        self.cluster.kubelet()

    def apply_policy(self, text: str) -> None:
        self.cluster.put(
            "ConfigMap",
            self.namespace,
            policy_configmap(text.replace("PROM_URL", self.prom_url), namespace=self.namespace),
        )

    def restart(self) -> None:
        """A new controller process: new client, new reconciler, nothing kept in memory."""
        self.client.close()
        self.reconciler, self.client = build_reconciler(self.cluster, self.clock)

    # -- driving -----------------------------------------------------------------------------------------

    def tick(self) -> TickResult:
        result = self.reconciler.tick(self.namespace, POLICY_NAME)
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

    def evaluations(self) -> list[Evaluation]:
        """Every evaluation the controller made, whole and in order, from what its ticks returned (the
        status keeps only the last one whole, and is not written for an unchanged evaluation)."""
        seen: dict[float, Evaluation] = {}
        for result in self.results:
            for decision in result.decisions:
                for evaluation in decision.state.history[-1:]:
                    seen.setdefault(evaluation.at, evaluation)
            if result.state is not None:
                for evaluation in result.state.history[-1:]:
                    seen.setdefault(evaluation.at, evaluation)
        return [seen[at] for at in sorted(seen)]

    def state(self) -> RolloutState:
        cm = self.cluster.get("ConfigMap", self.namespace, POLICY_NAME)
        assert cm is not None
        return read_state(cm)

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        return self.cluster.get(kind, self.namespace, name)

    def ingress(self, name: str) -> dict[str, Any] | None:
        return self.get("Ingress", name)

    def replicas(self, name: str) -> int:
        dep = self.get("Deployment", name)
        assert dep is not None
        return int(dep["spec"]["replicas"])

    def events(self, reason: str | None = None) -> list[dict[str, Any]]:
        events = self.cluster.events(self.namespace)
        return [
            e
            for e in events
            if e.get("source", {}).get("component") == "songbird"
            and (reason is None or e.get("reason") == reason)
        ]


def seed(
    kube: KubeEmulator | Cluster,
    namespace: str = scenario.NAMESPACE,
    *,
    accept: Sequence[str] = scenario.ACCEPTED,
) -> None:
    """The scenario's objects, opted in to the policies ``accept`` names; on the emulator also its Namespace
    (a real cluster's test namespace is made by the e2e fixture)."""
    if isinstance(kube, KubeEmulator | EmulatedCluster):
        kube.put("Namespace", None, scenario.namespace_object(namespace))
    for obj in scenario.objects(namespace, accept=accept):
        kube.put(obj["kind"], namespace, obj)


def build_reconciler(
    cluster: Cluster, clock: VirtualClock, listener: TickListener | None = None
) -> tuple[Reconciler, KubeClient]:
    client = cluster.client(clock)
    reconciler = Reconciler(
        reader=client,
        writer=client,
        recorder=client,
        router=make_router("ingress-nginx"),
        evaluator=PrometheusEvaluator(default_url=None),
        clock=clock,
        listener=listener,
    )
    return reconciler, client


WorldFactory = Callable[..., Any]


@contextmanager
def world(
    cluster: Cluster,
    *,
    stable: Traffic,
    canary: Traffic,
    policy: str = BASE_POLICY,
    start: float = T0 + 600,
    prometheus_url: str | None = None,
    listener: TickListener | None = None,
) -> Iterator[World]:
    """The scenario seeded in ``cluster``, a Prometheus with ``HISTORY`` seconds of traffic, the policy
    applied. ``prometheus_url`` replaces the real server's address in the policy (an unreachable one)."""
    prom = PrometheusServer()
    names = IngressNames(namespace=cluster.namespace)
    prom.backfill(
        ingress_nginx_series(start=T0, end=T0 + HISTORY, step=5.0, stable=stable, canary=canary, names=names)
    )
    with prom:
        seed(cluster, cluster.namespace)
        clock = VirtualClock(start)
        reconciler, client = build_reconciler(cluster, clock, listener)
        w = World(
            cluster=cluster,
            prom_url=prometheus_url or prom.url,
            clock=clock,
            reconciler=reconciler,
            client=client,
        )
        w.apply_policy(policy)
        try:
            yield w
        finally:
            client.close()
