"""Fixtures for the lab's tests: real nginx (skipped, with the reason, only when it is not installed) and
real backend processes, each stopped when its scope ends."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from songbird.lab.nginx import NginxNotInstalledError, NginxServer, find_lua_modules, find_nginx
from songbird.lab.replicas import ReplicaSupervisor


def _nginx_missing() -> str | None:
    try:
        find_nginx()
        find_lua_modules()
    except NginxNotInstalledError as exc:
        return str(exc)
    return None


@pytest.fixture(scope="session")
def require_nginx() -> None:
    reason = _nginx_missing()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def supervisor() -> Iterator[ReplicaSupervisor]:
    with ReplicaSupervisor() as sup:
        yield sup


@pytest.fixture(scope="module")
def nginx(require_nginx: None) -> Iterator[NginxServer]:
    with NginxServer() as server:
        yield server
