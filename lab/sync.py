"""Keeps the lab's data plane in step with a cluster: backends, Deployment status and nginx.

It plays the parts a real cluster's kubelet, Deployment controller, endpoints controller and ingress-nginx
play, reading the cluster only through `ClusterView` (three list methods returning plain dicts in the
Kubernetes JSON shape) and writing only Deployment status through a ``patch_status(name, status)``
callable. Every ``interval`` seconds (0.5 by default) `DataPlaneSync.step`:

1. scales each Deployment's local replicas (`lab.replicas`) to ``spec.replicas`` (default 1), serving the
   pod template's ``version`` label (default: the Deployment name) with the `BackendProfile` read from the
   pod template's ``lab.songbird.dev/*`` annotations (see `profile_from_annotations`); Deployments that
   disappeared are scaled to 0;
2. computes each Service's endpoints: the replicas of the Deployments (same namespace) whose pod template
   labels include the Service's ``spec.selector``;
3. translates the Ingresses (`lab.translator`) and, when the model differs from the applied one, applies it
   to nginx (`lab.nginx`: checked, graceful reload);
4. stops the replicas retired in step 1, only now that nginx no longer sends them traffic;
5. patches ``status`` (replicas, readyReplicas, availableReplicas, updatedReplicas, observedGeneration) of
   every Deployment whose status differs from what runs.

Failures: an exception in a step is logged (``lab.sync_failed``) and the next tick tries again; a model
nginx refuses is not retried until the model changes. The lab runs one namespace: replicas are keyed by
Deployment name. `step` can be called directly (tests do), and the thread is started and stopped by the
``with`` block.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from songbird.lab.backend import BackendProfile
from songbird.lab.model import RoutingModel
from songbird.lab.nginx import NginxConfigError, NginxServer
from songbird.lab.replicas import ReplicaSupervisor
from songbird.lab.translator import DEFAULT_ANNOTATION_PREFIX, translate

Obj = dict[str, Any]
PatchStatus = Callable[[str, Obj], None]

PROFILE_ANNOTATION_PREFIX = "lab.songbird.dev/"

log = structlog.get_logger("lab.sync")


class ClusterView(Protocol):
    def list_ingresses(self) -> list[Obj]: ...

    def list_services(self) -> list[Obj]: ...

    def list_deployments(self) -> list[Obj]: ...


def profile_from_annotations(deployment: Mapping[str, Any]) -> BackendProfile:
    """The backend behaviour asked for by ``lab.songbird.dev/{error-rate,latency-median,latency-sigma,seed}``
    annotations on the pod template (or, failing that, on the Deployment). Latency values are seconds."""
    ann = dict((deployment.get("metadata") or {}).get("annotations") or {})
    ann.update(_template(deployment).get("metadata", {}).get("annotations") or {})
    p = PROFILE_ANNOTATION_PREFIX
    defaults = BackendProfile()
    return BackendProfile(
        error_rate=float(ann.get(p + "error-rate", defaults.error_rate)),
        latency_median=float(ann.get(p + "latency-median", defaults.latency_median)),
        latency_sigma=float(ann.get(p + "latency-sigma", defaults.latency_sigma)),
        seed=int(ann.get(p + "seed", defaults.seed)),
    )


def version_of(deployment: Mapping[str, Any]) -> str:
    labels = _template(deployment).get("metadata", {}).get("labels") or {}
    return str(labels.get("version") or _name(deployment))


@dataclass
class StepResult:
    scaled: dict[str, int] = field(default_factory=dict)
    applied: bool = False
    patched: list[str] = field(default_factory=list)


class DataPlaneSync:
    def __init__(
        self,
        view: ClusterView,
        patch_status: PatchStatus,
        *,
        nginx: NginxServer,
        replicas: ReplicaSupervisor,
        profile_for: Callable[[Mapping[str, Any]], BackendProfile] = profile_from_annotations,
        interval: float = 0.5,
        annotation_prefix: str = DEFAULT_ANNOTATION_PREFIX,
        ingress_class: str | None = None,
    ) -> None:
        self._ingress_class = ingress_class  # serve only this class (`lab.translator`); None: every Ingress
        self._view = view
        self._patch_status = patch_status
        self._nginx = nginx
        self._replicas = replicas
        self._profile_for = profile_for
        self._interval = interval
        self._prefix = annotation_prefix
        self._refused: RoutingModel | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._step_lock = threading.Lock()
        self.last_error: BaseException | None = None

    def __enter__(self) -> DataPlaneSync:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="lab-sync", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    @property
    def model(self) -> RoutingModel | None:
        return self._nginx.model

    def step(self) -> StepResult:
        with self._step_lock:
            return self._step()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
                self.last_error = None
            except Exception as exc:
                self.last_error = exc
                log.warning("lab.sync_failed", error=str(exc))
            self._stop.wait(self._interval)

    def _step(self) -> StepResult:
        result = StepResult()
        deployments = self._view.list_deployments()
        wanted: dict[str, Obj] = {_name(d): d for d in deployments}

        for name, d in wanted.items():
            desired = _desired_replicas(d)
            before = self._replicas.addresses(name)
            self._replicas.scale(
                name, desired, version=version_of(d), profile=self._profile_for(d), drain=False
            )
            if self._replicas.addresses(name) != before:
                result.scaled[name] = desired
                log.info("lab.scaled", deployment=name, replicas=desired)
        for name in self._replicas.deployments():
            if name not in wanted:
                self._replicas.scale(name, 0, version="", profile=BackendProfile(), drain=False)
                result.scaled[name] = 0
                log.info("lab.scaled", deployment=name, replicas=0, reason="deployment deleted")

        endpoints = self._endpoints(self._view.list_services(), deployments)
        model = translate(
            self._view.list_ingresses(),
            endpoints,
            annotation_prefix=self._prefix,
            ingress_class=self._ingress_class,
        )
        if model not in (self._nginx.model, self._refused):
            try:
                self._nginx.apply(model)
            except NginxConfigError as exc:
                self._refused = model
                log.error("lab.nginx_refused", error=str(exc))
            else:
                self._refused = None
                result.applied = True
                log.info("lab.nginx_applied", generation=self._nginx.generation, notes=list(model.notes))
        self._replicas.drain()

        for name, d in wanted.items():
            status = self._status(name, d)
            current = d.get("status") or {}
            if any(current.get(k, 0) != v for k, v in status.items()):
                self._patch_status(name, status)
                result.patched.append(name)
        return result

    def _status(self, name: str, deployment: Mapping[str, Any]) -> Obj:
        ready = self._replicas.ready(name)
        status: Obj = {
            "replicas": ready,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "updatedReplicas": ready,
        }
        generation = (deployment.get("metadata") or {}).get("generation")
        if generation is not None:
            status["observedGeneration"] = generation
        return status

    def _endpoints(self, services: list[Obj], deployments: list[Obj]) -> dict[str, tuple[str, ...]]:
        found: dict[str, tuple[str, ...]] = {}
        for svc in services:
            selector = (svc.get("spec") or {}).get("selector") or {}
            if not selector:
                continue
            ns = _namespace(svc)
            addresses: list[str] = []
            for d in deployments:
                labels = _template(d).get("metadata", {}).get("labels") or {}
                if _namespace(d) == ns and all(labels.get(k) == v for k, v in selector.items()):
                    addresses += self._replicas.addresses(_name(d))
            found[f"{ns}/{_name(svc)}"] = tuple(addresses)
        return found


def _desired_replicas(d: Mapping[str, Any]) -> int:
    raw = (d.get("spec") or {}).get("replicas")
    return 1 if raw is None else max(0, int(raw))


def _template(d: Mapping[str, Any]) -> Mapping[str, Any]:
    return (d.get("spec") or {}).get("template") or {}


def _name(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")


def _namespace(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("namespace") or "default")
