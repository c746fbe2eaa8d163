"""Log lines are bounded (issue 11, item 4): whatever text reaches a log line (a reason quoting a tenant's
labels, an upstream server's error, a URL with a long query), each string field is cut to
`FIELD_LIMIT` characters on one line, nested lists and dicts keep at most `ITEMS` items, and a library's own
stdlib log records go through the same bound; every line stays one JSON object."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from songbird.controller import logs


@pytest.fixture
def lines(capsys: pytest.CaptureFixture[str]) -> Iterator[pytest.CaptureFixture[str]]:
    """Standard output as the test sees it; the test configures logging itself (the handler keeps the
    stream it was given, and pytest swaps it between a test's setup and its call)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield capsys
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        structlog.reset_defaults()


def records(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    out = capsys.readouterr().out
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_a_huge_reason_and_many_results_are_cut(lines: pytest.CaptureFixture[str]) -> None:
    logs.configure("info")
    structlog.get_logger("songbird").info(
        "decision",
        rollout="team-a/web",
        reason="label " + "x" * 300_000,
        results=[{"name": f"m{i}", "reason": "y" * 5_000, "figures": {"ratio": 1.5}} for i in range(120)],
        odd="line one\nline two\u2028three",
    )
    (line,) = records(lines)
    reason = str(line["reason"])
    assert len(reason) == logs.FIELD_LIMIT and reason.endswith("...")
    results = line["results"]
    assert isinstance(results, list) and len(results) == logs.ITEMS + 1
    assert results[-1] == f"... {120 - logs.ITEMS} more"
    assert all(len(r["reason"]) <= logs.FIELD_LIMIT for r in results[:-1])
    assert results[0]["figures"] == {"ratio": 1.5}  # numbers are kept as they are
    assert line["odd"] == "line one line two three"
    assert line["rollout"] == "team-a/web"


def test_library_records_are_bounded_too(lines: pytest.CaptureFixture[str]) -> None:
    logs.configure("info")
    logging.getLogger("urllib3.connectionpool").warning("Retrying %s", "/api/v1/query?query=" + "z" * 50_000)
    (line,) = records(lines)
    assert len(str(line["event"])) <= logs.FIELD_LIMIT
    assert line["level"] == "warning"


def test_a_traceback_keeps_more_but_is_bounded(lines: pytest.CaptureFixture[str]) -> None:
    logs.configure("info")
    try:
        raise ValueError("v" * 50_000)
    except ValueError:
        structlog.get_logger("songbird").exception("tick failed", rollout="team-a/web")
    (line,) = records(lines)
    assert "ValueError" in str(line["exception"])
    assert len(str(line["exception"])) <= logs.TRACEBACK_LIMIT
