"""The Kubernetes adapter: `ClusterReader`, `ClusterWriter`, `Recorder` and the Lease calls, over HTTP.

This is the only module that imports the official ``kubernetes`` client (an import-linter contract says
so). It uses the client for configuration (kubeconfig, in-cluster service account) and transport only:
requests go through ``ApiClient.param_serialize`` / ``call_api`` with plain dict bodies and the answers are
``json.loads``-ed, so no client model ever leaves this module and objects look as ``kubectl get -o json``
shows them.

Invariants:
- Every request carries a ``(connect, read)`` timeout. A logical call (with its retries) never takes
  longer than ``ApiSettings.budget`` plus scheduling noise: each attempt's timeouts are cut to the budget
  left.
- Retries are bounded (``ApiSettings.attempts``) and happen only for 429, 5xx, connection errors and
  timeouts; never for other 4xx. urllib3's own retries are switched off so the bound is ours alone.
- Failures surface as `config.errors` types naming the object as ``Kind namespace/name``: 404 NotFound
  (``get`` answers None instead, ``delete`` ignores it), 409 Conflict, 401/403 Forbidden, the rest
  ClusterUnavailable; the client's exception is kept as ``__cause__``.
- PATCH always sends ``Content-Type: application/merge-patch+json`` (RFC 7386: None deletes a key, lists
  are replaced whole). The generated client would otherwise choose one: in kubernetes-client/python 37
  ``select_header_content_type`` picks the first JSON-ish type (``application/json-patch+json``) and
  ``rest.py`` rewrites that to strategic-merge for a dict body.
- `event` never raises: an Event is best effort; failures are logged and counted.
- Each HTTP attempt is reported to the optional ``on_call(verb, resource, ok, seconds)`` hook, where
  ``ok`` means the API answered as expected (2xx, or a 404 the caller treats as an answer).
- `list_page` and `watch` are the two halves of list-then-watch (used by ``controller.informer``). A watch
  is one streaming GET with ``watch=true``, ``resourceVersion``, ``allowWatchBookmarks=true`` and a
  server-side ``timeoutSeconds``; its socket read timeout is that plus a margin, so a server that ignores
  the timeout (or goes silent) still ends the stream. A 410 Gone, as an HTTP status or as an ``ERROR``
  event with code 410, raises `WatchExpired`: the caller must list again. Semantics after
  https://kubernetes.io/docs/reference/using-api/api-concepts/#efficient-detection-of-changes.
"""

from __future__ import annotations

import copy
import json
import os
import socket
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
import urllib3
from kubernetes import client as kube_client
from kubernetes import config as kube_config
from kubernetes.client.exceptions import ApiException

from songbird.config.policy import POLICY_LABEL
from songbird.controller.errors import ClusterError, ClusterUnavailable, Conflict, Forbidden, NotFound
from songbird.controller.events import event_body
from songbird.controller.ports import Clock, Kind, Obj, Page, SystemClock, WatchExpired

log = structlog.get_logger()

CallHook = Callable[[str, str, bool, float], None]
"""``on_call(verb, resource, ok, seconds)``: one call per HTTP attempt."""

MERGE_PATCH = "application/merge-patch+json"
_RETRYABLE = frozenset({429, 500, 502, 503, 504})

# The client's loaders and ApiClient carry no annotations; they are used through these typed names.
_load_kube_config: Callable[..., None] = kube_config.load_kube_config
_load_incluster_config: Callable[..., None] = kube_config.load_incluster_config
_list_contexts: Callable[..., tuple[list[dict[str, Any]], dict[str, Any]]] = (
    kube_config.list_kube_config_contexts
)


@dataclass(frozen=True, kw_only=True)
class ApiSettings:
    """Timeouts and retry bounds for every API call (seconds)."""

    connect_timeout: float = 2.0
    read_timeout: float = 5.0
    attempts: int = 3
    backoff: float = 0.2
    budget: float = 8.0

    def __post_init__(self) -> None:
        if min(self.connect_timeout, self.read_timeout, self.budget) <= 0 or self.backoff < 0:
            raise ValueError("API timeouts and budget must be positive, backoff not negative")
        if self.attempts < 1:
            raise ValueError("API attempts must be at least 1")


@dataclass(frozen=True, kw_only=True)
class _Resource:
    kind: str
    api_version: str
    plural: str

    def path(self, namespace: str | None, name: str | None = None) -> str:
        base = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        path = f"{base}/namespaces/{namespace}/{self.plural}" if namespace else f"{base}/{self.plural}"
        return f"{path}/{name}" if name else path


_RESOURCES: dict[str, _Resource] = {
    Kind.CONFIGMAP: _Resource(kind="ConfigMap", api_version="v1", plural="configmaps"),
    Kind.SERVICE: _Resource(kind="Service", api_version="v1", plural="services"),
    Kind.DEPLOYMENT: _Resource(kind="Deployment", api_version="apps/v1", plural="deployments"),
    Kind.INGRESS: _Resource(kind="Ingress", api_version="networking.k8s.io/v1", plural="ingresses"),
    Kind.LEASE: _Resource(kind="Lease", api_version="coordination.k8s.io/v1", plural="leases"),
}
_EVENT = _Resource(kind="Event", api_version="v1", plural="events")
# The Deployment scale subresource: PATCH /apis/apps/v1/namespaces/NS/deployments/NAME/scale, answered with
# an autoscaling/v1 Scale (Kubernetes API reference, "Deployment v1 apps": "replace/patch scale of the
# specified Deployment"; RBAC resource "deployments/scale").
_SCALE = _Resource(kind="Deployment scale", api_version="apps/v1", plural="deployments")


def _events(stream: Any, what: str) -> Iterator[Obj]:
    """Decode a watch stream: one JSON object per line. A read timeout ends the stream quietly (the
    caller watches again from the last resourceVersion); a 410 ``ERROR`` event raises `WatchExpired`."""
    try:
        for line in stream:
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except ValueError as exc:
                raise ClusterUnavailable("watch sent a line that is not JSON", obj=what) from exc
            if not isinstance(event, dict):
                continue
            if event.get("type") == "ERROR":
                status = event.get("object") or {}
                code = status.get("code") if isinstance(status, dict) else None
                message = str((status or {}).get("message") or "watch error")
                if code == 410:
                    raise WatchExpired(message, obj=what, status=410)
                raise ClusterUnavailable(f"watch error {code}: {message}", obj=what, status=code)
            yield event
    except (urllib3.exceptions.ReadTimeoutError, TimeoutError):
        return
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise ClusterUnavailable(f"watch broke: {type(exc).__name__}: {exc}", obj=what) from exc


def _api_error(response: Any) -> ApiException:
    """The client's exception for a non-2xx answer. ``ApiException.from_response`` raises it (kubernetes
    37 picks a subclass per status) rather than returning it; caught here so the caller can translate it."""
    try:
        raise ApiException.from_response(http_resp=response, body=None, data=None)
    except ApiException as exc:
        return exc


def _describe(resource: _Resource, namespace: str | None, name: str | None) -> str:
    return f"{resource.kind} {namespace or '*'}/{name or '*'}"


def _status_message(exc: ApiException) -> str:
    """The ``message`` of the API's Status body, else the HTTP reason."""
    try:
        body = json.loads(exc.body) if exc.body else {}
    except ValueError:
        body = {}
    message = body.get("message") if isinstance(body, dict) else None
    return str(message or exc.reason or "no reason given")


WATCH_READ_MARGIN = 5.0
"""Seconds a watch waits for bytes beyond its ``timeoutSeconds`` before it gives the stream up."""


class KubeClient:
    """The cluster as Songbird sees it. Thread-safe as far as the underlying urllib3 pool is."""

    def __init__(
        self,
        configuration: kube_client.Configuration,
        *,
        settings: ApiSettings | None = None,
        clock: Clock | None = None,
        on_call: CallHook | None = None,
        reporting_instance: str | None = None,
    ) -> None:
        """Prefer `for_host` or `from_config`. ``configuration`` is the client's, already loaded."""
        # Our retries are the only ones: urllib3 would otherwise retry connection errors on its own
        # (the client hands ``Configuration.retries`` to its urllib3 PoolManager, client/rest.py).
        configuration.retries = False
        self._api: Any = kube_client.ApiClient(configuration)
        self.event_failures = 0
        self._settings = settings or ApiSettings()
        self._clock: Clock = clock or SystemClock()
        self._on_call = on_call
        instance = reporting_instance or os.environ.get("POD_NAME") or socket.gethostname() or "songbird"
        self._instance = instance[:128]

    # -- construction -----------------------------------------------------------------------------------

    @classmethod
    def for_host(
        cls,
        url: str,
        *,
        token: str | None = None,
        settings: ApiSettings | None = None,
        clock: Clock | None = None,
        on_call: CallHook | None = None,
        reporting_instance: str | None = None,
    ) -> KubeClient:
        """A client for an explicit API server URL (plain HTTP or HTTPS with system CAs)."""
        configuration = kube_client.Configuration()
        configuration.host = url.rstrip("/")
        if token:
            configuration.api_key = {"BearerToken": f"Bearer {token}"}
        return cls(
            configuration,
            settings=settings,
            clock=clock,
            on_call=on_call,
            reporting_instance=reporting_instance,
        )

    @classmethod
    def from_config(
        cls,
        kubeconfig: str | Path | None = None,
        *,
        context: str | None = None,
        settings: ApiSettings | None = None,
        clock: Clock | None = None,
        on_call: CallHook | None = None,
        reporting_instance: str | None = None,
    ) -> KubeClient:
        """A client from, in this order: ``kubeconfig``, ``$KUBECONFIG``, the in-cluster service account
        (when ``KUBERNETES_SERVICE_HOST`` is set), ``~/.kube/config``.

        Raises `ClusterUnavailable` when none of them gives a usable configuration.
        """
        configuration = kube_client.Configuration()
        path = str(kubeconfig) if kubeconfig else os.environ.get("KUBECONFIG")
        try:
            if path:
                # $KUBECONFIG may list several files; the loader merges them as kubectl does.
                _load_kube_config(config_file=path, context=context, client_configuration=configuration)
            elif os.environ.get("KUBERNETES_SERVICE_HOST"):
                _load_incluster_config(client_configuration=configuration)
            else:
                _load_kube_config(context=context, client_configuration=configuration)
        except (kube_config.ConfigException, OSError, TypeError, ValueError) as exc:
            where = path or "the in-cluster service account or ~/.kube/config"
            raise ClusterUnavailable(f"no usable Kubernetes configuration from {where}: {exc}") from exc
        return cls(
            configuration,
            settings=settings,
            clock=clock,
            on_call=on_call,
            reporting_instance=reporting_instance,
        )

    def close(self) -> None:
        self._api.close()

    @staticmethod
    def context_namespace(kubeconfig: str | Path | None = None, context: str | None = None) -> str | None:
        """The namespace of the kubeconfig's current (or named) context, as kubectl uses it when no
        ``-n`` is given; None when the kubeconfig names none or cannot be read."""
        path = str(kubeconfig) if kubeconfig else os.environ.get("KUBECONFIG")
        try:
            contexts, active = _list_contexts(config_file=path)
        except (kube_config.ConfigException, OSError, TypeError, ValueError):
            return None
        chosen = next((c for c in contexts or [] if c.get("name") == context), None) if context else active
        namespace = ((chosen or {}).get("context") or {}).get("namespace")
        return str(namespace) if namespace else None

    # -- ClusterReader ----------------------------------------------------------------------------------

    def get(self, kind: Kind, namespace: str, name: str) -> Obj | None:
        resource = _RESOURCES[kind]
        try:
            return self._call("get", resource, "GET", namespace=namespace, name=name, absent_ok=True)
        except NotFound:
            return None

    def list_objects(self, kind: Kind, namespace: str) -> list[Obj]:
        """Every object of ``kind`` in ``namespace``, each with its apiVersion and kind set."""
        resource = _RESOURCES[kind]
        answer = self._call("list", resource, "GET", namespace=namespace)
        items: list[Obj] = answer.get("items") or []
        for item in items:
            item.setdefault("apiVersion", resource.api_version)
            item.setdefault("kind", resource.kind)
        return items

    def list_policies(self, namespaces: Sequence[str] | None) -> list[Obj]:
        """Policy ConfigMaps, sorted by namespace/name. The label is checked here too: not every API
        server (the test emulator, for one) honours ``labelSelector``."""
        resource = _RESOURCES[Kind.CONFIGMAP]
        query = [("labelSelector", f"{POLICY_LABEL}=true")]
        scopes: Sequence[str | None] = [None] if namespaces is None else list(dict.fromkeys(namespaces))
        found: list[Obj] = []
        for scope in scopes:
            answer = self._call("list", resource, "GET", namespace=scope, query=query)
            for item in answer.get("items") or []:
                labels = (item.get("metadata") or {}).get("labels") or {}
                if labels.get(POLICY_LABEL) == "true":
                    item.setdefault("apiVersion", resource.api_version)
                    item.setdefault("kind", resource.kind)
                    found.append(item)
        return sorted(
            found, key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"].get("name", ""))
        )

    # -- list-then-watch (controller.informer) ----------------------------------------------------------

    def list_page(
        self,
        kind: Kind,
        namespace: str | None,
        *,
        label_selector: str | None = None,
        limit: int = 500,
        token: str = "",
    ) -> Page:
        """One page of a (possibly cluster-wide) list, from the API server's latest state."""
        resource = _RESOURCES[kind]
        query = [("limit", str(limit))]
        if label_selector:
            query.append(("labelSelector", label_selector))
        if token:
            query.append(("continue", token))
        answer = self._call("list", resource, "GET", namespace=namespace, query=query)
        items: list[Obj] = answer.get("items") or []
        for item in items:
            item.setdefault("apiVersion", resource.api_version)
            item.setdefault("kind", resource.kind)
        meta = answer.get("metadata") or {}
        return Page(
            items=items,
            resource_version=str(meta.get("resourceVersion") or ""),
            next=str(meta.get("continue") or ""),
        )

    def watch(
        self,
        kind: Kind,
        namespace: str | None,
        *,
        resource_version: str,
        label_selector: str | None = None,
        timeout_seconds: int = 300,
    ) -> Iterator[Obj]:
        """The events after ``resource_version`` (``{"type": ..., "object": ...}``), ADDED, MODIFIED,
        DELETED and BOOKMARK, until the server ends the stream. Raises `WatchExpired` on 410 and
        `ClusterError` when the stream cannot be opened or breaks."""
        resource = _RESOURCES[kind]
        query = [
            ("watch", "true"),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(timeout_seconds)),
        ]
        if resource_version:
            query.append(("resourceVersion", resource_version))
        if label_selector:
            query.append(("labelSelector", label_selector))
        what = _describe(resource, namespace, None)
        headers = {"Accept": "application/json"}
        request = self._api.param_serialize(
            method="GET",
            resource_path=resource.path(namespace),
            query_params=query,
            header_params=headers,
            auth_settings=["BearerToken"],
        )
        began = time.monotonic()
        timeout = (self._settings.connect_timeout, timeout_seconds + WATCH_READ_MARGIN)
        try:
            response: Any = self._api.call_api(*request, _request_timeout=timeout)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            self._count("watch", resource, False, began)
            raise ClusterUnavailable(f"watch did not open: {type(exc).__name__}: {exc}", obj=what) from exc
        raw: Any = response.response
        try:
            if not 200 <= response.status <= 299:
                self._count("watch", resource, False, began)
                # Read the Status body: it holds the message, and a pooled connection must not go back
                # with an unread body (the next request on it would fail with ResponseNotReady).
                response.read()
                error = _api_error(response)
                if response.status == 410:
                    raise WatchExpired(_status_message(error), obj=what, status=410) from error
                raise self._error(error, int(response.status), what, 1) from error
            self._count("watch", resource, True, began)
            yield from _events(raw, what)
        finally:
            raw.release_conn()

    # -- ClusterWriter ----------------------------------------------------------------------------------

    def patch(
        self,
        kind: Kind,
        namespace: str,
        name: str,
        patch: Mapping[str, Any],
        *,
        field_manager: str | None = None,
    ) -> Obj:
        """A JSON merge patch. ``field_manager`` is sent as ``?fieldManager=`` so the API server records
        the writer in ``managedFields`` (the CLI's ``songbird-cli``, shown as who asked for a command)."""
        return self._call(
            "patch",
            _RESOURCES[kind],
            "PATCH",
            namespace=namespace,
            name=name,
            body=dict(patch),
            query=[("fieldManager", field_manager)] if field_manager else None,
            content_type=MERGE_PATCH,
        )

    def create(self, kind: Kind, namespace: str, body: Mapping[str, Any]) -> Obj:
        resource = _RESOURCES[kind]
        return self._create(resource, namespace, body)

    def delete(self, kind: Kind, namespace: str, name: str) -> None:
        try:
            self._call("delete", _RESOURCES[kind], "DELETE", namespace=namespace, name=name, absent_ok=True)
        except NotFound:
            return

    def scale(self, namespace: str, name: str, replicas: int) -> Obj:
        return self._call(
            "patch",
            _SCALE,
            "PATCH",
            namespace=namespace,
            name=f"{name}/scale",
            body={"spec": {"replicas": replicas}},
            content_type=MERGE_PATCH,
        )

    # -- Lease (leader election only; kept out of the general protocols) -------------------------------

    def get_lease(self, namespace: str, name: str) -> Obj | None:
        return self.get(Kind.LEASE, namespace, name)

    def create_lease(self, namespace: str, body: Mapping[str, Any]) -> Obj:
        """Create; `Conflict` when another replica created it first."""
        return self._create(_RESOURCES[Kind.LEASE], namespace, body)

    def replace_lease(self, namespace: str, name: str, body: Mapping[str, Any]) -> Obj:
        """PUT the whole Lease. ``body`` must carry ``metadata.resourceVersion`` so that the API server
        refuses a stale write with 409 (`Conflict`) instead of overwriting another replica's claim."""
        resource = _RESOURCES[Kind.LEASE]
        if not (body.get("metadata") or {}).get("resourceVersion"):
            raise ValueError(
                f"{_describe(resource, namespace, name)}: a replace needs metadata.resourceVersion"
            )
        return self._call(
            "update",
            resource,
            "PUT",
            namespace=namespace,
            name=name,
            body=dict(body),
            content_type="application/json",
        )

    # -- Recorder ---------------------------------------------------------------------------------------

    def event(self, obj: Mapping[str, Any], *, reason: str, message: str, warning: bool = False) -> None:
        """Create a core/v1 Event about ``obj``. Never raises."""
        try:
            body = event_body(
                obj,
                reason=reason,
                message=message,
                warning=warning,
                now=self._clock.now(),
                instance=self._instance,
            )
            self._create(_EVENT, body["metadata"]["namespace"], body)
        except Exception as exc:  # best effort by contract: nothing may escape
            self.event_failures += 1
            meta = obj.get("metadata") or {}
            log.warning(
                "event_failed",
                reason=reason,
                kind=obj.get("kind"),
                namespace=meta.get("namespace"),
                name=meta.get("name"),
                error=str(exc),
            )

    # -- transport --------------------------------------------------------------------------------------

    def _create(self, resource: _Resource, namespace: str, body: Mapping[str, Any]) -> Obj:
        payload = copy.deepcopy(dict(body))
        payload.setdefault("apiVersion", resource.api_version)
        payload.setdefault("kind", resource.kind)
        name = (payload.get("metadata") or {}).get("name")
        return self._call(
            "create",
            resource,
            "POST",
            namespace=namespace,
            name=None,
            body=payload,
            content_type="application/json",
            label=name,
        )

    def _call(
        self,
        verb: str,
        resource: _Resource,
        method: str,
        *,
        namespace: str | None,
        name: str | None = None,
        body: Obj | None = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str | None = None,
        absent_ok: bool = False,
        label: str | None = None,
    ) -> Obj:
        """One logical API call with bounded retries. Returns the decoded JSON answer."""
        settings = self._settings
        what = _describe(resource, namespace, name or label)
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            left = settings.budget - (time.monotonic() - started)
            timeout = (
                max(min(settings.connect_timeout, left), 0.01),
                max(min(settings.read_timeout, left), 0.01),
            )
            began = time.monotonic()
            try:
                data = self._send(
                    method,
                    resource.path(namespace, name),
                    body=body,
                    query=query,
                    content_type=content_type,
                    timeout=timeout,
                )
            except ApiException as exc:
                status = int(exc.status or 0)
                self._count(verb, resource, absent_ok and status == 404, began)
                if status not in _RETRYABLE or not self._may_retry(attempt, started):
                    raise self._error(exc, status, what, attempt) from exc
                cause: Exception = exc
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                self._count(verb, resource, False, began)
                if not self._may_retry(attempt, started):
                    raise ClusterUnavailable(
                        f"{verb} got no answer after {attempt} attempt(s): {type(exc).__name__}: {exc}",
                        obj=what,
                    ) from exc
                cause = exc
            else:
                self._count(verb, resource, True, began)
                try:
                    answer = json.loads(data) if data else {}
                except ValueError as exc:
                    raise ClusterUnavailable(f"{verb} answered something that is not JSON", obj=what) from exc
                if not isinstance(answer, dict):
                    raise ClusterUnavailable(f"{verb} answered JSON that is not an object", obj=what)
                return answer
            delay = min(
                settings.backoff * 2 ** (attempt - 1), max(settings.budget - (time.monotonic() - started), 0)
            )
            log.debug("kube_retry", verb=verb, object=what, attempt=attempt, delay=delay, error=str(cause))
            time.sleep(delay)

    def _may_retry(self, attempt: int, started: float) -> bool:
        settings = self._settings
        return attempt < settings.attempts and time.monotonic() - started < settings.budget

    def _send(
        self,
        method: str,
        path: str,
        *,
        body: Obj | None,
        query: list[tuple[str, str]] | None,
        content_type: str | None,
        timeout: tuple[float, float],
    ) -> bytes:
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        request = self._api.param_serialize(
            method=method,
            resource_path=path,
            query_params=query or None,
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        response: Any = self._api.call_api(*request, _request_timeout=timeout)
        try:
            data = response.read()
        finally:
            response.response.release_conn()
        if not 200 <= response.status <= 299:
            # The same translation the generated methods use (ApiClient._call_with_legacy_options).
            raise ApiException.from_response(http_resp=response, body=None, data=None)
        return bytes(data or b"")

    @staticmethod
    def _error(exc: ApiException, status: int, what: str, attempt: int) -> ClusterError:
        message = _status_message(exc)
        if status == 404:
            return NotFound(message, obj=what, status=status)
        if status == 409:
            return Conflict(message, obj=what, status=status)
        if status in (401, 403):
            return Forbidden(message, obj=what, status=status)
        tries = f" (after {attempt} attempts)" if attempt > 1 else ""
        return ClusterUnavailable(f"HTTP {status}{tries}: {message}", obj=what, status=status or None)

    def _count(self, verb: str, resource: _Resource, ok: bool, began: float) -> None:
        if self._on_call is None:
            return
        try:
            self._on_call(verb, resource.plural, ok, time.monotonic() - began)
        except Exception as exc:  # a broken metrics hook must not break the API call
            log.warning("kube_call_hook_failed", error=str(exc))
