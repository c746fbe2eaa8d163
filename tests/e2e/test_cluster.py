"""The engine's scenarios against a real Kubernetes API server (``SONGBIRD_E2E_KUBECONFIG``), in a fresh
namespace each: the same test functions as tests/integration/test_rollout.py, collected here with this
directory's ``make_world`` fixture, so real API semantics (resourceVersion conflicts, RBAC, merge patches,
real Deployment readiness) are exercised by exactly the scenarios the emulator runs. Checks that need the
emulator's request log or fault injection skip here with that reason. Plus leader election on a real Lease.

What the cluster needs: ingress-nginx's CRD-free Ingress API (networking.k8s.io/v1, any cluster has it),
images nginx:1.25 and nginx:1.27 pullable, and for the placement scenario a node labelled dtype=secondary
(`kubectl label node NODE dtype=secondary`). Prometheus is a local real server with backfilled history, as
in the integration tests, so no ingress controller has to serve traffic.
"""

from __future__ import annotations

from tests.integration.test_rollout import (
    test_a_deployment_that_did_not_opt_in_is_never_changed,
    test_api_error_mid_advance_is_reported_and_changes_nothing,
    test_canary_replicas_follow_the_weight_and_lead_it,
    test_canary_with_5_percent_errors_is_rolled_back_on_the_evidence,
    test_crash_between_traffic_change_and_status_write_repeats_nothing,
    test_hand_made_canary_ingress_is_refused,
    test_header_routing_during_the_rollout_and_gone_after_rollback,
    test_header_routing_gone_after_promotion,
    test_healthy_canary_is_promoted_through_every_step,
    test_invalid_policy_is_rejected_with_its_field_path_and_traffic_untouched,
    test_missing_canary_deployment_is_refused_before_any_change,
    test_new_canary_pod_template_restarts_from_the_first_step,
    test_next_release_after_a_promotion_starts_from_the_promoted_version,
    test_placement_applied_to_the_canary_only,
    test_restarted_controller_resumes_at_the_same_step,
    test_unreachable_prometheus_holds_then_rolls_back_after_the_deadline,
)
from tests.support.clusters import RealCluster
from tests.support.world import VirtualClock

__all__ = [
    "test_a_deployment_that_did_not_opt_in_is_never_changed",
    "test_api_error_mid_advance_is_reported_and_changes_nothing",
    "test_canary_replicas_follow_the_weight_and_lead_it",
    "test_canary_with_5_percent_errors_is_rolled_back_on_the_evidence",
    "test_crash_between_traffic_change_and_status_write_repeats_nothing",
    "test_hand_made_canary_ingress_is_refused",
    "test_header_routing_during_the_rollout_and_gone_after_rollback",
    "test_header_routing_gone_after_promotion",
    "test_healthy_canary_is_promoted_through_every_step",
    "test_invalid_policy_is_rejected_with_its_field_path_and_traffic_untouched",
    "test_missing_canary_deployment_is_refused_before_any_change",
    "test_new_canary_pod_template_restarts_from_the_first_step",
    "test_next_release_after_a_promotion_starts_from_the_promoted_version",
    "test_placement_applied_to_the_canary_only",
    "test_restarted_controller_resumes_at_the_same_step",
    "test_unreachable_prometheus_holds_then_rolls_back_after_the_deadline",
]


def test_two_electors_one_real_lease(real_cluster: RealCluster) -> None:
    from songbird.controller.lease import Elector

    clock = VirtualClock(1_000.0)
    a_client, b_client = real_cluster.client(clock), real_cluster.client(clock)
    try:
        a = Elector(
            a_client, namespace=real_cluster.namespace, name="songbird-e2e", identity="a", clock=clock
        )
        b = Elector(
            b_client, namespace=real_cluster.namespace, name="songbird-e2e", identity="b", clock=clock
        )
        assert a.try_acquire_or_renew() is True
        assert b.try_acquire_or_renew() is False
        clock.advance(5)
        assert a.try_acquire_or_renew() is True and b.try_acquire_or_renew() is False
        assert a.release() is True
        assert b.try_acquire_or_renew() is True
        assert a.try_acquire_or_renew() is False
    finally:
        a_client.close()
        b_client.close()
