"""`analysis.answer` (the one reader of Prometheus answers) and `config.text` (bounded messages).

Covers:
- the shapes a healthy Prometheus returns: one unlabelled series (or one carrying only ``__name__``), a
  scalar, an empty vector (no data), NaN (no data); the number read is the one sent, in Prometheus' own
  formatting (property test over all finite floats);
- every shape that is not one number is Unusable with a reason naming what was wrong: a value of 5, [],
  [t, 5], a missing result, data as an array, several series, labels left after aggregation, ±Inf (also
  as "inf", "1e999" and as a scalar), a range vector, a string result, a status error (its errorType and
  error quoted, bounded), a document that is not an object;
- bytes that are not JSON (malformed, HTML, nested 100,000 deep, a 5,000-digit integer) are Unusable;
- totality (property tests): for ANY JSON value, including NaN/±Inf floats, huge integers and nesting,
  and for any bytes, the reader returns a Number, NoData or Unusable and never raises; a Number is always
  finite; every reason is at most REASON_LIMIT characters on one line;
- a reason about several series or leftover labels gives counts and at most the metric name, never a
  label value of the answer (another tenant's host name); 300 kB labels never reach a reason;
- `count_problem`: a negative or non-finite count is refused, 0 and positive counts are not;
- `config.text.bounded`: length bound, cut marker, control characters flattened, no cost beyond the bound.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from songbird.analysis.answer import (
    NoData,
    Number,
    Unusable,
    count_problem,
    read_answer,
    read_body,
)
from songbird.config.text import REASON_LIMIT, bounded, quoted

T = 1_700_000_000.5


def vector(*series: Any) -> dict[str, Any]:
    return {"status": "success", "data": {"resultType": "vector", "result": list(series)}}


def sample(value: Any, metric: Any = None, at: Any = T) -> dict[str, Any]:
    return {"metric": {} if metric is None else metric, "value": [at, value]}


def prom_format(value: float) -> str:
    """A float as Prometheus writes a sample value: shortest 'f' form, 'e' below 1e-6 and from 1e21."""
    size = abs(value)
    if size != 0 and (size < 1e-6 or size >= 1e21):
        return repr(value)  # Python's shortest 'e' form: 1e+21, 1.5e-07, as Go's
    return format(Decimal(repr(value)), "f")


# -- healthy shapes --------------------------------------------------------------------------------------


def test_one_unlabelled_series_is_its_number() -> None:
    assert read_answer(vector(sample("0.0421"))) == Number(value=0.0421)
    assert read_answer(vector(sample("1000", {"__name__": "job:requests:sum"}))) == Number(value=1000.0)
    assert read_answer(vector(sample("-2.5e-07", at=1_700_000_000))) == Number(value=-2.5e-07)


def test_scalar_result_is_its_number() -> None:
    doc = {"status": "success", "data": {"resultType": "scalar", "result": [T, "6"]}}
    assert read_answer(doc) == Number(value=6.0)


def test_empty_vector_and_nan_are_no_data() -> None:
    assert read_answer(vector()) == NoData(why="empty result")
    assert read_answer(vector(sample("NaN"))) == NoData(why="NaN")
    scalar_nan = {"status": "success", "data": {"resultType": "scalar", "result": [T, "NaN"]}}
    assert isinstance(read_answer(scalar_nan), NoData)


def test_warnings_do_not_matter() -> None:
    assert read_answer({**vector(sample("3")), "warnings": ["x" * 10_000]}) == Number(value=3.0)


@settings(max_examples=300, deadline=None)
@given(
    value=st.floats(allow_nan=False, allow_infinity=False),
    at=st.one_of(st.integers(min_value=0, max_value=4_000_000_000), st.floats(0, 4e9)),
    named=st.booleans(),
    scalar=st.booleans(),
)
def test_healthy_answers_give_the_number_sent(value: float, at: float, named: bool, scalar: bool) -> None:
    text = prom_format(value)
    if scalar:
        doc: dict[str, Any] = {"status": "success", "data": {"resultType": "scalar", "result": [at, text]}}
    else:
        doc = vector(sample(text, {"__name__": "x"} if named else {}, at=at))
    assert read_answer(doc) == Number(value=value)
    assert read_body(json.dumps(doc).encode()) == Number(value=value)


# -- shapes that are not one number ----------------------------------------------------------------------

UNUSABLE: list[tuple[str, Any, str]] = [
    ("value 5", vector({"metric": {}, "value": 5}), "sample is a JSON number, not a [time, value] pair"),
    ("value []", vector({"metric": {}, "value": []}), "sample is an array of 0, not a [time, value] pair"),
    ("value [t, 5]", vector(sample(5)), "sample value is a JSON number, not a string holding a number"),
    ("value [t, null]", vector(sample(None)), "sample value is a JSON null"),
    ("time as text", vector(sample("1", at="now")), "sample time is a JSON string, not a number"),
    ("time NaN", vector(sample("1", at=math.nan)), "sample time is a JSON number, not a number"),
    ("three items", vector({"metric": {}, "value": [T, "1", "2"]}), "an array of 3"),
    ("not a number", vector(sample("twelve")), 'sample value "twelve" is not a number'),
    ("underscores", vector(sample("1_000")), 'sample value "1_000" is not a number'),
    ("+Inf", vector(sample("+Inf")), "sample value +Inf is not a finite number"),
    ("-Inf", vector(sample("-Inf")), "sample value -Inf is not a finite number"),
    ("inf", vector(sample("inf")), "sample value inf is not a finite number"),
    ("1e999", vector(sample("1e999")), "sample value 1e999 is not a finite number"),
    ("scalar +Inf", {"status": "success", "data": {"resultType": "scalar", "result": [T, "+Inf"]}}, "finite"),
    ("scalar 5", {"status": "success", "data": {"resultType": "scalar", "result": 5}}, "scalar result is"),
    ("missing result", {"status": "success", "data": {"resultType": "vector"}}, "answer has no result"),
    ("data array", {"status": "success", "data": []}, "answer data is a JSON array, not an object"),
    ("result object", {"status": "success", "data": {"resultType": "vector", "result": {}}}, "not an array"),
    ("series number", vector(7), "series is a JSON number, not an object"),
    ("no metric", vector({"value": [T, "1"]}), "series labels are a JSON null, not an object"),
    ("label number", vector(sample("1", {"job": 5})), "series labels are not all strings"),
    ("no value", vector({"metric": {}}), "series has no value"),
    ("histogram", vector({"metric": {}, "histogram": [T, {}]}), "native histogram"),
    ("several", vector(sample("1", {"pod": "a"}), sample("2", {"pod": "b"})), "2 series where one number"),
    ("labels left", vector(sample("1", {"instance": "x:9090"})), "a series with 1 labels where one"),
    (
        "matrix",
        {"status": "success", "data": {"resultType": "matrix", "result": [{"metric": {}, "values": []}]}},
        "range vector",
    ),
    ("values key", vector({"metric": {}, "values": [[T, "1"]]}), "range vector"),
    ("string", {"status": "success", "data": {"resultType": "string", "result": [T, "a"]}}, "a string"),
    ("odd type", {"status": "success", "data": {"resultType": "table", "result": []}}, 'resultType "table"'),
    ("no type", {"status": "success", "data": {"result": []}}, "unknown resultType a JSON null"),
    (
        "status error",
        {"status": "error", "errorType": "bad_data", "error": "parse error at char 5"},
        "Prometheus error: bad_data: parse error at char 5",
    ),
    ("status error bare", {"status": "error"}, "Prometheus error: no error text"),
    ("status other", {"status": "partial", "data": {}}, 'answer status is "partial", not "success"'),
    ("no status", {"data": {}}, "answer status is a JSON null"),
    ("array", [1, 2], "answer is a JSON array, not an object"),
    ("number", 5, "answer is a JSON number, not an object"),
    ("null", None, "answer is a JSON null, not an object"),
]


@pytest.mark.parametrize(("case", "doc", "reason"), UNUSABLE, ids=[c[0] for c in UNUSABLE])
def test_shapes_that_are_not_one_number_are_unusable(case: str, doc: Any, reason: str) -> None:
    answer = read_answer(doc)
    assert isinstance(answer, Unusable), case
    assert reason in answer.reason


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"status":"success","data":{"resultType":"vector","result":[{"met', "not JSON"),
        (b"<html>login</html>", "not JSON"),
        (b"", "not JSON"),
        (b"\xff\xfe\x00garbage", "not JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"status": "success", "data": ' * 50_000, "nested too deeply"),
        (b"1" * 5_000, "not JSON"),  # Python refuses integers of more than 4,300 digits
    ],
    ids=["truncated", "html", "empty", "binary", "nested", "nested-unclosed", "huge-int"],
)
def test_bytes_that_are_not_json_are_unusable(body: bytes, reason: str) -> None:
    answer = read_body(body)
    assert isinstance(answer, Unusable)
    assert reason in answer.reason


def test_huge_labels_and_errors_are_cut() -> None:
    big = "p" * 300_000
    several = read_answer(vector(sample("1", {"pod": "a" + big}), sample("2", {"pod": "b" + big, "x": big})))
    assert isinstance(several, Unusable)
    assert len(several.reason) <= REASON_LIMIT
    assert "ppp" not in several.reason
    labelled = read_answer(vector(sample("1", {big: big, "b": "c", "d": "e", "f": "g"})))
    assert isinstance(labelled, Unusable)
    assert len(labelled.reason) <= REASON_LIMIT
    assert "4 labels" in labelled.reason
    error = read_answer({"status": "error", "errorType": big, "error": "line1\nline2" + big})
    assert isinstance(error, Unusable)
    assert len(error.reason) <= REASON_LIMIT and "\n" not in error.reason


def test_count_problem() -> None:
    assert count_problem(0.0) is None
    assert count_problem(12.5) is None
    assert count_problem(-3.0) == "negative count -3: a count of requests is never below 0"
    assert count_problem(-1e-9) is not None
    assert count_problem(math.inf) is not None


# -- totality --------------------------------------------------------------------------------------------

JSON_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["NaN", "+Inf", "-Inf", "inf", "1e999", "-3", "0", "1.5", "success", "vector", "scalar"]),
)
ANY_JSON = st.recursive(
    JSON_LEAVES,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.sampled_from(["status", "data", "resultType", "result", "metric", "value", "values", "error"])
            | st.text(max_size=8),
            children,
            max_size=4,
        ),
    ),
    max_leaves=20,
)


def near_healthy() -> st.SearchStrategy[Any]:
    """Answers shaped like Prometheus' with any JSON in the places that matter."""
    return st.builds(
        lambda status, rtype, metric, at, value, n: {
            "status": status,
            "data": {"resultType": rtype, "result": [{"metric": metric, "value": [at, value]}] * n},
        },
        st.sampled_from(["success", "error"]) | ANY_JSON,
        st.sampled_from(["vector", "scalar", "matrix"]) | ANY_JSON,
        st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2) | ANY_JSON,
        ANY_JSON,
        ANY_JSON,
        st.integers(0, 3),
    )


def check(answer: object) -> None:
    assert isinstance(answer, Number | NoData | Unusable)
    if isinstance(answer, Number):
        assert math.isfinite(answer.value)
    if isinstance(answer, Unusable):
        assert 0 < len(answer.reason) <= REASON_LIMIT
        assert "\n" not in answer.reason


@settings(max_examples=200, deadline=None)
@given(doc=ANY_JSON | near_healthy())
def test_any_json_gives_a_number_no_data_or_unusable(doc: Any) -> None:
    check(read_answer(doc))


@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=200) | ANY_JSON.map(lambda d: json.dumps(d).encode()))
def test_any_bytes_give_a_number_no_data_or_unusable(body: bytes) -> None:
    check(read_body(body))


# -- config.text -----------------------------------------------------------------------------------------


def test_bounded_text() -> None:
    assert bounded("short", 10) == "short"
    assert bounded("x" * 11, 10) == "x" * 7 + "..."
    assert len(bounded("y" * 10_000_000, 300)) == 300
    assert bounded("a\nb\tc\x1b[31m\u2028d", 50) == "a b c [31m d"
    assert quoted('say "hi"', 64) == "\"say 'hi'\""
    with pytest.raises(ValueError, match="limit"):
        bounded("x", 2)


@settings(max_examples=200, deadline=None)
@given(text=st.text(), limit=st.integers(3, 400))
def test_bounded_never_exceeds_its_limit(text: str, limit: int) -> None:
    out = bounded(text, limit)
    assert len(out) <= limit
    assert out == text or out.endswith("...") or any(ord(c) < 32 or 127 <= ord(c) <= 159 for c in text)
    assert "\n" not in out


def test_several_series_never_quote_label_values_only_their_count_and_metric_name() -> None:
    """Another tenant's host or service name in an answer must not reach the status or Events."""
    answer = read_answer(
        vector(
            sample("1", {"__name__": "up", "host": "db-private.tenant-b.internal", "service": "billing"}),
            sample("2", {"__name__": "up", "host": "cache.tenant-b.internal"}),
        )
    )
    assert isinstance(answer, Unusable)
    assert answer.reason == (
        "query returned 2 series where one number was expected "
        "(aggregate it to one number, for example with sum()); metric up"
    )
    one = read_answer(vector(sample("1", {"host": "db-private.tenant-b.internal"})))
    assert isinstance(one, Unusable)
    assert "tenant-b" not in one.reason and "host" not in one.reason
    assert one.reason.startswith("query returned a series with 1 labels where one number was expected")
