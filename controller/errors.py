"""The controller's errors: what the Kubernetes API and the objects in the cluster can refuse.

    SongbirdError (`config.errors`)
    ├── ClusterError           the Kubernetes API refused or failed a call: names the object
    │   ├── NotFound           404: the object does not exist
    │   ├── Conflict           409: stale resourceVersion or the object already exists
    │   ├── Forbidden          401/403: RBAC does not allow the call
    │   └── ClusterUnavailable timeouts, connection errors, 429 and 5xx after bounded retries
    ├── OwnershipError         an object Songbird must change belongs to someone else
    └── ConsentError           an object a rollout would change has not opted in to its policy

`controller.kube` raises the `ClusterError` family with ``raise ... from exc`` so the API's error stays
attached; the routers raise `OwnershipError`; `controller.facts` raises `ConsentError`.
"""

from __future__ import annotations

from songbird.config.errors import SongbirdError


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


class ConsentError(SongbirdError):
    """Objects the rollout would change or send traffic to do not accept its policy (`controller.consent`).

    ``message`` names each of them and what it lacks; nothing was written."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)
