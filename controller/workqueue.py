"""One queue of rollouts that are due, and a fixed pool of workers that tick them.

A rollout becomes due by time (its APScheduler job) or by a watch event on an object it reads; either way
it is `WorkQueue.add`-ed by key. The queue keeps client-go's workqueue rules
(``k8s.io/client-go/util/workqueue/queue.go``):
- a key is queued at most once (adding a queued key again is a no-op), so a burst of events costs one tick;
- a key is ticked by at most one worker at a time: adding a key that is being ticked marks it dirty, and it
  is queued again (at the back) when that tick ends;
- first in, first out, so every due rollout runs before any rollout runs twice (fair).
The pool has a fixed number of threads, so the work in flight never grows with the number of rollouts.

Shutdown: `stop` refuses new work, drops what is queued and lets the ticks in flight finish; `join` waits
for them up to a deadline (each tick is bounded by its own deadline, see ``controller.budget``). Workers
are daemon threads, so a tick that overruns cannot keep the process alive.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

import structlog

log = structlog.get_logger("songbird")

K = TypeVar("K", bound=Hashable)


class WorkQueue(Generic[K]):
    def __init__(self, work: Callable[[K], None], *, workers: int = 8, name: str = "songbird-worker") -> None:
        if workers < 1:
            raise ValueError("at least one worker")
        self._work = work
        self._cond = threading.Condition()
        self._queue: deque[K] = deque()
        self._queued: set[K] = set()
        self._active: set[K] = set()
        self._dirty: set[K] = set()
        self._stopping = False
        self._threads = [
            threading.Thread(target=self._run, name=f"{name}-{i}", daemon=True) for i in range(workers)
        ]
        self.done = 0  # ticks finished (for tests and the benchmark)

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def add(self, key: K) -> None:
        with self._cond:
            if self._stopping:
                return
            if key in self._active:
                self._dirty.add(key)
                return
            if key in self._queued:
                return
            self._queued.add(key)
            self._queue.append(key)
            self._cond.notify()

    def __len__(self) -> int:
        with self._cond:
            return len(self._queue)

    def in_flight(self) -> int:
        with self._cond:
            return len(self._active)

    def stop(self) -> None:
        """Take no more work; drop what is queued. Ticks in flight go on to their end."""
        with self._cond:
            self._stopping = True
            self._queue.clear()
            self._queued.clear()
            self._dirty.clear()
            self._cond.notify_all()

    def join(self, timeout: float) -> bool:
        """Wait until every worker ended, at most ``timeout`` seconds; True when they all did."""
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            if thread.is_alive():
                thread.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)

    def _take(self) -> K | None:
        with self._cond:
            while not self._queue and not self._stopping:
                self._cond.wait()
            if self._stopping:
                return None
            key = self._queue.popleft()
            self._queued.discard(key)
            self._active.add(key)
            return key

    def _finish(self, key: K) -> None:
        with self._cond:
            self._active.discard(key)
            self.done += 1
            if key in self._dirty and not self._stopping:
                self._dirty.discard(key)
                self._queued.add(key)
                self._queue.append(key)
                self._cond.notify()

    def _run(self) -> None:
        while True:
            key = self._take()
            if key is None:
                return
            try:
                self._work(key)
            except Exception:  # one rollout's failure must not take a worker down
                log.exception("tick failed", rollout=str(key))
            finally:
                self._finish(key)
