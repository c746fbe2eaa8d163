"""The rollout status as a person reads it: a pure renderer from the status record to lines of text.

Input is the ``songbird.dev/status`` annotation parsed as a plain JSON dict (not `RolloutState`), so keys
a newer controller adds (``lastCommand``, ``paused``, a verdict's dry-run flag) show up here as soon as the
controller writes them, and an older record still renders. The CLI (`songbird status`, `songbird history`)
and the lab's live view both call these functions; this module lives in ``analysis`` rather than in the
controller because the lab may not import the controller.

Invariants:
- Pure: the time is a parameter (``now``, epoch seconds); nothing is read from the environment.
- Total: any dict renders (missing keys read as absent, values of the wrong type are shown as absent),
  never raises.
- Every text taken from the record is `bounded`: at most one line, control characters (terminal escape
  sequences included) replaced, so a hostile reason cannot redraw the operator's terminal.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Mapping, Sequence
from typing import Any

from songbird.analysis.state import Evaluation
from songbird.config.text import bounded

Status = Mapping[str, Any]

#: Figures shown after a metric's verdict, in this order, when the record has them.
SHOWN_FIGURES = ("ratio", "e_bad", "e_good", "canary_share", "stable_share", "ceiling")
_LETTER_WORD = {"PASS": "PASS", "FAIL": "FAIL", "INCONCLUSIVE": "INCONCL", "ERROR": "ERROR"}


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _text(value: Any, limit: int = 200) -> str:
    return bounded(value, limit) if isinstance(value, str) else ""


def _figure(value: float) -> str:
    if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
        return f"{value:.3g}"
    return f"{value:.4g}"


def ago(at: Any, now: float) -> str:
    """``12s ago``, ``3m ago``, ``2h ago``, ``3d ago``; empty for a missing time."""
    t = _num(at)
    if t is None:
        return ""
    seconds = max(0.0, now - t)
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    if seconds < 172800:
        return f"{seconds / 3600:.0f}h ago"
    return f"{seconds / 86400:.0f}d ago"


def rfc3339(at: Any) -> str:
    t = _num(at)
    if t is None:
        return "-"
    return datetime.datetime.fromtimestamp(t, tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def step_text(status: Status, steps: int | None) -> str:
    """``2/5`` (the status keeps a 0-based index), ``2`` without the policy, ``-`` before the first step."""
    step = _num(status.get("step"))
    if step is None or step < 0:
        return "-"
    return f"{int(step) + 1}/{steps}" if steps else f"{int(step) + 1}"


def weight_text(status: Status) -> str:
    weight = _num(status.get("weight"))
    return "-" if weight is None else f"{weight:g}%"


def paused(status: Status) -> bool:
    return status.get("paused") is True or status.get("phase") == "Paused"


def last_command_line(status: Status, now: float) -> str:
    """``promote --step: executed 5s ago by songbird-cli (id abc): message``, or empty when none."""
    command = status.get("lastCommand")
    if not isinstance(command, Mapping) or not command.get("id"):
        return ""
    what = _text(command.get("command"), 40) or "?"
    result = _text(command.get("result"), 20) or "?"
    at = command.get("at")
    when = f" at {_text(at, 40)}" if isinstance(at, str) and at else ""
    by = _text(command.get("by"), 80)
    who = f" by {by}" if by else ""
    message = _text(command.get("message"), 300)
    tail = f": {message}" if message else ""
    return f"{what}: {result}{when}{who} (id {_text(command.get('id'), 64)}){tail}"


def _results(status: Status) -> list[Mapping[str, Any]]:
    history = status.get("history")
    if not isinstance(history, list) or not history or not isinstance(history[-1], Mapping):
        return []
    results = history[-1].get("results")
    return [r for r in results if isinstance(r, Mapping)] if isinstance(results, list) else []


def _dry_run(result: Mapping[str, Any]) -> bool:
    return result.get("dryRun") is True or result.get("dry_run") is True


def metric_line(result: Mapping[str, Any]) -> str:
    """One metric's verdict with its figures: ``error-rate  PASS  0.12 (max 1)  canary 120 req ...``."""
    name = _text(result.get("name"), 40) or "?"
    verdict = _text(result.get("verdict"), 20) or "?"
    parts = [f"{name:<16} {verdict:<12}"]
    if _dry_run(result):
        parts.append("(dry-run)")
    value, limit = _num(result.get("value")), _num(result.get("limit"))
    if value is not None:
        parts.append(_figure(value) + (f" (limit {_figure(limit)})" if limit is not None else ""))
    canary, stable = _num(result.get("canary_requests")), _num(result.get("stable_requests"))
    if canary is not None or stable is not None:
        counts = [
            f"canary {canary:.0f}" if canary is not None else "",
            f"stable {stable:.0f}" if stable else "",
        ]
        parts.append("requests " + " ".join(c for c in counts if c))
    figures = result.get("figures")
    if isinstance(figures, Mapping):
        shown = [(k, _num(figures.get(k))) for k in SHOWN_FIGURES]
        parts.extend(f"{k}={_figure(v)}" for k, v in shown if v is not None)
    if result.get("decisive") is True:
        parts.append("decisive")
    return "  ".join(parts)


def render_status(key: str, status: Status, *, now: float, steps: int | None = None) -> list[str]:
    """The detailed view of one rollout: phase, step, weight, paused, each metric's verdict and figures,
    the reason, the forecast and the last command."""
    phase = _text(status.get("phase"), 20) or "Idle"
    head = f"{key}  {phase}  step {step_text(status, steps)}  weight {weight_text(status)}"
    if paused(status):
        head += "  PAUSED"
    lines = [head]
    canary, stable = _text(status.get("canary"), 80), _text(status.get("stable"), 80)
    if canary or stable:
        lines.append(f"  canary {canary or '-'}  stable {stable or '-'}")
    reason = _text(status.get("reason"), 300)
    if reason:
        lines.append(f"  reason: {reason}")
    forecast = _text(status.get("forecast"), 300)
    if forecast:
        lines.append(f"  forecast: {forecast}")
    results = _results(status)
    if results:
        evaluated = ago(status.get("last_evaluated_at"), now)
        lines.append("  metrics" + (f" (evaluated {evaluated}):" if evaluated else ":"))
        for result in results:
            lines.append("    " + metric_line(result))
            why = _text(result.get("reason"), 300)
            if why:
                lines.append(f"      {why}")
    else:
        lines.append("  metrics: no evaluation yet")
    command = last_command_line(status, now)
    lines.append(f"  last command: {command or 'none'}")
    return lines


def verdict_summary(status: Status) -> str:
    """``error-rate=PASS latency=INCONCL`` for the table view; ``-`` before the first evaluation."""
    words = [
        f"{_text(r.get('name'), 40)}={_LETTER_WORD.get(str(r.get('verdict')), '?')}" for r in _results(status)
    ]
    return " ".join(words) or "-"


def render_table(rows: Sequence[tuple[str, Status]]) -> list[str]:
    """One line per rollout: ROLLOUT PHASE STEP WEIGHT PAUSED VERDICTS REASON."""
    width = max([32, *(len(k) for k, _ in rows)])
    lines = [
        f"{'ROLLOUT':{width}} {'PHASE':12} {'STEP':>4} {'WEIGHT':>6} {'PAUSED':6} {'VERDICTS':28} REASON"
    ]
    for key, s in rows:
        lines.append(
            f"{key:{width}} {_text(s.get('phase'), 20) or 'Idle':12} {step_text(s, None):>4} "
            f"{weight_text(s):>6} {'yes' if paused(s) else 'no':6} {verdict_summary(s):28} "
            f"{_text(s.get('reason'), 300)}"
        )
    return lines


def evaluations(status: Status) -> list[Evaluation]:
    """The evaluations the record keeps (compact ones without reasons), oldest first; unreadable ones
    are left out."""
    entries = [e for e in status.get("history") or [] if isinstance(e, Mapping)]
    if not entries:
        return []
    last = entries[-1].get("results")
    names = (
        tuple(str(r.get("name", "")) for r in last if isinstance(r, Mapping))
        if isinstance(last, list)
        else ()
    )
    out = []
    for entry in entries:
        try:
            out.append(Evaluation.from_dict(dict(entry), names))
        except (KeyError, TypeError, ValueError):
            continue
    return out


def history_rows(status: Status) -> list[dict[str, Any]]:
    """The steps and verdicts of the rollout as plain data (``songbird history -o json``)."""
    rows = []
    for e in evaluations(status):
        requests = [r.canary_requests for r in e.results if r.canary_requests is not None]
        rows.append(
            {
                "at": rfc3339(e.at),
                "step": e.step + 1,
                "weight": e.weight,
                "verdicts": {r.name: r.verdict.value for r in e.results},
                "canaryRequests": max(requests) if requests else None,
            }
        )
    return rows


def render_history(key: str, status: Status, *, now: float, steps: int | None = None) -> list[str]:
    """The rollout's course: when it started, one line per evaluation kept (step, weight, verdicts),
    where it stands, and the last command."""
    phase = _text(status.get("phase"), 20) or "Idle"
    lines = [f"{key}  {phase}  step {step_text(status, steps)}  weight {weight_text(status)}"]
    if _num(status.get("started_at")) is not None:
        lines.append(f"  started {rfc3339(status.get('started_at'))} ({ago(status.get('started_at'), now)})")
    rows = history_rows(status)
    if not rows:
        lines.append("  no evaluation recorded")
    else:
        names = list(dict.fromkeys(name for row in rows for name in row["verdicts"]))
        header = f"  {'TIME':20} {'STEP':>4} {'WEIGHT':>6}  " + "  ".join(f"{n[:16]:<16}" for n in names)
        lines.append(header + "  CANARY REQUESTS")
        for row in rows:
            cells = "  ".join(
                f"{_LETTER_WORD[row['verdicts'][n]] if n in row['verdicts'] else '-':<16}" for n in names
            )
            seen = "-" if row["canaryRequests"] is None else f"{row['canaryRequests']:.0f}"
            lines.append(f"  {row['at']:20} {row['step']:>4} {row['weight']:>5g}%  {cells}  {seen}")
    if _num(status.get("promoted_at")) is not None:
        lines.append(f"  promoted {rfc3339(status.get('promoted_at'))}")
    reason = _text(status.get("reason"), 300)
    if reason:
        lines.append(f"  reason: {reason}")
    command = last_command_line(status, now)
    if command:
        lines.append(f"  last command: {command}")
    return lines
