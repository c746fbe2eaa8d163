"""A Kubernetes API on 127.0.0.1 without a cluster: kmock's `KubernetesEmulator` in a thread.

The lab (``songbird lab``) and the test suite both need an API server that the real ``kubernetes`` client
talks to over real HTTP. This module runs kmock (asyncio, aiohttp) on its own event loop in a background
thread and offers a synchronous surface: seed and read objects, merge a Deployment's status the way the
real controllers would, list Events, see every request (with its Kubernetes verb, for deriving RBAC rules),
and inject faults (a status or a hang) into the next N matching requests. ``tests/support/kube_emulator``
re-exports it for the tests.

What kmock 0.8 does, as tried against it with kubernetes-client/python 37 (the parts Songbird relies on
are pinned by ``tests/integration/test_kube_adapter.py``):

- PATCH: the body is merged as plain JSON whatever the ``Content-Type`` says (a list body is applied as a
  JSON patch). ``None`` deletes a key, lists are replaced whole: that is RFC 7386 merge-patch semantics, so
  a client sending ``application/merge-patch+json`` sees the same result here as on a real API server.
  Strategic merge is *not* emulated. The content type is recorded on each `SeenRequest` so tests can
  check what the client declared.
- PUT on a named object is not served by kmock at all (it answers 404 "Endpoint Not Found": only POST,
  PATCH and DELETE change state). This harness adds PUT as a whole-object replace.
- resourceVersion: kmock keeps none. This harness stamps ``metadata.resourceVersion`` (a counter), and
  ``uid`` and ``creationTimestamp`` on create, and rejects a PUT or PATCH whose body carries a stale
  ``metadata.resourceVersion`` with 409 Conflict, as a real API server does. A write without one is
  unconditional, as on a real server.
- Watch (``?watch=true``): kmock streams the events of its bus. This harness also publishes the changes
  it makes itself (`KubeEmulator.put`, ``merge_status``, ``delete``) and the re-stamped object after every
  API write, so a watcher sees each change with its final resourceVersion. Unlike a real API server, a
  watch starts by replaying every object as ADDED whatever ``resourceVersion`` it names, ignores
  ``timeoutSeconds`` and ``allowWatchBookmarks``, and never answers 410 Gone; a list's resourceVersion
  is a placeholder.
- Label and field selectors are ignored: a list returns every object of the resource (in the namespace).
- Subresources: kmock gives them no semantics. This harness serves the Deployment ``scale`` subresource
  (GET, PATCH, PUT on ``deployments/NAME/scale``) as a real API server does, with an autoscaling/v1
  ``Scale`` (see `lab.scale_subresource`); ``/status`` is still not emulated. Events are stored like any
  other object.
- kmock applies a write to its store *before* looking at user-defined reactions, so its request DSL
  (``kmock[...] << 500``) would answer 500 to a write that nevertheless took effect. Faults are therefore
  injected here, ahead of kmock's handling: a faulted request changes nothing.

Invariants: all access to kmock's state happens on the emulator's loop (the sync methods hop onto it), and
every synchronous call waits at most 10 s for it; objects handed out are deep copies; every request,
faulted or not, is recorded in arrival order; the server binds 127.0.0.1 only, and the kubeconfig lives in a
temporary directory removed by `KubeEmulator.stop`.
"""

from __future__ import annotations

import asyncio
import builtins
import concurrent.futures
import contextlib
import copy
import datetime
import itertools
import json
import shutil
import tempfile
import threading
import uuid
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import aiohttp.web
import attrs
import kmock

from songbird.lab import scale_subresource

Obj = dict[str, Any]
T = TypeVar("T")

# Kind -> (kmock resource "group/version/plural", namespaced).
RESOURCES: dict[str, tuple[str, bool]] = {
    "Namespace": ("v1/namespaces", False),
    "ConfigMap": ("v1/configmaps", True),
    "Service": ("v1/services", True),
    "Event": ("v1/events", True),
    "Deployment": ("apps/v1/deployments", True),
    "Ingress": ("networking.k8s.io/v1/ingresses", True),
    "Lease": ("coordination.k8s.io/v1/leases", True),
}
_PLURALS = {kind: path.rsplit("/", 1)[1] for kind, (path, _) in RESOURCES.items()}


@dataclass(frozen=True, kw_only=True)
class SeenRequest:
    """One request as the API server saw it. ``verb`` is the Kubernetes (RBAC) verb."""

    method: str
    path: str
    group: str | None
    resource: str | None
    namespace: str | None
    name: str | None
    subresource: str | None
    verb: str | None
    content_type: str | None
    query: Mapping[str, str]
    body: Any


@dataclass(kw_only=True)
class _Fault:
    method: str | None
    resource: str | None
    name: str | None
    namespace: str | None
    status: int | None
    hang: float | None
    remaining: int

    def matches(self, request: kmock.Request) -> bool:
        return (
            (self.method is None or request.method.value == self.method)
            and (
                self.resource is None
                or (request.resource is not None and request.resource.plural == self.resource)
            )
            and (self.name is None or request.name == self.name)
            and (self.namespace is None or request.namespace == self.namespace)
        )


def _verb(request: kmock.Request) -> str | None:
    if request.resource is None:
        return None
    method = request.method.value
    if method == "GET":
        if request.params.get("watch") in ("true", "1"):
            return "watch"
        return "get" if request.name else "list"
    if method == "DELETE":
        return "delete" if request.name else "deletecollection"
    return {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method)


def _now_rfc3339() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@attrs.define(kw_only=True)
class _Emulator(kmock.KubernetesEmulator):
    """kmock's emulator plus PUT, resourceVersion preconditions and fault injection (see module doc)."""

    _versions: Any = attrs.field(factory=lambda: itertools.count(1), init=False)
    _faults: list[_Fault] = attrs.field(factory=list, init=False)
    _faults_lock: Any = attrs.field(factory=threading.Lock, init=False)
    _release: asyncio.Event = attrs.field(factory=asyncio.Event, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.fallback[kmock.method.PUT] << self._serve_replace

    def add_fault(self, fault: _Fault) -> None:
        with self._faults_lock:
            self._faults.append(fault)

    def _take_fault(self, request: kmock.Request) -> _Fault | None:
        with self._faults_lock:
            for fault in self._faults:
                if fault.matches(request):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        fault = self._take_fault(request)
        if fault is not None:
            if fault.hang is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._release.wait(), timeout=fault.hang)
            status = fault.status if fault.status is not None else 504
            return await self._render_error(
                kmock.KubernetesError(
                    status=status,
                    reason=f"Injected{status}",
                    message=f"injected fault: HTTP {status}",
                    details={
                        "name": request.name,
                        "kind": request.resource.plural if request.resource else None,
                    },
                )
            )
        if (
            request.resource is not None
            and request.name is not None
            and request.method.value in ("PUT", "PATCH")
        ):
            stale = await self._stale_version(request)
            if stale is not None:
                return await self._render_error(stale)
        if (
            request.resource is not None
            and request.resource.plural == "deployments"
            and request.subresource == "scale"
            and request.name is not None
        ):
            return await self._serve_scale(request)
        return await super()._handle(request)

    async def _serve_scale(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        """GET, PATCH or PUT ``deployments/NAME/scale`` (`lab.scale_subresource`)."""
        assert request.resource is not None and request.name is not None
        key = (request.resource, request.namespace, request.name)
        method = request.method.value
        if method not in ("GET", "PATCH", "PUT"):
            return await self._render_error(kmock.KubernetesEndpointNotFoundError())
        async with self._lock:
            if key not in self._objects or self._objects[key].deleted:
                return await self._render_error(kmock.KubernetesObjectNotFoundError())
            current = copy.deepcopy(self._objects[key].raw)
            if method != "GET":
                body = dict(request.data) if isinstance(request.data, Mapping) else {}
                try:
                    updated = scale_subresource.written(current, body, patch=method == "PATCH")
                except scale_subresource.ScaleInvalid as exc:
                    return await self._render_error(
                        kmock.KubernetesError(status=422, reason="Invalid", message=str(exc))
                    )
                self._objects[key].create(updated)
                current = copy.deepcopy(self.stamp(key, created=False))
                await self.publish(key, "MODIFIED", current)
        return aiohttp.web.json_response(scale_subresource.scale_of(current))

    async def _stale_version(self, request: kmock.Request) -> kmock.KubernetesError | None:
        data = request.data if isinstance(request.data, Mapping) else {}
        wanted = (data.get("metadata") or {}).get("resourceVersion")
        if not wanted or request.resource is None or request.name is None:
            return None
        key = (request.resource, request.namespace, request.name)
        async with self._lock:
            if key not in self._objects or self._objects[key].deleted:
                return None
            current = (self._objects[key].raw.get("metadata") or {}).get("resourceVersion")
        if current == wanted:
            return None
        return kmock.KubernetesError(
            status=409,
            reason="Conflict",
            message=(
                f'Operation cannot be fulfilled on {request.resource.plural} "{request.name}": the object '
                "has been modified; please apply your changes to the latest version and try again"
            ),
            details={"name": request.name, "kind": request.resource.plural},
        )

    def stamp(self, key: Any, *, created: bool, namespace: str | None = None) -> Obj:
        """Give the stored object a new resourceVersion (and identity on create). Call with the lock held."""
        obj = self._objects[key]
        meta = dict(obj.raw.get("metadata") or {})
        meta["resourceVersion"] = str(next(self._versions))
        if created:
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", _now_rfc3339())
            if namespace:
                meta.setdefault("namespace", namespace)
        obj["metadata"] = meta
        raw: Obj = obj.raw
        return raw

    async def publish(self, key: Any, kind: str, raw: Obj) -> None:
        """Send a watch event for a change made outside kmock's request handling (call with the lock
        held): a copy, so the event shows the object as it is now, resourceVersion included."""
        await self._buses[key[0]].put({"type": kind, "object": copy.deepcopy(raw)})

    async def _serve_create(self, request: kmock.Request) -> Any:
        await super()._serve_create(request)
        meta = request.data.get("metadata", {})
        namespace = request.namespace or meta.get("namespace")
        async with self._lock:
            key = (request.resource, namespace, meta.get("name"))
            raw = self.stamp(key, created=True, namespace=namespace)
            await self.publish(key, "MODIFIED", raw)
            return raw

    async def _serve_update(self, request: kmock.Request) -> Any:
        result = await super()._serve_update(request)
        assert request.resource is not None and request.name is not None  # an UPDATE names its object
        key = (request.resource, request.namespace, request.name)
        async with self._lock:
            if key in self._objects and not self._objects[key].deleted:
                raw = self.stamp(key, created=False)
                await self.publish(key, "MODIFIED", raw)
                return raw
        return result

    async def _serve_replace(self, request: kmock.Request) -> Any:
        if request.resource is None or request.name is None or not isinstance(request.data, Mapping):
            raise kmock.KubernetesEndpointNotFoundError()
        key = (request.resource, request.namespace, request.name)
        async with self._lock:
            if key not in self._objects or self._objects[key].deleted:
                raise kmock.KubernetesObjectNotFoundError()
            old_meta = self._objects[key].raw.get("metadata") or {}
            body = copy.deepcopy(dict(request.data))
            meta = dict(body.get("metadata") or {})
            for kept in ("uid", "creationTimestamp"):
                if kept in old_meta:
                    meta[kept] = old_meta[kept]
            meta["name"] = request.name
            if request.namespace:
                meta["namespace"] = request.namespace
            body["metadata"] = meta
            self._objects[key].create(body)
            raw = self.stamp(key, created=False)
            await self._buses[request.resource].put({"type": "MODIFIED", "object": raw})
        return raw


class KubeEmulator:
    """A started Kubernetes API emulator on 127.0.0.1 with a synchronous API for tests.

    Use as a context manager (or `start` / `stop`). ``url`` is the API server address, ``kubeconfig_path``
    a kubeconfig file pointing at it. For example::

        with KubeEmulator() as kube:
            kube.put("Deployment", "default", scenario.deployment("v1", replicas=3))
            kube.fail("Deployment", status=500, method="PATCH", times=2)   # next two PATCHes fail
            kube.hang("Lease", seconds=30)                                  # next Lease request hangs
            ...  # code under test, given kube.url or kube.kubeconfig_path
            assert kube.get("Deployment", "default", "nginx-v1")["spec"]["replicas"] == 3
            rules = rbac_rules(kube.requests)                               # what RBAC must allow
    """

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._emulator: _Emulator | None = None
        self._stop: asyncio.Event | None = None
        self._url = ""
        self._dir: Path | None = None
        self._mark = 0

    # -- lifecycle --------------------------------------------------------------------------------------

    def start(self) -> KubeEmulator:
        started: concurrent.futures.Future[str] = concurrent.futures.Future()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, args=(started,), name="kube-emulator", daemon=True)
        self._thread.start()
        self._url = started.result(timeout=10).rstrip("/")
        self._dir = Path(tempfile.mkdtemp(prefix="songbird-kube-"))
        self.kubeconfig_path.write_text(json.dumps(self._kubeconfig()))
        return self

    def stop(self) -> None:
        loop, emulator, stop = self._loop, self._emulator, self._stop
        if loop is None or self._thread is None:
            return
        if emulator is not None and stop is not None:
            loop.call_soon_threadsafe(emulator._release.set)
            loop.call_soon_threadsafe(stop.set)
        self._thread.join(timeout=10)
        loop.close()
        self._loop = self._thread = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> KubeEmulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _run(self, started: concurrent.futures.Future[str]) -> None:
        assert self._loop is not None
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve(started))
        except BaseException as exc:
            if not started.done():
                started.set_exception(exc)
            raise

    async def _serve(self, started: concurrent.futures.Future[str]) -> None:
        self._stop = asyncio.Event()
        emulator = _Emulator()
        for kind, (path, namespaced) in RESOURCES.items():
            emulator.resources[path] = kmock.ResourceInfo(
                kind=kind,
                singular=kind.lower(),
                namespaced=namespaced,
                verbs={"get", "list", "watch", "create", "update", "patch", "delete"},
                subresources={"scale"} if kind == "Deployment" else set(),
            )
        self._emulator = emulator
        async with emulator, kmock.Server(emulator) as server:
            started.set_result(str(server.url))
            await self._stop.wait()

    def _call(self, fn: Callable[[_Emulator], Coroutine[Any, Any, T]]) -> T:
        """Run ``fn(emulator)`` on the emulator's loop and wait for its result."""
        if self._loop is None or self._emulator is None:
            raise RuntimeError("the emulator is not started")
        future = asyncio.run_coroutine_threadsafe(fn(self._emulator), self._loop)
        return future.result(timeout=10)

    # -- addresses --------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return self._url

    @property
    def kubeconfig_path(self) -> Path:
        if self._dir is None:
            raise RuntimeError("the emulator is not started")
        return self._dir / "kubeconfig"

    def _kubeconfig(self) -> Obj:
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "emulator", "cluster": {"server": self._url}}],
            "users": [{"name": "songbird", "user": {"token": "emulator-token"}}],
            "contexts": [
                {
                    "name": "emulator",
                    "context": {"cluster": "emulator", "user": "songbird", "namespace": "default"},
                }
            ],
            "current-context": "emulator",
        }

    # -- objects ----------------------------------------------------------------------------------------

    @staticmethod
    def _key(kind: str, namespace: str | None, name: str) -> tuple[kmock.resource, str | None, str]:
        path, namespaced = RESOURCES[kind]
        return kmock.resource(path), (namespace if namespaced else None), name

    def put(self, kind: str, namespace: str | None, obj: Mapping[str, Any]) -> Obj:
        """Store ``obj`` as is (create or replace), stamped like an API write; returns the stored copy."""
        body = copy.deepcopy(dict(obj))
        key = self._key(kind, namespace, body["metadata"]["name"])
        if key[1] is not None:
            body["metadata"]["namespace"] = key[1]

        async def put(emulator: _Emulator) -> Obj:
            async with emulator._lock:
                existed = key in emulator.objects and not emulator.objects[key].deleted
                if existed:
                    emulator.objects[key].create(body)
                else:
                    emulator.objects[key] = body
                raw = emulator.stamp(key, created=True, namespace=key[1])
                await emulator.publish(key, "MODIFIED" if existed else "ADDED", raw)
                return copy.deepcopy(raw)

        return self._call(put)

    def get(self, kind: str, namespace: str | None, name: str) -> Obj | None:
        key = self._key(kind, namespace, name)

        async def get(emulator: _Emulator) -> Obj | None:
            async with emulator._lock:
                if key not in emulator.objects or emulator.objects[key].deleted:
                    return None
                return copy.deepcopy(emulator.objects[key].raw)

        return self._call(get)

    def objects(self, kind: str, namespace: str | None = None) -> builtins.list[Obj]:
        resource = kmock.resource(RESOURCES[kind][0])

        async def list_(emulator: _Emulator) -> builtins.list[Obj]:
            async with emulator._lock:
                return [
                    copy.deepcopy(obj.raw)
                    for (res, ns, _), obj in emulator.objects.items()
                    if res == resource and (namespace is None or ns == namespace) and not obj.deleted
                ]

        return self._call(list_)

    def merge_status(self, kind: str, namespace: str | None, name: str, status: Mapping[str, Any]) -> bool:
        """Merge ``status`` into the stored object's ``status`` in one step on the emulator's loop, as the
        ``/status`` subresource would: a concurrent write to ``spec`` is never lost. False if absent."""
        key = self._key(kind, namespace, name)
        wanted = copy.deepcopy(dict(status))

        async def merge(emulator: _Emulator) -> bool:
            async with emulator._lock:
                if key not in emulator.objects or emulator.objects[key].deleted:
                    return False
                body = copy.deepcopy(emulator.objects[key].raw)
                body["status"] = {**(body.get("status") or {}), **wanted}
                emulator.objects[key].create(body)
                await emulator.publish(key, "MODIFIED", emulator.stamp(key, created=False))
                return True

        return self._call(merge)

    def delete(self, kind: str, namespace: str | None, name: str) -> None:
        key = self._key(kind, namespace, name)

        async def delete(emulator: _Emulator) -> None:
            async with emulator._lock:
                if key in emulator.objects and not emulator.objects[key].deleted:
                    raw = copy.deepcopy(emulator.objects[key].raw)
                    emulator.objects[key].delete()
                    await emulator.publish(key, "DELETED", raw)

        self._call(delete)

    def list(self, kind: str, namespace: str | None = None) -> builtins.list[Obj]:
        """Same as `objects`."""
        return self.objects(kind, namespace)

    def events(self, namespace: str | None = None) -> builtins.list[Obj]:
        """Events created through the API, in creation order."""
        return self.objects("Event", namespace)

    # -- requests ---------------------------------------------------------------------------------------

    @property
    def requests(self) -> builtins.list[SeenRequest]:
        """Every request received since start (or since `forget_requests`), in arrival order."""

        async def seen(emulator: _Emulator) -> builtins.list[kmock.Request]:
            return list(emulator._requests)

        return [self._describe(request) for request in self._call(seen)[self._mark :]]

    def forget_requests(self) -> None:
        """Start the `requests` log afresh (seeding and earlier steps stay out of later assertions)."""

        async def count(emulator: _Emulator) -> int:
            return len(emulator._requests)

        self._mark = self._call(count)

    @staticmethod
    def _describe(request: kmock.Request) -> SeenRequest:
        content_type = next((v for k, v in request.headers.items() if k.lower() == "content-type"), None)
        return SeenRequest(
            method=request.method.value,
            path=request.url.path,
            group=request.resource.group if request.resource else None,
            resource=request.resource.plural if request.resource else None,
            namespace=request.namespace,
            name=request.name,
            subresource=request.subresource,
            verb=_verb(request),
            content_type=content_type,
            query=dict(request.params),
            body=copy.deepcopy(request.data),
        )

    # -- faults -----------------------------------------------------------------------------------------

    def fail(
        self,
        kind: str | None = None,
        *,
        status: int,
        method: str | None = None,
        name: str | None = None,
        namespace: str | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` requests matching (method, kind, name, namespace) with ``status``.

        None matches anything. The faulted requests change nothing in the store.
        """
        self._add(kind, method, name, namespace, status=status, hang=None, times=times)

    def hang(
        self,
        kind: str | None = None,
        *,
        seconds: float,
        method: str | None = None,
        name: str | None = None,
        namespace: str | None = None,
        times: int = 1,
    ) -> None:
        """Hold the next ``times`` matching requests for ``seconds`` (then answer 504), changing nothing.

        Meant to outlast the client's read timeout; `stop` releases held requests at once.
        """
        self._add(kind, method, name, namespace, status=504, hang=seconds, times=times)

    def _add(
        self,
        kind: str | None,
        method: str | None,
        name: str | None,
        namespace: str | None,
        *,
        status: int,
        hang: float | None,
        times: int,
    ) -> None:
        if self._emulator is None:
            raise RuntimeError("the emulator is not started")
        self._emulator.add_fault(
            _Fault(
                method=method.upper() if method else None,
                resource=_PLURALS[kind] if kind else None,
                name=name,
                namespace=namespace,
                status=status,
                hang=hang,
                remaining=times,
            )
        )


@dataclass(frozen=True, kw_only=True)
class RbacRule:
    """One RBAC rule as a Role would state it, derived from requests seen."""

    api_group: str
    resource: str
    verbs: frozenset[str] = field(default_factory=frozenset)


def rbac_rules(requests: list[SeenRequest]) -> list[RbacRule]:
    """The smallest set of (apiGroup, resource) -> verbs rules that allows every request seen."""
    verbs: dict[tuple[str, str], set[str]] = {}
    for request in requests:
        if request.resource is None or request.verb is None or request.group is None:
            continue
        resource = f"{request.resource}/{request.subresource}" if request.subresource else request.resource
        verbs.setdefault((request.group, resource), set()).add(request.verb)
    return [
        RbacRule(api_group=group, resource=resource, verbs=frozenset(v))
        for (group, resource), v in sorted(verbs.items())
    ]
