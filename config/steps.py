"""The ``steps`` list of a policy: weights, and pause steps between them.

``steps: [10, {pause: 5m}, 20, {pause: {}}, 40]`` reads as the weights ``(10, 20, 40)`` (`Policy.steps`,
which every rule about weights reads) and the pauses ``(PauseStep(after=0, duration=300),
PauseStep(after=1, duration=None))`` (`Policy.pauses`), as Argo Rollouts' ``setWeight`` and ``pause``
steps. Rules kept here: a pause follows a weight (none before the first one), at most one pause between two
weights, a timed pause lasts more than 0s and at most 24h. Errors carry the path a user wrote
(``steps[3].pause``), also for weights after a pause (`yaml_index`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from songbird.config.errors import PolicyError
from songbird.config.fields import DAY, format_duration, parse_duration
from songbird.config.policy import PauseStep, Policy

PAUSE_MAX = DAY

#: Reads one weight (the loader's number check, with the field's bounds) at a path.
Number = Callable[[Any, str, Mapping[str, Any]], float]


def read_steps(
    value: Any, path: str, meta: Mapping[str, Any], number: Number
) -> tuple[tuple[float, ...], tuple[PauseStep, ...]]:
    """The weights and the pauses of a ``steps`` list (already known to be a list within its size)."""
    weights: list[float] = []
    pauses: list[PauseStep] = []
    for i, item in enumerate(value):
        where = f"{path}[{i}]"
        if isinstance(item, dict):
            if not weights:
                raise PolicyError("a pause step follows a weight (none before the first weight)", path=where)
            if pauses and pauses[-1].after == len(weights) - 1:
                raise PolicyError("one pause step between two weights at most", path=where)
            pauses.append(PauseStep(after=len(weights) - 1, duration=_pause(item, where)))
        else:
            weights.append(number(item, where, meta))
    return tuple(weights), tuple(pauses)


def _pause(item: dict[Any, Any], where: str) -> float | None:
    keys = [k for k in item if k != "pause"]
    if keys or "pause" not in item:
        bad = str(keys[0])[:60] if keys else ""
        raise PolicyError(
            f"a step is a weight or {{pause: 5m}} / {{pause: {{}}}}; unknown key {bad!r}"
            if keys
            else "a step is a weight or {pause: 5m} / {pause: {}}",
            path=f"{where}.{bad}" if keys else where,
        )
    value = item["pause"]
    at = f"{where}.pause"
    if isinstance(value, dict):
        if value:
            raise PolicyError("an indefinite pause is written {} (ended by resume or promote)", path=at)
        return None
    if not isinstance(value, str):
        raise PolicyError("expected a duration string like 5m, or {} (until resume)", path=at)
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise PolicyError(str(exc), path=at) from exc
    if not 0 < seconds <= PAUSE_MAX:
        raise PolicyError(f"must be more than 0s and at most {format_duration(PAUSE_MAX)}", path=at)
    return seconds


def yaml_index(policy: Policy, step: int) -> int:
    """Where weight step ``step`` stands in the YAML list (pauses before it counted)."""
    return step + sum(1 for p in policy.pauses if p.after < step)


__all__ = ["PAUSE_MAX", "read_steps", "yaml_index"]
