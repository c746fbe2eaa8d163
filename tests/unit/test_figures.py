"""The typed figures of a verdict (analysis.figures) as the status annotation and the log see them.

Covers: `to_dict` writes one key per figure that is set, under the names statuses have always used, and
nothing for figures not computed; a judge's figures survive a JSON round trip unchanged; a status written
by the previous version (a string-keyed dict with nulls, unknown keys, values of the wrong type) still
loads, with what it cannot read as absent; and a whole `RolloutState` from before the change resumes.
"""

from __future__ import annotations

import json
from dataclasses import fields

from songbird.analysis.compare import CompareParams, judge_metric
from songbird.analysis.figures import Figures
from songbird.analysis.state import RolloutState
from songbird.analysis.verdict import MetricResult, Verdict, WindowCounts


def test_only_figures_that_are_set_are_written() -> None:
    assert Figures().to_dict() == {}
    figures = Figures(e_bad=3.5, threshold_bad=100.0, shared_outage=False, sparse=True)
    assert figures.to_dict() == {"e_bad": 3.5, "threshold_bad": 100.0, "shared_outage": False, "sparse": True}
    result = MetricResult(name="m", verdict=Verdict.INCONCLUSIVE, reason="r")
    assert "figures" not in result.to_dict()


def test_a_judges_figures_round_trip_through_json() -> None:
    result, _ = judge_metric(
        name="error-rate",
        counts=WindowCounts(canary_total=500.0, canary_bad=2.0, stable_total=4500.0, stable_bad=20.0),
        sums={},
        params=CompareParams(),
        ceiling=0.02,
        n_metrics=2,
        min_requests=100,
    )
    written = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert {"canary_total", "e_bad", "e_good", "threshold_bad", "ceiling", "e_ceiling_good"} <= set(
        written["figures"]
    )
    assert written["figures"]["shared_outage"] is False
    assert MetricResult.from_dict(written) == result


def test_every_figure_is_read_back() -> None:
    every = {f.name: (True if f.type == "bool | None" else 0.5) for f in fields(Figures)}
    assert Figures.from_dict(every).to_dict() == every


def test_a_figures_dict_from_the_previous_version_loads() -> None:
    old = {
        "canary_total": 120,  # an integer where a float is kept
        "ratio": None,  # the previous version wrote nulls
        "e_bad": 2.5,
        "e_bad_history": None,
        "shared_outage": False,
        "history_frozen": True,
        "some_future_figure": 7,  # unknown: ignored
        "e_good": "n/a",  # wrong type: absent
        "stable_total": True,  # a boolean is not a count
        "sparse": 1,  # a number is not a flag
        "alpha": 10**400,  # beyond float range: absent
    }
    figures = Figures.from_dict(old)
    assert figures == Figures(canary_total=120.0, e_bad=2.5, shared_outage=False, history_frozen=True)
    assert Figures.from_dict(None) == Figures() and Figures.from_dict([1, 2]) == Figures()


def test_a_status_written_before_typed_figures_resumes() -> None:
    status = {
        "phase": "Progressing",
        "step": 1,
        "weight": 20.0,
        "history": [
            {
                "at": 1000.0,
                "step": 1,
                "weight": 20.0,
                "results": [
                    {
                        "name": "error-rate",
                        "verdict": "INCONCLUSIVE",
                        "reason": "waiting",
                        "figures": {"e_bad": 1.2, "e_good": 4.0, "alpha": 0.01, "ratio": None},
                    },
                    {"name": "latency", "verdict": "ERROR", "reason": "no answer"},
                ],
            }
        ],
    }
    state = RolloutState.from_json(json.dumps(status))
    error_rate, latency = state.history[0].results
    assert (error_rate.figures.e_bad, error_rate.figures.e_good, error_rate.figures.ratio) == (1.2, 4.0, None)
    assert latency.figures == Figures()
    assert RolloutState.from_json(state.to_json()) == state
