"""The one reader of Prometheus instant-query answers: bytes or decoded JSON in, exactly one outcome out.

Every answer, whatever its shape, is one of:
- `Number`: one finite number;
- `NoData`: an empty vector, or a sample whose value is NaN (0/0 when a version served nothing). These two
  are the only "no data": the judge turns them into INCONCLUSIVE (or 0 for a count), never PASS or FAIL;
- `Unusable`: anything else, with a short reason (at most `config.text.REASON_LIMIT` = 300 characters) for
  an ERROR verdict.

What counts as what (the instant-query format of https://prometheus.io/docs/prometheus/latest/querying/api/):
- ``{"status": "success", "data": {"resultType": "vector", "result": [...]}}`` with no series is NoData;
  with one series ``{"metric": {...}, "value": [<time>, "<number>"]}`` it is that number. The series may
  carry a ``__name__`` and nothing else: any other label means the query was not aggregated to one number
  (or the answer is not for the query asked), which is Unusable, as are several series. Such a reason
  gives the number of series (or labels) and at most the metric name: never a label VALUE of the answer,
  which could be another tenant's (a host name, a service name) and would land in the status and Events.
- ``resultType`` ``scalar``: ``"result": [<time>, "<number>"]``, read the same way.
- The value is a JSON string holding a decimal number, ``NaN``, ``+Inf`` or ``-Inf``, at most 64
  characters (Prometheus writes the shortest ``'f'`` form, ``'e'`` below 1e-6 and from 1e21 on: at most
  about 25 characters; prometheus/prometheus ``util/jsonutil/marshal.go``, ``MarshalValue``). ``NaN`` is
  NoData; an infinite value is Unusable, so +Inf can never pass a ``min`` nor -Inf a ``max``. A value
  of another JSON type (``5``, ``[]``, ``null``), a time that is not a number, a pair that is not two
  items, a missing key: Unusable, naming what was wrong.
- ``resultType`` ``matrix`` (a range vector) or ``string``, an unknown one, a ``status`` other than
  ``success`` (``error`` with ``errorType``/``error``): Unusable; Prometheus' own error text is quoted
  bounded, the body never whole.
- Bytes that are not JSON (a login page, a truncated body, JSON nested thousands deep, a 5,000-digit
  integer): Unusable.

Invariants: total (no exception for any input, however nested, large or mistyped; only fixed paths are
read, nothing is walked recursively, and reasons quote at most `config.text.LABEL_LIMIT` characters of any
upstream string); pure (no I/O, no clock). A negative number is a valid answer here (a custom metric may
be negative); `count_problem` says when a count must not be.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import islice

from songbird.config.text import LABEL_LIMIT, REASON_LIMIT, bounded, quoted

VALUE_LIMIT = 64  # characters of a sample value (Prometheus writes at most about 25)
LABELS_SHOWN = 3  # series whose metric name a reason may quote
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[+-]?(?:inf|infinity)|nan", re.IGNORECASE)
_ONE_NUMBER = "aggregate it to one number, for example with sum()"


@dataclass(frozen=True, kw_only=True)
class Number:
    """One finite number."""

    value: float


@dataclass(frozen=True, kw_only=True)
class NoData:
    """No sample, or a NaN sample: nothing was measured."""

    why: str


@dataclass(frozen=True, kw_only=True)
class Unusable:
    """An answer that cannot be judged; ``reason`` is for people, at most ``REASON_LIMIT`` characters."""

    reason: str


Answer = Number | NoData | Unusable


def _unusable(reason: str) -> Unusable:
    return Unusable(reason=bounded(reason, REASON_LIMIT))


def kind(value: object) -> str:
    """The JSON name of a decoded value's type (``object``, ``array``, ``string``...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


def decode(body: bytes) -> object | Unusable:
    """The JSON document in ``body``, or Unusable when it is not JSON (never an exception)."""
    try:
        doc: object = json.loads(body)
    except RecursionError:
        return _unusable("unreadable answer: JSON nested too deeply")
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an integer of thousands of digits
        return _unusable(f"unreadable answer: not JSON ({type(exc).__name__})")
    return doc


def read_body(body: bytes) -> Answer:
    """`decode` then `read_answer`."""
    doc = decode(body)
    return doc if isinstance(doc, Unusable) else read_answer(doc)


def error_text(doc: object) -> str | None:
    """Prometheus' own ``errorType: error`` from an error answer, bounded; None when there is none."""
    if not isinstance(doc, Mapping):
        return None
    error_type, error = doc.get("errorType"), doc.get("error")
    parts = [
        bounded(error_type, LABEL_LIMIT) if isinstance(error_type, str) and error_type else "",
        bounded(error, REASON_LIMIT - LABEL_LIMIT - 2) if isinstance(error, str) and error else "",
    ]
    text = ": ".join(p for p in parts if p)
    return text or None


def read_answer(doc: object) -> Answer:
    """The outcome of one decoded ``/api/v1/query`` answer (see the module docstring)."""
    if not isinstance(doc, Mapping):
        return _unusable(f"answer is a JSON {kind(doc)}, not an object")
    status = doc.get("status")
    if status == "error":
        return _unusable(f"Prometheus error: {error_text(doc) or 'no error text'}")
    if status != "success":
        shown = quoted(status) if isinstance(status, str) else f"a JSON {kind(status)}"
        return _unusable(f'answer status is {shown}, not "success"')
    data = doc.get("data")
    if not isinstance(data, Mapping):
        return _unusable(f"answer data is a JSON {kind(data)}, not an object")
    result_type = data.get("resultType")
    if "result" not in data:
        return _unusable("answer has no result")
    result = data["result"]
    if result_type == "vector":
        return _vector(result)
    if result_type == "scalar":
        return _sample(result, "scalar result")
    if result_type == "matrix":
        return _unusable("query returned a range vector (matrix), not one number: drop the [range]")
    if result_type == "string":
        return _unusable("query returned a string, not a number")
    shown = quoted(result_type) if isinstance(result_type, str) else f"a JSON {kind(result_type)}"
    return _unusable(f"unknown resultType {shown}")


def _names(result: list[object]) -> str:
    """The metric name(s) of the first series (``__name__`` only, never another label's value)."""
    names = sorted(
        {
            bounded(n, LABEL_LIMIT)
            for s in islice(result, LABELS_SHOWN)
            if isinstance(s, Mapping) and isinstance(m := s.get("metric"), Mapping)
            if isinstance(n := m.get("__name__"), str)
        }
    )
    return f"; metric {', '.join(names)}" if names else ""


def _vector(result: object) -> Answer:
    if not isinstance(result, list):
        return _unusable(f"vector result is a JSON {kind(result)}, not an array")
    if not result:
        return NoData(why="empty result")
    if len(result) > 1:
        return _unusable(
            f"query returned {len(result):,} series where one number was expected ({_ONE_NUMBER})"
            f"{_names(result)}"
        )
    series = result[0]
    if not isinstance(series, Mapping):
        return _unusable(f"series is a JSON {kind(series)}, not an object")
    metric = series.get("metric")
    if not isinstance(metric, Mapping):
        return _unusable(f"series labels are a JSON {kind(metric)}, not an object")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in metric.items()):
        return _unusable("series labels are not all strings")
    if any(k != "__name__" for k in metric):
        return _unusable(
            f"query returned a series with {len(metric):,} labels where one number was expected "
            f"({_ONE_NUMBER})"
        )
    if "value" not in series:
        if "values" in series:
            return _unusable("query returned a range vector (matrix), not one number: drop the [range]")
        if "histogram" in series:
            return _unusable("query returned a native histogram, not one number")
        return _unusable("series has no value")
    return _sample(series["value"], "sample")


def _is_time(value: object) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, float) and math.isfinite(value)


def _sample(pair: object, what: str) -> Answer:
    if not isinstance(pair, list) or len(pair) != 2:
        shape = f"an array of {len(pair)}" if isinstance(pair, list) else f"a JSON {kind(pair)}"
        return _unusable(f"{what} is {shape}, not a [time, value] pair")
    at, raw = pair
    if not _is_time(at):
        return _unusable(f"{what} time is a JSON {kind(at)}, not a number")
    if not isinstance(raw, str):
        return _unusable(f"{what} value is a JSON {kind(raw)}, not a string holding a number")
    if len(raw) > VALUE_LIMIT or not _NUMBER.fullmatch(raw):
        return _unusable(f"{what} value {quoted(raw)} is not a number")
    value = float(raw)
    if math.isnan(value):
        return NoData(why="NaN")
    if math.isinf(value):
        return _unusable(f"{what} value {raw} is not a finite number")
    return Number(value=value)


def count_problem(value: float) -> str | None:
    """Why ``value`` cannot be a count of requests (an ``increase()`` of counters), or None when it can."""
    if not math.isfinite(value):
        return f"count {value} is not a finite number"
    if value < 0:
        return f"negative count {value:.6g}: a count of requests is never below 0"
    return None
