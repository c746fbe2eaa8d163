"""The far ends of the scale benchmark (`bench.scale`), in process: an API and a Prometheus that keep up.

- `FakeApi` implements the ports the runtime talks to (``controller.ports``: list pages, watch streams with
  resourceVersions and 410 for a version older than its history, JSON merge patches, creates, Events;
  ``controller.lease``: the Lease with its resourceVersion precondition). Deployments become ready as soon
  as they are scaled, as a kubelet that keeps up would make them. It counts requests by verb and notes when
  each namespace's canary weight was written as 0.
- `FakePrometheus` answers grouped queries (``query_vector``) and per-rollout ones (``query_scalar``) at
  once, from the canary weights the API holds: every stable serves 20 req/s at 0.5 % 5xx; a canary the same
  share at its weight, or 20 % 5xx when its namespace is one of the bad ones.
- `CpuMeter`: the thread CPU time spent inside the fakes, so the benchmark can report the controller's own.
"""

from __future__ import annotations

import copy
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator, Mapping
from typing import Any

from songbird.bench.fake_cluster import merge_patch
from songbird.config.policy import POLICY_LABEL
from songbird.controller.cache import is_policy
from songbird.controller.errors import Conflict, NotFound
from songbird.controller.keys import ACCEPT_POLICY_ANNOTATION
from songbird.controller.ports import Kind, Obj, Page, WatchExpired

PREFIX = "nginx.ingress.kubernetes.io"
CADENCE = 15.0
POLICY = """
ingress: nginx
canary: {deployment: nginx-v2, service: nginx-v2}
steps: [10, 20, 40, 60, 80]
interval: 1m
analysis:
  prometheus: {url: "http://prometheus.bench:9090"}
  cadence: 15s
  window: 15s
"""


def _versioned(obj: Obj) -> dict[str, Any]:
    return {"resourceVersion": (obj.get("metadata") or {}).get("resourceVersion")}


class CpuMeter:
    """Thread CPU time spent inside the fakes (subtracted from the process' CPU time)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.seconds = 0.0

    def add(self, seconds: float) -> None:
        with self._lock:
            self.seconds += seconds


class FakeApi:
    """An API server that keeps up: the ports of ``controller.ports`` and ``controller.lease`` in memory."""

    HISTORY = 200_000  # events kept per kind; a watch from before the oldest gets 410

    def __init__(self, cpu: CpuMeter) -> None:
        self._cpu = cpu
        self._cond = threading.Condition()
        self._version = 1
        self._objects: dict[Kind, dict[tuple[str, str], Obj]] = {k: {} for k in Kind}
        self._history: dict[Kind, deque[tuple[int, str, Obj]]] = {k: deque(maxlen=self.HISTORY) for k in Kind}
        self._closed = False
        self.calls: Counter[str] = Counter()
        self.withdrawn: dict[str, list[float]] = {}  # namespace -> when its canary weight was set to 0

    # -- setup ---------------------------------------------------------------------------------------

    def seed(self, kind: Kind, obj: Obj) -> None:
        with self._cond:
            self._store(kind, obj, "ADDED")

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _store(self, kind: Kind, obj: Obj, event: str) -> Obj:
        self._version += 1
        meta = obj.setdefault("metadata", {})
        meta["resourceVersion"] = str(self._version)
        key = (meta.get("namespace", ""), meta["name"])
        if event == "DELETED":
            self._objects[kind].pop(key, None)
        else:
            self._objects[kind][key] = obj
        self._history[kind].append((self._version, event, obj))
        self._cond.notify_all()
        return copy.deepcopy(obj)

    # -- WatchSource ---------------------------------------------------------------------------------

    def list_page(
        self,
        kind: Kind,
        namespace: str | None,
        *,
        label_selector: str | None = None,
        limit: int = 500,
        token: str = "",
    ) -> Page:
        began = time.thread_time()
        with self._cond:
            self.calls["list"] += 1
            objects = sorted(self._objects[kind].items())
            version = str(self._version)
        chosen = [o for (ns, _), o in objects if namespace is None or ns == namespace]
        if label_selector:
            chosen = [o for o in chosen if is_policy(o)]
        start = int(token or 0)
        page = copy.deepcopy(chosen[start : start + limit])
        more = start + limit < len(chosen)
        self._cpu.add(time.thread_time() - began)
        return Page(items=page, resource_version=version, next=str(start + limit) if more else "")

    def watch(
        self,
        kind: Kind,
        namespace: str | None,
        *,
        resource_version: str,
        label_selector: str | None = None,
        timeout_seconds: int = 300,
    ) -> Iterator[Obj]:
        with self._cond:
            self.calls["watch"] += 1
        sent = int(resource_version or 0)
        ends = time.monotonic() + timeout_seconds
        while not self._closed and time.monotonic() < ends:
            with self._cond:
                history = self._history[kind]
                if history and history[0][0] > sent + 1 and sent < self._version - len(history):
                    raise WatchExpired("too old resource version", status=410)
                self._cond.wait_for(
                    lambda h=history, after=sent: self._closed or (bool(h) and h[-1][0] > after),  # type: ignore[misc]
                    timeout=1.0,
                )
                began = time.thread_time()
                fresh = [(v, t, o) for v, t, o in reversed(history) if v > sent] if history else []
            fresh.reverse()
            out = []
            for v, t, o in fresh:
                sent = v
                if namespace is None or o["metadata"].get("namespace") == namespace:
                    out.append({"type": t, "object": copy.deepcopy(o)})
            self._cpu.add(time.thread_time() - began)
            yield from out

    # -- ClusterWriter, Recorder ---------------------------------------------------------------------

    def patch(self, kind: Kind, namespace: str, name: str, patch: Mapping[str, Any]) -> Obj:
        began = time.thread_time()
        with self._cond:
            self.calls["patch"] += 1
            current = self._objects[kind].get((namespace, name))
            if current is None:
                raise NotFound(f"{kind.value} {namespace}/{name} not found", status=404)
            merged = merge_patch(current, patch)
            if kind is Kind.DEPLOYMENT:  # a kubelet that keeps up: every replica ready at once
                replicas = int((merged.get("spec") or {}).get("replicas") or 0)
                merged["status"] = {
                    "replicas": replicas,
                    "readyReplicas": replicas,
                    "updatedReplicas": replicas,
                    "availableReplicas": replicas,
                    "observedGeneration": 1,
                }
            if kind is Kind.INGRESS:
                self._withdrawal(namespace, merged)
            written = self._store(kind, merged, "MODIFIED")
        self._cpu.add(time.thread_time() - began)
        return written

    def scale(self, namespace: str, name: str, replicas: int) -> Obj:
        """The Deployment's scale subresource: only ``spec.replicas`` changes (counted as a patch, the
        verb the API server sees); the answer is an autoscaling/v1 Scale."""
        written = self.patch(Kind.DEPLOYMENT, namespace, name, {"spec": {"replicas": replicas}})
        return {
            "apiVersion": "autoscaling/v1",
            "kind": "Scale",
            "metadata": {"name": name, "namespace": namespace, **_versioned(written)},
            "spec": {"replicas": replicas},
            "status": {"replicas": replicas},
        }

    def _withdrawal(self, namespace: str, ingress: Obj) -> None:
        annotations = (ingress.get("metadata") or {}).get("annotations") or {}
        if (
            annotations.get(f"{PREFIX}/canary") == "true"
            and annotations.get(f"{PREFIX}/canary-weight") == "0"
        ):
            self.withdrawn.setdefault(namespace, []).append(time.monotonic())

    def create(self, kind: Kind, namespace: str, body: Mapping[str, Any]) -> Obj:
        began = time.thread_time()
        with self._cond:
            self.calls["create"] += 1
            obj = copy.deepcopy(dict(body))
            obj.setdefault("metadata", {})["namespace"] = namespace
            if (namespace, obj["metadata"]["name"]) in self._objects[kind]:
                raise Conflict(f"{kind.value} {namespace}/{obj['metadata']['name']} exists", status=409)
            if kind is Kind.INGRESS:
                self._withdrawal(namespace, obj)
            written = self._store(kind, obj, "ADDED")
        self._cpu.add(time.thread_time() - began)
        return written

    def delete(self, kind: Kind, namespace: str, name: str) -> None:
        with self._cond:
            self.calls["delete"] += 1
            current = self._objects[kind].get((namespace, name))
            if current is not None:
                self._store(kind, current, "DELETED")

    def event(self, obj: Mapping[str, Any], *, reason: str, message: str, warning: bool = False) -> None:
        with self._cond:
            self.calls["event"] += 1

    # -- LeaseStore ----------------------------------------------------------------------------------

    def get_lease(self, namespace: str, name: str) -> Obj | None:
        with self._cond:
            self.calls["get"] += 1
            found = self._objects[Kind.LEASE].get((namespace, name))
            return copy.deepcopy(found) if found is not None else None

    def create_lease(self, namespace: str, body: Mapping[str, Any]) -> Obj:
        with self._cond:
            self.calls["create"] += 1
            obj = copy.deepcopy(dict(body))
            obj.setdefault("metadata", {})["namespace"] = namespace
            return self._store(Kind.LEASE, obj, "ADDED")

    def replace_lease(self, namespace: str, name: str, body: Mapping[str, Any]) -> Obj:
        with self._cond:
            self.calls["update"] += 1
            current = self._objects[Kind.LEASE].get((namespace, name))
            given = (body.get("metadata") or {}).get("resourceVersion")
            if current is None or given != current["metadata"]["resourceVersion"]:
                raise Conflict(f"Lease {namespace}/{name} changed", status=409)
            obj = copy.deepcopy(dict(body))
            obj["metadata"]["namespace"] = namespace
            return self._store(Kind.LEASE, obj, "MODIFIED")


class FakePrometheus:
    """Answers grouped (``query_vector``) and per-rollout (``query_scalar``) queries from the weights the
    API holds now: see the module docstring for the traffic."""

    RATE = 20.0
    GOOD, BAD = 0.005, 0.2
    BUCKETS = (("0.25", 0.80), ("0.5", 0.97), ("1", 0.995), ("+Inf", 1.0))

    def __init__(self, api: FakeApi, rollouts: list[str], bad: set[str], cpu: CpuMeter) -> None:
        self._api = api
        self._rollouts = rollouts
        self._bad = bad
        self._cpu = cpu
        self.grouped = 0
        self.scalar = 0
        self._lock = threading.Lock()

    def _weight(self, namespace: str) -> float:
        with self._api._cond:
            canary = self._api._objects[Kind.INGRESS].get((namespace, "nginx-canary"))
        if canary is None:
            return 0.0
        annotations = canary["metadata"].get("annotations") or {}
        return float(annotations.get(f"{PREFIX}/canary-weight", "0")) / 100.0

    def _counts(self, namespace: str, canary: bool, window: float) -> tuple[float, float]:
        weight = self._weight(namespace)
        share = weight if canary else 1.0 - weight
        total = self.RATE * window * share
        bad = self.BAD if canary and namespace in self._bad else self.GOOD
        return total, total * bad

    def query_vector(self, promql: str, *, at: float) -> list[tuple[dict[str, str], float]]:
        began = time.thread_time()
        with self._lock:
            self.grouped += 1
        window = _window(promql)
        out: list[tuple[dict[str, str], float]] = []
        for ns in self._rollouts:
            for canary in (False, True):
                total, bad = self._counts(ns, canary, window)
                if canary and total == 0:
                    continue  # no canary series before its first request
                labels = {
                    "namespace": ns,
                    "ingress": "nginx",
                    "canary": f"{ns}-nginx-v2-80" if canary else "",
                }
                if "le)" in promql:
                    for le, share in self.BUCKETS:
                        out.append(({**labels, "le": le}, total * share))
                elif "status=~" in promql:
                    out.append((labels, bad))
                else:
                    out.append((labels, total))
        self._cpu.add(time.thread_time() - began)
        return out

    def query_scalar(self, promql: str, *, at: float) -> float | None:
        with self._lock:
            self.scalar += 1
        found = re.search(r'namespace="([^"]+)"', promql)
        if found is None:
            return None
        canary = 'canary!=""' in promql
        total, bad = self._counts(found.group(1), canary, _window(promql))
        if "histogram_quantile" in promql:
            return 0.3 if total > 0 else None
        if "status=~" in promql:
            return bad
        if " - sum(" in promql:
            return total * (1 - 0.97)
        return total


def _window(promql: str) -> float:
    found = re.search(r"\[(\d+)(ms|s)\]", promql)
    if found is None:
        return CADENCE
    return int(found.group(1)) / (1000.0 if found.group(2) == "ms" else 1.0)


def seed_objects(namespace: str) -> list[tuple[Kind, Obj]]:
    """A namespace's seed: Deployments nginx-v1 (3 ready) and nginx-v2 (0), their Services, the main
    Ingress to nginx-v1, and the policy ConfigMap; the workloads opt in to that policy."""
    accept = {ACCEPT_POLICY_ANNOTATION: "nginx-rollout"}

    def deployment(version: str, replicas: int) -> Obj:
        labels = {"app": "nginx", "version": version}
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": f"nginx-{version}",
                "namespace": namespace,
                "labels": labels,
                "annotations": accept,
            },
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "nginx", "image": f"nginx:{version}"}]},
                },
            },
            "status": {
                "replicas": replicas,
                "readyReplicas": replicas,
                "updatedReplicas": replicas,
                "availableReplicas": replicas,
                "observedGeneration": 1,
            },
        }

    def service(version: str) -> Obj:
        return {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": f"nginx-{version}", "namespace": namespace, "annotations": accept},
            "spec": {
                "selector": {"app": "nginx", "version": version},
                "ports": [{"name": "http", "port": 80, "targetPort": 80}],
            },
        }

    path = {
        "path": "/",
        "pathType": "Prefix",
        "backend": {"service": {"name": "nginx-v1", "port": {"number": 80}}},
    }
    ingress = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": "nginx", "namespace": namespace, "annotations": accept},
        "spec": {
            "ingressClassName": "nginx",
            "rules": [{"host": f"{namespace}.example.com", "http": {"paths": [path]}}],
        },
    }
    policy = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "nginx-rollout", "namespace": namespace, "labels": {POLICY_LABEL: "true"}},
        "data": {"policy.yaml": POLICY},
    }
    return [
        (Kind.DEPLOYMENT, deployment("v1", 3)),
        (Kind.DEPLOYMENT, deployment("v2", 0)),
        (Kind.SERVICE, service("v1")),
        (Kind.SERVICE, service("v2")),
        (Kind.INGRESS, ingress),
        (Kind.CONFIGMAP, policy),
    ]
