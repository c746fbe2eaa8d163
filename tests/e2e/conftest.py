"""Fixtures for the real-cluster suite: ``SONGBIRD_E2E_KUBECONFIG`` names the cluster; without it every
test that asks for a cluster is skipped with that reason (the lab tests beside them need no cluster)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import pytest

from tests.support.clusters import RealCluster
from tests.support.world import World, world

ENV = "SONGBIRD_E2E_KUBECONFIG"


@pytest.fixture
def real_cluster() -> Iterator[RealCluster]:
    """A fresh namespace on the cluster of ``SONGBIRD_E2E_KUBECONFIG``, deleted afterwards."""
    kubeconfig = os.environ.get(ENV)
    if not kubeconfig:
        pytest.skip(f"{ENV} is not set: the e2e suite runs against a real cluster only when given one")
    namespace = f"songbird-e2e-{uuid.uuid4().hex[:8]}"
    cluster = RealCluster(kubeconfig, namespace)
    cluster.put("Namespace", None, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    try:
        yield cluster
    finally:
        cluster.delete("Namespace", None, namespace)
        cluster.close()


@pytest.fixture
def make_world(real_cluster: RealCluster) -> Iterator[Callable[..., AbstractContextManager[World]]]:
    """``with make_world(stable=..., canary=...) as w:`` a world in a fresh namespace of the real cluster."""

    @contextmanager
    def make(**kwargs: Any) -> Iterator[World]:
        with world(real_cluster, **kwargs) as w:
            yield w

    yield make
