"""How often a lab run ends with the wrong outcome: the lab simulated many times with the controller's own
judge and state machine, so the lab's policy, rates and durations can be chosen to make that rare.

``python -m songbird.lab.odds --scenario bad-errors --rate 120 --runs 20000`` (see ``--help``) prints, for one
scenario and lab policy, how often each outcome came and the margins behind them; `lab.scenarios` records
the figures its numbers were chosen with.

What is simulated, per run (times in seconds from the policy being applied):
- the load as `lab.load` sends it: ``rate`` requests per second at a steady pace, every 20th carrying
  ``Region: always``; nginx sends a plain request to v2 with probability weight/100 and a header request
  to v2 whenever the canary route answers the header, each change of routing taking effect 0.3 to 1 s
  after the controller decided it (the data plane's sync, then a graceful reload);
- each answer is a 5xx with the version's error rate and slower than the latency bound (0.25 s) with the
  version's share of slow requests (`slow_share` of the scenario's log-normal latency);
- nginx's counters per (version, status) and its duration histogram, created at their first request, as
  `lab.lua_source` exports them, scraped every second at a random phase;
- Prometheus' ``increase()`` over each evaluation window as Prometheus 2.42 computes it (first to last
  sample in the range, extrapolated towards the range's edges), so window counts are real-valued and a
  series' first request is invisible, as in a real run;
- the controller: a tick every second (``--resync=1``) at a random phase; each tick is `analysis.step.step`
  (the controller's own), judging the observed counts with `analysis.evaluate.judge` when an evaluation is
  due; new canary replicas are ready one tick after they were asked for.

What is not: the controller's and Prometheus' own hiccups (a slow query delays one evaluation), and latency
outliers caused by the machine rather than by the backend's profile; real runs are the check on those.

Outcome of a run: ``promoted`` (the analysis passed at the last step), ``rolled back`` (with the weight in
force then, and the reason's metric), or ``timed out`` (no outcome within ``timeout``: a pause after
``maxWait``, for instance).
"""

from __future__ import annotations

import argparse
import functools
import math
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from songbird.analysis.decision import Facts, tick_tolerance
from songbird.analysis.evaluate import evidence_window, judge
from songbird.analysis.observe import MetricObservation
from songbird.analysis.state import Evidence, Phase, RolloutState
from songbird.analysis.step import step
from songbird.analysis.verdict import MetricResult, Verdict, WindowCounts
from songbird.config.loader import load_policy_yaml
from songbird.config.policy import Policy
from songbird.lab.backend import BackendProfile
from songbird.lab.scenarios import STABLE_PROFILE, LabPolicy, Scenario, canary_profile

SCRAPE = 1.0  # Prometheus' scrape interval in the lab
BIN = 0.1  # seconds of traffic per simulated bin
SLOW_BOUND = 0.25  # the latency metric's bucket bound (the policy's latency max)
HEADER_EVERY = 20


def slow_share(profile: BackendProfile, bound: float = SLOW_BOUND) -> float:
    """Share of answers slower than ``bound`` for the profile's log-normal latency."""
    if profile.latency_sigma == 0:
        return 1.0 if profile.latency_median > bound else 0.0
    z = (math.log(bound) - math.log(profile.latency_median)) / profile.latency_sigma
    return 0.5 * math.erfc(z / math.sqrt(2))


@dataclass(frozen=True, kw_only=True)
class Result:
    outcome: str  # "promoted", "rolled back" or "timed out"
    at: float  # seconds from the policy to the outcome (or to the timeout)
    first_step: float  # when the controller started step 1
    metric: str  # the metric a rollback's reason names ("" otherwise)
    promoted_at: float | None  # when the analysis passed at the last step (also in shadow runs)
    # Every evaluation: (seconds from the policy, controller weight, margin), the margin being how far the
    # rollback evidence was from its bound (ln E - ln bound, the largest over the rules; >= 0 rolls back).
    # ``promote``: how far the promotion evidence was from its bound (the smallest over the metrics'
    # comparisons and ceilings) and whether every metric passed.
    evaluations: list[tuple[float, float, float, float, bool]] = field(default_factory=list)
    advanced: dict[float, float] = field(default_factory=dict)  # weight -> when the controller set it


@dataclass
class _Series:
    """One counter as Prometheus scrapes it: absent until its first increment."""

    value: float = 0.0
    samples: list[tuple[float, float]] = field(default_factory=list)


def prometheus_increase(samples: Sequence[tuple[float, float]], start: float, end: float) -> float:
    """``increase(series[end - start])`` at ``end`` as Prometheus 2.42 computes it (extrapolatedRate)."""
    inside = [(t, v) for t, v in samples if start < t <= end]
    if len(inside) < 2:
        return 0.0
    (t0, v0), (t1, v1) = inside[0], inside[-1]
    delta = v1 - v0  # counters here never reset
    sampled = t1 - t0
    to_start, to_end = t0 - start, end - t1
    average = sampled / (len(inside) - 1)
    if delta > 0 and v0 >= 0:
        to_zero = sampled * (v0 / delta)
        to_start = min(to_start, to_zero)
    threshold = average * 1.1
    span = sampled
    span += to_start if to_start < threshold else average / 2
    span += to_end if to_end < threshold else average / 2
    return delta * span / sampled


class _Run:
    def __init__(
        self, rng: np.random.Generator, policy: Policy, scenario: Scenario, rate: float, timeout: float
    ) -> None:
        self.rng = rng
        self.policy = policy
        self.rate = rate
        self.timeout = timeout
        canary = canary_profile(scenario)
        self.p_bad = {"v1": STABLE_PROFILE.error_rate, "v2": canary.error_rate}
        self.p_slow = {"v1": slow_share(STABLE_PROFILE), "v2": slow_share(canary)}
        # (version, metric, status) -> series; metric "r" requests, "inf" / "fast" histogram buckets.
        self.series: dict[tuple[str, str, int], _Series] = {}
        self.generated = 0.0  # traffic generated up to here
        self.scrape_phase = float(rng.uniform(0, SCRAPE))
        self.next_scrape = self.scrape_phase
        # nginx's routing over time: (from, weight %, header routed to v2)
        self.routing: list[tuple[float, float, bool]] = [(0.0, 0.0, False)]
        # What the controller's judge said: (seconds from the policy, weight, margins...; see `Result`).
        self.evaluations: list[tuple[float, float, float, float, bool]] = []
        self.rollback: tuple[float, str] | None = None  # the first decisive FAIL: (when, metric)

    # -- the data plane --------------------------------------------------------------------------------

    def route(self, at: float, weight: float, header: bool) -> None:
        self.routing.append((at + float(self.rng.uniform(0.3, 1.0)), weight, header))

    def _routing_at(self, t: float) -> tuple[float, bool]:
        current = self.routing[0]
        for r in self.routing:
            if r[0] <= t:
                current = r
        return current[1], current[2]

    def _count(self, version: str, status: int, n: int, slow: int) -> None:
        if n <= 0:
            return
        for metric, k in (("r", n), ("inf", n), ("fast", n - slow)):
            self.series.setdefault((version, metric, status), _Series()).value += k

    def _serve(self, version: str, n: int) -> None:
        if n <= 0:
            return
        bad = int(self.rng.binomial(n, self.p_bad[version]))
        for status, k in ((500, bad), (200, n - bad)):
            slow = int(self.rng.binomial(k, self.p_slow[version])) if k else 0
            self._count(version, status, k, slow)

    def advance_to(self, now: float) -> None:
        """Generate traffic and scrapes up to ``now``."""
        while self.generated + BIN <= now + 1e-9:
            a, b = self.generated, self.generated + BIN
            sent = math.floor(b * self.rate) - math.floor(a * self.rate)
            header = math.floor(b * self.rate / HEADER_EVERY) - math.floor(a * self.rate / HEADER_EVERY)
            plain = sent - header
            weight, header_v2 = self._routing_at(a)
            to_v2 = int(self.rng.binomial(plain, weight / 100.0)) if weight > 0 else 0
            h_v2 = header if header_v2 else 0
            self._serve("v2", to_v2 + h_v2)
            self._serve("v1", plain - to_v2 + header - h_v2)
            self.generated = b
            while self.next_scrape <= self.generated + 1e-9:
                for s in self.series.values():
                    s.samples.append((self.next_scrape, s.value))
                self.next_scrape += SCRAPE

    def increase(
        self, version: str, metric: str, statuses: tuple[int, ...], start: float, end: float
    ) -> float:
        total = 0.0
        for status in statuses:
            s = self.series.get((version, metric, status))
            if s is not None:
                total += prometheus_increase(s.samples, start, end)
        return max(total, 0.0)

    def observe(self, now: float, window: float) -> tuple[MetricObservation, ...]:
        start = now - window
        both = (200, 500)
        out = []
        for name in [m.name for m in self.policy.analysis.metrics]:
            if name == "error-rate":
                counts = WindowCounts(
                    canary_total=self.increase("v2", "r", both, start, now),
                    canary_bad=self.increase("v2", "r", (500,), start, now),
                    stable_total=self.increase("v1", "r", both, start, now),
                    stable_bad=self.increase("v1", "r", (500,), start, now),
                )
            else:
                n_c, n_s = (
                    self.increase("v2", "inf", both, start, now),
                    self.increase("v1", "inf", both, start, now),
                )
                x_c = max(0.0, n_c - self.increase("v2", "fast", both, start, now))
                x_s = max(0.0, n_s - self.increase("v1", "fast", both, start, now))
                counts = WindowCounts(
                    canary_total=n_c, canary_bad=min(x_c, n_c), stable_total=n_s, stable_bad=min(x_s, n_s)
                )
            out.append(MetricObservation(name=name, counts=counts, at=now, window=window))
        return tuple(out)

    # -- the controller --------------------------------------------------------------------------------

    def _judge(
        self, state: RolloutState, *, now: float, shadow: bool
    ) -> tuple[tuple[MetricResult, ...], Evidence]:
        """The controller's judge on the counts Prometheus would give at ``now``; keeps each evaluation's
        margins and the first decisive FAIL. ``shadow``: FAILs (and PASSes at the last step) are handed
        to the state machine as INCONCLUSIVE, so it neither rolls back nor promotes."""
        policy = self.policy
        last = state.step == len(policy.steps) - 1
        window = evidence_window(policy, state, now)
        results, evidence = judge(policy, state, self.observe(now, window), ())
        passed = all(r.verdict is Verdict.PASS for r in results)
        self.evaluations.append((now, state.weight, margin(results), promotion_margin(results), passed))
        failed = [r for r in results if r.verdict is Verdict.FAIL and r.decisive]
        if failed and self.rollback is None:
            self.rollback = (now, failed[0].name)
        if shadow:
            results = tuple(
                replace(r, verdict=Verdict.INCONCLUSIVE, decisive=False)
                if r.verdict is Verdict.FAIL or (r.verdict is Verdict.PASS and last)
                else r
                for r in results
            )
        return results, evidence

    def run(self, *, shadow: bool) -> Result:
        """One rollout. ``shadow``: a rollback verdict is recorded but not acted on, so the run goes on to
        show how the evidence would have continued (the first rollback verdict is the real run's)."""
        policy = self.policy
        state = RolloutState()
        replicas = ready = 0
        now = float(self.rng.uniform(0, 1))
        first: float | None = None
        advanced: dict[float, float] = {}
        while now <= self.timeout:
            self.advance_to(now)
            facts = Facts(
                canary="nginx-v2",
                stable="nginx-v1",
                canary_service="nginx-v2",
                stable_service="nginx-v1",
                revision="r1",
                stable_replicas=3,
                canary_replicas=replicas,
                canary_ready=ready,
            )

            # The facts stay those of the tick's start: pods asked for now are ready at the next tick.
            verdicts = functools.partial(self._judge, now=now, shadow=shadow)
            for d in step(policy, state, facts, now, verdicts=verdicts):
                if d.target is not None:
                    t = d.target.traffic
                    self.route(now, t.weight, t.match_routes and t.canary_service is not None)
                    replicas = max(replicas, d.target.canary_replicas)
                state = d.state
                if state.phase is Phase.PROGRESSING and state.weight not in advanced:
                    advanced[state.weight] = now
                    first = now if first is None else first
                if (
                    state.phase is Phase.PROMOTING
                    or state.phase.finished
                    or state.phase is Phase.ROLLING_BACK
                ):
                    break  # the run's outcome: what the controller does next is not simulated
            if state.phase is Phase.PROMOTING:
                return Result(
                    outcome="promoted" if self.rollback is None else "rolled back",
                    at=now if self.rollback is None else self.rollback[0],
                    first_step=first or 0.0,
                    metric="" if self.rollback is None else self.rollback[1],
                    promoted_at=now,
                    evaluations=self.evaluations,
                    advanced=advanced,
                )
            if state.phase is Phase.ROLLING_BACK:
                break
            ready = replicas  # pods asked for at this tick are ready at the next
            now += 1.0
        return Result(
            outcome="timed out" if self.rollback is None else "rolled back",
            at=self.timeout if self.rollback is None else self.rollback[0],
            first_step=first or 0.0,
            metric="" if self.rollback is None else self.rollback[1],
            promoted_at=None,
            evaluations=self.evaluations,
            advanced=advanced,
        )


def promotion_margin(results: Sequence[MetricResult]) -> float:
    """ln E_good - ln(1/beta), the smallest over the metrics' comparisons and ceilings (>= 0: certified)."""
    out = math.inf
    for r in results:
        f = r.figures
        if f.e_good is None or f.threshold_good is None:
            continue
        bound = math.log(f.threshold_good)
        if not f.sparse:
            out = min(out, math.log(max(f.e_good, 1e-300)) - bound)
        if f.e_ceiling_good is not None:
            out = min(out, math.log(max(f.e_ceiling_good, 1e-300)) - bound)
    return out


def margin(results: Sequence[MetricResult]) -> float:
    """How far one evaluation's rollback evidence was from rolling back (ln E - ln bound; >= 0: rollback):
    the larger of the mean rule (mean E_bad against 1/alpha) and each metric's ceiling (against K/alpha)."""
    compared = [r.figures for r in results if r.figures.e_bad is not None]
    alpha = compared[0].alpha if compared else None
    if alpha is None:
        return -math.inf
    out = math.log(statistics.fmean(f.e_bad for f in compared if f.e_bad is not None)) - math.log(1 / alpha)
    for f in compared:
        if f.e_ceiling_bad is not None and f.threshold_bad is not None:
            out = max(out, math.log(f.e_ceiling_bad) - math.log(f.threshold_bad))
    return out


def simulate(
    scenario: Scenario,
    lab_policy: LabPolicy,
    *,
    rate: float,
    runs: int,
    seed: int = 1,
    timeout: float = 240.0,
) -> list[Result]:
    """``runs`` shadow runs (`_Run.run`) of one scenario, seeded."""
    policy = load_policy_yaml(lab_policy.text("http://127.0.0.1:9090"))
    rng = np.random.default_rng(seed)
    return [_Run(rng, policy, scenario, rate, timeout).run(shadow=True) for _ in range(runs)]


def promoted_at(result: Result, policy: Policy) -> float | None:
    """When the real controller would have promoted: the first tick at or after the last step's interval
    at which the latest evaluation of that step passed every metric."""
    start = result.advanced.get(policy.steps[-1])
    if start is None:
        return None
    due = start + policy.interval - tick_tolerance(policy.analysis.cadence)
    latest: tuple[float, float, float, float, bool] | None = None
    for e in result.evaluations:
        if e[0] < start:
            continue
        if latest is not None and latest[4] and e[0] >= due:
            return max(due_tick(start, due), latest[0])
        latest = e
        if e[4] and e[0] >= due:
            return e[0]
    return None


def due_tick(start: float, due: float) -> float:
    return start + math.ceil(due - start - 1e-9)


def normal_tail(values: Sequence[float]) -> tuple[float, float, float]:
    """(mean, sd, P(X >= 0)) of a normal fitted to ``values``; -inf (no evaluation at all) counts as never."""
    finite = [v for v in values if math.isfinite(v)]
    if len(finite) < len(values) / 2:
        return -math.inf, 0.0, 0.0
    values = finite
    mean, sd = statistics.fmean(values), statistics.pstdev(values)
    p = 0.5 * math.erfc(-mean / (sd * math.sqrt(2))) if sd > 0 else float(mean >= 0)
    return mean, sd, p


def exponential_tail(values: Sequence[float], levels: Sequence[float]) -> tuple[float, float]:
    """Fit P(X >= x) = A exp(-lambda x) through the empirical survival at ``levels``.

    Returns (lambda, P(X >= 0))."""
    pts = [(x, sum(v >= x for v in values) / len(values)) for x in levels]
    pts = [(x, p) for x, p in pts if p > 0]
    if len(pts) < 2:
        return math.nan, math.nan
    xs, ys = np.array([x for x, _ in pts]), np.log([p for _, p in pts])
    slope, intercept = np.polyfit(xs, ys, 1)
    return float(-slope), float(math.exp(intercept))


def report(
    scenario: Scenario,
    lab_policy: LabPolicy,
    results: Sequence[Result],
    *,
    rate: float,
    timeout: float,
    need: float,
) -> str:
    """The figures `lab.scenarios` quotes: outcomes, their times, and estimated chances of each failure.

    ``need``: seconds a rollback must leave between step 1 and the decision for the measurements of a
    bad scenario to have their minimum counts."""
    policy = load_policy_yaml(lab_policy.text("http://127.0.0.1:9090"))
    n = len(results)
    lines = [f"{scenario.value} at {rate:g} requests/s, {n} runs, policy {lab_policy}"]
    if scenario is Scenario.HEALTHY:
        worst = [max((e[2] for e in r.evaluations), default=-math.inf) for r in results]
        rolled = sum(m >= 0 for m in worst)
        lam, p0 = exponential_tail(worst, [-6.0, -5.0, -4.0, -3.0, -2.0])
        lines.append(
            f"  false rollback: {rolled} of {n}; the highest rollback margin (ln E - ln bound) over a run "
            f"exceeds -4 in {sum(m >= -4 for m in worst)} and -2 in {sum(m >= -2 for m in worst)} runs; "
            f"exponential tail: lambda {lam:.2f}, P(>= 0) ~ {p0:.1e}"
        )
        times = [promoted_at(r, policy) for r in results]
        late = [t for t in times if t is None or t > timeout]
        done = sorted(t for t in times if t is not None)
        q = [done[min(len(done) - 1, int(p * len(done)))] for p in (0.5, 0.99)] if done else [math.nan] * 2
        at_deadline = []
        for r in results:
            before = [e for e in r.evaluations if e[0] <= timeout - 1]
            at_deadline.append(before[-1][3] if before else -math.inf)
        mean, sd, p = normal_tail([-m for m in at_deadline])
        lines.append(
            f"  promoted: median {q[0]:.0f} s, 99% {q[1]:.0f} s, max {done[-1] if done else math.nan:.0f} s "
            f"after the policy; not within {timeout:g} s: {len(late)} of {n}; promotion margin at "
            f"{timeout:g} s: mean {-mean:.1f} sd {sd:.1f}, P(< 0) ~ {p:.1e}"
        )
        return "\n".join(lines)
    metric = "error-rate" if scenario is Scenario.BAD_ERRORS else "latency"
    wrong = sum(1 for r in results if r.outcome != "rolled back" or r.metric != metric)
    taus = sorted(r.at - r.first_step for r in results if r.outcome == "rolled back")
    lines.append(
        f"  rolled back by {metric}: {n - wrong} of {n}; decision after step 1 started (s): "
        f"min {taus[0]:.0f}, median {taus[len(taus) // 2]:.0f}, max {taus[-1]:.0f}"
    )
    early = [
        max((e[2] for e in r.evaluations if e[0] - r.first_step < need), default=-math.inf) for r in results
    ]
    mean, sd, p = normal_tail(early)
    lines.append(
        f"  decision sooner than {need:g} s into step 1: {sum(t < need for t in taus)} of {n}; highest "
        f"rollback margin before then: mean {mean:.1f} sd {sd:.1f}, P(>= 0) ~ {p:.1e}"
    )
    if scenario is Scenario.BAD_ERRORS:
        slow, margins = 0, []
        for r in results:
            deadline = r.advanced.get(40.0, math.inf)
            if r.outcome != "rolled back" or r.at > deadline:
                slow += 1
            margins.append(max((e[2] for e in r.evaluations if e[0] <= deadline), default=-math.inf))
        mean, sd, p = normal_tail([-m for m in margins])
        lines.append(
            f"  not rolled back before 40%: {slow} of {n}; best rollback margin before the step to 40%: "
            f"mean {-mean:.1f} sd {sd:.1f}, P(< 0) ~ {p:.1e}"
        )
    else:
        margins = [max((e[2] for e in r.evaluations if e[0] <= timeout), default=-math.inf) for r in results]
        mean, sd, p = normal_tail([-m for m in margins])
        lines.append(
            f"  best rollback margin within {timeout:g} s: mean {-mean:.1f} sd {sd:.1f}, P(< 0) ~ {p:.1e}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m songbird.lab.odds", description=__doc__.split("\n\n")[0])
    p.add_argument("--scenario", required=True, choices=[s.value for s in Scenario])
    p.add_argument("--rate", type=float, required=True)
    p.add_argument("--runs", type=int, default=2000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--timeout", type=float, default=240.0, help="the lab's timeout (the tests use 240)")
    p.add_argument(
        "--need", type=float, default=8.0, help="seconds a rollback must leave after step 1 starts"
    )
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="a LabPolicy field")
    args = p.parse_args(argv)
    policy = LabPolicy()
    for item in args.set:
        name, _, value = item.partition("=")
        current = getattr(policy, name)
        policy = replace(policy, **{name: type(current)(value)})
    scenario = Scenario(args.scenario)
    results = simulate(scenario, policy, rate=args.rate, runs=args.runs, seed=args.seed, timeout=args.timeout)
    print(report(scenario, policy, results, rate=args.rate, timeout=args.timeout, need=args.need))
    return 0


if __name__ == "__main__":
    sys.exit(main())
