"""Every fault of the fault-injecting Prometheus (`tests.support.fault_prometheus`) met by the whole
controller: the real `Reconciler` wired as the daemon wires it (the evaluator's clamped timeout, each
endpoint behind `Endpoints.wrap`, each tick inside `controller.deadline.tick_deadline` of 2 s), over the
in-memory cluster, with a policy judged on the built-in metrics (with ceilings), a min-only and a max-only
custom metric (`songbird.bench.fault_rollout`, also run by ``songbird.bench.robustness --campaign faults``).

Covers, for every fault mode, over ticks that pass the first step's interval three times once its weight
is set (policy time is virtual; slow modes get fewer ticks, as each costs a deadline):
- the canary reaches its first step (10%) and never goes past it: no step 2, no promotion, the weight on
  the canary Ingress never above 10%;
- no exception leaves a tick, and every tick's wall time is within the deadline plus 0.5 s;
- every status reason, metric reason and Event message is at most 1,024 characters and carries no response
  body (the fault server's marker, or a run of its filler longer than a bounded quote);
- the server was asked (the fault was met), and a redirect's target never was;
- a control: against the healthy mode the same rollout does go past its first step, so the run is long
  enough for an advance to show.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from songbird.analysis.state import Phase
from songbird.bench.fault_rollout import (
    FIRST_WEIGHT,
    MESSAGE_BOUND,
    POLICIES,
    TICK_DEADLINE,
    Run,
    leaks,
    plan,
    run_rollout,
)
from tests.support.fault_prometheus import FAULTS, Fault, FaultPrometheus

MARGIN = 0.5  # thread scheduling on a busy machine, and the tick's writes after the deadline


@pytest.fixture(scope="module")
def server() -> Iterator[FaultPrometheus]:
    with FaultPrometheus() as srv:
        yield srv


def drive(server: FaultPrometheus, fault: Fault) -> Run:
    server.fault = fault
    server.received.clear()
    how = plan(fault, breaker=False)
    return run_rollout(
        server.url,
        POLICIES["both"],
        ticks=how.ticks,
        every=how.every,
        tick_deadline=TICK_DEADLINE,
        breaker_failures=how.breaker_failures,
    )


@pytest.mark.parametrize("fault", FAULTS, ids=str)
def test_no_fault_moves_the_rollout_past_its_first_step(server: FaultPrometheus, fault: Fault) -> None:
    run = drive(server, fault)
    assert server.received, "the fault server was never asked"
    assert [t.escaped for t in run.ticks if t.escaped] == []
    weights = [t.weight for t in run.ticks]
    assert max(weights) == FIRST_WEIGHT, weights
    assert max(t.step for t in run.ticks) == 0  # -1 before the first step
    assert not {t.phase for t in run.ticks} & {Phase.PROMOTING, Phase.SUCCEEDED}
    assert run.slowest <= TICK_DEADLINE + MARGIN, [round(t.seconds, 2) for t in run.ticks]
    too_long = [m[:120] for m in run.messages if len(m) > MESSAGE_BOUND]
    assert too_long == []
    assert [m[:200] for m in run.messages if leaks(m)] == []
    assert server.elsewhere.requests == 0


def test_the_healthy_control_goes_past_the_first_step(server: FaultPrometheus) -> None:
    run = drive(server, Fault.HEALTHY)
    assert max(t.step for t in run.ticks) >= 1
    assert max(t.weight for t in run.ticks) > FIRST_WEIGHT
