"""A `controller.kube` ``on_call`` hook for tests: what the client sent, counted in memory."""

from __future__ import annotations


class CallCounts:
    """An ``on_call`` hook that keeps counts and total seconds per (verb, resource, ok) in memory."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str, bool], int] = {}
        self.seconds: dict[tuple[str, str, bool], float] = {}

    def __call__(self, verb: str, resource: str, ok: bool, seconds: float) -> None:
        key = (verb, resource, ok)
        self.counts[key] = self.counts.get(key, 0) + 1
        self.seconds[key] = self.seconds.get(key, 0.0) + seconds

    def total(self, *, verb: str | None = None, resource: str | None = None, ok: bool | None = None) -> int:
        return sum(
            count
            for (v, r, o), count in self.counts.items()
            if (verb is None or v == verb) and (resource is None or r == resource) and (ok is None or o == ok)
        )
