"""Pause steps in a policy (`config.steps`) and the pause rule over the state machine (`analysis.pause`).

Covers: ``steps`` with timed and indefinite pauses loads as weights plus pauses, and the JSON Schema
accepts the same document; each misplaced or malformed pause is refused by both, the loader naming the
path a user wrote (also for a weight after a pause); ``analysis.rollbackWhilePaused`` defaults to true,
and when false a failed analysis holds a paused rollout instead of rolling it back."""

from __future__ import annotations

import jsonschema
import pytest
import yaml

from songbird.analysis.cause import Cause
from songbird.analysis.command import Request
from songbird.analysis.decision import Action, Facts
from songbird.analysis.plan import TrafficSplit
from songbird.analysis.state import Evidence, Phase, RolloutState
from songbird.analysis.step import step
from songbird.analysis.verdict import MetricResult, Verdict
from songbird.config.command import Command
from songbird.config.errors import PolicyError
from songbird.config.loader import load_policy_yaml
from songbird.config.policy import PauseStep
from songbird.config.schema import policy_schema

HEAD = "ingress: nginx\ncanary: {deployment: nginx-v2, service: nginx-v2}\n"


def test_pauses_load_beside_the_weights_and_the_schema_agrees() -> None:
    text = HEAD + "steps: [10, {pause: 5m}, 20, {pause: {}}, 40, {pause: 30s}]\n"
    policy = load_policy_yaml(text)
    assert policy.steps == (10, 20, 40)
    assert policy.pauses == (
        PauseStep(after=0, duration=300.0),
        PauseStep(after=1, duration=None),
        PauseStep(after=2, duration=30.0),
    )
    assert policy.pause_after(1) == PauseStep(after=1, duration=None) and policy.pause_after(3) is None
    assert policy.analysis.rollback_while_paused is True
    jsonschema.validate(yaml.safe_load(text), policy_schema())


@pytest.mark.parametrize(
    ("steps", "path", "problem"),
    [
        ("[{pause: 1m}, 10]", "steps[0]", "a pause step follows a weight"),
        ("[10, {pause: 1m}, {pause: {}}, 20]", "steps[2]", "one pause step between two weights"),
        ("[10, {pause: {duration: 1m}}]", "steps[1].pause", "an indefinite pause is written {}"),
        ("[10, {pause: 0s}]", "steps[1].pause", "more than 0s"),
        ("[10, {pause: 25h}]", "steps[1].pause", "at most 24h"),
        ("[10, {pause: 5}]", "steps[1].pause", "expected a duration string"),
        ("[10, {pause: 1m, weight: 3}]", "steps[1].weight", "unknown key"),
        ("[10, {pause: 1m}, 5]", "steps[2]", "strictly increasing"),
    ],
)
def test_a_bad_pause_is_refused_with_its_path(steps: str, path: str, problem: str) -> None:
    with pytest.raises(PolicyError) as caught:
        load_policy_yaml(HEAD + f"steps: {steps}\n")
    assert caught.value.path == path and problem in caught.value.message
    shape = ("an indefinite pause", "expected a duration", "unknown key")
    if any(s in problem for s in shape):  # ranges and order are the loader's alone
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(yaml.safe_load(HEAD + f"steps: {steps}\n"), policy_schema())


def _paused_at_10(policy_text: str) -> tuple[Action, Phase, float]:
    policy = load_policy_yaml(policy_text)
    facts = Facts(
        canary="nginx-v2",
        stable="nginx-v1",
        canary_service="nginx-v2",
        stable_service="nginx-v1",
        revision="r1",
        stable_replicas=4,
        canary_replicas=1,
        canary_ready=1,
        route=TrafficSplit(
            stable_service="nginx-v1", canary_service="nginx-v2", weight=10, match_routes=True
        ),
    )
    state = RolloutState(
        phase=Phase.PROGRESSING,
        step=0,
        weight=10,
        canary="nginx-v2",
        stable="nginx-v1",
        canary_service="nginx-v2",
        stable_service="nginx-v1",
        revision="r1",
        total_replicas=4,
        started_at=0.0,
        step_started_at=0.0,
    )
    failed = tuple(
        MetricResult(name=m.name, verdict=Verdict.FAIL, reason="bad", decisive=True)
        for m in policy.analysis.metrics
    )

    def judge(s: RolloutState) -> tuple[tuple[MetricResult, ...], Evidence]:
        return failed, s.evidence

    pause = Request(id="p", command=Command(id="p", command="pause"), by="me")
    decisions = step(policy, state, facts, 20.0, verdicts=judge, command=pause)
    assert decisions[0].cause is Cause.PAUSED and decisions[0].state.paused
    last = decisions[-1]
    return last.action, last.state.phase, last.state.weight


def test_rollback_while_paused_follows_the_policy() -> None:
    text = HEAD + "steps: [10, 50]\n"
    assert _paused_at_10(text)[1] is Phase.FAILED
    action, phase, weight = _paused_at_10(text + "analysis: {rollbackWhilePaused: false}\n")
    assert (action, phase, weight) == (Action.HOLD, Phase.PAUSED, 10)
