"""List-then-watch one kind (in one namespace, or all) into an in-memory `Store`, on its own thread.

The loop follows client-go's reflector (``k8s.io/client-go/tools/cache/reflector.go``) and the API
concepts page (https://kubernetes.io/docs/reference/using-api/api-concepts/#efficient-detection-of-changes):
- list, in pages, and remember the list's resourceVersion; the store is replaced by what was listed, and
  every object that appeared, changed or disappeared is reported to ``on_change``;
- watch from that resourceVersion with ``allowWatchBookmarks=true`` and a server-side ``timeoutSeconds``;
  each event moves the resourceVersion on (BOOKMARK events carry nothing else); when the stream ends, watch
  again from where it stopped, so a quiet cluster costs one WATCH request per timeout and no GET or LIST;
- 410 Gone (the version was compacted away, on the watch or on a list continuation): list again, which
  reports whatever changed in between, so nothing is missed; at once the first time, after the backoff
  when the watch from a fresh list's version expires again (no tight list loop);
- any other failure: wait a bounded, jittered, growing backoff (0.2 s up to 30 s; reset after a stream that
  delivered events), then watch again from the last version.

`Store` keeps the newest version of each object: an object is never replaced by one with a lower
resourceVersion when both are integers, which keeps a write's answer (put by the writer, see
``controller.cache``) from being undone by a watch event that was already in flight. Kubernetes calls
resourceVersions opaque; like client-go's ``MutationCache`` we compare them only when both are integers,
and otherwise the later arrival wins.
"""

from __future__ import annotations

import copy
import random
import threading
from collections.abc import Callable

import structlog

from songbird.controller.errors import ClusterError
from songbird.controller.ports import Kind, Obj, WatchExpired, WatchSource

log = structlog.get_logger("songbird")

Key = tuple[str, str]  # (namespace, name)
OnChange = Callable[[Kind, str, str], None]  # (kind, namespace, name)

BACKOFF_MIN = 0.2
BACKOFF_MAX = 30.0


def _key(obj: Obj) -> Key:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def _version(obj: Obj) -> int | None:
    text = (obj.get("metadata") or {}).get("resourceVersion")
    if not isinstance(text, str):
        return None
    try:
        return int(text)
    except (TypeError, ValueError):
        return None


def newer_or_same(incoming: Obj, current: Obj | None) -> bool:
    """Whether ``incoming`` may replace ``current`` (see the module docstring)."""
    if current is None:
        return True
    a, b = _version(incoming), _version(current)
    return a is None or b is None or a >= b


class Store:
    """The objects of one informer, by (namespace, name), also indexed by namespace, so reading one
    namespace costs what that namespace holds, not what the whole cluster does. Thread-safe; hands out
    deep copies."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._objects: dict[Key, Obj] = {}
        self._by_namespace: dict[str, dict[str, Obj]] = {}

    def get(self, namespace: str, name: str) -> Obj | None:
        with self._lock:
            obj = self._objects.get((namespace, name))
            return copy.deepcopy(obj) if obj is not None else None

    def objects(self, namespace: str | None = None) -> list[Obj]:
        with self._lock:
            if namespace is None:
                found = list(self._objects.values())
            else:
                found = list((self._by_namespace.get(namespace) or {}).values())
            return copy.deepcopy(found)

    def _index(self) -> None:
        """Rebuild the namespace index (after a replace; put and remove keep it themselves)."""
        self._by_namespace = {}
        for (namespace, name), obj in self._objects.items():
            self._by_namespace.setdefault(namespace, {})[name] = obj

    def keys(self) -> list[Key]:
        with self._lock:
            return list(self._objects)

    def __len__(self) -> int:
        with self._lock:
            return len(self._objects)

    def put(self, obj: Obj) -> bool:
        """Keep ``obj`` unless an object with a higher resourceVersion is held; True when it changed what
        the store holds."""
        key = _key(obj)
        with self._lock:
            current = self._objects.get(key)
            if current == obj or not newer_or_same(obj, current):
                return False
            self._objects[key] = obj
            self._by_namespace.setdefault(key[0], {})[key[1]] = obj
            return True

    def remove(self, namespace: str, name: str) -> bool:
        with self._lock:
            gone = self._objects.pop((namespace, name), None) is not None
            names = self._by_namespace.get(namespace)
            if names is not None:
                names.pop(name, None)
                if not names:
                    del self._by_namespace[namespace]
            return gone

    def replace(self, objects: list[Obj]) -> list[Key]:
        """Hold exactly ``objects``; the keys that appeared, changed or disappeared."""
        fresh = {_key(o): o for o in objects}
        with self._lock:
            old, self._objects = self._objects, fresh
            self._index()
        changed = [k for k, o in fresh.items() if old.get(k) != o]
        return changed + [k for k in old if k not in fresh]


class Informer:
    """One kind, one namespace (None: all namespaces), optionally a label selector; see module doc."""

    def __init__(
        self,
        source: WatchSource,
        kind: Kind,
        namespace: str | None,
        *,
        label_selector: str | None = None,
        keep: Callable[[Obj], bool] | None = None,
        on_change: OnChange | None = None,
        watch_timeout: int = 300,
        page_size: int = 500,
    ) -> None:
        self.source = source
        self.kind = kind
        self.namespace = namespace
        self.store = Store()
        self._selector = label_selector
        self._keep = keep or (lambda _: True)
        self._on_change = on_change
        self._watch_timeout = watch_timeout
        self._page_size = page_size
        self._stop = threading.Event()
        self._synced = threading.Event()
        self._version = ""
        self._thread = threading.Thread(
            target=self._run, name=f"songbird-watch-{kind.value.lower()}", daemon=True
        )
        self.error = ""  # the last failure, "" once a list or watch succeeds again
        self.lists = 0  # full lists made (the first, and one per 410 or failure that needed it)

    @property
    def synced(self) -> bool:
        return self._synced.is_set()

    @property
    def resource_version(self) -> str:
        return self._version

    def start(self) -> None:
        self._thread.start()

    def wait_synced(self, timeout: float) -> bool:
        return self._synced.wait(timeout)

    def stop(self) -> None:
        """Stop after the current read (the thread is a daemon: a stream blocked on the socket cannot keep
        the process alive)."""
        self._stop.set()

    # -- the loop ----------------------------------------------------------------------------------------

    def _run(self) -> None:
        backoff = BACKOFF_MIN
        relist = True
        fresh = False  # a list was just made and no watch from its version has ended yet
        while not self._stop.is_set():
            try:
                if relist:
                    self._relist()
                    relist = False
                    fresh = True
                delivered = self._watch()
                fresh = False
                self.error = ""
                if delivered:
                    backoff = BACKOFF_MIN
                continue
            except WatchExpired as exc:
                relist = True
                if not fresh:
                    log.info("watch expired, listing again", kind=self.kind.value, error=str(exc))
                    continue
                # Expired again from the version a list just gave: listing at once would loop as fast as
                # the server answers, so back off as for any failure (client-go's reflector does too).
                self.error = f"{self.kind.value} watch: {exc}"
                log.warning("watch expired right after a list", kind=self.kind.value, retry=backoff)
            except ClusterError as exc:
                fresh = False
                relist = relist or exc.status == 410 or not self._version
                self.error = f"{self.kind.value} watch: {exc}"
                log.warning(
                    "watch failed",
                    kind=self.kind.value,
                    namespace=self.namespace,
                    error=str(exc),
                    retry=backoff,
                )
            except Exception:  # the thread must survive anything; the cache would silently go stale
                log.exception("watch loop error", kind=self.kind.value)
                relist = True
            self._stop.wait(backoff * random.uniform(0.5, 1.0))
            backoff = min(backoff * 2, BACKOFF_MAX)

    def _relist(self) -> None:
        items: list[Obj] = []
        token = ""
        version = ""
        while True:
            page = self.source.list_page(
                self.kind, self.namespace, label_selector=self._selector, limit=self._page_size, token=token
            )
            items.extend(o for o in page.items if self._keep(o))
            version = page.resource_version or version
            token = page.next
            if not token:
                break
        self.lists += 1
        self.error = ""
        changed = self.store.replace(items)
        self._version = version
        self._synced.set()
        for namespace, name in changed:
            self._notify(namespace, name)

    def _watch(self) -> bool:
        """One watch stream to its end; True when it delivered at least one event."""
        delivered = False
        for event in self.source.watch(
            self.kind,
            self.namespace,
            resource_version=self._version,
            label_selector=self._selector,
            timeout_seconds=self._watch_timeout,
        ):
            if self._stop.is_set():
                break
            delivered = True
            self.error = ""  # the stream answers again: readiness need not wait for it to end
            kind = event.get("type")
            obj = event.get("object")
            if not isinstance(obj, dict):
                continue
            version = (obj.get("metadata") or {}).get("resourceVersion")
            if kind == "BOOKMARK":
                self._version = str(version or self._version)
                continue
            obj.setdefault("kind", self.kind.value)
            namespace, name = _key(obj)
            if kind == "DELETED" or not self._keep(obj):
                gone = self.store.remove(namespace, name)
                if gone:
                    self._notify(namespace, name)
            elif kind in ("ADDED", "MODIFIED") and self.store.put(obj):
                self._notify(namespace, name)
            if version:
                self._version = str(version)
        return delivered

    def _notify(self, namespace: str, name: str) -> None:
        if self._on_change is None:
            return
        try:
            self._on_change(self.kind, namespace, name)
        except Exception:
            log.exception("change handler failed", kind=self.kind.value, namespace=namespace, name=name)
