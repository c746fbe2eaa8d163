"""The Events said beside phase changes (`controller.notices`): a traffic split mismatch (Warning, once,
when the hold starts), its clearing (Normal, once), and a dry-run metric that starts failing (Warning,
once per new evaluation in which it turns FAIL)."""

from __future__ import annotations

from dataclasses import replace

from songbird.analysis.cause import Cause
from songbird.analysis.split import check
from songbird.analysis.state import Evaluation, Phase, RolloutState
from songbird.analysis.verdict import MetricResult, Verdict
from songbird.controller.notices import notices

RUNNING = RolloutState(phase=Phase.PROGRESSING, step=0, weight=20.0, cause=Cause.STEP_RUNNING, reason="r")
HELD = replace(RUNNING, cause=Cause.SPLIT_MISMATCH, reason="step 1/4 at 20%: traffic split mismatch: ...")


def evaluated(at: float, verdict: Verdict) -> RolloutState:
    shadow = MetricResult(name="shadow", verdict=verdict, reason="1 > 0.5", dry_run=True)
    return replace(RUNNING, history=(Evaluation(at=at, step=0, weight=20.0, results=(shadow,)),))


def test_a_split_mismatch_is_said_when_the_hold_starts_and_when_it_clears() -> None:
    (start,) = notices(RUNNING, HELD)
    assert (start.reason, start.warning, start.message) == ("TrafficSplitMismatch", True, HELD.reason)
    assert notices(HELD, HELD) == ()
    cleared = replace(RUNNING, split=check(step=0, weight=20, canary=100, stable=400))
    (end,) = notices(HELD, cleared)
    assert end.reason == "TrafficSplitRestored" and not end.warning
    assert end.message.startswith("canary received 20.0% of 500 requests counted at step 1, expected 20%")


def test_a_dry_run_failure_is_said_once() -> None:
    (said,) = notices(RUNNING, evaluated(1.0, Verdict.FAIL))
    assert said.reason == "DryRunMetricFailed" and said.warning
    assert said.message == "dry-run metric shadow FAIL (no effect on the rollout): 1 > 0.5"
    assert notices(evaluated(1.0, Verdict.FAIL), evaluated(2.0, Verdict.FAIL)) == ()
    assert notices(evaluated(1.0, Verdict.FAIL), evaluated(1.0, Verdict.FAIL)) == ()
    assert len(notices(evaluated(2.0, Verdict.PASS), evaluated(3.0, Verdict.FAIL))) == 1
