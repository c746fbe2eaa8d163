"""Workload opt-in (`controller.consent`, applied by `controller.facts.read_facts`): a policy changes only
objects that name it in ``songbird.dev/accept-policy``.

Covers:
- the rule: the annotation is a comma-separated list (blanks ignored); the sentence that says which object
  lacks what, and which policies it names instead; every object lacking consent named once;
- the review's attack: a policy naming ``canary.deployment: postgres`` (a Deployment without the
  annotation, with a placement) is refused with a ``NotAccepted`` Warning Event and status reason naming
  postgres, and postgres' replicas and pod template are unchanged, no Ingress is made, nothing is judged;
- an annotation naming another policy is refused, saying which policies it names;
- each of the five objects (canary and stable Deployment and Service, main Ingress) lacking the annotation
  is refused, and nothing is written but the policy's status;
- the annotation removed mid-rollout: the rollout holds at the weight in force (one Warning, no write to
  any workload or route, no analysis, however long it waits), and resumes when the owner restores it;
- the policy deleted while consent is missing (the main Ingress's or the canary Deployment's): Songbird
  deletes only its own canary Ingress (the canary traffic it added), leaves Deployments, Services and the
  main Ingress as they are, says so in a Warning Event, and removes its finalizer so the deletion
  completes.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from songbird.analysis.state import Phase
from songbird.controller.consent import accepted_policies, lacks, refusal
from songbird.controller.keys import ACCEPT_POLICY_ANNOTATION
from songbird.controller.ports import Kind
from songbird.lab import scenarios
from tests.support import scenario
from tests.unit.test_reconciler import (
    CANARY_INGRESS,
    NAME,
    NS,
    POLICY,
    Rig,
    advance_due,
    at_step,
    delete_policy,
    finalizers,
    rig,
)

Obj = dict[str, Any]


def annotated(obj: Obj, value: str | None) -> Obj:
    out = copy.deepcopy(obj)
    annotations = out["metadata"].setdefault("annotations", {})
    annotations.pop(ACCEPT_POLICY_ANNOTATION, None)
    if value is not None:
        annotations[ACCEPT_POLICY_ANNOTATION] = value
    return out


def refusals(r: Rig) -> list[str]:
    return [e.message for e in r.cluster.events if e.warning and e.reason == "NotAccepted"]


WORKLOADS = [
    (Kind.DEPLOYMENT, "nginx-v1"),
    (Kind.DEPLOYMENT, "nginx-v2"),
    (Kind.SERVICE, "nginx-v1"),
    (Kind.SERVICE, "nginx-v2"),
    (Kind.INGRESS, "nginx"),
]


def workloads(r: Rig) -> list[Obj | None]:
    """The scenario's five workload objects as stored (a write, even a no-op, changes resourceVersion)."""
    return [r.cluster.object(kind, NS, name) for kind, name in WORKLOADS]


# -- the rule ------------------------------------------------------------------------------------------


def test_the_annotation_is_a_comma_separated_list_of_policy_names() -> None:
    deployment = annotated(scenario.deployment("v2", replicas=0), " checkout , ,nginx-rollout,")
    assert accepted_policies(deployment) == {"checkout", "nginx-rollout"}
    assert lacks(Kind.DEPLOYMENT, deployment, NS, "nginx-rollout") is None
    assert accepted_policies(annotated(deployment, None)) == frozenset()


def test_the_refusal_names_the_object_and_what_it_lacks() -> None:
    bare = annotated(scenario.deployment("v1", replicas=3), None)
    other = annotated(scenario.service("v1"), "checkout,payments")
    assert lacks(Kind.DEPLOYMENT, bare, NS, "shop") == (
        "Deployment default/nginx-v1 has no annotation songbird.dev/accept-policy naming policy 'shop'"
    )
    assert lacks(Kind.SERVICE, other, NS, "shop") == (
        "Service default/nginx-v1 has no annotation songbird.dev/accept-policy naming policy 'shop' "
        "(it names: checkout, payments)"
    )
    both = refusal([(Kind.DEPLOYMENT, bare), (Kind.SERVICE, other), (Kind.DEPLOYMENT, bare)], NS, "shop")
    assert both is not None and both.count("Deployment default/nginx-v1") == 1 and "Service" in both


def test_the_labs_key_is_the_controllers() -> None:
    assert scenarios.ACCEPT_POLICY_ANNOTATION == ACCEPT_POLICY_ANNOTATION


# -- refused before a rollout --------------------------------------------------------------------------


def postgres() -> Obj:
    """A database Deployment whose owner never opted in to anything."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "postgres", "namespace": NS, "labels": {"app": "postgres"}},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "postgres"}},
            "template": {
                "metadata": {"labels": {"app": "postgres"}},
                "spec": {"containers": [{"name": "postgres", "image": "postgres:16"}]},
            },
        },
    }


def test_a_policy_naming_a_database_that_did_not_opt_in_changes_nothing() -> None:
    attack = POLICY.replace(
        "canary: {deployment: nginx-v2, service: nginx-v2}",
        "canary: {deployment: postgres, service: nginx-v2}\nplacement: {nodeSelector: {pool: tenant}}",
    )
    r = rig(policy=attack, objects=[*scenario.objects(), postgres()])
    before = r.cluster.object(Kind.DEPLOYMENT, NS, "postgres")
    assert r.tick() == ["patch ConfigMap nginx-rollout status=Idle step=0 weight=0"]
    said = (
        "Deployment default/postgres has no annotation songbird.dev/accept-policy naming policy "
        "'nginx-rollout'"
    )
    assert refusals(r) == [said]
    assert r.state().reason == said and r.state().phase is Phase.IDLE
    after = r.cluster.object(Kind.DEPLOYMENT, NS, "postgres")
    assert after == before  # replicas 3, pod template without a nodeSelector, same resourceVersion
    assert r.cluster.object(Kind.INGRESS, NS, CANARY_INGRESS) is None
    assert r.evaluator.evaluations == 0
    r.clock.advance(5)
    assert r.tick() == []  # the same refusal is not written or announced again
    assert len(refusals(r)) == 1


def test_an_annotation_naming_another_policy_is_refused() -> None:
    objects = [annotated(o, "checkout") for o in scenario.objects()]
    r = rig(objects=objects)
    before = workloads(r)
    assert r.tick() == ["patch ConfigMap nginx-rollout status=Idle step=0 weight=0"]
    (said,) = refusals(r)
    assert said.startswith(
        "Deployment default/nginx-v2 has no annotation songbird.dev/accept-policy naming policy "
        "'nginx-rollout' (it names: checkout)"
    )
    assert "Ingress default/nginx has no annotation" in said  # every object lacking it is named
    assert workloads(r) == before


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        (Kind.DEPLOYMENT, "nginx-v2"),  # canary
        (Kind.DEPLOYMENT, "nginx-v1"),  # stable
        (Kind.SERVICE, "nginx-v2"),  # canary
        (Kind.SERVICE, "nginx-v1"),  # stable
        (Kind.INGRESS, "nginx"),  # main
    ],
)
def test_each_object_without_the_annotation_is_refused(kind: Kind, name: str) -> None:
    objects = [
        annotated(o, None) if (o["kind"], o["metadata"]["name"]) == (kind.value, name) else o
        for o in scenario.objects()
    ]
    r = rig(objects=objects)
    before = workloads(r)
    assert r.tick() == ["patch ConfigMap nginx-rollout status=Idle step=0 weight=0"]
    assert refusals(r) == [
        f"{kind.value} default/{name} has no annotation songbird.dev/accept-policy naming policy "
        "'nginx-rollout'"
    ]
    assert workloads(r) == before
    assert r.cluster.object(Kind.INGRESS, NS, CANARY_INGRESS) is None


# -- consent withdrawn mid-rollout ---------------------------------------------------------------------


def withdraw(r: Rig, kind: Kind, name: str) -> Obj:
    obj = r.cluster.object(kind, NS, name)
    assert obj is not None
    r.cluster.put(annotated(obj, None))
    stored = r.cluster.object(kind, NS, name)
    assert stored is not None
    return stored


def test_consent_withdrawn_mid_rollout_holds_at_the_weight_in_force_until_restored() -> None:
    r = rig()
    r.tick()
    r.run_until(at_step(2))
    assert r.weight() == "20"
    ingress = withdraw(r, Kind.INGRESS, "nginx")
    canary = r.cluster.object(Kind.DEPLOYMENT, NS, "nginx-v2")
    evaluations = r.evaluator.evaluations
    advance_due(r)
    assert r.tick() == ["patch ConfigMap nginx-rollout status=Progressing step=2 weight=20"]  # the reason
    assert refusals(r) == [
        "Ingress default/nginx has no annotation songbird.dev/accept-policy naming policy 'nginx-rollout'"
    ]
    for _ in range(30):  # five minutes: no analysis, no write, the canary keeps its share
        r.clock.advance(10)
        assert r.tick() == []
    assert r.weight() == "20" and r.state().phase is Phase.PROGRESSING and r.state().step == 1
    assert r.evaluator.evaluations == evaluations
    assert r.cluster.object(Kind.INGRESS, NS, "nginx") == ingress
    assert r.cluster.object(Kind.DEPLOYMENT, NS, "nginx-v2") == canary
    r.cluster.put(annotated(ingress, NAME))  # the owner opts in again: the rollout goes on
    r.run_until(at_step(3))
    assert r.weight() == "40"


@pytest.mark.parametrize(("kind", "name"), [(Kind.INGRESS, "nginx"), (Kind.DEPLOYMENT, "nginx-v2")])
def test_deleting_the_policy_without_consent_withdraws_only_songbirds_canary_ingress(
    kind: Kind, name: str
) -> None:
    r = rig()
    r.tick()
    r.run_until(at_step(2))
    withdraw(r, kind, name)
    before = workloads(r)
    r.clock.advance(5)
    r.tick()  # refused: holds
    delete_policy(r)
    r.clock.advance(5)
    assert r.tick() == [
        "delete Ingress nginx-canary",
        "patch ConfigMap nginx-rollout finalizers=-",
    ]
    assert workloads(r) == before
    assert r.replicas("nginx-v2") >= 1  # left running: Songbird may no longer scale it
    assert finalizers(r) == []
    last = r.cluster.events[-1]
    assert (last.reason, last.warning) == ("PolicyDeleted", True)
    assert last.message == (
        "policy deleted: canary traffic withdrawn (canary Ingress removed); Deployments and Services left "
        f"as they are because {kind.value} default/{name} has no annotation songbird.dev/accept-policy "
        "naming policy 'nginx-rollout'"
    )
