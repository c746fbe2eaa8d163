"""A seeded simulator of canary rollouts as Prometheus sees them, vectorised over many runs with numpy.

Per 15 s scrape interval and per run: Poisson requests (constant rate, or diurnal: the rate follows a daily
sine from a random phase per run), split between canary and stable by the weight in force, per-request
errors (the stable at ``p_stable``, the canary ``ratio`` times that), log-normal latencies binned into
Prometheus' default histogram buckets, and monotone counters scraped at the end of each interval.

Nuisances, each off unless a scenario turns it on: a shared outage that adds errors to both versions for a
while; canary counter resets (a pod restart: the increments before the restart in that interval are lost
and the counter starts again from 0); missed scrapes; zero-traffic gaps (no request at all in an interval).

What a judge receives is what a controller could compute: increases between successful scrapes of the raw
counters, with a drop treated as a counter reset (the increase is then the new value), exactly as
Prometheus' ``increase()`` does without extrapolation. A missed scrape gives a window without data, and the
next successful scrape carries both intervals. Windows never overlap. The canary's failed requests actually
served (the harm) are kept separately from what was observed.

Before the rollout, the controller reads the stable's counts over a long window (``history_seconds``):
`history` draws them per run, at the scenario's rate and with the stable's shares divided by
``stable_drift`` (1: the stable fails during the rollout exactly as it did before it; 1.5: its error share
rose by half when the rollout started, a stable that is no longer like its history).

Invariants: the same seed gives the same numbers; the simulator holds no wall clock; weights are fractions
in [0, 1] chosen by the caller for every interval, so methods that hold their weight (Flagger) and methods
that advance on time can share it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

SCRAPE = 15.0
# Prometheus client libraries' default histogram buckets (seconds); +Inf is implied.
BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
DAY = 86_400.0


@dataclass(frozen=True, kw_only=True)
class Outage:
    """Extra failures hitting both versions alike between ``start`` and ``end`` (seconds into the rollout)."""

    start: float
    end: float
    share: float  # probability that a request fails because of the outage


@dataclass(frozen=True, kw_only=True)
class Scenario:
    name: str
    rate: float  # requests per second, both versions together
    p_stable: float = 0.005
    ratio: float = 1.0  # canary error probability / stable error probability
    diurnal: float = 0.0  # amplitude of the daily rate cycle (0: constant traffic)
    outage: Outage | None = None
    reset_prob: float = 0.0  # per interval: a canary pod restarts and its counters reset
    missed_scrape: float = 0.0  # per interval: the scrape at its end is lost
    gap_prob: float = 0.0  # per interval: no traffic at all
    latency_median: float = 0.08
    latency_sigma: float = 0.6
    canary_latency_factor: float = 1.0
    slow_threshold: float = 0.25  # a bucket boundary: requests above it are "slow"
    history_seconds: float = 6 * 3600.0  # stable traffic read before the rollout (0: none)
    stable_drift: float = 1.0  # stable error share during the rollout / in its history

    @property
    def p_canary(self) -> float:
        return min(1.0, self.ratio * self.p_stable)

    @property
    def healthy(self) -> bool:
        return self.ratio <= 1.0 and self.canary_latency_factor <= 1.0


@dataclass(frozen=True, kw_only=True)
class Schedule:
    """The policy's steps (percent), one ``interval`` each, evaluated every ``cadence``."""

    steps: tuple[float, ...] = (10.0, 20.0, 40.0, 60.0, 80.0)
    interval: float = 60.0
    cadence: float = SCRAPE
    max_wait: float = 600.0

    @property
    def nominal(self) -> float:
        """Seconds from the first step to promotion when every step advances on time."""
        return len(self.steps) * self.interval

    @property
    def horizon(self) -> float:
        return self.nominal + self.max_wait

    @property
    def windows(self) -> int:
        return math.ceil(self.horizon / self.cadence)

    def on_time_weight(self, t: float) -> float:
        """Weight (fraction) in force at time t when every step advances on time."""
        index = min(int(t // self.interval), len(self.steps) - 1)
        return self.steps[index] / 100.0


def bucket_probabilities(median: float, sigma: float) -> np.ndarray:
    """Probability of each default bucket (non-cumulative, +Inf last) for a log-normal latency."""
    edges = np.array(BUCKETS)
    z = (np.log(edges) - math.log(median)) / sigma
    cdf = 0.5 * (1.0 + np.array([math.erf(v / math.sqrt(2)) for v in z]))
    return np.diff(np.concatenate(([0.0], cdf, [1.0])))


def slow_probability(median: float, sigma: float, threshold: float) -> float:
    """P(latency > threshold) for a log-normal latency."""
    return 0.5 * math.erfc((math.log(threshold) - math.log(median)) / (sigma * math.sqrt(2)))


@dataclass(frozen=True, kw_only=True)
class History:
    """The stable's counts over ``history_seconds`` before the rollout, per run."""

    seconds: float
    total: np.ndarray
    bad: np.ndarray
    slow: np.ndarray


def history(scenario: Scenario, runs: int, rng: np.random.Generator) -> History:
    """Draw each run's pre-rollout stable counts (zero counts when the scenario has no history)."""
    s = scenario
    total = rng.poisson(s.rate * s.history_seconds, runs)
    bad = rng.binomial(total, min(s.p_stable / s.stable_drift, 1.0))
    slow = rng.binomial(total, slow_probability(s.latency_median, s.latency_sigma, s.slow_threshold))
    return History(
        seconds=s.history_seconds, total=total.astype(float), bad=bad.astype(float), slow=slow.astype(float)
    )


@dataclass(kw_only=True)
class Window:
    """One interval for every run: observed increases (float arrays) and the harm actually served."""

    canary_total: np.ndarray
    canary_bad: np.ndarray
    canary_slow: np.ndarray
    stable_total: np.ndarray
    stable_bad: np.ndarray
    stable_slow: np.ndarray
    served_canary_bad: np.ndarray  # failed canary requests served in the interval (truth, not observed)
    observed: np.ndarray  # bool: the scrape succeeded, the window has data


@dataclass(kw_only=True)
class _Counters:
    total: np.ndarray
    bad: np.ndarray
    fast: np.ndarray  # the le=slow_threshold bucket (cumulative)

    @classmethod
    def zeros(cls, runs: int) -> _Counters:
        return cls(total=np.zeros(runs), bad=np.zeros(runs), fast=np.zeros(runs))

    def copy(self) -> _Counters:
        return _Counters(total=self.total.copy(), bad=self.bad.copy(), fast=self.fast.copy())


def increase(previous: np.ndarray, current: np.ndarray) -> np.ndarray:
    """Counter increase between two scrapes; a drop means the counter was reset, so the increase is the new
    value (what Prometheus' ``increase()`` does)."""
    return np.where(current < previous, current, current - previous)


@dataclass
class Traffic:
    """The traffic of ``runs`` independent rollouts of one scenario, one interval per `window` call."""

    scenario: Scenario
    runs: int
    rng: np.random.Generator
    k: int = 0
    phase: np.ndarray = field(init=False)
    raw_canary: _Counters = field(init=False)
    raw_stable: _Counters = field(init=False)
    seen_canary: _Counters = field(init=False)
    seen_stable: _Counters = field(init=False)

    def __post_init__(self) -> None:
        self.phase = self.rng.uniform(0.0, DAY, self.runs)
        self.raw_canary = _Counters.zeros(self.runs)
        self.raw_stable = _Counters.zeros(self.runs)
        self.seen_canary = _Counters.zeros(self.runs)
        self.seen_stable = _Counters.zeros(self.runs)
        s = self.scenario
        self._buckets_stable = bucket_probabilities(s.latency_median, s.latency_sigma)
        self._buckets_canary = bucket_probabilities(
            s.latency_median * s.canary_latency_factor, s.latency_sigma
        )
        self._fast_buckets = sum(1 for b in BUCKETS if b <= s.slow_threshold)

    def error_probabilities(self, t: float) -> tuple[float, float]:
        """(canary, stable) probability that a request fails at time t."""
        s = self.scenario
        pc, ps = s.p_canary, s.p_stable
        if s.outage is not None and s.outage.start <= t < s.outage.end:
            pc = 1 - (1 - pc) * (1 - s.outage.share)
            ps = 1 - (1 - ps) * (1 - s.outage.share)
        return pc, ps

    def window(self, weights: np.ndarray) -> Window:
        """Simulate the next interval with each run's canary weight (fraction) and scrape at its end."""
        s, rng, runs = self.scenario, self.rng, self.runs
        t_mid = (self.k + 0.5) * SCRAPE
        rate = np.full(runs, s.rate)
        if s.diurnal:
            rate = rate * (1 + s.diurnal * np.sin(2 * math.pi * (t_mid + self.phase) / DAY))
        total = rng.poisson(rate * SCRAPE)
        if s.gap_prob:
            total = np.where(rng.random(runs) < s.gap_prob, 0, total)
        n_c = rng.binomial(total, np.clip(weights, 0.0, 1.0))
        n_s = total - n_c
        pc, ps = self.error_probabilities(t_mid)
        x_c = rng.binomial(n_c, pc)
        x_s = rng.binomial(n_s, ps)
        fast_c = rng.multinomial(n_c, self._buckets_canary)[:, : self._fast_buckets].sum(axis=1)
        fast_s = rng.multinomial(n_s, self._buckets_stable)[:, : self._fast_buckets].sum(axis=1)

        # Canary increments that survive a pod restart in this interval (those after it).
        kept_total, kept_bad, kept_fast = n_c, x_c, fast_c
        reset = rng.random(runs) < s.reset_prob if s.reset_prob else np.zeros(runs, dtype=bool)
        if reset.any():
            after = rng.uniform(0.0, 1.0, runs)
            kept_total = np.where(reset, rng.binomial(n_c, after), n_c)
            kept_bad = np.where(reset, rng.hypergeometric(x_c, n_c - x_c, kept_total), x_c)
            kept_fast = np.where(reset, rng.hypergeometric(fast_c, n_c - fast_c, kept_total), fast_c)
        rc = self.raw_canary
        rc.total = np.where(reset, kept_total, rc.total + n_c).astype(float)
        rc.bad = np.where(reset, kept_bad, rc.bad + x_c).astype(float)
        rc.fast = np.where(reset, kept_fast, rc.fast + fast_c).astype(float)
        rs = self.raw_stable
        rs.total, rs.bad, rs.fast = rs.total + n_s, rs.bad + x_s, rs.fast + fast_s

        observed = rng.random(runs) >= s.missed_scrape if s.missed_scrape else np.ones(runs, dtype=bool)
        seen_c, seen_s = self.seen_canary, self.seen_stable
        inc = {
            "canary_total": increase(seen_c.total, rc.total),
            "canary_bad": increase(seen_c.bad, rc.bad),
            "canary_fast": increase(seen_c.fast, rc.fast),
            "stable_total": increase(seen_s.total, rs.total),
            "stable_bad": increase(seen_s.bad, rs.bad),
            "stable_fast": increase(seen_s.fast, rs.fast),
        }
        inc = {k: np.where(observed, v, 0.0) for k, v in inc.items()}
        for seen, raw in ((seen_c, rc), (seen_s, rs)):
            seen.total = np.where(observed, raw.total, seen.total)
            seen.bad = np.where(observed, raw.bad, seen.bad)
            seen.fast = np.where(observed, raw.fast, seen.fast)
        self.k += 1
        return Window(
            canary_total=inc["canary_total"],
            canary_bad=inc["canary_bad"],
            canary_slow=np.maximum(inc["canary_total"] - inc["canary_fast"], 0.0),
            stable_total=inc["stable_total"],
            stable_bad=inc["stable_bad"],
            stable_slow=np.maximum(inc["stable_total"] - inc["stable_fast"], 0.0),
            served_canary_bad=x_c.astype(float),
            observed=observed,
        )
