"""Structured logging: one JSON object per line on standard output, as log collectors expect.

Every decision is logged once by the reconciler with the rollout's namespace/name, step, weight, verdicts,
action and reason bound as fields; this module only configures the rendering and the level.
"""

from __future__ import annotations

import logging
import sys

import structlog

LEVELS = ("debug", "info", "warning", "error")


def configure(level: str = "info") -> None:
    if level not in LEVELS:
        raise ValueError(f"unknown log level {level!r} (known: {', '.join(LEVELS)})")
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(sort_keys=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stdout),
        cache_logger_on_first_use=False,
    )
