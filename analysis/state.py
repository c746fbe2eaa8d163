"""The persisted rollout state: what Songbird knows about one rollout between ticks.

It is serialised as JSON into the ``songbird.dev/status`` annotation of the policy ConfigMap, written after
the traffic change it records, so a restarted or newly elected controller resumes where the last one
stopped: it neither repeats a weight increase nor loses the evidence gathered so far.

The record is compact and bounded (`RolloutState.to_json`):
- every field the decisions read is kept as it is: phase, step, weight, the Deployments and Services,
  clocks, failure counts, cause, and the judge's running sums (``evidence``, needed to resume);
- the last evaluation is kept whole (verdicts, numbers, figures, reasons): the decision of the next tick
  reads it (`analysis.decision._latest`; of its figures only ``DECISION_FIGURES``);
- the ``HISTORY_LIMIT - 1`` evaluations before it are kept compact: time, step, weight, one letter per
  metric verdict (``P``, ``F``, ``I``, ``E``, in the order of the last evaluation's metrics) and the
  canary requests seen; their reasons and figures are dropped;
- the operator's last command (``lastCommand``: id, display form, time, result, message, field manager)
  and the pause fields (``paused``, ``pause_until``, ``pause_step``; `analysis.pause`);
- text is bounded: the rollout's reason and forecast to ``REASON_CHARS``, each result's reason to its
  share of ``RESULT_REASON_CHARS``.
If the record is still larger than ``STATUS_LIMIT`` bytes (only with many metrics and long non-ASCII
reasons), it is made smaller rung by rung (`_RUNGS`: shorter text, fewer compact evaluations, ASCII text,
then only the figures a decision reads), never by dropping a field a decision reads. The bound: at most
``STATUS_LIMIT`` (12 KiB) for any policy the loader accepts (at most ``MAX_METRICS`` metrics, two of them
built-in with their figures and evidence sums), against Kubernetes' 256 KiB for all annotations of an
object (`tests/unit/test_state.py` builds the worst case).

`from_json` reads this record and the one written by earlier versions (every evaluation whole); an earlier
version reads this one too (the compact entries parse as evaluations without results, and the last one,
the only one a decision reads, is whole).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from enum import StrEnum
from typing import Any

from songbird.analysis.cause import Cause, read_cause
from songbird.analysis.split import SplitCheck
from songbird.analysis.verdict import MetricResult, Verdict
from songbird.config.text import MESSAGE_LIMIT, REASON_LIMIT, bounded

#: The annotation of the policy ConfigMap that holds the rollout status (`RolloutState.to_json`).
STATUS_ANNOTATION = "songbird.dev/status"

#: The statistical judge's running sums, per metric then per alternative (see `analysis.evidence`).
Evidence = dict[str, dict[str, float]]

HISTORY_LIMIT = 12  # evaluations kept in the status: the last one whole, the ones before it compact
STATUS_LIMIT = 12 * 1024  # bytes of the status annotation, at most (Kubernetes: 256 KiB for all annotations)
REASON_CHARS = MESSAGE_LIMIT  # the rollout's reason and forecast, at most
RESULT_REASON_CHARS = 2400  # the last evaluation's reasons together, at most (each at most REASON_LIMIT)

_LETTER = {Verdict.PASS: "P", Verdict.FAIL: "F", Verdict.INCONCLUSIVE: "I", Verdict.ERROR: "E"}
_VERDICT = {letter: verdict for verdict, letter in _LETTER.items()}


@dataclass(frozen=True, kw_only=True)
class _Rung:
    """How much text and history one attempt at the record keeps."""

    reason_chars: int
    result_reason_chars: int
    history: int  # compact evaluations before the last one
    ascii_only: bool = False
    figures: bool = True  # False: only the figures a decision reads (`DECISION_FIGURES`)


# From the full record down to the smallest: each is tried until one fits in STATUS_LIMIT.
_RUNGS = (
    _Rung(reason_chars=REASON_CHARS, result_reason_chars=RESULT_REASON_CHARS, history=HISTORY_LIMIT - 1),
    _Rung(reason_chars=500, result_reason_chars=1000, history=4),
    _Rung(reason_chars=300, result_reason_chars=400, history=1, ascii_only=True),
    _Rung(reason_chars=120, result_reason_chars=0, history=0, ascii_only=True, figures=False),
)
#: The figures of the last evaluation that a decision reads (`analysis.decision`); kept on every rung.
DECISION_FIGURES = ("shared_outage",)


def _text(text: str, limit: int, *, ascii_only: bool) -> str:
    if limit <= 0:
        return ""
    out = bounded(text, max(limit, 3))
    return out.encode("ascii", "replace").decode("ascii") if ascii_only else out


class Phase(StrEnum):
    IDLE = "Idle"
    INITIALIZING = "Initializing"
    PROGRESSING = "Progressing"
    PAUSED = "Paused"
    PROMOTING = "Promoting"
    SUCCEEDED = "Succeeded"
    ROLLING_BACK = "RollingBack"
    FAILED = "Failed"

    @property
    def finished(self) -> bool:
        return self in (Phase.SUCCEEDED, Phase.FAILED)


@dataclass(frozen=True, kw_only=True)
class Evaluation:
    """One evaluation of all metrics at time ``at`` (epoch seconds)."""

    at: float
    step: int
    weight: float
    results: tuple[MetricResult, ...]

    def to_dict(
        self, *, reason_chars: int = RESULT_REASON_CHARS, ascii_only: bool = False, figures: bool = True
    ) -> dict[str, Any]:
        """The whole evaluation; its reasons together at most ``reason_chars`` characters, and without
        ``figures`` only the figures a decision reads."""
        each = min(REASON_LIMIT, reason_chars // max(1, len(self.results)))
        results = []
        for r in self.results:
            out = r.to_dict()
            out["reason"] = _text(r.reason, each, ascii_only=ascii_only)
            if not figures and "figures" in out:
                kept = {k: v for k, v in out.pop("figures").items() if k in DECISION_FIGURES}
                if kept:
                    out["figures"] = kept
            results.append(out)
        return {"at": self.at, "step": self.step, "weight": self.weight, "results": results}

    def to_compact(self, names: tuple[str, ...]) -> dict[str, Any]:
        """Time, step, weight, a letter per verdict and the canary requests: no reasons, no figures.
        ``names`` is the metric order of the record; an evaluation of other metrics names its own."""
        own = tuple(r.name for r in self.results)
        out: dict[str, Any] = {
            "at": self.at,
            "step": self.step,
            "weight": self.weight,
            "verdicts": "".join(_LETTER[r.verdict] for r in self.results),
        }
        if own != names:
            out["metrics"] = list(own)
        seen = [r.canary_requests for r in self.results if r.canary_requests is not None]
        if seen:
            out["canary_requests"] = round(max(seen), 1)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], names: tuple[str, ...] = ()) -> Evaluation:
        """A whole evaluation, or a compact one (`to_compact`, its metrics from ``names``)."""
        if "verdicts" in data and "results" not in data:
            letters = str(data["verdicts"])
            own = tuple(str(n) for n in data.get("metrics") or names)
            requests = data.get("canary_requests")
            results = tuple(
                MetricResult(
                    name=name,
                    verdict=_VERDICT[letter],
                    reason="",
                    canary_requests=None if requests is None else float(requests),
                )
                for name, letter in zip(own, letters, strict=False)
            )
        else:
            results = tuple(MetricResult.from_dict(r) for r in data.get("results", []))
        return cls(
            at=float(data["at"]), step=int(data["step"]), weight=float(data["weight"]), results=results
        )


@dataclass(frozen=True, kw_only=True)
class LastCommand:
    """The last operator command the controller took up (`config.command`), as the status shows it under
    ``lastCommand``. A command whose ``id`` equals this one's is never executed again."""

    id: str
    command: str  # display form: "promote --step", "abort"...
    at: str  # RFC 3339 UTC
    result: str  # "executed" or "refused"
    message: str  # at most COMMAND_MESSAGE_CHARS
    by: str | None  # the field manager that wrote the annotation; None when the API server recorded none

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> LastCommand | None:
        if not isinstance(data, dict):
            return None
        by = data.get("by")
        return cls(
            id=str(data.get("id", "")),
            command=str(data.get("command", "")),
            at=str(data.get("at", "")),
            result=str(data.get("result", "")),
            message=str(data.get("message", "")),
            by=None if by is None else str(by),
        )


COMMAND_MESSAGE_CHARS = 300  # lastCommand.message, at most


@dataclass(frozen=True, kw_only=True)
class RolloutState:
    phase: Phase = Phase.IDLE
    step: int = -1  # index into policy.steps; -1 before the first step
    weight: float = 0.0  # canary weight in force (written to the canary Ingress)
    canary: str = ""  # canary Deployment
    stable: str = ""  # stable Deployment
    canary_service: str = ""
    stable_service: str = ""  # Service the main Ingress routed to when the rollout started
    revision: str = ""  # fingerprint of the canary pod template (placement excluded)
    total_replicas: int = 0  # replicas of the whole service, fixed when the rollout starts
    started_at: float | None = None
    step_started_at: float | None = None
    updated_at: float | None = None
    last_evaluated_at: float | None = None
    consecutive_failures: int = 0
    error_since: float | None = None  # start of the current run of ERROR evaluations
    promoted_at: float | None = None  # when the main Ingress was switched to the canary
    reason: str = ""
    cause: Cause = Cause.UNKNOWN  # why ``reason`` was said (code reads this, people the reason)
    cause_metric: str = ""  # the metric the cause is about, if any (a FAIL, a shared outage)
    forecast: str = ""  # predicted time to promotion evidence, said when the rollout starts
    history: tuple[Evaluation, ...] = ()
    evidence: Evidence = field(default_factory=dict)
    # Pauses (`analysis.pause`): ``paused`` while a pause command or a pause step holds the weight;
    # ``pause_until`` ends a timed pause step (None: until resume or promote); ``pause_step`` is the step
    # whose following pause step has begun (so it is served once).
    paused: bool = False
    pause_until: float | None = None
    pause_step: int = -1
    # ``promote --step`` taken while the next step's canary pods were not ready: the canary is scaled up and
    # the next weight follows as soon as they are (`analysis.command.requested_step`).
    step_requested: bool = False
    last_command: LastCommand | None = None  # JSON key "lastCommand"
    split: SplitCheck | None = None  # the traffic split's last check at this step (`analysis.split`)

    def with_evaluation(self, evaluation: Evaluation) -> RolloutState:
        history = (*self.history, evaluation)[-HISTORY_LIMIT:]
        return replace(self, history=history, last_evaluated_at=evaluation.at)

    def to_json(self) -> str:
        """The status record (see the module docstring): at most ``STATUS_LIMIT`` bytes."""
        text = ""
        for rung in _RUNGS:
            text = self._record(rung)
            if len(text.encode()) <= STATUS_LIMIT:
                break
        return text

    def _record(self, rung: _Rung) -> str:
        data = asdict(replace(self, history=(), last_command=None))
        del data["last_command"]
        data["lastCommand"] = self.last_command.to_dict() if self.last_command is not None else None
        data["phase"] = self.phase.value
        data["cause"] = self.cause.value
        data["reason"] = _text(self.reason, rung.reason_chars, ascii_only=rung.ascii_only)
        data["forecast"] = _text(self.forecast, rung.reason_chars, ascii_only=rung.ascii_only)
        data["split"] = self.split.to_dict() if self.split is not None else None
        if self.history:
            *older, last = self.history
            names = tuple(r.name for r in last.results)
            kept = older[len(older) - rung.history :] if rung.history else []
            data["history"] = [
                *(e.to_compact(names) for e in kept),
                last.to_dict(
                    reason_chars=rung.result_reason_chars, ascii_only=rung.ascii_only, figures=rung.figures
                ),
            ]
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> RolloutState:
        """Parse a status annotation, of this version or an earlier one. Unknown keys (from a newer
        controller) are ignored; a record that cannot be read raises ValueError."""
        try:
            return cls._parse(json.loads(text))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"not a rollout status: {type(exc).__name__}: {bounded(str(exc))}") from exc

    @classmethod
    def _parse(cls, data: Any) -> RolloutState:
        if not isinstance(data, dict):
            raise ValueError("the status annotation is not a JSON object")
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs["phase"] = Phase(kwargs.get("phase", Phase.IDLE.value))
        kwargs["cause"] = read_cause(kwargs.get("cause"))
        kwargs["cause_metric"] = str(kwargs.get("cause_metric") or "")
        kwargs["last_command"] = LastCommand.from_dict(data.get("lastCommand"))
        kwargs["paused"] = bool(kwargs.get("paused", False))
        kwargs["step_requested"] = bool(kwargs.get("step_requested", False))
        kwargs["split"] = SplitCheck.from_dict(kwargs.get("split"))
        entries = [e for e in kwargs.get("history") or [] if isinstance(e, dict)]
        names = tuple(str(r.get("name", "")) for r in (entries[-1].get("results") or [])) if entries else ()
        kwargs["history"] = tuple(Evaluation.from_dict(e, names) for e in entries)[-HISTORY_LIMIT:]
        kwargs["evidence"] = {
            str(m): {str(k): float(v) for k, v in alts.items()}
            for m, alts in (kwargs.get("evidence") or {}).items()
        }
        return cls(**kwargs)
