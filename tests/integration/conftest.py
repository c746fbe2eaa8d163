"""Scenario tests here run against kmock's API emulator; tests/e2e runs the same ones on a real cluster."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import pytest

from tests.support.clusters import EmulatedCluster
from tests.support.kube_emulator import KubeEmulator
from tests.support.world import World, world


@pytest.fixture
def make_world() -> Iterator[Callable[..., AbstractContextManager[World]]]:
    """``with make_world(stable=..., canary=...) as w:`` a world on a fresh API emulator."""

    @contextmanager
    def make(**kwargs: Any) -> Iterator[World]:
        with KubeEmulator() as kube, world(EmulatedCluster(kube), **kwargs) as w:
            yield w

    yield make
