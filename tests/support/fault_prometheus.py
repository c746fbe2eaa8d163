"""The tests' name for the fault-injecting Prometheus (`songbird.bench.fault_prometheus`).

Kept so that tests import their harness from ``tests.support``; the implementation ships with the bench,
whose ``faults`` campaign runs it too (see `songbird.bench.fault_prometheus` for every mode).
"""

from songbird.bench.fault_prometheus import (
    EXPECTED,
    FAULTS,
    Fault,
    FaultPrometheus,
    HealthyPrometheus,
    Outcome,
    healthy_value,
    wait_until,
)

__all__ = [
    "EXPECTED",
    "FAULTS",
    "Fault",
    "FaultPrometheus",
    "HealthyPrometheus",
    "Outcome",
    "healthy_value",
    "wait_until",
]
