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
