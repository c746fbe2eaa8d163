"""A Prometheus that misbehaves in every way `tests.support.fault_prometheus.Fault` lists, met by the adapter
(`analysis.prometheus.PrometheusSource`) and by the judge (`analysis.evaluator.PrometheusEvaluator`) over
real HTTP on 127.0.0.1.

Covers, for every fault mode:
- the adapter ends with `MetricsUnavailable` or no data (NaN only), never another exception, within the
  query's deadline (plus a small margin), and its message is one bounded line; a negative answer comes
  back as a number that `analysis.answer.count_problem` refuses as a count;
- redirects (302, 307) are not followed: the other listener receives no request at all;
- retries: a 500, 503, 429 (with ``Retry-After: 120``, not obeyed) or reset connection is tried
  ``retries + 1`` times, quickly; a deadline spent (hang, slow body, slow headers) is never retried; a
  redirect or a bad answer is never retried;
- the judge: a real policy (error-rate and latency with ceilings, a min-only and a max-only custom
  metric) evaluated against the faulty server gives ERROR or INCONCLUSIVE for every metric, never PASS or
  FAIL (a negative value is a number for a custom metric: there only the built-in metrics must be ERROR);
  the evaluation ends within two query deadlines (one per observe pass: after a deadline the rest of a
  pass is not asked); every reason is bounded;
- a control: the same policy against the healthy mode gives no ERROR and passes both custom metrics, so
  the ERRORs above come from the faults;
- `analysis.observe` facing any other `MetricsSource` that misbehaves in-process (returns inf, NaN, a
  string, a 400-digit integer; raises TypeError, IndexError or RecursionError): an error on the metric,
  never an exception; a negative count is an error, a negative custom value is a value.
"""

from __future__ import annotations

import http.server
import json
import math
import threading
import time
from collections.abc import Iterator

import pytest

from songbird.analysis.answer import count_problem
from songbird.analysis.evaluator import PrometheusEvaluator
from songbird.analysis.observe import observe
from songbird.analysis.prometheus import (
    MAX_BODY_BYTES,
    MAX_GROUPED_BODY_BYTES,
    PrometheusSource,
    PrometheusUnreachable,
)
from songbird.analysis.queries import IngressTarget, Version, requests
from songbird.analysis.state import Phase, RolloutState
from songbird.analysis.verdict import Verdict
from songbird.config.errors import MetricsUnavailable
from songbird.config.loader import load_policy_yaml
from songbird.config.policy import BUILTIN_METRICS, Policy
from songbird.config.text import LABEL_LIMIT, MESSAGE_LIMIT, REASON_LIMIT
from tests.support.fault_prometheus import EXPECTED, FAULTS, Fault, FaultPrometheus, Outcome, wait_until

DEADLINE = 1.0
MARGIN = 0.5  # thread scheduling on a busy machine
AT = 1_700_000_000.0
TARGET = IngressTarget(namespace="shop", ingress="web", canary="web-v2", stable="web-v1")
COUNT = requests(TARGET, Version.CANARY, 60)
SLOW = {Fault.HANG, Fault.SLOW_BODY, Fault.SLOW_HEADERS}
RETRIED = {Fault.HTTP_500, Fault.HTTP_503, Fault.HTTP_429, Fault.RESET}


@pytest.fixture(scope="module")
def server() -> Iterator[FaultPrometheus]:
    with FaultPrometheus() as srv:
        yield srv


@pytest.fixture
def prom(server: FaultPrometheus) -> Iterator[FaultPrometheus]:
    server.fault = Fault.HEALTHY
    server.received.clear()
    yield server
    server.fault = Fault.HEALTHY


def ask(source: PrometheusSource) -> tuple[Outcome | float, str, float]:
    started = time.monotonic()
    try:
        value = source.query_scalar(COUNT, at=AT)
    except MetricsUnavailable as exc:
        return Outcome.ERROR, str(exc), time.monotonic() - started
    return (Outcome.NO_DATA if value is None else value), "", time.monotonic() - started


@pytest.mark.parametrize("fault", FAULTS, ids=str)
def test_every_fault_is_an_error_or_no_data_within_the_deadline(prom: FaultPrometheus, fault: Fault) -> None:
    prom.fault = fault
    with PrometheusSource(prom.url, timeout=DEADLINE, retries=1) as source:
        outcome, message, elapsed = ask(source)
    assert elapsed < DEADLINE + MARGIN
    if fault is Fault.NEGATIVE:
        assert outcome == -3.0
        assert count_problem(outcome) is not None
        return
    if fault is Fault.NAN:  # handed on as NaN; the judge refuses it (test_no_fault_ever_passes_or_fails...)
        assert isinstance(outcome, float) and math.isnan(outcome)
        return
    assert outcome == EXPECTED[fault]
    if outcome is Outcome.ERROR:
        assert message.startswith(f"{prom.url}/api/v1/query: ")
        assert len(message) <= MESSAGE_LIMIT and "\n" not in message
        # Upstream text is cut: a label to LABEL_LIMIT characters, Prometheus' error text to REASON_LIMIT.
        assert all(c * REASON_LIMIT not in message for c in "pxyw")
        if fault in (Fault.SEVERAL_SERIES, Fault.UNEXPECTED_LABELS):
            assert "p" * (LABEL_LIMIT + 1) not in message and "x" * (LABEL_LIMIT + 1) not in message
    if fault in SLOW:
        assert f"no answer within {DEADLINE:g} s" in message
        assert elapsed >= DEADLINE - 0.05


def test_the_healthy_mode_answers(prom: FaultPrometheus) -> None:
    with PrometheusSource(prom.url, timeout=DEADLINE) as source:
        assert ask(source)[0] == 1000.0


@pytest.mark.parametrize("fault", [Fault.REDIRECT_302, Fault.REDIRECT_307], ids=str)
def test_redirects_are_not_followed(prom: FaultPrometheus, fault: Fault) -> None:
    prom.fault = fault
    with PrometheusSource(prom.url, timeout=DEADLINE, retries=2) as source:
        outcome, message, _ = ask(source)
    assert outcome is Outcome.ERROR
    assert "redirects are not followed" in message and "127.0.0.2" in message
    assert len(prom.received) == 1  # and not retried
    assert not wait_until(lambda: prom.elsewhere.requests > 0, timeout=0.3)
    assert prom.elsewhere.requests == 0


@pytest.mark.parametrize("fault", sorted(RETRIED), ids=str)
def test_server_trouble_is_retried_a_bounded_number_of_times(prom: FaultPrometheus, fault: Fault) -> None:
    prom.fault = fault
    with PrometheusSource(prom.url, timeout=DEADLINE, retries=2) as source:
        started = time.monotonic()
        with pytest.raises(PrometheusUnreachable, match="after 3 attempts"):
            source.query_scalar(COUNT, at=AT)
        assert time.monotonic() - started < 0.3 + MARGIN  # 0.1 s then 0.2 s; Retry-After: 120 ignored
    assert wait_until(lambda: len(prom.received) == 3)


@pytest.mark.parametrize("fault", [*sorted(SLOW), Fault.HTTP_422, Fault.POS_INF, Fault.NOT_HTTP], ids=str)
def test_a_spent_deadline_or_a_bad_answer_is_not_retried(prom: FaultPrometheus, fault: Fault) -> None:
    prom.fault = fault
    with PrometheusSource(prom.url, timeout=DEADLINE, retries=2) as source:
        assert ask(source)[0] is Outcome.ERROR
    time.sleep(0.1)
    assert len(prom.received) == 1


# -- through the judge -----------------------------------------------------------------------------------

POLICY = """
ingress: web
canary: {deployment: web-v2, service: web-v2}
steps: [10, 50]
analysis:
  prometheus: {timeout: 1s}
  window: 60s
  minRequests: 50
  metrics:
    - {name: error-rate, max: 0.05}
    - {name: latency, quantile: 0.99, max: 1}
    - {name: floor, min: 0, query: "sum(rate(queue_done_total{namespace='{{ namespace }}'}[{{ window }}]))"}
    - {name: ceiling, max: 100, query: "max(queue_depth{namespace='{{ namespace }}'})"}
"""


def policy() -> Policy:
    return load_policy_yaml(POLICY, source="shop/web-rollout")


def state(now: float) -> RolloutState:
    return RolloutState(
        phase=Phase.PROGRESSING,
        step=0,
        weight=10.0,
        canary="web-v2",
        stable="web-v1",
        canary_service="web-v2",
        stable_service="web-v1",
        started_at=now - 60,
        step_started_at=now - 60,
    )


def evaluate(prom: FaultPrometheus) -> tuple[dict[str, Verdict], dict[str, str], float]:
    evaluator = PrometheusEvaluator(default_url=prom.url)
    try:
        started = time.monotonic()
        results, _ = evaluator.evaluate(policy(), "shop", state(AT), AT)
        elapsed = time.monotonic() - started
    finally:
        evaluator.close()
    return {r.name: r.verdict for r in results}, {r.name: r.reason for r in results}, elapsed


def test_healthy_control_passes_the_custom_metrics(prom: FaultPrometheus) -> None:
    verdicts, reasons, _ = evaluate(prom)
    assert Verdict.ERROR not in verdicts.values(), reasons
    assert verdicts["floor"] is Verdict.PASS and verdicts["ceiling"] is Verdict.PASS


@pytest.mark.parametrize("fault", FAULTS, ids=str)
def test_no_fault_ever_passes_or_fails_a_metric(prom: FaultPrometheus, fault: Fault) -> None:
    prom.fault = fault
    verdicts, reasons, elapsed = evaluate(prom)
    assert set(verdicts) == {"error-rate", "latency", "floor", "ceiling"}
    judged = {n: v for n, v in verdicts.items() if fault is not Fault.NEGATIVE or n in BUILTIN_METRICS}
    assert set(judged.values()) <= {Verdict.ERROR, Verdict.INCONCLUSIVE}, reasons
    if EXPECTED[fault] is Outcome.ERROR:
        assert set(judged.values()) == {Verdict.ERROR}, reasons
    assert elapsed < 2 * DEADLINE + MARGIN
    assert all(len(r) <= MESSAGE_LIMIT + 100 and "\n" not in r for r in reasons.values())
    assert prom.elsewhere.requests == 0


# -- other sources ---------------------------------------------------------------------------------------


class OddSource:
    """A MetricsSource answering every query with ``answer`` (or raising it)."""

    def __init__(self, answer: object) -> None:
        self.answer = answer

    def query_scalar(self, promql: str, *, at: float) -> float | None:
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer  # type: ignore[return-value]  # deliberately not a float


@pytest.mark.parametrize(
    "answer",
    [
        math.inf,
        -math.inf,
        math.nan,
        "12",
        10**400,
        [1.0],
        TypeError("x"),
        IndexError("y"),
        RecursionError("z"),
    ],
    ids=["inf", "-inf", "nan", "str", "huge-int", "list", "TypeError", "IndexError", "RecursionError"],
)
def test_observe_turns_any_misbehaving_source_into_errors(answer: object) -> None:
    seen = observe(policy(), OddSource(answer), TARGET, at=AT)
    assert [s.error is not None for s in seen] == [True] * 4
    assert all(len(s.error or "") <= MESSAGE_LIMIT for s in seen)


def test_a_negative_count_is_an_error_and_a_negative_custom_value_a_value() -> None:
    error_rate, latency, floor, ceiling = observe(policy(), OddSource(-3.0), TARGET, at=AT)
    assert error_rate.error is not None and "negative count -3" in error_rate.error
    assert latency.error is not None and "negative count -3" in latency.error
    assert (floor.value, floor.error, ceiling.value, ceiling.error) == (-3.0, None, -3.0, None)


def test_a_grouped_answer_may_exceed_the_single_answer_cap() -> None:
    """One grouped answer serves every rollout of an endpoint: 2 MiB of series is read whole by
    `query_vector`, and refused by `query_scalar` (1 MiB)."""
    series = [
        {"metric": {"namespace": f"team-{i}", "ingress": "web", "canary": ""}, "value": [AT, "12"]}
        for i in range(30_000)
    ]
    body = json.dumps({"status": "success", "data": {"resultType": "vector", "result": series}}).encode()
    assert MAX_BODY_BYTES < len(body) < MAX_GROUPED_BODY_BYTES

    class Big(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return None

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Big)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with PrometheusSource(f"http://127.0.0.1:{server.server_port}", timeout=5.0) as source:
            found = source.query_vector("sum by (namespace, ingress, canary) (x)", at=AT)
            assert len(found) == 30_000 and found[0] == (
                {"namespace": "team-0", "ingress": "web", "canary": ""},
                12.0,
            )
            with pytest.raises(MetricsUnavailable, match="larger than the 1,048,576-byte cap"):
                source.query_scalar("x", at=AT)
    finally:
        server.shutdown()
        server.server_close()
