"""Fencing: a write leaves this replica only while its Lease is held with room to spare for that write.

Leader election alone says who *should* act; a replica that was paused (CPU starvation, SIGSTOP, a long
GC) can wake up in the middle of a tick after another replica took over. The lease thread records, after
each successful renewal, until when (on this process' monotonic clock) no other replica can have taken the
Lease: the moment the renewal round *started* plus the lease duration, because another replica waits a full
lease duration on its own clock from when it first saw our renewed record, which is after we sent it.
Every write calls `Fence.check` with the longest it can take; it passes only when

    now + write_timeout < held_until - margin

so a write that starts also ends while the Lease is ours (``margin`` absorbs clock-rate differences
between replicas). Otherwise it raises `LeadershipLost` and the tick stops before that write. The monotonic
clock keeps counting while the process is stopped, so a resumed replica sees its lease as expired.

What this cannot fence: a pause that falls between a passed check and the bytes leaving the socket (a
window of microseconds, against seconds of margin). Closing it needs a server-side precondition on every
write, which the API offers only as resourceVersion on whole-object writes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from songbird.config.errors import SongbirdError


class LeadershipLost(SongbirdError):
    """This replica may not write: it does not hold the Lease with enough time left for the write."""


class Fence:
    """Until when writes are allowed (monotonic seconds). Thread-safe; the lease thread moves it, the
    workers read it."""

    def __init__(self, *, margin: float = 1.0, monotonic: Callable[[], float] = time.monotonic) -> None:
        if margin < 0:
            raise ValueError("margin must not be negative")
        self._margin = margin
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._held_until: float | None = None

    def hold_until(self, deadline: float) -> None:
        """The Lease is ours until ``deadline`` (monotonic seconds)."""
        with self._lock:
            self._held_until = deadline

    def revoke(self) -> None:
        """No write from now on (leadership lost, or shutting down)."""
        with self._lock:
            self._held_until = None

    def remaining(self) -> float:
        """Seconds of safe writing left (negative or zero when none)."""
        with self._lock:
            held = self._held_until
        if held is None:
            return 0.0
        return held - self._margin - self._monotonic()

    def check(self, write_timeout: float) -> None:
        """Raise `LeadershipLost` unless a write taking up to ``write_timeout`` seconds ends in time."""
        left = self.remaining()
        if not write_timeout < left:
            raise LeadershipLost(
                f"not writing: the Lease is held for {max(left, 0.0):.1f}s more (margin included), "
                f"a write may take {write_timeout:.1f}s"
            )


class AlwaysHeld:
    """The fence when leader election is off: a single replica owns everything."""

    def check(self, write_timeout: float) -> None:
        return None

    def remaining(self) -> float:
        return float("inf")
