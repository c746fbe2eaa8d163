"""Why a decision was taken, as a value: the seam between the state machine and everything that reacts to
its decisions (the controller's metrics, the pause logic, the benchmarks).

Reason strings are for people; code reads the `Cause` (and, for a metric's verdict, the metric's name kept
beside it). The values are persisted in the rollout status, so they are stable words: add new ones, never
rename one. A status written before causes existed reads as `Cause.UNKNOWN`.
"""

from __future__ import annotations

from enum import StrEnum


class Cause(StrEnum):
    UNKNOWN = "unknown"  # not said (a status from an older controller)
    ALREADY_STABLE = "already-stable"  # the canary Deployment is the one the main route serves
    STARTED = "started"  # a rollout of a new canary began
    RESTARTED = "restarted"  # the canary's pod template changed: from step 1 again
    WAITING_FOR_PODS = "waiting-for-pods"  # the canary has fewer ready pods than the next move needs
    CANARY_NOT_READY = "canary-not-ready"  # fewer ready canary pods than the weight in force needs
    STEP_STARTED = "step-started"  # a step's weight is in force
    WAITING_FOR_EVALUATION = "waiting-for-evaluation"  # no evaluation of this step yet
    STEP_RUNNING = "step-running"  # the step's interval has not elapsed yet
    BLOCKED = "blocked"  # a FAIL or ERROR verdict holds the weight
    SCALING_CANARY = "scaling-canary"  # the next step's canary pods come up before the weight rises
    METRIC_FAILED = "metric-failed"  # a metric's FAIL rolled back (decisive, or failureLimit reached)
    ERROR_DEADLINE = "error-deadline"  # metrics unavailable for errorDeadline
    SHARED_OUTAGE = "shared-outage"  # the stable fails too: paused, not the canary's fault
    WAITING_FOR_EVIDENCE = "waiting-for-evidence"  # last step: promotion evidence within maxWait
    INCONCLUSIVE = "inconclusive"  # no conclusion after maxWait: onInconclusive applied
    ANALYSIS_PASSED = "analysis-passed"  # every metric passed at the last step: promotion begins
    PROMOTED = "promoted"  # the main route serves the canary
    SUCCEEDED = "succeeded"  # the old stable is scaled down
    STEP_ADOPTED = "step-adopted"  # a later step's weight was found in force (its status write was lost)
    TRAFFIC_WITHDRAWN = "traffic-withdrawn"  # canary traffic found withdrawn: the rollback goes on
    POLICY_DELETED = "policy-deleted"  # the policy ConfigMap is being deleted: the canary is withdrawn
    # Operator commands (`analysis.command`) and pauses (`analysis.pause`).
    COMMAND_PROMOTE = "command-promote"  # promoted by a promote command, analysis notwithstanding
    COMMAND_STEP = "command-step"  # the next step started by a promote --step command
    ABORTED = "aborted"  # rolled back by an abort command
    PAUSED = "paused"  # held at its weight by a pause command
    RESUMED = "resumed"  # a pause ended by a resume command
    RETRIED = "retried"  # a failed rollout started again by a retry command
    COMMAND_REFUSED = "command-refused"  # a command that does not apply now (or cannot be read)
    PAUSE_STEP = "pause-step"  # held at its weight by a pause step of the policy
    SPLIT_MISMATCH = "split-mismatch"  # the canary's measured share is far from its weight: held


def read_cause(value: object) -> Cause:
    """A persisted cause; anything unknown (missing, or written by a newer controller) is `UNKNOWN`."""
    try:
        return Cause(str(value))
    except ValueError:
        return Cause.UNKNOWN
