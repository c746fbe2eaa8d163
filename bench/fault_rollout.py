"""One rollout through the real controller with a misbehaving Prometheus as its evidence: the harness of the
fault test (``tests/integration/test_controller_faults.py``) and of the robustness benchmark's ``faults``
campaign (the bench cannot import the tests, so the harness lives here).

`run_rollout` drives the real `Reconciler` wired as `controller.daemon` wires it: the `PrometheusEvaluator`
with the operator's clamp on every policy's Prometheus timeout (``max_timeout``) and each endpoint behind
`Endpoints.wrap` (concurrency limit, tick deadline, circuit breaker), and each tick run inside
`controller.deadline.tick_deadline`. The cluster is the in-memory `FakeCluster` seeded with the lab's
scenario (``nginx-v1`` stable with 3 replicas, ``nginx-v2`` canary, the main Ingress ``nginx``), the
kubelet making every Deployment ready after each tick, and policy time is a `FakeClock` moved by
``every`` seconds per tick, so a run covers several step intervals in a few wall seconds; only the fault
server's real delays cost wall time, and the tick deadline bounds them.

`Run` is what a user would see: per tick its wall time, the phase, step and canary weight in force (read
from the canary Ingress, not from Songbird's own status), any exception that escaped the tick; and every
text Songbird wrote for people (status reason, each metric's reason in the evaluations the ticks returned,
Event messages, tick errors). `problems` lists what a correct controller never does facing a fault: advance
past the first step or promote, raise the weight above the first step's, let an exception out of a tick,
overrun the tick deadline by more than ``margin``, or write a message longer than `MESSAGE_BOUND` or
carrying a response body (the fault server's `MARKER`, or a run of filler longer than any bounded quote).
"""

from __future__ import annotations

import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from structlog.testing import capture_logs

from songbird.analysis.evaluator import PrometheusEvaluator
from songbird.analysis.state import STATUS_ANNOTATION, Phase, RolloutState
from songbird.bench.fake_cluster import FakeClock, FakeCluster, reconciler_over
from songbird.bench.fault_prometheus import MARKER, Fault
from songbird.config.text import REASON_LIMIT
from songbird.controller import deadline
from songbird.controller.endpoints import Endpoints
from songbird.controller.ports import Kind
from songbird.controller.reconciler import Reconciler
from songbird.controller.routers.ingress_nginx import canary_name
from songbird.lab import scenarios

NAMESPACE = scenarios.NAMESPACE
NAME = "fault-rollout"
CANARY_INGRESS = canary_name(scenarios.MAIN_INGRESS)
PREFIX = "nginx.ingress.kubernetes.io"
T0 = 1_790_000_000.0
FIRST_WEIGHT = 10.0
MESSAGE_BOUND = 1024  # characters of a status reason or an Event message (an Event's message is cut there)
TICK_DEADLINE = 2.0  # seconds; the daemon's default is 4
MAX_TIMEOUT = 2.5  # the operator's clamp; like the daemon's (5 s against 4 s) it exceeds the tick deadline
FILLERS = "pxyzw"  # the fault server's padding characters
SLOW = frozenset({Fault.HANG, Fault.SLOW_BODY, Fault.SLOW_HEADERS})  # each tick may cost a whole deadline
NEVER_OPEN = 10**6  # breaker failures: every query meets the server

_HEAD = """
ingress: nginx
canary: {deployment: nginx-v2, service: nginx-v2}
steps: [10, 50]
interval: 30s
replicas: {mode: proportional, min: 1}
analysis:
  prometheus: {url: PROM_URL, timeout: 10s}
  cadence: 10s
  window: 30s
  minRequests: 50
  errorDeadline: 30m
  metrics:
"""
_BUILTIN = """
    - {name: error-rate, max: 0.05}
    - {name: latency, quantile: 0.99, max: 1}
"""
_CUSTOM = """
    - {name: floor, min: 0, query: "sum(rate(queue_done_total{namespace='{{ namespace }}'}[{{ window }}]))"}
    - {name: ceiling, max: 100, query: "max(queue_depth{namespace='{{ namespace }}'})"}
"""
POLICIES: dict[str, str] = {
    "built-in": _HEAD + _BUILTIN,
    "custom": _HEAD + _CUSTOM,
    "both": _HEAD + _BUILTIN + _CUSTOM,
}
"""Two steps, 30 s apart, judged every 10 s: the built-in metrics with ceilings, a min-only and a max-only
custom metric, or all four. ``errorDeadline`` is long, so every tick of a run is judged on the fault (and
the timeout, 10 s, is above the operator's clamp)."""


@dataclass(frozen=True, kw_only=True)
class TickSeen:
    seconds: float  # wall time of the tick
    phase: Phase
    step: int  # 0-based, as recorded
    weight: float  # the canary weight in force on the canary Ingress (0 when there is none)
    escaped: str = ""  # an exception that left the tick, as "Type: text"


@dataclass(kw_only=True)
class Run:
    ticks: list[TickSeen] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)  # every text written for people, in order

    @property
    def slowest(self) -> float:
        return max((t.seconds for t in self.ticks), default=0.0)


def policy_configmap(text: str, prom_url: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": {"songbird.dev/policy": "true"}},
        "data": {"policy.yaml": textwrap.dedent(text).replace("PROM_URL", prom_url)},
    }


def canary_weight(cluster: FakeCluster) -> float:
    ingress = cluster.object(Kind.INGRESS, NAMESPACE, CANARY_INGRESS)
    if ingress is None:
        return 0.0
    annotations = (ingress.get("metadata") or {}).get("annotations") or {}
    weight = float(annotations.get(f"{PREFIX}/canary-weight") or 0)
    return 100.0 * weight / float(annotations.get(f"{PREFIX}/canary-weight-total") or 100)


def recorded_state(cluster: FakeCluster) -> RolloutState:
    configmap = cluster.object(Kind.CONFIGMAP, NAMESPACE, NAME) or {}
    text = ((configmap.get("metadata") or {}).get("annotations") or {}).get(STATUS_ANNOTATION)
    return RolloutState.from_json(text) if text else RolloutState()


def _texts(state: RolloutState) -> Iterator[str]:
    """The text a user reads in a recorded status: the reason and the last evaluation's reasons."""
    yield state.reason
    for evaluation in state.history[-1:]:
        for metric in evaluation.results:
            yield metric.reason


def run_rollout(
    prom_url: str,
    policy: str,
    *,
    ticks: int,
    every: float = 15.0,
    tick_deadline: float = TICK_DEADLINE,
    breaker_failures: int = 3,
) -> Run:
    """``ticks`` ticks ``every`` virtual seconds apart of one rollout of ``policy`` (a `POLICIES` text whose
    Prometheus is ``prom_url``). ``breaker_failures``: failed queries in a row that open an endpoint's
    circuit (the daemon's default is 3; a large number lets every query meet the server)."""
    cluster = FakeCluster(scenarios.objects(NAMESPACE, accept=(NAME,)))
    cluster.put(policy_configmap(policy, prom_url))
    clock = FakeClock(T0)
    endpoints = Endpoints(limit=2, failures=breaker_failures)
    evaluator = PrometheusEvaluator(default_url=None, max_timeout=MAX_TIMEOUT, wrap=endpoints.wrap)
    reconciler = reconciler_over(cluster, evaluator=evaluator, clock=clock)
    run = Run()
    # The controller's log lines are not this harness' output (and the log's bounds are not judged here).
    with capture_logs():
        try:
            for _ in range(ticks):
                run.ticks.append(_tick(reconciler, cluster, tick_deadline, run.messages))
                clock.advance(every)
        finally:
            evaluator.close()
            endpoints.close()
    run.messages.extend(event.message for event in cluster.events)
    return run


def _tick(
    reconciler: Reconciler, cluster: FakeCluster, tick_deadline: float, messages: list[str]
) -> TickSeen:
    """One tick as the daemon's worker runs it, then the kubelet; what the cluster holds afterwards."""
    escaped = ""
    began = time.monotonic()
    try:
        with deadline.tick_deadline(tick_deadline):
            reconciler.tick(NAMESPACE, NAME)
    except Exception as exc:  # counted, never raised: the point is to see it
        escaped = f"{type(exc).__name__}: {str(exc)[:200]}"
    seconds = time.monotonic() - began
    cluster.kubelet()
    state = recorded_state(cluster)
    messages.extend(_texts(state))
    return TickSeen(
        seconds=seconds, phase=state.phase, step=state.step, weight=canary_weight(cluster), escaped=escaped
    )


@dataclass(frozen=True, kw_only=True)
class Plan:
    """How long to drive a rollout facing one fault: ``ticks`` ticks ``every`` virtual seconds apart, with
    an endpoint circuit that opens after ``breaker_failures`` failed queries in a row."""

    ticks: int
    every: float
    breaker_failures: int


def plan(fault: Fault, *, breaker: bool) -> Plan:
    """Enough ticks for the first step (30 s) to pass three times over once its weight is set (tick 2).

    ``breaker``: the daemon's circuit breaker (opens after 3 failures; the faults are then met by the first
    queries only) rather than none (every query of every tick meets the fault). A slow mode costs a whole
    deadline per tick it meets, so it gets fewer, longer-spaced ticks.
    """
    failures = 3 if breaker else NEVER_OPEN
    if fault in SLOW:
        return Plan(ticks=5, every=30.0, breaker_failures=failures)
    return Plan(ticks=8, every=15.0, breaker_failures=failures)


def leaks(message: str) -> bool:
    """True when ``message`` carries a response body: the marker, or more filler than a bounded quote."""
    return MARKER in message or any(c * (REASON_LIMIT + 1) in message for c in FILLERS)


def problems(run: Run, *, tick_deadline: float = TICK_DEADLINE, margin: float = 0.5) -> list[str]:
    """What a correct controller never does facing a faulty Prometheus (empty: the run was handled)."""
    found = []
    for n, tick in enumerate(run.ticks, 1):
        if tick.escaped:
            found.append(f"tick {n}: {tick.escaped}")
        if tick.step > 0 or tick.phase in (Phase.PROMOTING, Phase.SUCCEEDED):
            found.append(f"tick {n}: advanced to step {tick.step + 1} ({tick.phase.value})")
        if tick.weight > FIRST_WEIGHT:
            found.append(f"tick {n}: canary weight {tick.weight:g} above the first step's {FIRST_WEIGHT:g}")
        if tick.seconds > tick_deadline + margin:
            found.append(f"tick {n}: took {tick.seconds:.2f}s (deadline {tick_deadline:g}s)")
    for message in run.messages:
        if len(message) > MESSAGE_BOUND:
            found.append(f"a message of {len(message):,} characters: {message[:80]!r}...")
        elif leaks(message):
            found.append(f"a message carries a response body: {message[:160]!r}")
    return found
