"""Structured logging: one JSON object per line on standard output, as log collectors expect.

Every decision is logged once by the reconciler with the rollout's namespace/name, step, weight, verdicts,
action and reason bound as fields; this module only configures the rendering and the level.

Songbird's own events (structlog) and those of its libraries (APScheduler, urllib3: the standard library's
logging) go through one stdlib handler, so every line is JSON and a line from one thread is never cut by
another's (the handler's lock serialises the writes).

Every line is bounded, whatever a tenant or an upstream server put into the text that reaches it (a
reason quoting labels, a URL with a long query, a policy value): each string field is cut to
``FIELD_LIMIT`` characters (a traceback, ``exception``, to ``TRACEBACK_LIMIT``), nested lists and dicts are
walked to ``DEPTH`` levels with at most ``ITEMS`` items each, and control characters become spaces, so one
line stays within a few hundred kilobytes even for a policy with the most metrics the loader allows.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from songbird.config.text import MESSAGE_LIMIT, bounded

LEVELS = ("debug", "info", "warning", "error")
FIELD_LIMIT = MESSAGE_LIMIT  # characters of one string field
TRACEBACK_LIMIT = 8 * MESSAGE_LIMIT  # characters of a formatted exception
DEPTH = 4  # levels of nested lists and dicts kept
ITEMS = 50  # items kept of one list or dict


def _bound(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return bounded(value, FIELD_LIMIT) if len(value) > FIELD_LIMIT or not value.isprintable() else value
    if isinstance(value, bool | int | float) or value is None:
        return value
    if depth >= DEPTH:
        return bounded(repr(value), FIELD_LIMIT)
    if isinstance(value, dict):
        items = list(value.items())
        kept = {bounded(str(k), 100): _bound(v, depth + 1) for k, v in items[:ITEMS]}
        if len(items) > ITEMS:
            kept["..."] = f"{len(items) - ITEMS} more"
        return kept
    if isinstance(value, list | tuple):
        seq = [_bound(v, depth + 1) for v in value[:ITEMS]]
        return [*seq, f"... {len(value) - ITEMS} more"] if len(value) > ITEMS else seq
    return bounded(str(value), FIELD_LIMIT)


def bound_fields(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """A structlog processor: every field of the line bounded (see the module docstring)."""
    for key, value in list(event.items()):
        if key == "exception" and isinstance(value, str):
            event[key] = value[:TRACEBACK_LIMIT]
        else:
            event[key] = _bound(value)
    return event


_SHARED: list[structlog.typing.Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def configure(level: str = "info") -> None:
    if level not in LEVELS:
        raise ValueError(f"unknown log level {level!r} (known: {', '.join(LEVELS)})")
    number = getattr(logging, level.upper())
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *_SHARED],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                bound_fields,
                structlog.processors.JSONRenderer(),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(number)
    structlog.configure(
        processors=[*_SHARED, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(number),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=False,
    )
