"""The load generator against a real backend process.

Covers: only loopback targets are accepted; a run is bounded by its duration (rate x duration requests)
and by max_requests; every n-th request carries the header and is counted apart; answers are attributed
to the X-Version of the backend and to the time bucket of their send time; a stop event ends a run early.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from songbird.lab.backend import BackendProfile
from songbird.lab.load import LoadGenerator, LoadPlan
from songbird.lab.replicas import ReplicaSupervisor


@pytest.fixture(scope="module")
def target() -> Iterator[str]:
    with ReplicaSupervisor() as sup:
        sup.scale("nginx-v2", 1, version="v2", profile=BackendProfile(latency_median=0.0))
        yield f"http://{sup.addresses('nginx-v2')[0]}"


@pytest.mark.parametrize("url", ["http://10.1.2.3:80", "https://127.0.0.1:8443", "http://127.0.0.1"])
def test_only_loopback_http_targets(url: str) -> None:
    with pytest.raises(ValueError, match="target must be"):
        LoadPlan(target=url)


def test_run_is_bounded_by_duration_and_counts_per_bucket(target: str) -> None:
    plan = LoadPlan(target=target, rate=40, duration=1.0, max_requests=1000, header_every=5, bucket=0.5)
    t0 = time.monotonic()
    report = LoadGenerator(plan).run()
    assert time.monotonic() - t0 < 3
    assert report.sent == 40
    assert [(b.versions["v2"], b.header_versions["v2"]) for b in report.buckets] == [(16, 4), (16, 4)]
    assert report.share("v2") == 1.0 and report.total().failures == 0


def test_run_is_bounded_by_max_requests_and_stop(target: str) -> None:
    assert LoadGenerator(LoadPlan(target=target, rate=200, duration=60, max_requests=25)).run().sent == 25
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    t0 = time.monotonic()
    report = LoadGenerator(LoadPlan(target=target, rate=50, duration=60, max_requests=10_000)).run(stop)
    assert time.monotonic() - t0 < 2 and 5 <= report.sent <= 25
