"""Keys the controller writes on Kubernetes objects it manages.

An object carrying ``MANAGED_BY_ANNOTATION: MANAGED_BY_VALUE`` was created by Songbird and may be changed or
deleted by it; any other object is refused (`controller.errors.OwnershipError`). The rollout status key
lives with the status format (`analysis.state.STATUS_ANNOTATION`).
"""

from __future__ import annotations

MANAGED_BY_ANNOTATION = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "songbird"

CLEANUP_FINALIZER = "songbird.dev/cleanup"
"""The finalizer Songbird puts on a policy ConfigMap while its rollout is active (`Initializing` to
`Promoting`/`RollingBack`): deleting the policy then waits until the canary is withdrawn (traffic first,
then the canary Ingress and pods) and Songbird removes the finalizer. Idle and finished policies carry none,
so deleting them is immediate."""

ACCEPT_POLICY_ANNOTATION = "songbird.dev/accept-policy"
"""Workload opt-in (`controller.consent`): Songbird changes, or sends canary traffic to, a Deployment, Service
or main Ingress only when it carries this annotation and its comma-separated value names the policy
ConfigMap (same namespace), e.g. ``songbird.dev/accept-policy: checkout,checkout-eu``. Set by whoever owns
the workload; a policy alone (anyone who may write a ConfigMap) cannot grant it."""
