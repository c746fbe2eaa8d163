"""The benchmark's simulator and rule emulations (bench.simulate, bench.methods).

Covers: simulated counts have the configured request rate, canary share, error rates and slow-request
share; the histogram buckets follow the log-normal latency; a shared outage raises both versions' errors
while it lasts; counter resets are read as Prometheus reads them (a drop is a reset, never a negative
increase); a missed scrape gives a window without data and the next window carries the increase; zero-
traffic gaps give empty windows; the same seed gives the same numbers; the Flagger and Argo emulations
reproduce the reference table (50 req/s, steps 10% to 50% a minute): Flagger rolls back a 20%-error canary
at 360 s after about 360 failed requests, catches a 1%-error canary less than half the time and rolls back
a few percent of healthy 0.8% canaries; Argo with failureLimit 0 rolls back most healthy 0.8% canaries;
the SPRT oracles stop early and rarely err; the per-request SPRT serves about the failed requests
Wald's formula predicts; the pre-rollout history has the scenario's rate and shares; and Songbird's runs go
through the controller's judge and state machine (phases, reasons, weights are the state machine's own);
the fixed-horizon bound the report cites matches a hand computation, and so does the cost of the policy's
tolerance and metric count against the 15 s oracle.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from songbird.analysis.state import Phase
from songbird.bench import methods as mt
from songbird.bench.decision_quality import canary_requests_by, fixed_horizon_power, simulate, tolerance_cost
from songbird.bench.simulate import (
    BUCKETS,
    Outage,
    Scenario,
    Schedule,
    Traffic,
    bucket_probabilities,
    history,
    increase,
    slow_probability,
)

REFERENCE = Schedule(steps=(10.0, 20.0, 30.0, 40.0, 50.0))  # the reference table's schedule


def windows(scenario: Scenario, *, runs: int, count: int, weight: float, seed: int = 3) -> list:
    traffic = Traffic(scenario, runs, np.random.default_rng(seed))
    return [traffic.window(np.full(runs, weight)) for _ in range(count)]


def test_counts_have_the_configured_rates() -> None:
    scenario = Scenario(name="s", rate=50.0, p_stable=0.01, ratio=3.0)
    ws = windows(scenario, runs=2000, count=4, weight=0.2)
    n_c = sum(w.canary_total.sum() for w in ws)
    n_s = sum(w.stable_total.sum() for w in ws)
    x_c = sum(w.canary_bad.sum() for w in ws)
    x_s = sum(w.stable_bad.sum() for w in ws)
    slow = sum(w.canary_slow.sum() + w.stable_slow.sum() for w in ws)
    n = n_c + n_s
    assert n / (2000 * 4 * 15) == pytest.approx(50.0, rel=0.01)
    assert n_c / n == pytest.approx(0.2, abs=0.002)
    assert x_s / n_s == pytest.approx(0.01, rel=0.03)
    assert x_c / n_c == pytest.approx(0.03, rel=0.03)
    assert slow / n == pytest.approx(slow_probability(0.08, 0.6, 0.25), rel=0.02)


def test_buckets_follow_the_log_normal_latency() -> None:
    probs = bucket_probabilities(0.08, 0.6)
    assert len(probs) == len(BUCKETS) + 1 and probs.sum() == pytest.approx(1.0)
    below_100ms = probs[: BUCKETS.index(0.1) + 1].sum()
    assert below_100ms == pytest.approx(0.5 * (1 + math.erf(math.log(0.1 / 0.08) / (0.6 * math.sqrt(2)))))


def test_a_shared_outage_hits_both_versions_while_it_lasts() -> None:
    scenario = Scenario(name="s", rate=100.0, outage=Outage(start=15.0, end=30.0, share=0.3))
    before, during, after = windows(scenario, runs=500, count=3, weight=0.5)
    for w, expected in ((before, 0.005), (during, 1 - 0.995 * 0.7), (after, 0.005)):
        assert w.canary_bad.sum() / w.canary_total.sum() == pytest.approx(expected, rel=0.15)
        assert w.stable_bad.sum() / w.stable_total.sum() == pytest.approx(expected, rel=0.15)


def test_increase_treats_a_drop_as_a_reset() -> None:
    previous = np.array([10.0, 10.0, 0.0])
    current = np.array([15.0, 4.0, 3.0])
    assert increase(previous, current).tolist() == [5.0, 4.0, 3.0]


def test_counter_resets_lose_only_the_increments_before_the_restart() -> None:
    # 10% of windows restart a canary pod at a uniform moment: half of such a window's canary traffic is
    # lost, so about 5% overall; a restart whose new value is not below the last scrape goes unseen and
    # loses a little more, exactly as with Prometheus' increase().
    scenario = Scenario(name="s", rate=100.0, p_stable=0.05, reset_prob=0.1)
    ws = windows(scenario, runs=2000, count=8, weight=0.5)
    for w in ws:
        assert (w.canary_total >= 0).all() and (w.canary_bad >= 0).all() and (w.canary_slow >= 0).all()
    later = ws[1:]
    observed = sum(w.canary_total.sum() for w in later)
    served = sum(w.stable_total.sum() for w in later)  # weight 0.5: the stable serves as many
    assert 0.93 <= observed / served <= 0.96
    # without restarts nothing is lost
    calm = windows(Scenario(name="s", rate=100.0), runs=2000, count=8, weight=0.5)
    ratio = sum(w.canary_total.sum() for w in calm) / sum(w.stable_total.sum() for w in calm)
    assert ratio == pytest.approx(1.0, abs=0.01)


def test_a_missed_scrape_carries_its_increase_to_the_next_window() -> None:
    scenario = Scenario(name="s", rate=20.0, missed_scrape=0.4)
    traffic = Traffic(scenario, 300, np.random.default_rng(5))
    ws = [traffic.window(np.full(300, 0.5)) for _ in range(10)]
    missed = np.array([~w.observed for w in ws])
    assert missed.mean() == pytest.approx(0.4, abs=0.03)
    for w in ws:
        assert (w.canary_total[~w.observed] == 0).all()
    # nothing is lost: what was observed adds up to the counter at the last successful scrape
    assert np.allclose(sum(w.canary_total for w in ws), traffic.seen_canary.total)
    assert np.allclose(sum(w.stable_bad for w in ws), traffic.seen_stable.bad)


def test_zero_traffic_gaps_give_empty_windows() -> None:
    (w,) = windows(Scenario(name="s", rate=500.0, gap_prob=1.0), runs=100, count=1, weight=0.5)
    assert w.canary_total.sum() == 0 and w.stable_total.sum() == 0 and w.observed.all()


def test_the_same_seed_gives_the_same_numbers() -> None:
    scenario = Scenario(name="s", rate=10.0, diurnal=0.5, reset_prob=0.1, missed_scrape=0.1, gap_prob=0.1)
    a = windows(scenario, runs=50, count=5, weight=0.3, seed=11)
    b = windows(scenario, runs=50, count=5, weight=0.3, seed=11)
    assert all(
        (x.canary_bad == y.canary_bad).all() and (x.stable_total == y.stable_total).all()
        for x, y in zip(a, b, strict=True)
    )


def _rollback(method: mt.Method, scenario: Scenario) -> tuple[float, float, float]:
    failed = simulate(method, scenario, REFERENCE, (1, 2))
    rolled = method.outcome == mt.ROLLBACK
    if not rolled.any():
        return 0.0, math.nan, math.nan
    return float(rolled.mean()), float(np.median(method.time[rolled])), float(failed[rolled].mean())


def scenario(p: float, ratio: float = 1.0) -> Scenario:
    return Scenario(name="s", rate=50.0, p_stable=p, ratio=ratio)


def test_flagger_emulation_reproduces_the_reference_table() -> None:
    rate, when, failed = _rollback(mt.Flagger(2000, REFERENCE), scenario(0.005, 40))  # 20% errors
    assert rate == 1.0 and when == 360.0 and failed == pytest.approx(360, rel=0.05)
    rate, when, failed = _rollback(mt.Flagger(2000, REFERENCE), scenario(0.005, 4))  # 2% errors
    assert rate == 1.0 and when == 360.0 and failed == pytest.approx(50, rel=0.1)
    rate, _, _ = _rollback(mt.Flagger(2000, REFERENCE), scenario(0.005, 2))  # 1% errors: caught 44%
    assert 0.35 <= rate <= 0.55
    healthy_05, _, _ = _rollback(mt.Flagger(2000, REFERENCE), scenario(0.005))
    healthy_08, _, _ = _rollback(mt.Flagger(2000, REFERENCE), scenario(0.008))
    assert healthy_05 <= 0.005 and 0.02 <= healthy_08 <= 0.1  # reference: 0.01% and 5.4%


def test_argo_emulation_reproduces_the_reference_table() -> None:
    rate, when, failed = _rollback(mt.Argo(2000, REFERENCE, failure_limit=0), scenario(0.005, 40))
    assert rate == 1.0 and when == 60.0 and failed == pytest.approx(60, rel=0.1)
    rate, when, failed = _rollback(mt.Argo(2000, REFERENCE, failure_limit=3), scenario(0.005, 40))
    assert rate == 1.0 and when == 240.0 and failed == pytest.approx(600, rel=0.05)
    healthy_08, _, _ = _rollback(mt.Argo(2000, REFERENCE, failure_limit=0), scenario(0.008))
    assert 0.65 <= healthy_08 <= 0.85  # reference: 76%
    limit3_08, _, _ = _rollback(mt.Argo(2000, REFERENCE, failure_limit=3), scenario(0.008))
    assert limit3_08 <= 0.04  # reference: 1.4%


def test_the_sprt_oracles_are_fast_and_rarely_wrong() -> None:
    bad = scenario(0.005, 40)
    rate, when, _ = _rollback(mt.SprtCadence(1000, REFERENCE, bounds=mt.oracle_bounds(bad)), bad)
    assert rate >= 0.99 and when == 15.0  # one window, as in the reference table
    healthy = scenario(0.005)
    rate, _, _ = _rollback(mt.SprtCadence(2000, REFERENCE, bounds=mt.oracle_bounds(healthy)), healthy)
    assert rate <= 0.02
    # per request: failed requests served = p1 E[N] = about 1.6 at 20% errors (Wald; reference: 1.6)
    bounds = mt.oracle_bounds(bad)
    result = mt.sprt_per_request(
        bounds, p_true=0.2, runs=4000, rng=np.random.default_rng(1), max_requests=1e6
    )
    assert result.rollback.mean() >= 0.99
    assert result.failed[result.rollback].mean() == pytest.approx(2.2, abs=0.4)


def test_the_history_has_the_scenario_rate_and_shares() -> None:
    scenario = Scenario(name="s", rate=10.0, p_stable=0.009, stable_drift=1.5, history_seconds=3600.0)
    drawn = history(scenario, 2000, np.random.default_rng(4))
    assert drawn.seconds == 3600.0
    assert drawn.total.mean() == pytest.approx(36_000, rel=0.001)
    assert drawn.bad.sum() / drawn.total.sum() == pytest.approx(0.006, rel=0.01)  # 0.9% / 1.5
    assert drawn.slow.sum() / drawn.total.sum() == pytest.approx(slow_probability(0.08, 0.6, 0.25), rel=0.01)


def test_songbird_runs_through_the_controllers_state_machine() -> None:
    schedule = Schedule()
    healthy = mt.Songbird(20, schedule)
    simulate(healthy, Scenario(name="s", rate=500.0), schedule, (1, 2))
    # every step on time, then promotion: the state machine's own phases and reasons
    assert (healthy.outcome == mt.PROMOTE).all() and (healthy.time == schedule.nominal).all()
    for state in healthy.states:
        assert state.phase is Phase.PROMOTING and state.reason.startswith("promoting: analysis passed at 80%")
        assert [e.weight for e in state.history][-4:] == [80.0] * 4
        assert "history:total" in state.evidence["error-rate"]
    bad = mt.Songbird(20, schedule)
    simulate(bad, Scenario(name="s", rate=500.0, ratio=40.0), schedule, (1, 3))
    assert (bad.outcome == mt.ROLLBACK).all() and (bad.time == 15.0).all()
    for state in bad.states:
        assert state.phase is Phase.ROLLING_BACK and state.reason.startswith(
            "error-rate: 5xx ratio canary/stable"
        )


def test_songbird_weights_follow_the_steps_it_decides() -> None:
    schedule = Schedule()
    method = mt.Songbird(5, schedule)
    traffic = Traffic(Scenario(name="s", rate=50.0), 5, np.random.default_rng(8))
    method.start(history(Scenario(name="s", rate=50.0), 5, np.random.default_rng(9)))
    seen = []
    for _ in range(12):
        weights = method.weights()
        seen.append(float(weights[0]))
        method.observe(traffic.window(weights), method.outcome == mt.ACTIVE)
    assert seen == [0.1] * 4 + [0.2] * 4 + [0.4] * 4


def test_the_fixed_horizon_bound_matches_a_hand_computation() -> None:
    schedule = Schedule()
    # 10 req/s: 60 s each at 10, 20, 40, 60, 80% then 600 s at 80% = 1,260 + 4,800 canary requests
    assert canary_requests_by(schedule, 10.0, 900.0) == pytest.approx(6060.0)
    # 0.2 req/s for 10 minutes: 25.2 + 48 = 73.2 canary requests, 0.366 bad events expected at p0 = 0.5%;
    # P(X >= 3) = 0.0055 <= 1% < P(X >= 2), so the test needs 3 bad events; at ratio 10 the mean is 3.66
    lam = 73.2 * 0.05
    power = 1 - math.exp(-lam) * (1 + lam + lam**2 / 2)
    assert fixed_horizon_power(schedule, rate=0.2, seconds=600.0, ratio=10.0) == pytest.approx(
        power, rel=1e-9
    )
    assert 0.70 < power < 0.71  # the 10-minute target of 99% is out of reach for any rule


def test_the_tolerance_cost_matches_a_hand_computation() -> None:
    # ratio 4 over p0 = 0.5%: KL(2% || 0.6%) = 0.02 ln(10/3) + 0.98 ln(0.98/0.994) = 0.0101786 nats,
    # KL(2% || 0.5%) = 0.02 ln 4 + 0.98 ln(0.98/0.995) = 0.0128391; ln(200) / 0.0101786 = 520.5 requests
    # against the oracle's ln(99) / 0.0128391 = 357.9: 1.454 times as many before any mixture is paid for
    assert tolerance_cost(4.0, tolerance=1.2, metrics=2, alpha=0.01) == pytest.approx(1.4544, abs=5e-4)
    # without tolerance and with one metric only the thresholds differ: ln(100) / ln(99)
    assert tolerance_cost(4.0, tolerance=1.0, metrics=1, alpha=0.01) == pytest.approx(
        math.log(100) / math.log(99), rel=1e-9
    )
