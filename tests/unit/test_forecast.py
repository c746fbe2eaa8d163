"""The forecast said before a rollout: canary requests needed for promotion evidence (ratio and ceiling),
the walk along the schedule to the step where they are expected, the sparse case (a stable with no bad
events), and the honest "cannot be reached" at low traffic."""

from __future__ import annotations

import math

import pytest

from songbird.analysis.forecast import describe, forecast, requests_needed, walk
from songbird.config.loader import load_policy_yaml

POLICY = load_policy_yaml("""
ingress: nginx
canary: {deployment: v2, service: v2}
steps: [10, 20, 40, 60, 80]
interval: 1m
analysis: {minRequests: 100, compare: {badRatio: 2, missedRegression: 0.05, maxWait: 10m}}
""")


def test_requests_needed_matches_wald() -> None:
    # ln(20) / KL(0.01 || 0.02), by hand: 2.9957 / (0.01 ln 0.5 + 0.99 ln(0.99/0.98)) = 2.9957 / 0.0031199
    assert requests_needed(p0=0.01, ceiling=None, bad_ratio=2, beta=0.05, min_requests=0) == pytest.approx(
        960.2, rel=1e-3
    )
    # A ceiling further away than the ratio's alternative costs less, so the ratio decides.
    assert requests_needed(p0=0.01, ceiling=0.05, bad_ratio=2, beta=0.05, min_requests=0) == pytest.approx(
        960.2, rel=1e-3
    )
    # No bad events in the stable: only the ceiling can certify: ln(20) / -ln(1 - 0.02) = 148.3.
    assert requests_needed(p0=0.0, ceiling=0.02, bad_ratio=2, beta=0.05, min_requests=0) == pytest.approx(
        148.3, rel=1e-3
    )
    assert requests_needed(p0=0.0, ceiling=None, bad_ratio=2, beta=0.05, min_requests=100) == 100


def test_walk_along_the_schedule() -> None:
    # 30 req/s: steps serve 180, 360, 720, 1080, 1440 canary requests; 960 is reached 700/720 into step 3.
    seconds, step = walk(POLICY, rate=30, needed=960)
    assert step == 2 and seconds == pytest.approx(120 + 60 * (960 - 540) / 720)
    seconds, step = walk(POLICY, rate=30, needed=5000)  # past the schedule, at the last weight
    assert step is None and seconds == pytest.approx(300 + (5000 - 3780) / 24)
    assert walk(POLICY, rate=0, needed=10) == (math.inf, None)


def test_description_tells_when_evidence_cannot_come() -> None:
    items = forecast(POLICY, rate=30, shares={"error-rate": 0.01}, ceilings={"error-rate": None})
    assert describe(POLICY, items, rate=30) == (
        "at 30 req/s: error-rate ~960 canary requests; promotion evidence expected after ~2m35s "
        "(step 3, schedule 5m)"
    )
    slow = forecast(POLICY, rate=0.2, shares={"error-rate": 0.01}, ceilings={"error-rate": None})
    text = describe(POLICY, slow, rate=0.2)
    assert "past the schedule (beyond maxWait 10m)" in text
