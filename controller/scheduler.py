"""When rollouts are due by time: APScheduler 3.x (the only module that imports it).

APScheduler is the source of timed wake-ups and nothing else: each rollout has one interval job
(``rollout:<namespace>/<name>``, every ``period`` seconds, a fraction of its policy's cadence) whose whole
work is ``due(namespace, name)``, which only puts the rollout on the work queue (``controller.workqueue``);
the queue's workers run the ticks. A ``resync`` job calls ``resync()`` (cheap, from memory) to repair
anything a missed event left behind. No job does network I/O or waits on a lock another job holds, so the
scheduler's own small pool never starves and `shutdown` never waits on a tick.

Jobs use ``max_instances=1`` and ``coalesce=True``; a job's exception is logged, never allowed to stop the
scheduler. `sync` is thread-safe (informer threads and the resync job both call it).
"""

from __future__ import annotations

import datetime
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import structlog
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

log = structlog.get_logger("songbird")


@dataclass(frozen=True, kw_only=True)
class Job:
    namespace: str
    name: str
    period: float  # seconds between ticks


class Scheduler:
    def __init__(
        self,
        *,
        due: Callable[[str, str], None],
        resync: Callable[[], None] | None = None,
        resync_every: float = 10.0,
    ) -> None:
        self._due = due
        self._resync = resync
        self._resync_every = resync_every
        self._lock = threading.Lock()
        self._periods: dict[str, float] = {}
        self._sched = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max_workers=2)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 30},
            timezone="UTC",
        )

    def start(self) -> None:
        if self._resync is not None:
            self._sched.add_job(
                self._guard(self._resync, "resync"),
                "interval",
                seconds=self._resync_every,
                id="resync",
                next_run_time=_now(),
            )
        self._sched.start()

    def shutdown(self) -> None:
        """Stop at once: no job waits for network, so nothing is worth waiting for."""
        if self._sched.running:
            self._sched.shutdown(wait=False)

    def rollout_jobs(self) -> list[str]:
        with self._lock:
            return sorted(self._periods)

    def sync(self, jobs: Sequence[Job]) -> None:
        """Make the rollout jobs match ``jobs`` (add, re-period, remove)."""
        wanted = {f"rollout:{j.namespace}/{j.name}": j for j in jobs}
        with self._lock:
            for job_id in [k for k in self._periods if k not in wanted]:
                del self._periods[job_id]
                if self._sched.get_job(job_id) is not None:
                    self._sched.remove_job(job_id)
                log.info("rollout unscheduled", rollout=job_id.removeprefix("rollout:"))
            for job_id, j in wanted.items():
                if self._periods.get(job_id) == j.period:
                    continue
                self._periods[job_id] = j.period
                self._sched.add_job(
                    self._guard(self._due, job_id),
                    "interval",
                    seconds=j.period,
                    args=(j.namespace, j.name),
                    id=job_id,
                    replace_existing=True,
                    next_run_time=_now(),
                )
                log.info("rollout scheduled", rollout=f"{j.namespace}/{j.name}", period=j.period)

    @staticmethod
    def _guard(fn: Callable[..., None], what: str) -> Callable[..., None]:
        def run(*args: str) -> None:
            try:
                fn(*args)
            except Exception:  # a job must never take the scheduler down
                log.exception("job failed", job=what, args=list(args))

        return run


def _now() -> datetime.datetime:
    """First run at once (APScheduler's own clock: scheduling is the adapter's business, not the core's)."""
    return datetime.datetime.now(tz=datetime.UTC)
