"""The total time a tick may spend on the network, shared by every call it makes.

The worker opens a `tick_deadline` around each tick; the code on the I/O edges (the guarded Prometheus
source, the fenced writer) asks `remaining()` before each call and gives up when nothing is left, and the
Prometheus queries are abandoned at the deadline (see ``controller.endpoints``). A contextvar carries it, so
each worker thread sees its own tick's deadline and code outside a tick sees none (infinite).
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Iterator
from contextlib import contextmanager

_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "songbird_tick_deadline", default=None
)


@contextmanager
def tick_deadline(seconds: float) -> Iterator[None]:
    """Within the block, `remaining` counts down from ``seconds`` (monotonic)."""
    token = _DEADLINE.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def remaining() -> float:
    """Seconds left in the current tick (``inf`` outside one)."""
    deadline = _DEADLINE.get()
    return float("inf") if deadline is None else deadline - time.monotonic()
