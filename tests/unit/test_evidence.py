"""The e-processes of analysis.evidence.

Covers: the window log-likelihood ratio against hand-computed values (both the theta form of the reference
and the simplified form agree); windows without canary requests, stable requests or bad events leave the
sums unchanged; real-valued and broken (NaN, negative) counts; the one-sample ceiling ratio; the grids keep
only alternatives on the right side of the null; the log-mean-exp is stable for sums in the thousands;
persisted sums round-trip through JSON and the rollout state; the certification-time prediction; and the
alpha guarantee on simulated healthy canaries at the null boundary (ratio = tolerance), with enough seeded
runs that a false-rollback rate above 2 alpha fails the test, beside a power check so the guarantee cannot
hold by never gathering evidence.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from songbird.analysis import evidence as ev
from songbird.analysis.state import RolloutState
from tests.support.rollout_windows import rollout_windows


def theta(r: float, n_c: float, n_s: float) -> float:
    return r * n_c / (r * n_c + n_s)


def test_window_log_ratio_matches_hand_computed_value() -> None:
    # theta(2) = 200/1100, theta(1.2) = 120/1020; 3 ln(1.54545) + 9 ln(0.92727) = 0.626386
    value = ev.window_log_ratio(2.0, 1.2, n_c=100, x_c=3, n_s=900, x_s=9)
    assert value == pytest.approx(0.6263862, abs=1e-6)


@pytest.mark.parametrize(
    ("r", "r0", "n_c", "x_c", "n_s", "x_s"),
    [(1.5, 1.2, 10, 1, 90, 0), (50, 1.2, 3.7, 2.2, 40.1, 0.4), (0.5, 2.0, 500, 2, 500, 7)],
)
def test_simplified_form_equals_the_theta_form(
    r: float, r0: float, n_c: float, x_c: float, n_s: float, x_s: float
) -> None:
    a, b = theta(r, n_c, n_s), theta(r0, n_c, n_s)
    expected = x_c * math.log(a / b) + x_s * math.log((1 - a) / (1 - b))
    value = ev.window_log_ratio(r, r0, n_c=n_c, x_c=x_c, n_s=n_s, x_s=x_s)
    assert value == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    "counts",
    [
        {"n_c": 0, "x_c": 0, "n_s": 1000, "x_s": 30},  # no canary requests
        {"n_c": 100, "x_c": 0, "n_s": 900, "x_s": 0},  # no bad events
        {"n_c": 100, "x_c": 2, "n_s": 0, "x_s": 0},  # no stable requests
        {"n_c": math.nan, "x_c": 3, "n_s": 900, "x_s": 1},  # broken extrapolation
        {"n_c": -5, "x_c": 1, "n_s": 900, "x_s": 1},
    ],
)
def test_windows_without_data_leave_the_sums_unchanged(counts: dict[str, float]) -> None:
    sums = {"bad:2": 1.25, "good:0.5": -0.5}
    out = ev.add_ratio_window(
        sums, tolerance=1.2, bad_ratio=2.0, bad_alternatives=(2.0,), good_alternatives=(0.5,), **counts
    )
    assert out == sums
    assert sums == {"bad:2": 1.25, "good:0.5": -0.5}  # the input is not changed


def test_real_valued_counts_are_accepted_and_move_the_sums() -> None:
    out = ev.add_ratio_window(
        {},
        tolerance=1.2,
        bad_ratio=2.0,
        bad_alternatives=(2.0, 5.0),
        good_alternatives=(0.5, 1.0),
        n_c=12.6,
        x_c=1.4,
        n_s=110.2,
        x_s=0.6,
    )
    assert set(out) == {"bad:2", "bad:5", "good:0.5", "good:1"}
    assert out["bad:5"] > out["bad:2"] > 0  # a canary holding 70% of the bad events on 10% of traffic
    assert out["good:0.5"] < 0 and out["good:1"] < 0


def test_ceiling_log_ratio_matches_hand_computed_value() -> None:
    # 4 ln(0.02/0.01) + 96 ln(0.98/0.99) = 2.772589 - 0.974628
    assert ev.window_log_ceiling(0.02, 0.01, n=100, x=4) == pytest.approx(1.797961, abs=1e-6)
    assert ev.window_log_ceiling(0.02, 0.01, n=0, x=0) == 0.0
    # more bad events than requests (separately extrapolated counters) is read as all requests bad
    assert ev.window_log_ceiling(0.02, 0.01, n=10, x=12) == pytest.approx(10 * math.log(2))


def test_zero_bad_windows_count_for_the_ceiling_certification() -> None:
    out = ev.add_ceiling_window({}, p_max=0.01, n=1000, x=0)
    assert out["ceil-good:0.005"] > 0 and out["ceil-bad:0.02"] < 0


def test_grids_keep_alternatives_on_the_right_side_of_the_null() -> None:
    assert ev.rollback_grid(1.2) == (1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0)
    assert ev.rollback_grid(1.5) == (2.0, 3.0, 5.0, 10.0, 20.0, 50.0)
    assert ev.promotion_grid(2.0) == (0.5, 1.0, 1.5)
    assert ev.promotion_grid(1.4) == (0.5, 1.0)
    above, below = ev.ceiling_grids(0.2)
    assert all(0.2 < p < 1 for p in above) and all(0 < p < 0.2 for p in below)
    with pytest.raises(ValueError, match="ceiling"):
        ev.ceiling_grids(1.0)


def test_log_evidence_is_stable_for_large_sums() -> None:
    sums = {"bad:2": 5000.0, "bad:3": -3000.0}
    log_e = ev.log_evidence(sums, ev.BAD, (2.0, 3.0))
    assert log_e == pytest.approx(5000.0 - math.log(2))
    assert ev.evidence(log_e) == math.exp(ev.LOG_CAP)  # finite, far above any threshold
    assert ev.log_evidence({}, ev.BAD, (2.0, 3.0)) == 0.0  # no evidence yet: E = 1


def test_sums_round_trip_through_json_and_the_rollout_state() -> None:
    sums = ev.add_ratio_window(
        {},
        tolerance=1.2,
        bad_ratio=2.0,
        bad_alternatives=ev.rollback_grid(1.2),
        good_alternatives=ev.promotion_grid(2.0),
        n_c=37.25,
        x_c=1.0,
        n_s=301.5,
        x_s=2.75,
    )
    sums = ev.add_ceiling_window(sums, p_max=0.01, n=37.25, x=1.0)
    assert json.loads(json.dumps(sums, allow_nan=False)) == sums
    state = RolloutState(evidence={"error-rate": sums})
    assert RolloutState.from_json(state.to_json()).evidence == {"error-rate": sums}


def test_certification_time_prediction() -> None:
    # ln(20) / KL(0.005 || 0.01) = 2.9957 / 0.0015469 requests; at 50 req/s and 10% weight, 5 requests/s
    requests = ev.certification_requests(p0=0.005, bad_ratio=2.0, beta=0.05)
    assert requests == pytest.approx(1936.6, abs=0.5)
    seconds = ev.certification_seconds(p0=0.005, rate=50, weight_percent=10, bad_ratio=2.0, beta=0.05)
    assert seconds == pytest.approx(requests / 5)
    assert ev.certification_seconds(p0=0.0, rate=50, weight_percent=10, bad_ratio=2.0, beta=0.05) == math.inf
    assert ev.certification_seconds(p0=0.005, rate=0, weight_percent=10, bad_ratio=2.0, beta=0.05) == math.inf


def _crossing_rate(ratio: float, *, alpha: float, runs: int, seed: int) -> float:
    """Share of simulated rollouts whose rollback evidence ever reaches 1/alpha."""
    rng = np.random.default_rng(seed)
    grid = ev.rollback_grid(1.2)
    threshold = math.log(1 / alpha)
    p0 = 0.02
    crossed = 0
    for _ in range(runs):
        sums: dict[str, float] = {}
        for n_c, x_c, n_s, x_s in rollout_windows(rng, ratio=ratio, p0=p0):
            sums = ev.add_ratio_window(
                sums,
                tolerance=1.2,
                bad_ratio=2.0,
                bad_alternatives=grid,
                good_alternatives=(),
                n_c=n_c,
                x_c=x_c,
                n_s=n_s,
                x_s=x_s,
            )
            if ev.log_evidence(sums, ev.BAD, grid) >= threshold:
                crossed += 1
                break
    return crossed / runs


def test_healthy_canaries_at_the_tolerance_are_rolled_back_at_most_alpha() -> None:
    # 1500 runs of 30 looks each with alpha = 5%. The standard error of the observed rate is under 0.8
    # points at any true rate up to 10%, so a judge whose real rate is 2 alpha or more fails this test,
    # while one that keeps its bound (observed: about 1.3%) passes with a wide margin.
    rate = _crossing_rate(1.2, alpha=0.05, runs=1500, seed=7)
    assert rate <= 2 * 0.05
    assert _crossing_rate(1.0, alpha=0.05, runs=500, seed=8) <= 0.05


def test_regressions_are_detected() -> None:
    assert _crossing_rate(4.0, alpha=0.05, runs=100, seed=9) >= 0.95
