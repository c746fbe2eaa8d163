"""Songbird's own error hierarchy: its root and the errors of the pure layers, defined in the bottom layer
so every package can raise and catch them.

    SongbirdError
    ├── PolicyError            a policy is invalid: names the ConfigMap and the field path
    ├── MetricsUnavailable     Prometheus did not answer (timeout, connection refused, bad response)
    ├── ClusterError ...       the Kubernetes API's errors (`controller.errors`)
    └── OwnershipError         an object Songbird must change belongs to someone else (`controller.errors`)

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


class MetricsUnavailable(SongbirdError):
    """Prometheus gave no usable answer: the verdict is ERROR, never FAIL."""
