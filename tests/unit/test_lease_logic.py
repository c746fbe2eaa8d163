"""The pure part of leader election (`controller.lease.decide_lease`, `LeaseRecord`, MicroTime helpers).

Covers:
- no Lease: create one naming this replica, transitions 0, acquire = renew = now;
- own Lease: renew (renewTime moves, acquireTime and transitions stay, duration follows configuration);
- someone else's Lease: stand by until a full duration after this replica first saw the record unchanged,
  measured on its own clock (the record's renewTime plays no part), then take over with transitions + 1;
- a released Lease (empty holder) is taken at once;
- reasons a person can read;
- reading a Lease spec: missing or malformed fields fall back safely; writing it back round-trips;
- MicroTime format and parsing (with and without fraction, with offsets);
- Elector settings that could let two replicas lead at once are refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from songbird.controller.lease import (
    Elector,
    LeaseAction,
    LeaseRecord,
    decide_lease,
    format_micro_time,
    parse_micro_time,
)

NOW = 1_800_000_000.0


def record(holder: str, *, renew: float = NOW - 100, transitions: int = 3, duration: int = 15) -> LeaseRecord:
    return LeaseRecord(
        holder=holder, duration=duration, acquire_time=NOW - 1000, renew_time=renew, transitions=transitions
    )


def test_no_lease_creates_one_naming_this_replica() -> None:
    decision = decide_lease(observed=None, observed_at=NOW, identity="a", now=NOW, duration=15)
    assert decision.action is LeaseAction.CREATE
    assert decision.record == LeaseRecord(
        holder="a", duration=15, acquire_time=NOW, renew_time=NOW, transitions=0
    )


def test_own_lease_is_renewed_keeping_acquire_time_and_transitions() -> None:
    decision = decide_lease(
        observed=record("a", duration=30), observed_at=NOW - 500, identity="a", now=NOW, duration=15
    )
    assert decision.action is LeaseAction.RENEW
    assert decision.record == LeaseRecord(
        holder="a", duration=15, acquire_time=NOW - 1000, renew_time=NOW, transitions=3
    )


@pytest.mark.parametrize("seen_for", [0.0, 1.0, 14.999])
def test_someone_elses_lease_is_left_alone_within_the_duration(seen_for: float) -> None:
    decision = decide_lease(
        observed=record("b"), observed_at=NOW - seen_for, identity="a", now=NOW, duration=15
    )
    assert decision.action is LeaseAction.STANDBY
    assert decision.record is None
    assert decision.reason == f"held by b; free in {15 - seen_for:.1f}s unless renewed"


@pytest.mark.parametrize("seen_for", [15.0, 15.001, 3600.0])
def test_someone_elses_lease_unchanged_for_the_duration_is_taken_over(seen_for: float) -> None:
    decision = decide_lease(
        observed=record("b"), observed_at=NOW - seen_for, identity="a", now=NOW, duration=20
    )
    assert decision.action is LeaseAction.TAKE_OVER
    assert decision.record == LeaseRecord(
        holder="a", duration=20, acquire_time=NOW, renew_time=NOW, transitions=4
    )
    assert decision.reason == f"b did not renew for {seen_for:.1f}s"


def test_the_record_duration_not_ours_decides_expiry() -> None:
    held_long = record("b", duration=60)
    assert decide_lease(
        observed=held_long, observed_at=NOW - 30, identity="a", now=NOW, duration=15
    ).action is (LeaseAction.STANDBY)


def test_an_old_renew_time_alone_does_not_expire_the_lease() -> None:
    # Clocks differ between replicas: only the time this replica has watched the record counts.
    stale_looking = record("b", renew=NOW - 10_000)
    decision = decide_lease(observed=stale_looking, observed_at=NOW, identity="a", now=NOW, duration=15)
    assert decision.action is LeaseAction.STANDBY


def test_a_released_lease_is_taken_at_once() -> None:
    released = record("", transitions=7)
    decision = decide_lease(observed=released, observed_at=NOW, identity="a", now=NOW, duration=15)
    assert decision.action is LeaseAction.TAKE_OVER
    assert decision.record is not None
    assert decision.record.transitions == 8
    assert decision.reason == "released"


def test_lease_spec_round_trips() -> None:
    original = LeaseRecord(
        holder="songbird-0", duration=15, acquire_time=NOW + 0.123456, renew_time=NOW + 5.5, transitions=2
    )
    spec = original.to_spec()
    assert spec == {
        "holderIdentity": "songbird-0",
        "leaseDurationSeconds": 15,
        "leaseTransitions": 2,
        "acquireTime": "2027-01-15T08:00:00.123456Z",
        "renewTime": "2027-01-15T08:00:05.500000Z",
    }
    assert LeaseRecord.from_lease({"spec": spec}, default_duration=99) == original


def test_a_malformed_lease_spec_reads_as_free_with_our_duration() -> None:
    spec = {"leaseDurationSeconds": "15", "leaseTransitions": -1, "acquireTime": "yesterday", "renewTime": 5}
    assert LeaseRecord.from_lease({"spec": spec}, default_duration=12) == LeaseRecord(
        holder="", duration=12, acquire_time=None, renew_time=None, transitions=0
    )
    assert LeaseRecord.from_lease({}, default_duration=12).holder == ""


@pytest.mark.parametrize(
    ("text", "epoch"),
    [
        ("2027-01-15T08:00:00.000000Z", NOW),
        ("2027-01-15T08:00:00Z", NOW),
        ("2027-01-15T09:00:00.250000+01:00", NOW + 0.25),
        ("2027-01-15T08:00:00", NOW),
    ],
)
def test_micro_time_parsing(text: str, epoch: float) -> None:
    assert parse_micro_time(text) == epoch


def test_micro_time_format_is_utc_with_microseconds() -> None:
    assert format_micro_time(NOW + 0.000001) == "2027-01-15T08:00:00.000001Z"
    assert parse_micro_time(None) is None
    assert parse_micro_time("") is None


class NoStore:
    """An Elector that is refused at construction never reaches its store."""

    def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        raise AssertionError("not expected")

    def create_lease(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        raise AssertionError("not expected")

    def replace_lease(self, namespace: str, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        raise AssertionError("not expected")


class Clock:
    def now(self) -> float:
        return NOW


@pytest.mark.parametrize(("duration", "deadline"), [(15, 15.0), (15, 20.0), (15, 0.0), (0, None)])
def test_unsafe_elector_settings_are_refused(duration: int, deadline: float | None) -> None:
    with pytest.raises(ValueError, match="lease_duration|renew_deadline"):
        Elector(
            NoStore(),
            namespace="default",
            name="songbird",
            identity="a",
            clock=Clock(),
            lease_duration=duration,
            renew_deadline=deadline,
        )
