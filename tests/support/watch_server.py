"""A small Kubernetes-shaped list/watch server for one resource (ConfigMaps), on 127.0.0.1 in a thread.

kmock's emulator keeps no resourceVersion history, so it can never answer 410 Gone; this server can. It
speaks the parts of the API that an informer relies on, after the API concepts page
(https://kubernetes.io/docs/reference/using-api/api-concepts/):
- "Efficient detection of changes": every change gets the next integer resourceVersion and is kept in a
  history; ``GET ...?watch=true&resourceVersion=R`` streams the changes after R as newline-delimited JSON
  ``{"type": ADDED|MODIFIED|DELETED, "object": ...}``, then the changes as they happen, until
  ``timeoutSeconds``. A server keeps only a limited history: after `compact`, a watch from an older
  version fails with 410 Gone, either as the HTTP status or (as a real API server usually answers an
  already-open watch) as ``{"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason":
  "Expired"}}``. The client must then list again and watch from the list's resourceVersion.
- "Watch bookmarks": with ``allowWatchBookmarks=true`` the server may send ``{"type": "BOOKMARK",
  "object": {"kind": ..., "metadata": {"resourceVersion": R}}}``, which carries nothing but the version
  the client has caught up to; clients may not rely on getting any.
- "Retrieving large results sets in chunks": ``limit`` and ``continue`` page a list; every page is served
  from the snapshot the first page was taken at, and carries that snapshot's resourceVersion. A
  continue token whose version has been compacted away answers 410 Gone (reason Expired): the client
  must start the list again without it.

What the test can make it do: change objects (`put`, `delete`), move the version on without a change to
this resource (`advance`, as writes to other resources do on a real server), `compact` the history,
send a `bookmark` on every open watch, `drop` every open watch mid-stream (the socket closes without the
chunked stream's end), `hold` new watches while a gap is arranged, and fail the next watch requests with
an HTTP status (`fail_watches`). It records every request (`requests`).
"""

from __future__ import annotations

import base64
import copy
import http.server
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

Obj = dict[str, Any]
ExpiryStyle = Literal["event", "http"]

PATH = "/api/v1/configmaps"
"""The one resource served: ConfigMaps in all namespaces (namespaced paths are served too)."""


@dataclass(frozen=True, kw_only=True)
class Seen:
    """One request as received: its kind (list, watch), query and when."""

    kind: str
    query: dict[str, str]
    at: float = field(default_factory=time.monotonic)


@dataclass
class _Stream:
    """One open watch: what it must do next, signalled under the server's condition."""

    bookmarks: int = 0
    dropped: bool = False


def _token(version: int, offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"rv": version, "start": offset}).encode()).decode()


def _untoken(text: str) -> tuple[int, int]:
    data = json.loads(base64.urlsafe_b64decode(text.encode()))
    return int(data["rv"]), int(data["start"])


def _gone(message: str) -> Obj:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": "Expired",
        "code": 410,
    }


class _Quiet(http.server.ThreadingHTTPServer):
    """A client closing its keep-alive connection is not worth a traceback."""

    def handle_error(self, request: object, client_address: object) -> None:
        return


class WatchServer:
    """``with WatchServer() as server: server.url ...``; see the module docstring."""

    def __init__(self, *, expiry: ExpiryStyle = "event") -> None:
        self.expiry: ExpiryStyle = expiry
        self._cond = threading.Condition()
        self._version = 1
        self._compacted = 0  # watches from a version below this one get 410
        self._objects: dict[tuple[str, str], Obj] = {}
        self._history: list[tuple[int, str, Obj]] = []  # (version, type, object)
        self._snapshots: dict[int, list[Obj]] = {}
        self._streams: list[_Stream] = []
        self._held = False
        self._failures: list[int] = []
        self._expire_continuations = 0
        self._closing = False
        self.requests: list[Seen] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                server._serve(self)

        self._http = _Quiet(("127.0.0.1", 0), Handler)
        self._http.daemon_threads = True
        self._thread = threading.Thread(target=self._http.serve_forever, name="watch-server", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._http.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> WatchServer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        with self._cond:
            self._closing = True
            self._held = False
            for stream in self._streams:
                stream.dropped = True
            self._cond.notify_all()
        self._http.shutdown()
        self._http.server_close()
        self._thread.join(5)

    # -- what a test does -------------------------------------------------------------------------------

    @property
    def version(self) -> int:
        with self._cond:
            return self._version

    def objects(self) -> dict[tuple[str, str], Obj]:
        """What the server holds now, by (namespace, name)."""
        with self._cond:
            return copy.deepcopy(self._objects)

    def put(
        self, namespace: str, name: str, data: dict[str, str], labels: dict[str, str] | None = None
    ) -> Obj:
        """Create or change a ConfigMap (ADDED or MODIFIED)."""
        with self._cond:
            self._version += 1
            key = (namespace, name)
            kind = "MODIFIED" if key in self._objects else "ADDED"
            obj: Obj = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "namespace": namespace,
                    "name": name,
                    "resourceVersion": str(self._version),
                    "labels": dict(labels or {}),
                },
                "data": dict(data),
            }
            self._objects[key] = obj
            self._history.append((self._version, kind, copy.deepcopy(obj)))
            self._cond.notify_all()
            return copy.deepcopy(obj)

    def delete(self, namespace: str, name: str) -> None:
        with self._cond:
            obj = self._objects.pop((namespace, name))
            self._version += 1
            gone = copy.deepcopy(obj)
            gone["metadata"]["resourceVersion"] = str(self._version)
            self._history.append((self._version, "DELETED", gone))
            self._cond.notify_all()

    def advance(self, steps: int = 1) -> int:
        """Move the resourceVersion on without changing this resource (writes to other kinds do so)."""
        with self._cond:
            self._version += steps
            return self._version

    def compact(self) -> None:
        """Forget the history up to now: a watch or list continuation from an older version gets 410."""
        with self._cond:
            self._compacted = self._version
            self._history = []
            self._snapshots = {v: s for v, s in self._snapshots.items() if v >= self._compacted}

    def bookmark(self) -> None:
        """Send a BOOKMARK with the current version on every open watch."""
        with self._cond:
            for stream in self._streams:
                stream.bookmarks += 1
            self._cond.notify_all()

    def drop(self) -> None:
        """Close every open watch mid-stream, without the chunked stream's end."""
        with self._cond:
            for stream in self._streams:
                stream.dropped = True
            self._cond.notify_all()

    @property
    def open_watches(self) -> int:
        with self._cond:
            return len(self._streams)

    @contextmanager
    def gap(self) -> Iterator[None]:
        """Drop every open watch and hold new watch requests (unanswered) until the block ends, so the
        changes made inside it happen while no watch is open."""
        with self._cond:
            self._held = True
            for stream in self._streams:
                stream.dropped = True
            self._cond.notify_all()
        try:
            yield
        finally:
            with self._cond:
                self._held = False
                self._cond.notify_all()

    def fail_watches(self, *statuses: int) -> None:
        """Answer the next watch requests with these HTTP statuses, one each."""
        with self._cond:
            self._failures.extend(statuses)

    def expire_continuations(self, count: int = 1) -> None:
        """Answer the next ``count`` list continuations with 410 Gone, as when the snapshot they page
        through was compacted between two pages."""
        with self._cond:
            self._expire_continuations += count

    def seen(self, kind: str) -> list[Seen]:
        with self._cond:
            return [r for r in self.requests if r.kind == kind]

    def wait(self, predicate: Any, timeout: float = 5.0) -> bool:
        """Wait until ``predicate()`` is true (polled), False on timeout."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if predicate():
                return True
            time.sleep(0.01)
        return bool(predicate())

    # -- serving ----------------------------------------------------------------------------------------

    def _serve(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        path = parts.path
        namespace = ""
        if path.startswith("/api/v1/namespaces/") and path.endswith("/configmaps"):
            namespace = path.split("/")[4]
        elif path != PATH:
            self._reply(handler, 404, {"kind": "Status", "code": 404, "reason": "NotFound"})
            return
        watching = query.get("watch") in ("true", "1")
        with self._cond:
            self.requests.append(Seen(kind="watch" if watching else "list", query=query))
        if watching:
            self._watch(handler, namespace, query)
        else:
            self._list(handler, namespace, query)

    @staticmethod
    def _reply(handler: http.server.BaseHTTPRequestHandler, status: int, body: Obj) -> None:
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    @staticmethod
    def _matches(obj: Obj, namespace: str, selector: str) -> bool:
        meta = obj["metadata"]
        if namespace and meta["namespace"] != namespace:
            return False
        labels = meta.get("labels") or {}
        for term in filter(None, selector.split(",")):
            key, _, value = term.partition("=")
            if labels.get(key) != value:
                return False
        return True

    def _list(
        self, handler: http.server.BaseHTTPRequestHandler, namespace: str, query: dict[str, str]
    ) -> None:
        limit = int(query.get("limit") or 0) or 1 << 30
        selector = query.get("labelSelector", "")
        with self._cond:
            if query.get("continue"):
                version, start = _untoken(query["continue"])
                snapshot = self._snapshots.get(version)
                expire = self._expire_continuations > 0
                self._expire_continuations -= int(expire)
                if expire or version < self._compacted or snapshot is None:
                    status = _gone("The provided continue parameter is too old to display a consistent list")
                    self._reply(handler, 410, status)
                    return
            else:
                version, start = self._version, 0
                snapshot = [copy.deepcopy(o) for _, o in sorted(self._objects.items())]
                self._snapshots[version] = snapshot
            chosen = [o for o in snapshot if self._matches(o, namespace, selector)]
        page = chosen[start : start + limit]
        meta: Obj = {"resourceVersion": str(version)}
        if start + limit < len(chosen):
            meta["continue"] = _token(version, start + limit)
        self._reply(
            handler, 200, {"kind": "ConfigMapList", "apiVersion": "v1", "metadata": meta, "items": page}
        )

    def _watch(
        self, handler: http.server.BaseHTTPRequestHandler, namespace: str, query: dict[str, str]
    ) -> None:
        given = query.get("resourceVersion")
        ends = time.monotonic() + float(query.get("timeoutSeconds") or 1800)
        bookmarks = query.get("allowWatchBookmarks") == "true"
        selector = query.get("labelSelector", "")
        with self._cond:
            self._cond.wait_for(lambda: not self._held, timeout=max(0.0, ends - time.monotonic()))
            if self._failures:
                status = self._failures.pop(0)
                self._reply(handler, status, {"kind": "Status", "code": status, "reason": "InternalError"})
                return
            # No resourceVersion: "start at the most recent", as a real server does.
            since = int(given) if given else self._version
            expired = since < self._compacted
            if expired and self.expiry == "http":
                self._reply(handler, 410, _gone(f"too old resource version: {since} ({self._compacted})"))
                return
            stream = _Stream()
            self._streams.append(stream)
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        try:
            if expired:
                self._send(handler, {"type": "ERROR", "object": _gone(f"too old resource version: {since}")})
                self._end(handler)
                return
            sent = since
            while True:

                def ready(after: int = sent) -> bool:
                    return (
                        stream.dropped
                        or stream.bookmarks > 0
                        or any(v > after for v, _, _ in self._history[-1:])
                        or time.monotonic() >= ends
                    )

                with self._cond:
                    self._cond.wait_for(ready, timeout=max(0.0, ends - time.monotonic()))
                    if stream.dropped:
                        break
                    events = [(v, t, copy.deepcopy(o)) for v, t, o in self._history if v > sent]
                    marks, stream.bookmarks = stream.bookmarks, 0
                    version = self._version
                for v, kind, obj in events:
                    sent = v
                    if self._matches(obj, namespace, selector):
                        self._send(handler, {"type": kind, "object": obj})
                if marks and bookmarks:
                    sent = max(sent, version)
                    mark = {
                        "kind": "ConfigMap",
                        "apiVersion": "v1",
                        "metadata": {"resourceVersion": str(version)},
                    }
                    self._send(handler, {"type": "BOOKMARK", "object": mark})
                if time.monotonic() >= ends:
                    self._end(handler)
                    return
            # Dropped: close the socket without the last chunk, as a broken connection looks to a client.
            handler.close_connection = True
            handler.connection.shutdown(2)
        except OSError:
            handler.close_connection = True
        finally:
            with self._cond:
                if stream in self._streams:
                    self._streams.remove(stream)

    @staticmethod
    def _send(handler: http.server.BaseHTTPRequestHandler, event: Obj) -> None:
        line = json.dumps(event).encode() + b"\n"
        handler.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
        handler.wfile.flush()

    @staticmethod
    def _end(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.wfile.write(b"0\r\n\r\n")
        handler.wfile.flush()
