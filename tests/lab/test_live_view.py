"""The lab's live view (`lab.cli.LiveView`): the line it prints for a sample, written to a stream.

Covers: the traffic split check shown as ``split ok 9.8%`` / ``split MISMATCH 0.0%`` / ``split ?`` /
``split -``; a change of the check alone prints a new line; the summary of a held rollout says it is
never rolled back; the last operator command on the line (``cmd promote --step executed by alice``,
control characters replaced), a new command printing its whole record once (time, id, message), the
command kept through ``timeline.json``.
"""

from __future__ import annotations

import io
import json
from dataclasses import replace

from songbird.lab.cli import LiveView, summary
from songbird.lab.timeline import Sample, Timeline


def sample(split: str = "", share: float | None = None, t: float = 20.0) -> Sample:
    return Sample(
        t=t,
        phase="Progressing",
        step=1,
        weight=10.0,
        reason="r",
        verdicts={"error-rate": "INCONCLUSIVE"},
        split=split,
        split_share=share,
    )


def test_the_line_shows_the_split_check() -> None:
    view = LiveView(io.StringIO(), steps=5, quiet=False)
    assert "split MISMATCH 0.0%  error-rate=INCONCLUSIVE" in view.format(sample("mismatch", 0.0))
    assert "split ok 9.8%" in view.format(sample("consistent", 0.098))
    assert "split ?" in view.format(sample("undecided", None))
    assert "split -" in view.format(sample())


def test_a_change_of_the_check_alone_prints_a_line() -> None:
    out = io.StringIO()
    view = LiveView(out, steps=5, quiet=False)
    view(sample("undecided", None, t=10.0))
    view(sample("mismatch", 0.0, t=10.5))
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and "split ?" in lines[0] and "split MISMATCH 0.0%" in lines[1]


def test_the_summary_of_a_held_rollout() -> None:
    out = io.StringIO()
    timeline = Timeline(scenario="canary-ignored", rate=150.0, started_at=0.0, policy="")
    timeline.outcome, timeline.reason = "held", "step 1/5 at 10%: traffic split mismatch: ..."
    summary(timeline, out)
    assert "held: step 1/5 at 10%: traffic split mismatch" in out.getvalue()
    assert "never rolled back" in out.getvalue()


def commanded(
    command: str, result: str, *, by: str | None, id_: str = "c1", t: float = 20.0, message: str = ""
) -> Sample:
    return replace(
        sample(t=t),
        last_command={
            "id": id_,
            "command": command,
            "at": "2026-12-01T20:00:00Z",
            "result": result,
            "message": message,
            "by": by,
        },
    )


def test_the_line_shows_the_last_command() -> None:
    view = LiveView(io.StringIO(), steps=5, quiet=False)
    line = view.format(commanded("promote --step", "executed", by="alice"))
    assert line.endswith("error-rate=INCONCLUSIVE  cmd promote --step executed by alice")
    assert view.format(commanded("retry", "refused", by=None)).endswith("cmd retry refused")
    # No command yet: nothing about commands on the line.
    assert "cmd" not in view.format(sample())
    # A hostile field manager cannot redraw the terminal.
    assert "\x1b" not in view.format(commanded("pause", "executed", by="x\x1b[2Jy"))


def test_a_new_command_prints_a_line_with_its_record_once() -> None:
    out = io.StringIO()
    view = LiveView(out, steps=5, quiet=False)
    view(sample(t=10.0))
    refused = "retry applies to a Failed rollout; this one is Progressing"
    view(commanded("retry", "refused", by="songbird-cli", id_="r1", t=10.5, message=refused))
    view(commanded("retry", "refused", by="songbird-cli", id_="r1", t=11.0, message=refused))
    view(commanded("pause", "executed", by="songbird-cli", id_="p1", t=11.5))
    lines = out.getvalue().splitlines()
    assert len(lines) == 5, lines
    assert "cmd" not in lines[0]
    assert lines[1] == (
        "  .. command retry: refused at 2026-12-01T20:00:00Z by songbird-cli (id r1): " + refused
    )
    assert lines[2].endswith("cmd retry refused by songbird-cli")
    assert lines[3].startswith("  .. command pause: executed at 2026-12-01T20:00:00Z by songbird-cli (id p1)")
    assert lines[4].endswith("cmd pause executed by songbird-cli")


def test_the_last_command_survives_the_timeline_json() -> None:
    timeline = Timeline(scenario="healthy", rate=80.0, started_at=0.0, policy="")
    timeline.samples.append(commanded("abort", "executed", by="bob"))
    again = Timeline.from_dict(json.loads(json.dumps(timeline.to_dict())))
    assert again.samples[0].last_command == timeline.samples[0].last_command
    assert again.samples[0].last_command is not None and again.samples[0].last_command["by"] == "bob"
