"""An in-memory cluster behind the controller's narrow ports (`songbird.controller.ports`), for the unit
tests' fast tier and the robustness benchmark's ``faults`` campaign (the bench cannot import the tests;
``tests.support.fakes`` re-exports these).

- `FakeCluster` is a `ClusterReader`, `ClusterWriter` and `Recorder` over a dict of objects. ``patch``
  applies a JSON merge patch as RFC 7386 defines it (objects merge key by key, ``null`` deletes a key,
  anything else, arrays included, replaces the target), so a caller sees the objects the API server would
  hold. Like the API server, it refuses a patch whose ``metadata.resourceVersion`` is stale (409), a
  create of an existing object (409) and a patch of a missing one (404), and bumps ``resourceVersion`` on
  every write. ``scale`` is the Deployment's scale subresource: only ``spec.replicas`` changes, and the
  answer is an autoscaling/v1 Scale. Every write the controller makes is appended to `writes`, in order
  (a scale as op ``scale`` with the body ``{"spec": {"replicas": n}}`` it sent); every Event to
  `events`. `fail` makes the next matching call raise `ClusterUnavailable`, as a dropped connection would.
  `kubelet` plays the kubelet: every Deployment's ``status.readyReplicas`` becomes its ``spec.replicas``
  (not logged as a write: the controller did not make it). `crash_after` makes the controller "die" right
  after a given write took effect: that write is kept and `Crashed` is raised out of the tick (it is not a
  `ClusterError`, so nothing in the controller handles it); the caller then carries on with a new one.
- `FakeClock` is a `Clock` that moves only when the caller says so.
- `reconciler_over` is the real `Reconciler` (ingress-nginx router) reading and writing a `FakeCluster`.

Nothing here imports an HTTP library.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from songbird.controller.errors import ClusterUnavailable, Conflict, NotFound
from songbird.controller.ports import Kind, Obj
from songbird.controller.reconciler import Evaluator, Reconciler
from songbird.controller.routers import make_router

Op = Literal["create", "patch", "delete", "scale"]


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 section 2, MergePatch(Target, Patch): a new value; neither argument is changed."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _version_of(obj: Obj) -> dict[str, str]:
    return {"resourceVersion": str((obj.get("metadata") or {}).get("resourceVersion", ""))}


@dataclass(frozen=True, kw_only=True)
class Write:
    """One write the controller made: the object to create, or the merge patch, as it was sent."""

    op: Op
    kind: Kind
    namespace: str
    name: str
    body: Mapping[str, Any] = field(default_factory=dict)


class Crashed(Exception):
    """The controller process died here (`FakeCluster.crash_after`)."""


@dataclass(frozen=True, kw_only=True)
class RecordedEvent:
    kind: str  # of the object the Event is about
    name: str
    reason: str
    message: str
    warning: bool


@dataclass(kw_only=True)
class _Fault:
    op: Op | Literal["get"]
    kind: Kind
    name: str
    times: int


class FakeCluster:
    """Objects by (kind, namespace, name); see the module docstring for the API server rules it keeps."""

    def __init__(self, objects: Sequence[Obj] = ()) -> None:
        self._objects: dict[tuple[Kind, str, str], Obj] = {}
        self._versions = itertools.count(1)
        self._faults: list[_Fault] = []
        self.writes: list[Write] = []
        self.events: list[RecordedEvent] = []
        self._crash_at: int | None = None
        for obj in objects:
            self.put(obj)

    # -- set-up, outside the controller's view -----------------------------------------------------------

    def put(self, obj: Obj) -> None:
        """Store ``obj`` as a user's ``kubectl apply`` would (not logged as the controller's write)."""
        meta = obj.get("metadata") or {}
        stored = copy.deepcopy(obj)
        stored.setdefault("metadata", {})["resourceVersion"] = str(next(self._versions))
        self._objects[(Kind(obj["kind"]), meta.get("namespace", ""), meta["name"])] = stored

    def remove(self, kind: Kind, namespace: str, name: str) -> None:
        self._objects.pop((kind, namespace, name), None)

    def kubelet(self) -> None:
        """Every Deployment's pods become ready: ``status.readyReplicas`` = ``spec.replicas``."""
        for (kind, _, _), obj in self._objects.items():
            if kind is Kind.DEPLOYMENT:
                replicas = (obj.get("spec") or {}).get("replicas", 1)
                obj.setdefault("status", {})["readyReplicas"] = replicas

    def fail(self, op: Op | Literal["get"], kind: Kind, name: str, *, times: int = 1) -> None:
        """The next ``times`` calls of ``op`` on the named object raise `ClusterUnavailable`."""
        self._faults.append(_Fault(op=op, kind=kind, name=name, times=times))

    def crash_after(self, writes: int | None) -> None:
        """Raise `Crashed` right after the ``writes``-th write from now has taken effect (None: never)."""
        self._crash_at = None if writes is None else len(self.writes) + writes

    def _written(self, write: Write) -> None:
        self.writes.append(write)
        if self._crash_at is not None and len(self.writes) >= self._crash_at:
            self._crash_at = None
            raise Crashed(
                f"crashed after write {len(self.writes)}: {write.op} {write.kind.value} {write.name}"
            )

    def object(self, kind: Kind, namespace: str, name: str) -> Obj | None:
        """The stored object (a copy), for assertions."""
        obj = self._objects.get((kind, namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    # -- ClusterReader -----------------------------------------------------------------------------------

    def get(self, kind: Kind, namespace: str, name: str) -> Obj | None:
        self._fault("get", kind, name)
        return self.object(kind, namespace, name)

    def list_objects(self, kind: Kind, namespace: str) -> list[Obj]:
        return [
            copy.deepcopy(obj)
            for (k, ns, _), obj in sorted(self._objects.items(), key=lambda item: item[0])
            if k is kind and ns == namespace
        ]

    def list_policies(self, namespaces: Sequence[str] | None) -> list[Obj]:
        return [
            copy.deepcopy(obj)
            for (k, ns, _), obj in sorted(self._objects.items(), key=lambda item: item[0])
            if k is Kind.CONFIGMAP
            and (namespaces is None or ns in namespaces)
            and ((obj.get("metadata") or {}).get("labels") or {}).get("songbird.dev/policy") == "true"
        ]

    # -- ClusterWriter -----------------------------------------------------------------------------------

    def patch(self, kind: Kind, namespace: str, name: str, patch: Mapping[str, Any]) -> Obj:
        self._fault("patch", kind, name)
        what = f"{kind.value} {namespace}/{name}"
        current = self._objects.get((kind, namespace, name))
        if current is None:
            raise NotFound("not found", obj=what, status=404)
        expected = (patch.get("metadata") or {}).get("resourceVersion")
        if expected is not None and expected != current["metadata"]["resourceVersion"]:
            raise Conflict("the object has been modified", obj=what, status=409)
        updated = merge_patch(current, patch)
        updated["metadata"]["resourceVersion"] = str(next(self._versions))
        self._objects[(kind, namespace, name)] = updated
        self._written(Write(op="patch", kind=kind, namespace=namespace, name=name, body=copy.deepcopy(patch)))
        return copy.deepcopy(updated)

    def scale(self, namespace: str, name: str, replicas: int) -> Obj:
        self._fault("scale", Kind.DEPLOYMENT, name)
        current = self._objects.get((Kind.DEPLOYMENT, namespace, name))
        if current is None:
            raise NotFound("not found", obj=f"Deployment {namespace}/{name}", status=404)
        current.setdefault("spec", {})["replicas"] = replicas
        current["metadata"]["resourceVersion"] = str(next(self._versions))
        body = {"spec": {"replicas": replicas}}
        self._written(Write(op="scale", kind=Kind.DEPLOYMENT, namespace=namespace, name=name, body=body))
        return {
            "apiVersion": "autoscaling/v1",
            "kind": "Scale",
            "metadata": {"name": name, "namespace": namespace, **_version_of(current)},
            "spec": {"replicas": replicas},
            "status": {"replicas": int((current.get("status") or {}).get("replicas") or 0)},
        }

    def create(self, kind: Kind, namespace: str, body: Mapping[str, Any]) -> Obj:
        name = str((body.get("metadata") or {}).get("name", ""))
        self._fault("create", kind, name)
        if (kind, namespace, name) in self._objects:
            raise Conflict("already exists", obj=f"{kind.value} {namespace}/{name}", status=409)
        stored = copy.deepcopy(dict(body))
        stored.setdefault("metadata", {}).update(
            namespace=namespace, resourceVersion=str(next(self._versions))
        )
        self._objects[(kind, namespace, name)] = stored
        self._written(Write(op="create", kind=kind, namespace=namespace, name=name, body=copy.deepcopy(body)))
        return copy.deepcopy(stored)

    def delete(self, kind: Kind, namespace: str, name: str) -> None:
        self._fault("delete", kind, name)
        if self._objects.pop((kind, namespace, name), None) is not None:
            self._written(Write(op="delete", kind=kind, namespace=namespace, name=name))

    # -- Recorder ----------------------------------------------------------------------------------------

    def event(self, obj: Mapping[str, Any], *, reason: str, message: str, warning: bool = False) -> None:
        meta = obj.get("metadata") or {}
        self.events.append(
            RecordedEvent(
                kind=str(obj.get("kind", "")),
                name=str(meta.get("name", "")),
                reason=reason,
                message=message,
                warning=warning,
            )
        )

    def _fault(self, op: str, kind: Kind, name: str) -> None:
        for fault in self._faults:
            if fault.op == op and fault.kind is kind and fault.name == name and fault.times > 0:
                fault.times -= 1
                raise ClusterUnavailable("connection reset by peer", obj=f"{kind.value} {name}", status=None)


class FakeClock:
    def __init__(self, start: float) -> None:
        self.t = start

    def now(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def reconciler_over(cluster: FakeCluster, *, evaluator: Evaluator, clock: FakeClock) -> Reconciler:
    """The real reconciler with ``cluster`` as its reader, writer and recorder (ingress-nginx routing)."""
    return Reconciler(
        reader=cluster,
        writer=cluster,
        recorder=cluster,
        router=make_router("ingress-nginx"),
        evaluator=evaluator,
        clock=clock,
    )
