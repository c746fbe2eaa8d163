"""Shared pytest fixtures. Keep each fixture small; add new ones below the existing ones.

- ``kube``: a started Kubernetes API emulator (kmock over HTTP on 127.0.0.1), empty, one per test.
- ``seed_scenario``: the same emulator seeded with the canonical scenario of `tests.support.scenario`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import scenario
from tests.support.kube_emulator import KubeEmulator


@pytest.fixture
def kube() -> Iterator[KubeEmulator]:
    with KubeEmulator() as emulator:
        yield emulator


@pytest.fixture
def seed_scenario(kube: KubeEmulator) -> KubeEmulator:
    kube.put("Namespace", None, scenario.namespace_object())
    for obj in scenario.objects():
        kube.put(obj["kind"], obj["metadata"]["namespace"], obj)
    kube.forget_requests()
    return kube


@pytest.fixture(autouse=True, scope="session")
def _quiet_logs() -> None:
    """The controller logs one JSON line per decision; tests that check logs capture them explicitly."""
    from songbird.controller import logs

    logs.configure("warning")
