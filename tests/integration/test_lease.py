"""Leader election (`controller.lease.Elector`) between replicas sharing one emulated API server and one
virtual clock.

Covers:
- exactly one of two replicas leads; the Lease names it, with durations, times and transitions;
- a standby takes over only after a full lease duration without renewal, never while the leader renews;
- release clears the holder so the other replica takes over at once;
- a 409 on renew makes the leader step down (no exception), and it leads again once it wins a round;
- two standbys racing for an expired Lease: the stale PUT is refused with 409 and only one leads;
- API errors: a leader that cannot renew keeps leading only until its renew deadline;
- the requests an elector makes (for RBAC): get, create, update on leases only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest

from songbird.controller.kube import ApiSettings, KubeClient
from songbird.controller.lease import Elector, LeaseStore, parse_micro_time
from tests.support.kube_emulator import KubeEmulator, rbac_rules

FAST = ApiSettings(connect_timeout=1.0, read_timeout=1.0, attempts=2, backoff=0.01, budget=3.0)
T0 = 1_800_000_000.0


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.value = now

    def now(self) -> float:
        return self.value

    def advance(self, seconds: float) -> None:
        self.value += seconds


class BeforeFirstReplace:
    """A LeaseStore that runs ``interleave`` just before its first replace: another replica's round
    squeezed between this replica's read and its write."""

    def __init__(self, store: LeaseStore, interleave: Callable[[], object]) -> None:
        self._store = store
        self._interleave: Callable[[], object] | None = interleave

    def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._store.get_lease(namespace, name)

    def create_lease(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return self._store.create_lease(namespace, body)

    def replace_lease(self, namespace: str, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        if self._interleave is not None:
            interleave, self._interleave = self._interleave, None
            interleave()
        return self._store.replace_lease(namespace, name, body)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def elector(
    kube: KubeEmulator, clock: FakeClock, identity: str, *, store: LeaseStore | None = None
) -> Elector:
    return Elector(
        store or KubeClient.for_host(kube.url, settings=FAST),
        namespace="default",
        name="songbird",
        identity=identity,
        clock=clock,
        lease_duration=10,
        renew_deadline=6,
    )


def spec(kube: KubeEmulator) -> dict[str, Any]:
    lease = kube.get("Lease", "default", "songbird")
    assert lease is not None
    return dict(lease["spec"])


def test_exactly_one_replica_leads(kube: KubeEmulator, clock: FakeClock) -> None:
    a, b = elector(kube, clock, "a"), elector(kube, clock, "b")
    assert not a.observed
    assert a.try_acquire_or_renew() is True
    assert b.try_acquire_or_renew() is False
    assert (a.is_leader, b.is_leader) == (True, False)
    assert b.observed
    assert b.holder == "a"
    lease = spec(kube)
    assert lease["holderIdentity"] == "a"
    assert lease["leaseDurationSeconds"] == 10
    assert lease["leaseTransitions"] == 0
    assert parse_micro_time(lease["acquireTime"]) == parse_micro_time(lease["renewTime"]) == T0


def test_standby_takes_over_only_after_a_lease_duration_without_renewal(
    kube: KubeEmulator, clock: FakeClock
) -> None:
    a, b = elector(kube, clock, "a"), elector(kube, clock, "b")
    a.try_acquire_or_renew()
    for _ in range(20):  # a renews every 3 s for a minute; b never gets in
        clock.advance(3)
        assert a.try_acquire_or_renew() is True
        assert b.try_acquire_or_renew() is False
    last_renewal_seen_by_b = clock.now()

    # a stops renewing (crashed). b polls every second and waits out the full duration.
    for waited in range(1, 10):
        clock.advance(1)
        assert b.try_acquire_or_renew() is False, f"took over after {waited}s"
    clock.advance(1)
    assert b.try_acquire_or_renew() is True
    assert clock.now() - last_renewal_seen_by_b == 10
    lease = spec(kube)
    assert lease["holderIdentity"] == "b"
    assert lease["leaseTransitions"] == 1
    assert parse_micro_time(lease["acquireTime"]) == clock.now()

    # The old leader, back, sees b renewing and stands by.
    assert a.is_leader is False
    assert a.try_acquire_or_renew() is False


def test_release_hands_over_at_once(kube: KubeEmulator, clock: FakeClock) -> None:
    a, b = elector(kube, clock, "a"), elector(kube, clock, "b")
    a.try_acquire_or_renew()
    assert b.try_acquire_or_renew() is False
    clock.advance(1)
    assert a.release() is True
    assert a.is_leader is False
    assert spec(kube)["holderIdentity"] == ""
    assert b.try_acquire_or_renew() is True
    assert spec(kube)["holderIdentity"] == "b"
    assert spec(kube)["leaseTransitions"] == 1
    assert a.release() is False  # not leading: nothing to give up


def test_conflict_on_renew_steps_down_without_raising(kube: KubeEmulator, clock: FakeClock) -> None:
    a = elector(kube, clock, "a")
    assert a.try_acquire_or_renew() is True
    kube.fail("Lease", status=409, method="PUT")
    clock.advance(2)
    assert a.try_acquire_or_renew() is False
    assert a.is_leader is False
    clock.advance(2)
    assert a.try_acquire_or_renew() is True  # the Lease still names it: it wins the next round


def test_racing_standbys_one_wins_the_stale_write_gets_conflict(kube: KubeEmulator, clock: FakeClock) -> None:
    a = elector(kube, clock, "a")
    a.try_acquire_or_renew()
    c = elector(kube, clock, "c")
    b = elector(
        kube,
        clock,
        "b",
        store=BeforeFirstReplace(KubeClient.for_host(kube.url, settings=FAST), c.try_acquire_or_renew),
    )
    clock.advance(1)
    assert b.try_acquire_or_renew() is False
    assert c.try_acquire_or_renew() is False
    clock.advance(10)  # a is gone; both see the Lease expire at the same moment

    assert b.try_acquire_or_renew() is False  # c's round ran between b's read and b's write
    assert (b.is_leader, c.is_leader) == (False, True)
    assert spec(kube)["holderIdentity"] == "c"
    assert spec(kube)["leaseTransitions"] == 1
    puts = [r for r in kube.requests if r.method == "PUT"]
    assert [(r.body["spec"]["holderIdentity"]) for r in puts] == ["c", "b"]
    assert puts[0].body["metadata"]["resourceVersion"] == puts[1].body["metadata"]["resourceVersion"]


def test_leader_that_cannot_reach_the_api_leads_only_until_its_renew_deadline(
    kube: KubeEmulator, clock: FakeClock
) -> None:
    a = elector(kube, clock, "a")
    assert a.try_acquire_or_renew() is True
    kube.fail("Lease", status=500, method="GET", times=100)
    clock.advance(5)
    assert a.try_acquire_or_renew() is True  # 5 s since the last renewal < 6 s deadline
    clock.advance(1)
    assert a.try_acquire_or_renew() is False
    assert a.is_leader is False


def test_election_needs_only_get_create_update_on_leases(kube: KubeEmulator, clock: FakeClock) -> None:
    a, b = elector(kube, clock, "a"), elector(kube, clock, "b")
    a.try_acquire_or_renew()
    b.try_acquire_or_renew()
    clock.advance(3)
    a.try_acquire_or_renew()
    a.release()
    rules = {(r.api_group, r.resource): set(r.verbs) for r in rbac_rules(kube.requests)}
    assert rules == {("coordination.k8s.io", "leases"): {"get", "create", "update"}}
