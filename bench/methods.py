"""The rollout rules compared by the decision-quality benchmark, each driving many simulated runs at once.

* `Songbird`: the controller's own code path, `analysis.evaluate.judge` (per-metric comparison, sparse
  rule, mean rule) and `analysis.step.step` (one tick of the state machine), per run with its own
  `RolloutState`: steps advance on time unless a metric FAILs or the stable is failing too; a decisive
  FAIL rolls back at once; after the last step promotion needs every metric to PASS, waiting at most
  ``maxWait``, then ``onInconclusive: pause``.
* `Flagger`: every ``interval`` one canary success-rate check over that interval (no data counts as a
  failed check); a failed check holds the weight and increments a counter; rollback when the counter has
  reached ``threshold``, tested on the next tick; promotion after a passing check at the last weight.
* `Argo`: steps advance on time; a background measurement of the canary success rate every ``interval``;
  NaN (no data) is a failed measurement; abort when failed measurements exceed ``failureLimit``.
* `SprtCadence`: Wald's SPRT for p0 against p1 on the canary's requests, both known to the oracle, deciding
  only at the end of each 15 s window (the cadence limit); accepting p0 stops the test.
* `sprt_per_request`: the same SPRT deciding after every single request (the physical limit).

Every method exposes ``weights()`` for the next window and ``observe(window, active)``; outcomes are kept
in ``outcome`` (ACTIVE, ROLLBACK, PROMOTE, PAUSED) and ``time`` (seconds into the rollout).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from songbird.analysis.cause import Cause
from songbird.analysis.decision import Action, Decision, Facts, tick_tolerance
from songbird.analysis.evaluate import judge
from songbird.analysis.history import HISTORY_BAD, HISTORY_SECONDS, HISTORY_TOTAL
from songbird.analysis.observe import MetricObservation
from songbird.analysis.state import Evidence, Phase, RolloutState
from songbird.analysis.step import Verdicts, step
from songbird.analysis.verdict import MetricResult, WindowCounts
from songbird.bench.simulate import SCRAPE, History, Scenario, Schedule, Window
from songbird.config.loader import load_policy_yaml
from songbird.config.policy import Policy

ACTIVE, ROLLBACK, PROMOTE, PAUSED = 0, 1, 2, 3
TOLERANCE = tick_tolerance(SCRAPE)


BENCH_REPLICAS = 10
# The adapter's clock: rollout time t runs at EPOCH + t, as the controller's clock is epoch seconds (the
# state machine reads a zero timestamp as "not set").
EPOCH = 1_700_000_000.0


def bench_policy(schedule: Schedule, *, min_requests: int = 100) -> Policy:
    """The policy the benchmark's rollouts run under: the schedule, 15 s evaluations, the two built-in
    metrics with no ceiling (so that only the comparison decides), and the default compare settings."""
    steps = ", ".join(f"{w:g}" for w in schedule.steps)
    return load_policy_yaml(f"""
ingress: bench
canary: {{deployment: canary, service: canary}}
steps: [{steps}]
interval: {schedule.interval:g}s
replicas: {{total: {BENCH_REPLICAS}}}
analysis:
  cadence: {schedule.cadence:g}s
  minRequests: {min_requests}
  metrics: [{{name: error-rate}}, {{name: latency, threshold: 0.25}}]
  compare: {{maxWait: {schedule.max_wait:g}s, onInconclusive: pause}}
""")


class Method:
    name = "method"

    def __init__(self, runs: int, schedule: Schedule) -> None:
        self.runs = runs
        self.schedule = schedule
        self.outcome = np.zeros(runs, dtype=np.int8)
        self.time = np.full(runs, math.nan)
        self.k = 0

    def weights(self) -> np.ndarray:
        """On-time schedule by default: every step advances after its interval."""
        t = self.k * SCRAPE
        return np.full(self.runs, self.schedule.on_time_weight(t))

    def start(self, history: History) -> None:
        """Before the first window: the stable's counts before the rollout (only Songbird reads them)."""

    def observe(self, window: Window, active: np.ndarray) -> None:
        raise NotImplementedError

    def finish(self, mask: np.ndarray, outcome: int, t: float) -> None:
        mask = mask & (self.outcome == ACTIVE)
        self.outcome[mask] = outcome
        self.time[mask] = t


class Songbird(Method):
    """The controller's own decisions: `analysis.evaluate.judge` then `analysis.step.step`, per run.

    A thin adapter keeps one `RolloutState` per run and plays the reconciler's part: it starts the rollout
    at t = 0 (with the stable's pre-rollout counts in the evidence, as the controller reads them before
    the first step), scales the canary as each decision's target asks (its pods are ready at once), and
    at the end of every 15 s window runs one tick, which, when an evaluation is due, turns the window's
    counts into the built-in metrics' observations and judges them. Nothing of the tick is re-implemented
    here. A run ends at the first rollback or promotion
    decision, or when ``onInconclusive: pause`` pauses it after ``maxWait``.
    """

    name = "Songbird"

    def __init__(
        self,
        runs: int,
        schedule: Schedule,
        *,
        policy: Policy | None = None,
        min_requests: int = 100,
        use_history: bool = True,
    ) -> None:
        super().__init__(runs, schedule)
        self.policy = policy or bench_policy(schedule, min_requests=min_requests)
        self.use_history = use_history
        self.states = [RolloutState() for _ in range(runs)]
        self.canary_replicas = np.zeros(runs, dtype=np.int64)
        self.judged = 0

    def start(self, history: History) -> None:
        for i in range(self.runs):
            evidence: Evidence = {}
            if self.use_history:
                seen = {HISTORY_TOTAL: float(history.total[i]), HISTORY_SECONDS: history.seconds}
                evidence = {
                    "error-rate": {**seen, HISTORY_BAD: float(history.bad[i])},
                    "latency": {**seen, HISTORY_BAD: float(history.slow[i])},
                }
            self._tick(i, EPOCH, _no_window, started=functools.partial(_with_evidence, evidence=evidence))

    def weights(self) -> np.ndarray:
        return np.array([s.weight for s in self.states]) / 100.0

    def _facts(self, replicas: int) -> Facts:
        return Facts(
            canary="canary",
            stable="stable",
            canary_service="canary",
            stable_service="stable",
            revision="r1",
            stable_replicas=BENCH_REPLICAS,
            canary_replicas=replicas,
            canary_ready=replicas,
        )

    def _acted(self, decision: Decision, facts: Facts) -> Facts:
        """The canary's pods are ready as soon as a decision asks for them."""
        return facts if decision.target is None else self._facts(decision.target.canary_replicas)

    def _tick(
        self,
        i: int,
        t: float,
        verdicts: Verdicts,
        *,
        started: Callable[[RolloutState], RolloutState] | None = None,
    ) -> None:
        """One tick of run ``i`` (`analysis.step.step`), followed up to the first outcome it reaches."""
        decisions = step(
            self.policy,
            self.states[i],
            self._facts(int(self.canary_replicas[i])),
            t,
            verdicts=verdicts,
            started=started or (lambda s: s),
            acted=self._acted,
        )
        for decision in decisions:
            if decision.target is not None:
                self.canary_replicas[i] = decision.target.canary_replicas
            self.states[i] = decision.state
            if decision.action is Action.ROLLBACK:
                self.finish_one(i, ROLLBACK, t)
                break
            if decision.action is Action.PROMOTE:
                self.finish_one(i, PROMOTE, t)
                break
            if decision.state.phase is Phase.PAUSED and decision.cause is Cause.INCONCLUSIVE:
                self.finish_one(i, PAUSED, t)
                break

    def observe(self, window: Window, active: np.ndarray) -> None:
        self.k += 1
        t = EPOCH + self.k * SCRAPE
        columns = {
            "error-rate": (window.canary_bad, window.stable_bad),
            "latency": (window.canary_slow, window.stable_slow),
        }

        def verdicts(i: int, state: RolloutState) -> tuple[tuple[MetricResult, ...], Evidence]:
            seen = tuple(
                MetricObservation(
                    name=m.name,
                    counts=WindowCounts(
                        canary_total=float(window.canary_total[i]),
                        canary_bad=float(columns[m.name][0][i]),
                        stable_total=float(window.stable_total[i]),
                        stable_bad=float(columns[m.name][1][i]),
                    ),
                )
                for m in self.policy.analysis.metrics
            )
            self.judged += 1
            return judge(self.policy, state, seen, ())

        for run in np.flatnonzero(active):
            i = int(run)
            self._tick(i, t, functools.partial(verdicts, i))

    def finish_one(self, i: int, outcome: int, t: float) -> None:
        self.outcome[i] = outcome
        self.time[i] = t - EPOCH


def _with_evidence(state: RolloutState, *, evidence: Evidence) -> RolloutState:
    return replace(state, evidence=evidence)


def _no_window(state: RolloutState) -> tuple[tuple[MetricResult, ...], Evidence]:
    raise AssertionError("no evaluation is due before a rollout starts")


class _MinuteChecks(Method):
    """Shared by Flagger and Argo: canary success rate over each ``interval``, from the 15 s windows."""

    min_success = 0.99

    def __init__(self, runs: int, schedule: Schedule) -> None:
        super().__init__(runs, schedule)
        self.per_tick = round(schedule.interval / SCRAPE)
        self.minute_total = np.zeros(runs)
        self.minute_bad = np.zeros(runs)

    def accumulate(self, window: Window) -> np.ndarray | None:
        """Add a window; at the end of an interval return the failed-check mask and start a new interval."""
        self.k += 1
        self.minute_total += window.canary_total
        self.minute_bad += window.canary_bad
        if self.k % self.per_tick:
            return None
        total, bad = self.minute_total, self.minute_bad
        with np.errstate(divide="ignore", invalid="ignore"):
            success = np.where(total > 0, 1 - bad / np.maximum(total, 1e-12), np.nan)
        failed = ~(success >= self.min_success)  # NaN (no data) fails
        self.minute_total = np.zeros(self.runs)
        self.minute_bad = np.zeros(self.runs)
        return failed


class Flagger(_MinuteChecks):
    def __init__(self, runs: int, schedule: Schedule, *, threshold: int = 5) -> None:
        super().__init__(runs, schedule)
        self.name = f"Flagger (threshold {threshold})"
        self.threshold = threshold
        self.failed_checks = np.zeros(runs, dtype=np.int64)
        self.step = np.zeros(runs, dtype=np.int64)

    def weights(self) -> np.ndarray:
        return np.array(self.schedule.steps)[self.step] / 100.0

    def observe(self, window: Window, active: np.ndarray) -> None:
        failed = self.accumulate(window)
        if failed is None:
            return
        t = self.k * SCRAPE
        self.finish(active & (self.failed_checks >= self.threshold), ROLLBACK, t)
        active = self.outcome == ACTIVE
        self.failed_checks += active & failed
        passed = active & ~failed
        last = len(self.schedule.steps) - 1
        self.finish(passed & (self.step == last), PROMOTE, t)
        self.step = np.where(passed & (self.step < last), self.step + 1, self.step)


class Argo(_MinuteChecks):
    def __init__(self, runs: int, schedule: Schedule, *, failure_limit: int = 0) -> None:
        super().__init__(runs, schedule)
        self.name = f"Argo (failureLimit {failure_limit})"
        self.failure_limit = failure_limit
        self.failed = np.zeros(runs, dtype=np.int64)

    def observe(self, window: Window, active: np.ndarray) -> None:
        failed = self.accumulate(window)
        if failed is None:
            return
        t = self.k * SCRAPE
        self.failed += active & failed
        self.finish(active & (self.failed > self.failure_limit), ROLLBACK, t)
        if t >= self.schedule.nominal - TOLERANCE:
            self.finish(self.outcome == ACTIVE, PROMOTE, t)


@dataclass(frozen=True, kw_only=True)
class SprtBounds:
    """Wald's SPRT for p0 against p1 with error rates alpha (false rollback) and beta (miss)."""

    p0: float
    p1: float
    alpha: float = 0.01
    beta: float = 0.01

    @property
    def upper(self) -> float:
        return math.log((1 - self.beta) / self.alpha)

    @property
    def lower(self) -> float:
        return math.log(self.beta / (1 - self.alpha))

    @property
    def step_bad(self) -> float:
        return math.log(self.p1 / self.p0)

    @property
    def step_good(self) -> float:
        return math.log((1 - self.p1) / (1 - self.p0))


def oracle_bounds(scenario: Scenario, *, alpha: float = 0.01, beta: float = 0.01) -> SprtBounds:
    """The oracle knows p0; against a healthy canary it tests the smallest regression of interest (2 p0)."""
    p1 = scenario.p_canary if scenario.ratio > 1 else min(2 * scenario.p_stable, 0.5)
    return SprtBounds(p0=scenario.p_stable, p1=p1, alpha=alpha, beta=beta)


class SprtCadence(Method):
    name = "SPRT oracle, 15 s cadence"

    def __init__(self, runs: int, schedule: Schedule, *, bounds: SprtBounds) -> None:
        super().__init__(runs, schedule)
        self.bounds = bounds
        self.llr = np.zeros(runs)
        self.accepted = np.zeros(runs, dtype=bool)

    def observe(self, window: Window, active: np.ndarray) -> None:
        self.k += 1
        t = self.k * SCRAPE
        b = self.bounds
        testing = active & ~self.accepted
        x, n = window.canary_bad, window.canary_total
        self.llr += np.where(testing, x * b.step_bad + (n - x) * b.step_good, 0.0)
        self.finish(testing & (self.llr >= b.upper), ROLLBACK, t)
        self.accepted |= testing & (self.llr <= b.lower)
        if t >= self.schedule.nominal - TOLERANCE:
            self.finish(self.accepted, PROMOTE, t)


@dataclass(frozen=True, kw_only=True)
class RequestLevel:
    """Per-run result of the per-request SPRT: rolled back or not, after how many canary requests."""

    rollback: np.ndarray
    requests: np.ndarray  # canary requests until the decision (inf: none within the run)
    failed: np.ndarray  # failed canary requests served until the decision


def sprt_per_request(
    bounds: SprtBounds, *, p_true: float, runs: int, rng: np.random.Generator, max_requests: float
) -> RequestLevel:
    """Wald's SPRT deciding after every canary request, simulated by jumping from one failure to the next.

    Between failures the log-likelihood ratio only falls (by ``step_good`` per request), so the lower bound
    can be crossed only before a failure, the upper one only at a failure.
    """
    b = bounds
    n = np.zeros(runs)  # requests so far
    k = np.zeros(runs)  # failures so far
    done = np.zeros(runs, dtype=bool)
    rollback = np.zeros(runs, dtype=bool)
    requests = np.full(runs, math.inf)
    failed = np.zeros(runs)
    while not done.all():
        gap = rng.geometric(p_true, size=runs).astype(float)  # requests up to and including the next failure
        llr_here = k * b.step_bad + (n - k) * b.step_good
        to_lower = np.maximum(np.ceil((b.lower - llr_here) / b.step_good), 0.0)  # good requests to accept
        accept = ~done & (to_lower <= gap - 1)
        requests = np.where(accept, n + to_lower, requests)
        failed = np.where(accept, k, failed)
        done |= accept
        live = ~done
        n = np.where(live, n + gap, n)
        k = np.where(live, k + 1, k)
        hit = live & (k * b.step_bad + (n - k) * b.step_good >= b.upper)
        requests = np.where(hit, n, requests)
        failed = np.where(hit, k, failed)
        rollback |= hit
        done |= hit
        over = ~done & (n > max_requests)
        failed = np.where(over, k, failed)
        done |= over
    requests = np.where(requests > max_requests, math.inf, requests)
    rollback &= np.isfinite(requests)
    return RequestLevel(rollback=rollback, requests=requests, failed=failed)


def canary_request_times(
    schedule: Schedule, rate: float, requests: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Arrival time of the n-th canary request on the on-time schedule at a constant rate (Poisson)."""
    knots = np.arange(len(schedule.steps) + 1) * schedule.interval
    knots = np.append(knots, schedule.horizon)
    weights = [w / 100.0 for w in schedule.steps] + [schedule.steps[-1] / 100.0]
    cumulative = np.concatenate(([0.0], np.cumsum(rate * np.diff(knots) * np.array(weights))))
    finite = np.isfinite(requests)
    arrivals = np.where(finite, rng.gamma(np.where(finite, np.maximum(requests, 1), 1.0)), math.inf)
    return np.where(arrivals <= cumulative[-1], np.interp(arrivals, cumulative, knots), math.inf)
