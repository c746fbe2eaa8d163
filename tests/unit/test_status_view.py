"""The pure parts of the operator CLI: the status renderer (`analysis.status_view`) draws any record,
old or new, hostile or broken, without raising; shows phase, step of the policy's steps, weight, PAUSED,
each metric's verdict with its figures (dry-run ones marked), the reason, the forecast and the last command;
replaces terminal control characters from the cluster; and lists the kept evaluations for `history`. The
command request (`controller.command_request`) is valid by construction, writes exactly the contract's
annotation, and reads its answer only when the ids match.
"""

from __future__ import annotations

import json

import pytest

from songbird.analysis.status_view import (
    ago,
    history_rows,
    render_history,
    render_status,
    render_table,
)
from songbird.controller.command_request import (
    COMMAND_ANNOTATION,
    CommandRequest,
    Exit,
    acknowledgement,
    pending_command,
)

NOW = 1_700_000_100.0
RECORD = {
    "phase": "Progressing",
    "step": 2,
    "weight": 40.0,
    "paused": True,
    "reason": "holding",
    "forecast": "promotion in about 3m",
    "last_evaluated_at": 1_700_000_088.0,
    "history": [
        {"at": 1_700_000_000.0, "step": 1, "weight": 20.0, "verdicts": "PF", "canary_requests": 9.0},
        {
            "at": 1_700_000_088.0,
            "step": 2,
            "weight": 40.0,
            "results": [
                {
                    "name": "error-rate",
                    "verdict": "PASS",
                    "reason": "fine",
                    "value": 0.001,
                    "limit": 0.02,
                    "canary_requests": 400.0,
                    "figures": {"ratio": 0.5, "e_good": 25.0},
                },
                {"name": "p99", "verdict": "FAIL", "reason": "slow", "dryRun": True},
            ],
        },
    ],
    "lastCommand": {
        "id": "x1",
        "command": "pause",
        "at": "2026-12-01T19:00:00Z",
        "result": "executed",
        "message": "held",
        "by": "songbird-cli",
    },
}


def test_the_detailed_view_shows_what_an_operator_needs() -> None:
    lines = render_status("shop/web", RECORD, now=NOW, steps=5)
    assert lines[0] == "shop/web  Progressing  step 3/5  weight 40%  PAUSED"
    assert "  reason: holding" in lines and "  forecast: promotion in about 3m" in lines
    assert "  metrics (evaluated 12s ago):" in lines
    metric = lines[lines.index("  metrics (evaluated 12s ago):") + 1]
    expected = "error-rate PASS 0.001 (limit 0.02) requests canary 400 ratio=0.5 e_good=25"
    assert metric.split() == expected.split(" ")
    assert any(line.split()[:3] == ["p99", "FAIL", "(dry-run)"] for line in lines)
    assert (
        lines[-1] == "  last command: pause: executed at 2026-12-01T19:00:00Z by songbird-cli (id x1): held"
    )


@pytest.mark.parametrize(
    "record",
    [
        {},
        {"phase": 3, "step": "x", "weight": None, "history": "no", "lastCommand": 5, "paused": "yes"},
        {"history": [{"at": "?", "results": [{"verdict": "MAYBE"}, 7]}, None], "weight": float("nan")},
        {"history": [{"at": 1.0, "step": 0, "weight": 1.0, "verdicts": "Z"}], "lastCommand": {"id": None}},
    ],
)
def test_any_record_renders_without_raising(record: dict[str, object]) -> None:
    lines = render_status("ns/x", record, now=NOW)
    assert lines[0].startswith("ns/x  ")
    assert render_table([("ns/x", record)])[1].startswith("ns/x")
    assert render_history("ns/x", record, now=NOW)[0].startswith("ns/x  ")


def test_an_empty_record_is_an_idle_rollout_without_evaluations() -> None:
    assert render_status("ns/x", {}, now=NOW) == [
        "ns/x  Idle  step -  weight -",
        "  metrics: no evaluation yet",
        "  last command: none",
    ]


def test_control_characters_from_the_cluster_never_reach_the_terminal() -> None:
    hostile = dict(RECORD, reason="ok\x1b[2J\x1b]0;owned\x07\nFAKE LINE")
    hostile["lastCommand"] = dict(RECORD["lastCommand"], message="\x1b[31mred\r")  # type: ignore[arg-type]
    text = "\n".join(render_status("a/b", hostile, now=NOW) + render_history("a/b", hostile, now=NOW))
    assert "\x1b" not in text and "\x07" not in text and "\r" not in text
    assert "FAKE LINE" in text and not any(line.startswith("FAKE") for line in text.splitlines())


def test_history_lists_the_kept_evaluations_oldest_first() -> None:
    assert history_rows(RECORD) == [
        {
            "at": "2023-11-14T22:13:20Z",
            "step": 2,
            "weight": 20.0,
            "verdicts": {"error-rate": "PASS", "p99": "FAIL"},
            "canaryRequests": 9.0,
        },
        {
            "at": "2023-11-14T22:14:48Z",
            "step": 3,
            "weight": 40.0,
            "verdicts": {"error-rate": "PASS", "p99": "FAIL"},
            "canaryRequests": 400.0,
        },
    ]
    assert ago(NOW - 3 * 86400, NOW) == "3d ago" and ago(None, NOW) == ""


def test_a_command_request_writes_exactly_the_contract() -> None:
    step = CommandRequest(id="a.b:c-1_2", command="promote", step=True)
    assert step.display == "promote --step"
    assert step.patch() == {
        "metadata": {
            "annotations": {COMMAND_ANNOTATION: '{"command":"promote","id":"a.b:c-1_2","step":true}'}
        }
    }
    assert json.loads(CommandRequest(id="z", command="abort").annotation()) == {"id": "z", "command": "abort"}
    fresh = {CommandRequest.new("pause").id for _ in range(50)}
    assert len(fresh) == 50
    for bad in (
        {"id": "", "command": "abort"},
        {"id": "x" * 65, "command": "abort"},
        {"id": "a b", "command": "abort"},
        {"id": "x", "command": "delete"},
        {"id": "x", "command": "abort", "step": True},
    ):
        with pytest.raises(ValueError):
            CommandRequest(**bad)  # type: ignore[arg-type]


def test_only_the_answer_to_our_id_counts() -> None:
    assert acknowledgement(RECORD, "other") is None
    answer = acknowledgement(RECORD, "x1")
    assert answer is not None and answer.exit is Exit.EXECUTED and answer.by == "songbird-cli"
    refused = dict(RECORD, lastCommand=dict(RECORD["lastCommand"], result="refused"))  # type: ignore[arg-type]
    assert acknowledgement(refused, "x1").exit is Exit.REFUSED  # type: ignore[union-attr]
    assert acknowledgement({"lastCommand": "junk"}, "x1") is None
    cm = {"metadata": {"annotations": {COMMAND_ANNOTATION: '{"id": "p1", "command": "pause"}'}}}
    assert pending_command(cm) == "p1"
    assert pending_command({"metadata": {"annotations": {COMMAND_ANNOTATION: "{"}}}) is None
