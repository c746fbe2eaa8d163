"""`songbird run`: wires the adapters to the reconciler and runs until SIGTERM.

Start-up order: metrics and probes first (so a slow API server shows as not ready rather than as a crash
loop), then the scheduler (leader election, discovery, one job per policy). Shutdown on SIGTERM/SIGINT:
stop scheduling, let running ticks finish, release the Lease so another replica takes over at once, stop
the probes. Every network call below has a timeout; nothing here can block shutdown indefinitely.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
from dataclasses import dataclass
from importlib import metadata
from types import FrameType

import structlog

from songbird.analysis.evaluate import PrometheusEvaluator
from songbird.config.errors import ClusterError, PolicyError
from songbird.config.loader import load_policy_configmap
from songbird.controller.health import HealthServer, Readiness, Role
from songbird.controller.kube import KubeClient
from songbird.controller.lease import Elector
from songbird.controller.metrics import ControllerMetrics
from songbird.controller.observer import MetricsObserver
from songbird.controller.ports import Clock, SystemClock
from songbird.controller.reconciler import Reconciler
from songbird.controller.routers import make_router
from songbird.controller.scheduler import Job, Scheduler

VERSION = metadata.version("songbird")  # pyproject.toml's `version`, the one place it is written
log = structlog.get_logger("songbird")


@dataclass(frozen=True, kw_only=True)
class Settings:
    kubeconfig: str | None = None
    namespaces: tuple[str, ...] = ()  # empty: all namespaces
    prometheus_url: str | None = None
    metrics_address: str = "0.0.0.0:8080"
    leader_election: bool = True
    lease_name: str = "songbird-leader"
    lease_namespace: str | None = None
    identity: str | None = None
    annotation_prefix: str = "nginx.ingress.kubernetes.io"
    resync: float = 10.0


def tick_period(cadence: float) -> float:
    """Ticks run several times per cadence (evaluations stay on the cadence), between 0.2 s and 5 s."""
    return max(0.2, min(5.0, cadence / 3.0))


class Controller:
    """The running daemon; `run` blocks until `stop` (or a signal) is called."""

    def __init__(self, settings: Settings, *, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.metrics = ControllerMetrics(version=VERSION)
        self.kube = KubeClient.from_config(settings.kubeconfig, on_call=self.metrics.observe_kube_call)
        self.identity = (
            settings.identity or os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"
        )
        self.elector: Elector | None = None
        if settings.leader_election:
            namespace = settings.lease_namespace or os.environ.get("POD_NAMESPACE") or "default"
            self.elector = Elector(
                self.kube,
                namespace=namespace,
                name=settings.lease_name,
                identity=self.identity,
                clock=self.clock,
            )
        self.reconciler = Reconciler(
            reader=self.kube,
            writer=self.kube,
            recorder=self.kube,
            router=make_router("ingress-nginx", annotation_prefix=settings.annotation_prefix),
            evaluator=PrometheusEvaluator(
                default_url=settings.prometheus_url, on_query=self.metrics.observe_prometheus_query
            ),
            clock=self.clock,
            observer=MetricsObserver(self.metrics),
            on_forget=self.metrics.forget_rollout,
        )
        self.scheduler = Scheduler(
            discover=self.discover,
            tick=self.tick,
            is_leader=self.is_leader,
            renew=self.renew if self.elector else None,
            resync=settings.resync,
        )
        self.health = HealthServer(self.metrics, self.readiness, address=settings.metrics_address)
        self._api_ok = True
        self._api_detail = ""
        self._stopping = threading.Event()

    # -- leadership and discovery ------------------------------------------------------------------------

    def is_leader(self) -> bool:
        return self.elector is None or self.elector.is_leader

    def renew(self) -> None:
        assert self.elector is not None
        was = self.elector.is_leader
        leading = self.elector.try_acquire_or_renew(self.clock.now())
        self.metrics.set_leader(leading)
        if leading != was:
            log.info("leadership changed", identity=self.identity, leader=leading)
            self.scheduler.sync()

    def discover(self) -> list[Job]:
        namespaces = list(self.settings.namespaces) or None
        try:
            configmaps = self.kube.list_policies(namespaces)
            self._api_ok, self._api_detail = True, ""
        except ClusterError as exc:
            self._api_ok, self._api_detail = False, str(exc)
            raise
        jobs = []
        for cm in configmaps:
            meta = cm.get("metadata") or {}
            try:
                cadence = load_policy_configmap(cm).analysis.cadence
            except PolicyError:
                cadence = 15.0  # still ticked, so the error is reported on the ConfigMap
            jobs.append(
                Job(
                    namespace=meta.get("namespace", ""),
                    name=meta.get("name", ""),
                    period=tick_period(cadence),
                )
            )
        return jobs

    def tick(self, namespace: str, name: str) -> None:
        self.reconciler.tick(namespace, name)

    def readiness(self) -> Readiness:
        role: Role
        if self.elector is None:
            role = "leader"
        elif self.elector.observed:
            role = "leader" if self.elector.is_leader else "standby"
        else:
            role = "starting"
        return Readiness(api_reachable=self._api_ok, role=role, detail=self._api_detail)

    # -- lifecycle ---------------------------------------------------------------------------------------

    def run(self) -> int:
        self.health.start()
        log.info(
            "songbird started",
            identity=self.identity,
            namespaces=list(self.settings.namespaces) or "all",
            metrics=self.settings.metrics_address,
            leader_election=self.settings.leader_election,
        )
        if self.elector is None:
            self.metrics.set_leader(True)
        self.scheduler.start()
        self._stopping.wait()
        log.info("songbird stopping")
        self.scheduler.shutdown(wait=True)
        if self.elector is not None:
            self.elector.release()
        self.health.stop()
        self.kube.close()
        log.info("songbird stopped")
        return 0

    def stop(self, *_: object) -> None:
        self._stopping.set()

    def install_signal_handlers(self) -> None:
        def handler(signum: int, frame: FrameType | None) -> None:
            self.stop()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)
