"""Songbird's own error hierarchy, defined in the bottom layer so every package can raise and catch it.

    SongbirdError
    ├── PolicyError            a policy is invalid: names the ConfigMap and the field path
    ├── ClusterError           the Kubernetes API refused or failed a call: names the object
    │   ├── NotFound           404: the object does not exist
    │   ├── Conflict           409: stale resourceVersion or the object already exists
    │   ├── Forbidden          401/403: RBAC does not allow the call
    │   └── ClusterUnavailable timeouts, connection errors, 429 and 5xx after bounded retries
    ├── OwnershipError         an object Songbird must change belongs to someone else
    └── MetricsUnavailable     Prometheus did not answer (timeout, connection refused, bad response)

Adapters raise these with ``raise ... from exc`` so the original cause stays attached.
"""

from __future__ import annotations


class SongbirdError(Exception):
    """Base of every error Songbird raises on purpose."""


class PolicyError(SongbirdError):
    """A policy is invalid. ``source`` is ``namespace/configmap``, ``path`` the field path."""

    def __init__(self, message: str, *, path: str = "", source: str = "") -> None:
        self.message = message
        self.path = path
        self.source = source
        super().__init__(self.describe())

    def describe(self) -> str:
        where = f"{self.source}: " if self.source else ""
        field = f"{self.path}: " if self.path else ""
        return f"{where}{field}{self.message}"

    def with_source(self, source: str) -> PolicyError:
        return PolicyError(self.message, path=self.path, source=source)


class ClusterError(SongbirdError):
    """A Kubernetes API call failed. ``obj`` names the object as ``Kind namespace/name``."""

    def __init__(self, message: str, *, obj: str = "", status: int | None = None) -> None:
        self.message = message
        self.obj = obj
        self.status = status
        super().__init__(f"{obj}: {message}" if obj else message)


class NotFound(ClusterError):
    """The object does not exist (HTTP 404)."""


class Conflict(ClusterError):
    """The write lost a race (HTTP 409): re-read and decide again."""


class Forbidden(ClusterError):
    """RBAC refused the call (HTTP 401/403)."""


class ClusterUnavailable(ClusterError):
    """The API server did not answer in time or kept failing (timeouts, 429, 5xx)."""


class OwnershipError(SongbirdError):
    """An object Songbird would change is not managed by Songbird (for example a hand-made canary Ingress)."""

    def __init__(self, message: str, *, obj: str = "", path: str = "") -> None:
        self.message = message
        self.obj = obj
        self.path = path
        super().__init__(f"{obj}: {message}" if obj else message)


class MetricsUnavailable(SongbirdError):
    """Prometheus gave no usable answer: the verdict is ERROR, never FAIL."""
