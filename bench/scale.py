"""Scale benchmark: the real runtime for N rollouts against an API server and a Prometheus that keep up.

    python -m songbird.bench.scale [--quick] [--sizes 10,100,1000,10000] [--seconds S]
    songbird bench scale [...]

What runs is the controller's own runtime, wired as ``controller.daemon`` wires it: list-then-watch
informers into the caches, the work queue and its workers, APScheduler's timed wake-ups, the Lease loop and
its write fence, the tick deadline, the per-endpoint Prometheus guard, the batched built-in queries
(``controller.batch``), the reconciler with its pure decision. Only the far ends are in-process fakes:
- `FakeApi` implements the ports the runtime talks to (list pages, watch streams with resourceVersions,
  JSON merge patches, creates, Events, the Lease); Deployments become ready as soon as they are scaled,
  as a kubelet that keeps up would make them;
- `FakePrometheus` answers grouped and per-rollout queries at once from the weights in force: every
  rollout's stable serves 20 req/s at 0.5 % 5xx; a healthy canary the same shares, a bad one (every
  tenth rollout) 20 % 5xx, at its weight.
The fakes' own CPU time is measured (thread CPU time around each call) and subtracted from the process
CPU time; what remains is the controller's.

Time is real: APScheduler fires on the wall clock (the runtime takes no injected clock there), so each N
runs for a measured period (``--seconds``; 90 s in full mode, 15 s with --quick) after a warm-up (30 s;
20 s with --quick) from the moment its caches have synced (every rollout starts at once; the warm-up's
burst of starts is left out of the rates and of the lateness, FAIL verdicts are timed throughout).
Each rollout: one namespace with the seed objects and a policy of 5 steps, 1 minute each, the default
``cadence: 15s`` (a tick every 5 s, evaluations every 15 s).

Printed per N, side by side: API requests per rollout-minute by verb (steady state: after the first list),
Prometheus queries per cadence (grouped and per rollout), controller CPU per rollout-minute and as a share
of one core, peak RSS (the process' high-water mark, so it only grows from one N to the next), tick
lateness p50/p99 (a worker starting the tick, against the time the rollout fell due), and the time from a
FAIL verdict to the weight-0 write. Targets (issue 10): at 1,000 lateness p99 < 1 s, FAIL -> weight 0
< 1 s, < 15 % of a core, RSS < 300 MB; at 10,000 lateness p99 < 5 s, RSS < 1 GB.
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import statistics
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from songbird.analysis.evaluator import PrometheusEvaluator
from songbird.analysis.state import RolloutState
from songbird.analysis.verdict import MetricResult, Verdict
from songbird.bench.scale_fakes import CADENCE, PREFIX, CpuMeter, FakeApi, FakePrometheus, seed_objects
from songbird.config.policy import POLICY_LABEL
from songbird.controller import deadline, logs
from songbird.controller.batch import QueryBatcher
from songbird.controller.cache import ClusterCache, FencedWriter, is_policy
from songbird.controller.daemon import tick_period
from songbird.controller.endpoints import Endpoints
from songbird.controller.fence import Fence, LeadershipLost
from songbird.controller.informer import Informer
from songbird.controller.leadership import LeaderLoop
from songbird.controller.lease import Elector
from songbird.controller.ports import Kind, SystemClock
from songbird.controller.reconciler import Reconciler
from songbird.controller.routers import make_router
from songbird.controller.scheduler import Job, Scheduler
from songbird.controller.workqueue import WorkQueue

PROM = "http://prometheus.bench:9090"
WARMUP = 30.0  # full mode; --quick: 20 s


class _Timing:
    """Tick lateness and FAIL verdict times, recorded from the runtime's own hooks."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.pending: dict[tuple[str, str], float] = {}
        self.lateness: list[float] = []
        self.failed: dict[str, float] = {}
        self.measuring = False

    def due(self, key: tuple[str, str]) -> None:
        with self._lock:
            self.pending.setdefault(key, time.monotonic())

    def started(self, key: tuple[str, str]) -> None:
        with self._lock:
            since = self.pending.pop(key, None)
            if since is not None and self.measuring:
                self.lateness.append(time.monotonic() - since)

    def verdicts(self, namespace: str, results: tuple[MetricResult, ...]) -> None:
        if any(r.verdict is Verdict.FAIL for r in results):
            with self._lock:
                self.failed.setdefault(namespace, time.monotonic())


class _TimedEvaluator:
    """The reconciler's Evaluator: the real one, noting when a FAIL verdict is returned."""

    def __init__(self, inner: PrometheusEvaluator, timing: _Timing) -> None:
        self.inner = inner
        self.timing = timing

    def evaluate(self, policy: Any, namespace: str, state: RolloutState, now: float) -> Any:
        results, evidence = self.inner.evaluate(policy, namespace, state, now)
        self.timing.verdicts(namespace, results)
        return results, evidence

    def forecast(self, policy: Any, namespace: str, state: RolloutState, now: float) -> str:
        return self.inner.forecast(policy, namespace, state, now)

    def history(
        self, policy: Any, namespace: str, state: RolloutState, now: float
    ) -> dict[str, dict[str, float]]:
        return self.inner.history(policy, namespace, state, now)


class Runtime:
    """The daemon's runtime, wired as ``controller.daemon.Controller`` wires it, over the fakes."""

    def __init__(self, api: FakeApi, prom: FakePrometheus, timing: _Timing, *, workers: int = 8) -> None:
        self.api = api
        self.timing = timing
        informers = [
            Informer(
                api,
                Kind.CONFIGMAP,
                None,
                label_selector=f"{POLICY_LABEL}=true",
                keep=is_policy,
                on_change=self._changed,
            ),
            *(
                Informer(api, kind, None, on_change=self._changed)
                for kind in (Kind.DEPLOYMENT, Kind.SERVICE, Kind.INGRESS)
            ),
        ]
        self.cache = ClusterCache(informers)
        self.fence = Fence(margin=1.0)
        self.elector = Elector(
            api,
            namespace="songbird",
            name="songbird-leader",
            identity="bench",
            clock=SystemClock(),
            lease_duration=15,
            renew_deadline=10.0,
        )
        self.leader = LeaderLoop(
            self.elector, self.fence, lease_duration=15, retry=2.0, on_change=self._leading
        )
        self.writer = FencedWriter(api, api, fence=self.fence, cache=self.cache, write_timeout=2.5)
        self.endpoints = Endpoints(limit=2)
        self.batcher = QueryBatcher(endpoints=self.endpoints, timeout=5.0, sources=lambda url: prom)
        evaluator = PrometheusEvaluator(
            default_url=PROM,
            max_timeout=5.0,
            wrap=lambda url, source: self.endpoints.wrap(url, prom),
            grouped=self.batcher,
        )
        self.reconciler = Reconciler(
            reader=self.cache,
            writer=self.writer,
            recorder=self.writer,
            router=make_router("ingress-nginx", annotation_prefix=PREFIX),
            evaluator=_TimedEvaluator(evaluator, timing),
            clock=SystemClock(),
        )
        self.queue: WorkQueue[tuple[str, str]] = WorkQueue(self._work, workers=workers)
        self.scheduler = Scheduler(due=self.due, resync=self.resync, resync_every=10.0)
        self._keys: set[tuple[str, str]] = set()
        self._keys_lock = threading.Lock()

    def _leading(self, leading: bool) -> None:
        if leading:
            for key in sorted(self._keys):
                self.due(*key)

    def _changed(self, kind: Kind, namespace: str, name: str) -> None:
        if kind is Kind.CONFIGMAP:
            with self._keys_lock:
                self._keys.add((namespace, name))
            self.due(namespace, name)
            return
        with self._keys_lock:
            keys = [k for k in self._keys if k[0] == namespace]
        for key in keys:
            self.due(*key)

    def resync(self) -> None:
        with self._keys_lock:
            jobs = [Job(namespace=ns, name=n, period=tick_period(CADENCE)) for ns, n in sorted(self._keys)]
        self.scheduler.sync(jobs)

    def due(self, namespace: str, name: str) -> None:
        if self.leader.leading:
            self.timing.due((namespace, name))
            self.queue.add((namespace, name))

    def _work(self, key: tuple[str, str]) -> None:
        self.timing.started(key)
        if not self.leader.leading or not self.cache.synced:
            return
        with deadline.tick_deadline(4.0):
            try:
                self.reconciler.tick(*key)
            except LeadershipLost:
                return

    def start(self) -> None:
        for informer in self.cache.informers:
            informer.start()
        for informer in self.cache.informers:
            informer.wait_synced(120)
        self.queue.start()
        self.leader.start()
        self.scheduler.start()
        self.resync()

    def stop(self) -> None:
        self.scheduler.shutdown()
        self.queue.stop()
        for informer in self.cache.informers:
            informer.stop()
        self.queue.join(5)
        self.leader.stop(3)
        self.leader.release(loop_ended=True)
        self.api.close()


@dataclass(frozen=True, kw_only=True)
class Row:
    n: int
    seconds: float
    per_rollout_minute: dict[str, float]
    grouped_per_cadence: float
    scalar_per_cadence: float
    cpu_per_rollout_minute: float  # controller CPU seconds
    core_share: float
    rss_mb: float
    lateness_p50: float
    lateness_p99: float
    withdraw_p50: float | None
    withdraw_max: float | None
    failed: int
    withdrawn: int


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(n: int, seconds: float, warmup: float = WARMUP) -> Row:
    cpu = CpuMeter()
    api = FakeApi(cpu)
    namespaces = [f"r{i:05d}" for i in range(n)]
    bad = {ns for i, ns in enumerate(namespaces) if i % 10 == 9}
    for ns in namespaces:
        for kind, obj in seed_objects(ns):
            api.seed(kind, obj)
    prom = FakePrometheus(api, namespaces, bad, cpu)
    timing = _Timing()
    runtime = Runtime(api, prom, timing)
    runtime.start()
    time.sleep(warmup)
    calls_before = Counter(api.calls)
    grouped_before, scalar_before = prom.grouped, prom.scalar
    cpu_before, fake_before = time.process_time(), cpu.seconds
    timing.measuring = True
    began = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - began
    timing.measuring = False
    controller_cpu = (time.process_time() - cpu_before) - (cpu.seconds - fake_before)
    calls = Counter(api.calls)
    calls.subtract(calls_before)
    runtime.stop()
    rollout_minutes = n * elapsed / 60.0
    cadences = elapsed / CADENCE
    delays = []
    for ns, failed_at in timing.failed.items():
        after = [t for t in api.withdrawn.get(ns, []) if t >= failed_at]
        if after:
            delays.append(min(after) - failed_at)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return Row(
        n=n,
        seconds=elapsed,
        per_rollout_minute={verb: count / rollout_minutes for verb, count in sorted(calls.items()) if count},
        grouped_per_cadence=(prom.grouped - grouped_before) / cadences,
        scalar_per_cadence=(prom.scalar - scalar_before) / cadences,
        cpu_per_rollout_minute=controller_cpu / rollout_minutes,
        core_share=controller_cpu / elapsed,
        rss_mb=rss,
        lateness_p50=_quantile(timing.lateness, 0.5),
        lateness_p99=_quantile(timing.lateness, 0.99),
        withdraw_p50=statistics.median(delays) if delays else None,
        withdraw_max=max(delays) if delays else None,
        failed=len(timing.failed),
        withdrawn=len(delays),
    )


def _held(ok: bool) -> str:
    return "held" if ok else "NOT held"


def targets(row: Row) -> list[str]:
    out: list[str] = []
    if row.n == 1000:
        withdraw = row.withdraw_max is not None and row.withdraw_max < 1.0
        out += [
            f"lateness p99 < 1 s: {_held(row.lateness_p99 < 1.0)}",
            f"FAIL -> weight 0 < 1 s: {_held(withdraw)}",
            f"CPU < 15% of a core: {_held(row.core_share < 0.15)}",
            f"RSS < 300 MB: {_held(row.rss_mb < 300)}",
        ]
    if row.n == 10000:
        out += [
            f"lateness p99 < 5 s: {_held(row.lateness_p99 < 5.0)}",
            f"RSS < 1 GB: {_held(row.rss_mb < 1024)}",
        ]
    return out


def _fmt(x: float | None, unit: str = "") -> str:
    return "-" if x is None or x != x else f"{x:.3g}{unit}"


def table(rows: list[Row]) -> str:
    verbs = sorted({v for r in rows for v in r.per_rollout_minute})
    head = [
        "rollouts",
        "measured",
        *[f"API {v}/rollout-min" for v in verbs],
        "grouped queries/cadence",
        "per-rollout queries/cadence",
        "CPU s/rollout-min",
        "CPU (share of a core)",
        "peak RSS",
        "lateness p50 / p99",
        "FAIL -> weight 0 (p50 / max)",
        "targets",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [
            f"{r.n:,}",
            f"{r.seconds:.0f} s",
            *[_fmt(r.per_rollout_minute.get(v, 0.0)) for v in verbs],
            _fmt(r.grouped_per_cadence),
            _fmt(r.scalar_per_cadence),
            _fmt(r.cpu_per_rollout_minute),
            f"{r.core_share:.1%}",
            f"{r.rss_mb:.0f} MB",
            f"{_fmt(r.lateness_p50, ' s')} / {_fmt(r.lateness_p99, ' s')}",
            f"{_fmt(r.withdraw_p50, ' s')} / {_fmt(r.withdraw_max, ' s')} ({r.withdrawn} of {r.failed})",
            "; ".join(targets(r)) or "-",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="songbird bench scale", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="N = 10, 100, 1000, 15 s measured each (CI)")
    parser.add_argument("--sizes", help="comma-separated rollout counts (default: 10,100,1000,10000)")
    parser.add_argument("--seconds", type=float, help="measured seconds per N (default 90, --quick 20)")
    args = parser.parse_args(argv)
    sizes = [
        int(s) for s in (args.sizes or ("10,100,1000" if args.quick else "10,100,1000,10000")).split(",")
    ]
    seconds = args.seconds or (15.0 if args.quick else 90.0)
    warmup = 20.0 if args.quick else WARMUP
    logs.configure("error")
    rows = []
    for n in sizes:
        print(f"measuring {n:,} rollouts for {seconds:g} s ...", file=sys.stderr, flush=True)
        rows.append(measure(n, seconds, warmup))
        gc.collect()
    print(
        f"Scale benchmark: the real runtime against an in-process API and Prometheus; cadence {CADENCE:g}s; "
        f"real time: {warmup:g} s warm-up, then {seconds:g} s measured per N; {os.cpu_count()} CPUs"
    )
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
