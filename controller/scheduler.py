"""When ticks happen: APScheduler 3.x (the only module that imports it).

Three kinds of jobs, each with ``max_instances=1`` and ``coalesce=True`` so a slow tick is never run twice
at once and missed runs collapse into one:
- ``leader``: renews or acquires the Lease every ``renew_every`` seconds;
- ``discover``: lists the policy ConfigMaps every ``resync`` seconds and keeps one rollout job per policy
  while this replica leads (none while it stands by);
- ``rollout:<namespace>/<name>``: calls the reconciler's tick every ``period`` seconds (a fraction of the
  policy's cadence).
A job's exception is logged and counted, never allowed to stop the scheduler.
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
        discover: Callable[[], Sequence[Job]],
        tick: Callable[[str, str], None],
        is_leader: Callable[[], bool],
        renew: Callable[[], None] | None = None,
        resync: float = 10.0,
        renew_every: float = 2.0,
        workers: int = 4,
    ) -> None:
        self._discover = discover
        self._tick = tick
        self._is_leader = is_leader
        self._renew = renew
        self._resync = resync
        self._renew_every = renew_every
        self._lock = threading.Lock()
        self._sched = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max_workers=workers)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 30},
            timezone="UTC",
        )

    def start(self) -> None:
        if self._renew is not None:
            self._sched.add_job(
                self._guard(self._renew, "leader"),
                "interval",
                seconds=self._renew_every,
                id="leader",
                next_run_time=_now(),
            )
        self._sched.add_job(
            self._guard(self.sync, "discover"),
            "interval",
            seconds=self._resync,
            id="discover",
            next_run_time=_now(),
        )
        self._sched.start()

    def shutdown(self, *, wait: bool = True) -> None:
        if self._sched.running:
            self._sched.shutdown(wait=wait)

    def rollout_jobs(self) -> list[str]:
        return sorted(j.id for j in self._sched.get_jobs() if j.id.startswith("rollout:"))

    def sync(self) -> None:
        """Make the rollout jobs match the policies (all of them while leading, none otherwise)."""
        with self._lock:
            wanted = (
                {f"rollout:{j.namespace}/{j.name}": j for j in self._discover()} if self._is_leader() else {}
            )
            for job in self._sched.get_jobs():
                if job.id.startswith("rollout:") and job.id not in wanted:
                    job.remove()
                    log.info("rollout unscheduled", rollout=job.id.removeprefix("rollout:"))
            for job_id, j in wanted.items():
                existing = self._sched.get_job(job_id)
                if existing is not None and getattr(existing.trigger, "interval_length", None) == j.period:
                    continue
                self._sched.add_job(
                    self._guard(self._tick_if_leader, job_id),
                    "interval",
                    seconds=j.period,
                    args=(j.namespace, j.name),
                    id=job_id,
                    replace_existing=True,
                    next_run_time=_now(),
                )
                log.info("rollout scheduled", rollout=f"{j.namespace}/{j.name}", period=j.period)

    def _tick_if_leader(self, namespace: str, name: str) -> None:
        if self._is_leader():  # leadership can be lost between two discoveries
            self._tick(namespace, name)

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
