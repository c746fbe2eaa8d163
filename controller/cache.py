"""What a tick reads and how it writes: watched caches in, fenced writes out.

`ClusterCache` is the reconciler's `ClusterReader` over the informers' stores: a tick reads memory only, so
its cost does not grow with the number of rollouts and a quiet cluster sees no GET or LIST from it. It
answers only for the kinds and namespaces it watches; anything else is a programming error
(`LookupError`), never a silent empty answer.

`FencedWriter` is the reconciler's `ClusterWriter` and `Recorder`: before every write it checks the `Fence`
(this replica holds the Lease long enough for the write, ``controller.fence``) and the tick's deadline
(``controller.deadline``: no write starts after it; one that starts is bounded by the API client's budget).
The write goes straight to the API with the same body and preconditions as before; its answer is put in the
cache at once, so the next tick reads its own writes even before the watch event arrives (``Store.put``
keeps the newest version, so the late event cannot undo it). Events are best effort: one that may not be
written is dropped, never raised.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import structlog

from songbird.config.policy import POLICY_LABEL
from songbird.controller import deadline
from songbird.controller.errors import ClusterUnavailable
from songbird.controller.informer import Informer, Store
from songbird.controller.ports import ClusterWriter, Kind, Obj, Recorder

log = structlog.get_logger("songbird")


def is_policy(obj: Obj) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return labels.get(POLICY_LABEL) == "true"


class ClusterCache:
    """`ClusterReader` over informers: one per (kind, namespace), namespace None meaning all."""

    def __init__(self, informers: Sequence[Informer]) -> None:
        self._stores: dict[tuple[Kind, str | None], Store] = {
            (i.kind, i.namespace): i.store for i in informers
        }
        self.informers = tuple(informers)

    def store(self, kind: Kind, namespace: str) -> Store:
        found = self._stores.get((kind, namespace)) or self._stores.get((kind, None))
        if found is None:
            raise LookupError(f"{kind.value} in namespace {namespace!r} is not watched")
        return found

    @property
    def synced(self) -> bool:
        return all(i.synced for i in self.informers)

    # -- ClusterReader ----------------------------------------------------------------------------------

    def get(self, kind: Kind, namespace: str, name: str) -> Obj | None:
        return self.store(kind, namespace).get(namespace, name)

    def list_objects(self, kind: Kind, namespace: str) -> list[Obj]:
        return self.store(kind, namespace).objects(namespace)

    def list_policies(self, namespaces: Sequence[str] | None) -> list[Obj]:
        found: list[Obj] = []
        for (kind, _scope), store in self._stores.items():
            if kind is not Kind.CONFIGMAP:
                continue
            for obj in store.objects():
                namespace = (obj.get("metadata") or {}).get("namespace", "")
                if is_policy(obj) and (namespaces is None or namespace in namespaces):
                    found.append(obj)
        return sorted(
            found, key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"].get("name", ""))
        )

    # -- read-your-writes -------------------------------------------------------------------------------

    def written(self, kind: Kind, obj: Obj) -> None:
        meta = obj.get("metadata") or {}
        try:
            store = self.store(kind, str(meta.get("namespace") or ""))
        except LookupError:
            return
        if kind is Kind.CONFIGMAP and not is_policy(obj):
            return
        store.put(obj)

    def scaled(self, namespace: str, name: str, scale: Obj) -> None:
        """A Deployment was scaled through its ``scale`` subresource: the cached Deployment gets the Scale's
        ``spec.replicas`` and resourceVersion (the Deployment's own, after the write)."""
        try:
            store = self.store(Kind.DEPLOYMENT, namespace)
        except LookupError:
            return
        current = store.get(namespace, name)
        if current is None:
            return
        current.setdefault("spec", {})["replicas"] = (scale.get("spec") or {}).get("replicas")
        version = (scale.get("metadata") or {}).get("resourceVersion")
        if version:
            current.setdefault("metadata", {})["resourceVersion"] = version
        store.put(current)

    def deleted(self, kind: Kind, namespace: str, name: str) -> None:
        try:
            self.store(kind, namespace).remove(namespace, name)
        except LookupError:
            return


class WriteGate(Protocol):
    def check(self, write_timeout: float) -> None:
        """Raise `LeadershipLost` unless a write of up to ``write_timeout`` seconds may start now."""
        ...


class FencedWriter:
    """`ClusterWriter` and `Recorder`: fenced, deadline-bounded, written through to the cache."""

    def __init__(
        self,
        api: ClusterWriter,
        recorder: Recorder,
        *,
        fence: WriteGate,
        cache: ClusterCache,
        write_timeout: float,
    ) -> None:
        self._api = api
        self._recorder = recorder
        self._fence = fence
        self._cache = cache
        self._timeout = write_timeout
        self.writes = 0  # writes sent (for tests and the benchmark)

    def _allow(self, what: str) -> None:
        self._fence.check(self._timeout)
        if deadline.remaining() <= 0:
            raise ClusterUnavailable(f"not writing {what}: the tick's deadline has passed")
        self.writes += 1

    def patch(self, kind: Kind, namespace: str, name: str, patch: Mapping[str, Any]) -> Obj:
        self._allow(f"{kind.value} {namespace}/{name}")
        written = self._api.patch(kind, namespace, name, patch)
        self._cache.written(kind, written)
        return written

    def create(self, kind: Kind, namespace: str, body: Mapping[str, Any]) -> Obj:
        name = (body.get("metadata") or {}).get("name", "")
        self._allow(f"{kind.value} {namespace}/{name}")
        written = self._api.create(kind, namespace, body)
        self._cache.written(kind, written)
        return written

    def delete(self, kind: Kind, namespace: str, name: str) -> None:
        self._allow(f"{kind.value} {namespace}/{name}")
        self._api.delete(kind, namespace, name)
        self._cache.deleted(kind, namespace, name)

    def scale(self, namespace: str, name: str, replicas: int) -> Obj:
        self._allow(f"Deployment {namespace}/{name} scale")
        written = self._api.scale(namespace, name, replicas)
        self._cache.scaled(namespace, name, written)
        return written

    def event(self, obj: Mapping[str, Any], *, reason: str, message: str, warning: bool = False) -> None:
        try:
            self._allow(f"Event {reason}")
        except Exception as exc:  # best effort by contract: an Event that may not be written is dropped
            log.info("event dropped", reason=reason, error=str(exc))
            return
        self._recorder.event(obj, reason=reason, message=message, warning=warning)
