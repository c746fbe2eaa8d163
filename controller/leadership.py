"""The Lease, renewed on its own thread: never queued behind ticks, never running discovery.

`LeaderLoop` runs `Elector.try_acquire_or_renew` every ``retry`` seconds (client-go's defaults: 15 s
lease, 10 s renew deadline, 2 s retry period) and after each round moves the `Fence`: held until the round's
start plus the lease duration while leading, revoked otherwise. The only other thing it does is call
``on_change(leading)`` when leadership changes; that callback must be quick (it enqueues, it never does I/O
itself). Each round is bounded by the Lease client's own API budget, which must be well under the renew
deadline.

Shutdown: `stop` ends the loop (waiting at most for the round in flight), then `release` revokes the fence
and clears the holder so another replica takes over at once. The elector is only ever used by one thread
at a time (the loop's, then the caller of `release` after the loop ended, or not at all if it did not end
in time: the Lease then simply expires).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import structlog

from songbird.controller.fence import Fence
from songbird.controller.lease import Elector

log = structlog.get_logger("songbird")


class LeaderLoop:
    def __init__(
        self,
        elector: Elector,
        fence: Fence,
        *,
        lease_duration: float,
        retry: float = 2.0,
        on_change: Callable[[bool], None] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < retry < lease_duration:
            raise ValueError("the retry period must be positive and shorter than the lease duration")
        self._elector = elector
        self._fence = fence
        self._duration = lease_duration
        self._retry = retry
        self._on_change = on_change
        self._monotonic = monotonic
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="songbird-lease", daemon=True)
        self._leading = False
        self.rounds = 0

    @property
    def leading(self) -> bool:
        return self._leading

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float) -> bool:
        """End the loop; True when it ended within ``timeout`` seconds."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def release(self, *, loop_ended: bool) -> bool:
        """Revoke the fence, then give the Lease up (only when the loop thread is no longer using the
        elector). True when the release was written."""
        self._fence.revoke()
        if not loop_ended:
            log.warning("lease not released: the renewal round in flight did not end in time")
            return False
        return self._elector.release()

    def round(self) -> bool:
        """One election round (public for tests); True while leading."""
        started = self._monotonic()
        renewals = self._elector.renewals
        try:
            leading = self._elector.try_acquire_or_renew()
        except Exception:  # the loop must survive anything a round can raise
            log.exception("lease round failed")
            leading = self._elector.is_leader
        if leading and self._elector.renewals > renewals:
            self._fence.hold_until(started + self._duration)
        elif not leading:
            self._fence.revoke()
        self.rounds += 1
        if leading != self._leading:
            self._leading = leading
            log.info("leadership changed", identity=self._elector.identity, leader=leading)
            if self._on_change is not None:
                try:
                    self._on_change(leading)
                except Exception:
                    log.exception("leadership callback failed")
        return leading

    def _run(self) -> None:
        while not self._stop.is_set():
            began = self._monotonic()
            self.round()
            self._stop.wait(max(0.0, self._retry - (self._monotonic() - began)))
