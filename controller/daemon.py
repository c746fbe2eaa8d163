"""`songbird run`: wires the adapters to the reconciler and runs until SIGTERM.

The runtime's threads and what each may do:
- informers (``controller.informer``): list-then-watch policy ConfigMaps, Deployments, Services and
  Ingresses into memory; a change wakes the rollouts it concerns. Ticks read only these caches.
- the lease thread (``controller.leadership``): renews the Lease and moves the write `Fence`; nothing else.
- APScheduler (``controller.scheduler``): puts rollouts on the work queue when their period comes.
- the workers (``controller.workqueue``): tick one rollout each, within a total deadline
  (``--tick-deadline``); every write is fenced (``controller.cache.FencedWriter``) and every Prometheus
  query goes through its endpoint's concurrency limit and circuit breaker (``controller.endpoints``).

Start-up order: metrics and probes first (so a slow API server shows as not ready rather than as a crash
loop), then the informers, workers, scheduler and the lease thread; no tick runs before the caches have
listed once. Shutdown on SIGTERM/SIGINT, within `SHUTDOWN_BUDGET` seconds in every state: stop scheduling
and watching, drop queued work, let the ticks in flight end (each is bounded by its deadline plus one
write), stop the lease thread, revoke the fence (so a straggler cannot write), release the Lease so another
replica takes over at once, stop the probes.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from dataclasses import dataclass
from importlib import metadata
from types import FrameType

import structlog

from songbird.analysis.evaluator import PrometheusEvaluator
from songbird.config.endpoints import EndpointSettings, single
from songbird.config.errors import PolicyError
from songbird.config.loader import load_policy_configmap
from songbird.config.policy import POLICY_LABEL
from songbird.config.scope import DEFAULT_LABEL, label_problem
from songbird.controller import deadline
from songbird.controller.batch import QueryBatcher
from songbird.controller.cache import ClusterCache, FencedWriter, is_policy
from songbird.controller.endpoints import Endpoints
from songbird.controller.fence import AlwaysHeld, Fence, LeadershipLost
from songbird.controller.health import HealthServer, Readiness, Role
from songbird.controller.informer import Informer
from songbird.controller.kube import ApiSettings, KubeClient
from songbird.controller.leadership import LeaderLoop
from songbird.controller.lease import Elector
from songbird.controller.metrics import ControllerMetrics
from songbird.controller.ports import Clock, Kind, SystemClock
from songbird.controller.reconciler import Reconciler
from songbird.controller.routers import make_router
from songbird.controller.scheduler import Job, Scheduler
from songbird.controller.tick_metrics import TickMetrics
from songbird.controller.workqueue import WorkQueue

VERSION = metadata.version("songbird")  # pyproject.toml's `version`, the one place it is written
log = structlog.get_logger("songbird")


SHUTDOWN_BUDGET = 9.0
"""Seconds from SIGTERM to exit, in every state (the pod's grace period is longer)."""

LEASE_API = ApiSettings(connect_timeout=1.0, read_timeout=2.0, attempts=2, backoff=0.1, budget=3.0)
"""The Lease client's bounds: a renewal round (a read and a write) ends well within the renew deadline,
and the release on shutdown within 3 s."""


@dataclass(frozen=True, kw_only=True)
class Settings:
    kubeconfig: str | None = None
    namespaces: tuple[str, ...] = ()  # empty: all namespaces
    prometheus_url: str | None = None  # shorthand for one default endpoint; not with `prometheus`
    prometheus: EndpointSettings | None = None  # the operator's endpoints (--prometheus-endpoints)
    metrics_address: str = "0.0.0.0:8080"
    leader_election: bool = True
    lease_name: str = "songbird-leader"
    lease_namespace: str | None = None
    identity: str | None = None
    annotation_prefix: str = "nginx.ingress.kubernetes.io"
    resync: float = 10.0
    lease_duration: int = 15  # client-go's defaults: 15 s lease, 10 s renew deadline, 2 s retry
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    tick_deadline: float = 4.0  # a tick's total time on the network (Prometheus waits end here)
    write_budget: float = 2.0  # one API write, retries included
    prometheus_max_timeout: float = 5.0  # caps every policy's analysis.prometheus.timeout
    prometheus_concurrency: int = 2  # queries in flight per Prometheus endpoint
    workers: int = 8
    watch_timeout: int = 300  # seconds a watch stream lasts before it is renewed
    namespace_label: str = DEFAULT_LABEL  # the Prometheus label custom queries are scoped on

    def __post_init__(self) -> None:
        if min(self.tick_deadline, self.write_budget, self.prometheus_max_timeout) <= 0:
            raise ValueError("deadlines and timeouts must be positive")
        if self.prometheus_url is not None and self.prometheus is not None:
            raise ValueError("give --prometheus-url or --prometheus-endpoints, not both")
        if self.workers < 1 or self.prometheus_concurrency < 1:
            raise ValueError("workers and prometheus concurrency must be at least 1")
        problem = label_problem(self.namespace_label)
        if problem is not None:
            raise ValueError(f"--namespace-label: {problem}")
        if self.tick_deadline + self.write_budget + LEASE_API.budget > SHUTDOWN_BUDGET:
            raise ValueError(
                f"tick deadline + write budget + {LEASE_API.budget:g}s (Lease release) must fit in the "
                f"{SHUTDOWN_BUDGET:g}s shutdown budget"
            )

    @property
    def endpoints(self) -> EndpointSettings:
        """The operator's Prometheus endpoints (``--prometheus-url`` is one named ``default``)."""
        return self.prometheus if self.prometheus is not None else single(self.prometheus_url)


def tick_period(cadence: float) -> float:
    """Ticks run several times per cadence (evaluations stay on the cadence), between 0.2 s and 5 s."""
    return max(0.2, min(5.0, cadence / 3.0))


class Controller:
    """The running daemon; `run` blocks until `stop` (or a signal) is called."""

    def __init__(self, settings: Settings, *, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.metrics = ControllerMetrics(version=VERSION)
        hook = self.metrics.observe_kube_call
        write_api = ApiSettings(
            connect_timeout=min(1.0, settings.write_budget),
            read_timeout=settings.write_budget,
            attempts=2,
            backoff=0.1,
            budget=settings.write_budget,
        )
        # Three clients, three connection pools: watches hold connections for minutes, and neither they nor
        # the workers' writes may delay a Lease renewal.
        self.kube = KubeClient.from_config(settings.kubeconfig, settings=write_api, on_call=hook)
        self.watch_kube = KubeClient.from_config(settings.kubeconfig, on_call=hook)
        self.identity = (
            settings.identity or os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"
        )
        self.fence: Fence | AlwaysHeld = AlwaysHeld()
        self.elector: Elector | None = None
        self.leader: LeaderLoop | None = None
        self.lease_kube: KubeClient | None = None
        if settings.leader_election:
            namespace = settings.lease_namespace or os.environ.get("POD_NAMESPACE") or "default"
            self.lease_kube = KubeClient.from_config(settings.kubeconfig, settings=LEASE_API, on_call=hook)
            self.elector = Elector(
                self.lease_kube,
                namespace=namespace,
                name=settings.lease_name,
                identity=self.identity,
                clock=self.clock,
                lease_duration=settings.lease_duration,
                renew_deadline=settings.renew_deadline,
            )
            self.fence = Fence(margin=1.0)
            self.leader = LeaderLoop(
                self.elector,
                self.fence,
                lease_duration=settings.lease_duration,
                retry=settings.retry_period,
                on_change=self._leadership_changed,
            )
        scopes: list[str | None] = list(dict.fromkeys(settings.namespaces)) or [None]
        informers: list[Informer] = []
        for scope in scopes:
            informers.append(
                Informer(
                    self.watch_kube,
                    Kind.CONFIGMAP,
                    scope,
                    label_selector=f"{POLICY_LABEL}=true",
                    keep=is_policy,  # not every API server honours the selector (the test emulator)
                    on_change=self._changed,
                    watch_timeout=settings.watch_timeout,
                )
            )
            for kind in (Kind.DEPLOYMENT, Kind.SERVICE, Kind.INGRESS):
                informers.append(
                    Informer(
                        self.watch_kube,
                        kind,
                        scope,
                        on_change=self._changed,
                        watch_timeout=settings.watch_timeout,
                    )
                )
        self.cache = ClusterCache(informers)
        self.writer = FencedWriter(
            self.kube,
            self.kube,
            fence=self.fence,
            cache=self.cache,
            write_timeout=settings.write_budget + 0.5,
        )
        self.endpoints = Endpoints(limit=settings.prometheus_concurrency)
        # Built-in metrics: one grouped query per endpoint, kind and cadence for every rollout.
        self.batcher = QueryBatcher(
            endpoints=self.endpoints,
            timeout=settings.prometheus_max_timeout,
            on_query=self.metrics.observe_prometheus_query,
        )
        self.evaluator = PrometheusEvaluator(
            endpoints=settings.endpoints,
            on_query=self.metrics.observe_prometheus_query,
            max_timeout=settings.prometheus_max_timeout,
            wrap=self.endpoints.wrap,
            grouped=self.batcher,
            namespace_label=settings.namespace_label,
        )
        self.reconciler = Reconciler(
            reader=self.cache,
            writer=self.writer,
            recorder=self.writer,
            router=make_router("ingress-nginx", annotation_prefix=settings.annotation_prefix),
            evaluator=self.evaluator,
            clock=self.clock,
            listener=TickMetrics(self.metrics),
            on_forget=self.metrics.forget_rollout,
            prometheus=settings.endpoints,
            namespace_label=settings.namespace_label,
        )
        self.queue: WorkQueue[tuple[str, str]] = WorkQueue(self._work, workers=settings.workers)
        self.scheduler = Scheduler(due=self.due, resync=self.resync, resync_every=settings.resync)
        self.health = HealthServer(self.metrics, self.readiness, address=settings.metrics_address)
        self._periods: dict[tuple[str, str], float] = {}
        self._periods_lock = threading.Lock()
        self._stopping = threading.Event()

    # -- leadership --------------------------------------------------------------------------------------

    def is_leader(self) -> bool:
        return self.leader is None or self.leader.leading

    def _leadership_changed(self, leading: bool) -> None:
        self.metrics.set_leader(leading)
        if leading:
            for key in self._policy_keys():
                self.queue.add(key)

    # -- what is due -------------------------------------------------------------------------------------

    def _policy_keys(self) -> list[tuple[str, str]]:
        with self._periods_lock:
            return sorted(self._periods)

    def _changed(self, kind: Kind, namespace: str, name: str) -> None:
        """A watched object changed (or appeared, or went): wake the rollouts that read it."""
        if kind is Kind.CONFIGMAP:
            self._policy_changed(namespace, name)
            self.due(namespace, name)
            return
        # Deployments, Services and Ingresses: every rollout of the namespace may read them (the stable
        # version is found through the main Ingress and Service selectors); the queue folds repeats.
        for key in self._policy_keys():
            if key[0] == namespace:
                self.due(*key)

    def _policy_changed(self, namespace: str, name: str) -> None:
        configmap = self.cache.get(Kind.CONFIGMAP, namespace, name)
        with self._periods_lock:
            if configmap is None:
                self._periods.pop((namespace, name), None)
            else:
                self._periods[(namespace, name)] = tick_period(_cadence(configmap))
        self.resync()

    def resync(self) -> None:
        """Make the timed jobs match the policies in the cache (from memory: no request)."""
        with self._periods_lock:
            jobs = [Job(namespace=ns, name=n, period=p) for (ns, n), p in sorted(self._periods.items())]
        self.scheduler.sync(jobs)

    def due(self, namespace: str, name: str) -> None:
        if self.is_leader() and not self._stopping.is_set():
            self.queue.add((namespace, name))

    def _work(self, key: tuple[str, str]) -> None:
        if not self.is_leader() or not self.cache.synced:
            return
        with deadline.tick_deadline(self.settings.tick_deadline):
            try:
                self.reconciler.tick(*key)
            except LeadershipLost as exc:
                log.warning("tick stopped before a write", rollout=f"{key[0]}/{key[1]}", reason=str(exc))

    def readiness(self) -> Readiness:
        role: Role
        if self.elector is None:
            role = "leader"
        elif self.elector.observed:
            role = "leader" if self.is_leader() else "standby"
        else:
            role = "starting"
        errors = [i.error for i in self.cache.informers if i.error]
        if not self.cache.synced:
            return Readiness(
                api_reachable=False, role=role, detail=errors[0] if errors else "caches not synced"
            )
        return Readiness(api_reachable=not errors, role=role, detail=errors[0] if errors else "")

    # -- lifecycle ---------------------------------------------------------------------------------------

    def run(self) -> int:
        self.health.start()
        log.info(
            "songbird started",
            identity=self.identity,
            namespaces=list(self.settings.namespaces) or "all",
            metrics=self.settings.metrics_address,
            leader_election=self.settings.leader_election,
            # Endpoint names only: a URL may hold credentials (the --prometheus-url shorthand).
            prometheus=[e.name for e in self.settings.endpoints.endpoints],
            prometheus_default=self.settings.endpoints.default,
        )
        for informer in self.cache.informers:
            informer.start()
        self.queue.start()
        self.scheduler.start()
        if self.leader is None:
            self.metrics.set_leader(True)
        else:
            self.leader.start()
        self._stopping.wait()
        return self._shutdown()

    def _shutdown(self) -> int:
        began = time.monotonic()
        log.info("songbird stopping")
        self.scheduler.shutdown()
        self.queue.stop()
        for informer in self.cache.informers:
            informer.stop()
        if self.leader is not None:
            self.leader.stop(0)  # ends after the round in flight; joined below
        release_reserve = LEASE_API.budget if self.leader is not None else 0.0
        drained = self.queue.join(max(0.0, SHUTDOWN_BUDGET - release_reserve - (time.monotonic() - began)))
        if self.leader is not None:
            ended = self.leader.stop(max(0.0, SHUTDOWN_BUDGET - release_reserve - (time.monotonic() - began)))
            if drained:
                self.leader.release(loop_ended=ended)
            else:
                # A write may still be in flight: revoke the fence and let the Lease expire rather than
                # hand it over while this replica could still write.
                self.fence_revoke()
                log.warning("ticks still in flight at shutdown: the Lease is left to expire")
        self.health.stop()
        self.endpoints.close()
        self.batcher.close()
        for client in (self.kube, self.watch_kube, self.lease_kube):
            if client is not None:
                client.close()
        log.info("songbird stopped", seconds=round(time.monotonic() - began, 2))
        return 0

    def fence_revoke(self) -> None:
        if isinstance(self.fence, Fence):
            self.fence.revoke()

    def stop(self, *_: object) -> None:
        self._stopping.set()

    def install_signal_handlers(self) -> None:
        def handler(signum: int, frame: FrameType | None) -> None:
            self.stop()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)


def _cadence(configmap: dict[str, object]) -> float:
    try:
        return load_policy_configmap(configmap).analysis.cadence
    except PolicyError:
        return 15.0  # still ticked, so the error is reported on the ConfigMap
    except Exception:  # a backstop: one unreadable policy never stops the watch that reads the others
        meta = configmap.get("metadata")
        where = f"{meta.get('namespace')}/{meta.get('name')}" if isinstance(meta, dict) else "?"
        log.exception("policy unreadable", configmap=where)
        return 15.0
