"""The runtime's small parts, on their own.

Covers:
- `WorkQueue`: a key queued twice runs once; a key added while it runs runs again after, never twice at
  once; first in, first out; `stop` drops queued work and `join` returns once ticks in flight end;
- `Fence`: a write passes only when it ends before the Lease's local expiry minus the margin; revoked or
  never held, nothing passes; a monotonic jump (a paused process) makes writes fail;
- `Guard`: at most ``limit`` queries in flight per endpoint (more fail at once as busy); a query is
  abandoned at the tick's deadline; consecutive failures open the circuit, which fails fast, then lets
  one trial through after the cooldown and closes on its success.
"""

from __future__ import annotations

import threading
import time

import pytest

from songbird.config.errors import MetricsUnavailable
from songbird.controller.deadline import tick_deadline
from songbird.controller.endpoints import Guard
from songbird.controller.fence import Fence, LeadershipLost
from songbird.controller.workqueue import WorkQueue


class Ticks:
    def __init__(self, hold: float = 0.0) -> None:
        self.hold = hold
        self.order: list[str] = []
        self.running: set[str] = set()
        self.overlap = False
        self.lock = threading.Lock()

    def __call__(self, key: str) -> None:
        with self.lock:
            self.overlap |= key in self.running
            self.running.add(key)
            self.order.append(key)
        time.sleep(self.hold)
        with self.lock:
            self.running.discard(key)


def wait_until(check: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(check) and check():
            return
        time.sleep(0.01)
    raise AssertionError("timed out")


def test_queue_folds_repeats_and_keeps_fifo_order() -> None:
    ticks = Ticks()
    queue: WorkQueue[str] = WorkQueue(ticks, workers=1)
    for key in ["a", "b", "a", "c", "b"]:
        queue.add(key)
    queue.start()
    wait_until(lambda: queue.done == 3)
    assert ticks.order == ["a", "b", "c"]
    queue.stop()
    assert queue.join(2)


def test_queue_never_runs_a_key_twice_at_once_and_reruns_it_when_dirty() -> None:
    ticks = Ticks(hold=0.2)
    queue: WorkQueue[str] = WorkQueue(ticks, workers=4)
    queue.start()
    queue.add("a")
    wait_until(lambda: queue.in_flight() == 1)
    queue.add("a")  # while it runs: once more afterwards, not in parallel
    queue.add("a")
    wait_until(lambda: queue.done == 2)
    time.sleep(0.3)
    assert ticks.order == ["a", "a"]
    assert not ticks.overlap
    queue.stop()
    assert queue.join(2)


def test_queue_stop_drops_queued_work_and_join_waits_for_ticks_in_flight() -> None:
    ticks = Ticks(hold=0.3)
    queue: WorkQueue[str] = WorkQueue(ticks, workers=1)
    queue.start()
    for key in "abc":
        queue.add(key)
    wait_until(lambda: queue.in_flight() == 1)
    queue.stop()
    queue.add("d")
    assert queue.join(2)
    assert ticks.order == ["a"]


class Monotonic:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_fence_lets_a_write_through_only_if_it_ends_before_the_lease_expires() -> None:
    clock = Monotonic()
    fence = Fence(margin=1.0, monotonic=clock)
    with pytest.raises(LeadershipLost):
        fence.check(0.1)  # never held
    fence.hold_until(115.0)
    fence.check(13.9)
    with pytest.raises(LeadershipLost):
        fence.check(14.0)  # 100 + 14 is not before 115 - 1
    clock.t = 120.0  # the process was paused past its lease
    with pytest.raises(LeadershipLost):
        fence.check(0.1)
    fence.hold_until(135.0)
    fence.check(2.0)
    fence.revoke()
    with pytest.raises(LeadershipLost):
        fence.check(0.1)


class Source:
    def __init__(self, *, block: threading.Event | None = None, fail: bool = False) -> None:
        self.block = block
        self.fail = fail
        self.calls = 0

    def query_scalar(self, promql: str, *, at: float) -> float | None:
        self.calls += 1
        if self.block is not None:
            self.block.wait(10)
        if self.fail:
            raise MetricsUnavailable("refused")
        return 1.0


def test_guard_limits_queries_in_flight_and_abandons_them_at_the_deadline() -> None:
    release = threading.Event()
    guard = Guard("http://p", limit=2, failures=100, cooldown=30)
    silent = Source(block=release)
    began = time.monotonic()
    for _ in range(2):
        with tick_deadline(0.2), pytest.raises(MetricsUnavailable, match="deadline"):
            guard.query(silent, "up", at=0)
    assert time.monotonic() - began < 1.0
    with tick_deadline(0.2), pytest.raises(MetricsUnavailable, match="busy"):
        guard.query(silent, "up", at=0)
    assert silent.calls == 2
    release.set()  # the abandoned queries end; their slots free up

    def answers() -> bool:
        try:
            return guard.query(Source(), "up", at=0) == 1.0
        except MetricsUnavailable:
            return False

    wait_until(answers)


def test_circuit_opens_after_failures_fails_fast_then_closes_on_a_good_trial() -> None:
    clock = Monotonic()
    guard = Guard("http://p", limit=2, failures=3, cooldown=30, monotonic=clock)
    bad = Source(fail=True)
    for _ in range(3):
        with pytest.raises(MetricsUnavailable, match="refused"):
            guard.query(bad, "up", at=0)
    assert guard.state == "open"
    with pytest.raises(MetricsUnavailable, match="circuit open"):
        guard.query(bad, "up", at=0)
    assert bad.calls == 3
    clock.t += 31
    assert guard.state == "half-open"
    with pytest.raises(MetricsUnavailable, match="refused"):
        guard.query(bad, "up", at=0)  # the trial fails: open again
    assert guard.state == "open"
    clock.t += 31
    assert guard.query(Source(), "up", at=0) == 1.0
    assert guard.state == "closed"
