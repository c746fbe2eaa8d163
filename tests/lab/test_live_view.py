"""The lab's live view (`lab.cli.LiveView`): the line it prints for a sample, written to a stream.

Covers: the traffic split check shown as ``split ok 9.8%`` / ``split MISMATCH 0.0%`` / ``split ?`` /
``split -``; a change of the check alone prints a new line; the summary of a held rollout says it is
never rolled back.
"""

from __future__ import annotations

import io

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
