"""Leader election over a ``coordination.k8s.io/v1`` Lease, after client-go's ``tools/leaderelection``.

Several replicas may run; only the one holding the Lease reconciles. The rules are client-go's
(kubernetes/kubernetes ``staging/src/k8s.io/client-go/tools/leaderelection/leaderelection.go``,
``tryAcquireOrRenew`` and ``release``):

- a missing Lease is created with this replica as holder; a create that loses the race gets 409;
- the holder renews by writing ``renewTime``; the holder's own record is always renewable;
- another replica takes over only when the record it sees has not changed for ``leaseDurationSeconds``
  *of its own clock* (the time it first observed that record), so clock skew between replicas does not
  matter, only their rates; an empty holder (after `Elector.release`) can be taken at once;
- a take-over increments ``leaseTransitions`` and sets ``acquireTime``;
- every update is a PUT carrying the observed ``metadata.resourceVersion``: of two replicas racing for an
  expired Lease the API server accepts one and answers 409 to the other, which then stands by.

`decide_lease` is the pure part (observed record, identity, now -> what to write); `Elector` does the I/O
through the three-method `LeaseStore` (``controller.kube.KubeClient`` is one) and keeps what it observed.
Time comes from the injected `Clock` or the ``now`` argument; nothing here reads the wall clock.

Safety margin: a leader that cannot renew (API errors) keeps acting only for ``renew_deadline`` seconds
after its last successful renewal, which must be shorter than the lease duration the others wait.
"""

from __future__ import annotations

import copy
import datetime
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Protocol

import structlog

from songbird.controller.errors import ClusterError, Conflict, NotFound
from songbird.controller.ports import Clock, Obj

log = structlog.get_logger()

LEASE_API_VERSION = "coordination.k8s.io/v1"


class LeaseStore(Protocol):
    def get_lease(self, namespace: str, name: str) -> Obj | None:
        """The Lease, or None when it does not exist."""
        ...

    def create_lease(self, namespace: str, body: Mapping[str, Any]) -> Obj:
        """Create; raises `Conflict` when it already exists."""
        ...

    def replace_lease(self, namespace: str, name: str, body: Mapping[str, Any]) -> Obj:
        """PUT with ``metadata.resourceVersion``; raises `Conflict` when that version is stale."""
        ...


def format_micro_time(epoch: float) -> str:
    """A Kubernetes MicroTime (RFC 3339 with microseconds, UTC)."""
    return datetime.datetime.fromtimestamp(epoch, tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_micro_time(text: Any) -> float | None:
    """Epoch seconds of a MicroTime or Time string; None when absent or unreadable."""
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()


@dataclass(frozen=True, kw_only=True)
class LeaseRecord:
    """The election state held in a Lease's spec. ``holder`` is "" when nobody holds it."""

    holder: str
    duration: int
    acquire_time: float | None
    renew_time: float | None
    transitions: int

    @classmethod
    def from_lease(cls, lease: Mapping[str, Any], *, default_duration: int) -> LeaseRecord:
        spec = lease.get("spec") or {}
        duration = spec.get("leaseDurationSeconds")
        transitions = spec.get("leaseTransitions")
        return cls(
            holder=str(spec.get("holderIdentity") or ""),
            duration=duration if isinstance(duration, int) and duration > 0 else default_duration,
            acquire_time=parse_micro_time(spec.get("acquireTime")),
            renew_time=parse_micro_time(spec.get("renewTime")),
            transitions=transitions if isinstance(transitions, int) and transitions >= 0 else 0,
        )

    def to_spec(self) -> Obj:
        spec: Obj = {
            "holderIdentity": self.holder,
            "leaseDurationSeconds": self.duration,
            "leaseTransitions": self.transitions,
        }
        if self.acquire_time is not None:
            spec["acquireTime"] = format_micro_time(self.acquire_time)
        if self.renew_time is not None:
            spec["renewTime"] = format_micro_time(self.renew_time)
        return spec


class LeaseAction(StrEnum):
    CREATE = "create"
    TAKE_OVER = "take-over"
    RENEW = "renew"
    STANDBY = "standby"


@dataclass(frozen=True, kw_only=True)
class LeaseStep:
    action: LeaseAction
    record: LeaseRecord | None  # what to write; None when standing by
    reason: str


def decide_lease(
    *, observed: LeaseRecord | None, observed_at: float, identity: str, now: float, duration: int
) -> LeaseStep:
    """What this replica should write, given the record it sees and since when (its own clock) it has
    seen that record unchanged."""
    if observed is None:
        record = LeaseRecord(
            holder=identity, duration=duration, acquire_time=now, renew_time=now, transitions=0
        )
        return LeaseStep(action=LeaseAction.CREATE, record=record, reason="no lease yet")
    if observed.holder == identity:
        record = replace(observed, duration=duration, renew_time=now)
        return LeaseStep(action=LeaseAction.RENEW, record=record, reason="held by this replica")
    expires = observed_at + observed.duration
    if observed.holder and now < expires:
        return LeaseStep(
            action=LeaseAction.STANDBY,
            record=None,
            reason=f"held by {observed.holder}; free in {expires - now:.1f}s unless renewed",
        )
    record = LeaseRecord(
        holder=identity,
        duration=duration,
        acquire_time=now,
        renew_time=now,
        transitions=observed.transitions + 1,
    )
    why = f"{observed.holder} did not renew for {now - observed_at:.1f}s" if observed.holder else "released"
    return LeaseStep(action=LeaseAction.TAKE_OVER, record=record, reason=why)


class Elector:
    """One replica's view of the election. Call `try_acquire_or_renew` every few seconds (well within
    ``renew_deadline``); act only while `is_leader`; call `release` on shutdown."""

    def __init__(
        self,
        store: LeaseStore,
        *,
        namespace: str,
        name: str,
        identity: str,
        clock: Clock,
        lease_duration: int = 15,
        renew_deadline: float | None = None,
    ) -> None:
        if lease_duration < 1:
            raise ValueError("lease_duration must be at least one second")
        deadline = renew_deadline if renew_deadline is not None else lease_duration * 2 / 3
        if not 0 < deadline < lease_duration:
            raise ValueError("renew_deadline must be positive and shorter than lease_duration")
        self._store = store
        self._namespace = namespace
        self._name = name
        self._identity = identity
        self._clock = clock
        self._duration = lease_duration
        self._deadline = deadline
        self._observed: LeaseRecord | None = None
        self._observed_at = 0.0
        self._lease: Obj | None = None
        self._renewed_at: float | None = None
        self._seen = False
        self.renewals = 0  # successful writes by this elector (create, take-over, renew)

    @property
    def identity(self) -> str:
        return self._identity

    @property
    def holder(self) -> str | None:
        """The holder in the last record seen ("" when released, None before the first look)."""
        return self._observed.holder if self._observed is not None else None

    @property
    def observed(self) -> bool:
        """Whether a round has read the Lease (or its absence) at least once."""
        return self._seen

    @property
    def is_leader(self) -> bool:
        return self._leading(self._clock.now())

    def _leading(self, now: float) -> bool:
        return self._renewed_at is not None and now - self._renewed_at < self._deadline

    def try_acquire_or_renew(self, now: float | None = None) -> bool:
        """One round: read the Lease, then create, take over, renew or stand by. True while leading."""
        now = self._clock.now() if now is None else now
        was_leader = self._leading(now)
        try:
            lease = self._store.get_lease(self._namespace, self._name)
        except ClusterError as exc:
            return self._keep_on_error(now, was_leader, exc)
        self._observe(lease, now)
        decision = decide_lease(
            observed=self._observed,
            observed_at=self._observed_at,
            identity=self._identity,
            now=now,
            duration=self._duration,
        )
        if decision.record is None:
            self._step_down(was_leader, decision.reason)
            return False
        try:
            written = self._write(decision.action, decision.record)
        except (Conflict, NotFound) as exc:
            # Someone else wrote first (or deleted the Lease): re-read on the next round.
            self._step_down(was_leader, f"lost the lease race: {exc}")
            return False
        except ClusterError as exc:
            return self._keep_on_error(now, was_leader, exc)
        self._observe(written, now)
        self._renewed_at = now
        self.renewals += 1
        if not was_leader:
            log.info(
                "leader_elected",
                lease=f"{self._namespace}/{self._name}",
                identity=self._identity,
                action=str(decision.action),
                reason=decision.reason,
                transitions=decision.record.transitions,
            )
        return True

    def release(self, now: float | None = None) -> bool:
        """Give the Lease up (holder cleared) so another replica takes over at once. Never raises;
        True when the release was written."""
        now = self._clock.now() if now is None else now
        if not self._leading(now) or self._observed is None or self._lease is None:
            self._renewed_at = None
            return False
        record = LeaseRecord(
            holder="", duration=1, acquire_time=now, renew_time=now, transitions=self._observed.transitions
        )
        self._renewed_at = None
        try:
            written = self._write(LeaseAction.RENEW, record)
        except ClusterError as exc:
            log.warning("leader_release_failed", lease=f"{self._namespace}/{self._name}", error=str(exc))
            return False
        self._observe(written, now)
        log.info("leader_released", lease=f"{self._namespace}/{self._name}", identity=self._identity)
        return True

    def _write(self, action: LeaseAction, record: LeaseRecord) -> Obj:
        if action is LeaseAction.CREATE or self._lease is None:
            body: Obj = {
                "apiVersion": LEASE_API_VERSION,
                "kind": "Lease",
                "metadata": {"name": self._name, "namespace": self._namespace},
                "spec": record.to_spec(),
            }
            return self._store.create_lease(self._namespace, body)
        body = copy.deepcopy(self._lease)
        body.setdefault("apiVersion", LEASE_API_VERSION)
        body.setdefault("kind", "Lease")
        body["spec"] = {**(body.get("spec") or {}), **record.to_spec()}
        return self._store.replace_lease(self._namespace, self._name, body)

    def _observe(self, lease: Obj | None, now: float) -> None:
        record = LeaseRecord.from_lease(lease, default_duration=self._duration) if lease is not None else None
        version = ((lease or {}).get("metadata") or {}).get("resourceVersion")
        previous = ((self._lease or {}).get("metadata") or {}).get("resourceVersion")
        if record != self._observed or version != previous:
            self._observed_at = now
        self._observed = record
        self._lease = lease
        self._seen = True

    def _step_down(self, was_leader: bool, reason: str) -> None:
        self._renewed_at = None
        if was_leader:
            log.warning(
                "leader_lost", lease=f"{self._namespace}/{self._name}", identity=self._identity, reason=reason
            )

    def _keep_on_error(self, now: float, was_leader: bool, exc: ClusterError) -> bool:
        leading = self._leading(now)
        log.warning(
            "leader_election_error",
            lease=f"{self._namespace}/{self._name}",
            identity=self._identity,
            leading=leading,
            error=str(exc),
        )
        if was_leader and not leading:
            self._step_down(was_leader, "could not renew within the renew deadline")
        return leading
