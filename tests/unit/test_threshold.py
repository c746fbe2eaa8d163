"""The absolute-limit judge (`analysis.threshold.judge_threshold`).

Covers the verdict and the exact reason a person reads for:
- an observation that failed: ERROR, with the cause;
- too few canary requests: INCONCLUSIVE naming the count and minRequests, whatever the error share;
- error-rate over, at and under ``max``, the share computed from the canary's counts only;
- latency with quantile and max (seconds), with no quantile data, and without an absolute limit;
- custom metrics against max and min, and a custom query with no data;
- figures that would print equal to the limit get more digits.
"""

from __future__ import annotations

from songbird.analysis.observe import MetricObservation
from songbird.analysis.queries import latency_bucket
from songbird.analysis.threshold import judge_threshold
from songbird.analysis.verdict import Verdict, WindowCounts
from songbird.config.policy import MetricSpec


def counts(n_c: float, x_c: float, n_s: float = 5000.0, x_s: float = 5.0) -> WindowCounts:
    return WindowCounts(canary_total=n_c, canary_bad=x_c, stable_total=n_s, stable_bad=x_s)


ERROR_RATE = MetricSpec(name="error-rate", max=0.01)


def test_unobserved_metric_is_error_with_cause() -> None:
    seen = MetricObservation(name="error-rate", error="http://prom:9090/api/v1/query: no answer within 5 s")
    result = judge_threshold(seen, ERROR_RATE, min_requests=100)
    assert result.verdict is Verdict.ERROR
    assert result.reason == "error-rate: no answer: http://prom:9090/api/v1/query: no answer within 5 s"


def test_error_rate_above_max_fails_with_readable_reason() -> None:
    result = judge_threshold(
        MetricObservation(name="error-rate", counts=counts(1213, 63)), ERROR_RATE, min_requests=100
    )
    assert result.verdict is Verdict.FAIL
    assert result.reason == "error-rate 0.0519 > max 0.01 (canary 5.19% of 1,213 requests)"
    assert result.value == 63 / 1213
    assert result.limit == 0.01
    assert (result.canary_requests, result.stable_requests) == (1213, 5000.0)


def test_error_rate_at_max_passes_and_below_passes() -> None:
    at = judge_threshold(
        MetricObservation(name="error-rate", counts=counts(1000, 10)), ERROR_RATE, min_requests=100
    )
    assert at.verdict is Verdict.PASS
    assert at.reason == "error-rate 0.01 within max 0.01 (canary 1% of 1,000 requests)"
    below = judge_threshold(
        MetricObservation(name="error-rate", counts=counts(400, 0)), ERROR_RATE, min_requests=100
    )
    assert below.verdict is Verdict.PASS
    assert below.reason == "error-rate 0 within max 0.01 (canary 0% of 400 requests)"


def test_stable_errors_do_not_count_against_the_canary() -> None:
    seen = MetricObservation(name="error-rate", counts=counts(500, 1, n_s=500, x_s=400))
    assert judge_threshold(seen, ERROR_RATE, min_requests=100).verdict is Verdict.PASS


def test_too_few_canary_requests_is_inconclusive_even_if_all_failed() -> None:
    seen = MetricObservation(name="error-rate", counts=counts(42.4, 42.4))
    result = judge_threshold(seen, ERROR_RATE, min_requests=100)
    assert result.verdict is Verdict.INCONCLUSIVE
    assert result.reason == "error-rate: canary served 42 requests < minRequests 100"
    none = judge_threshold(
        MetricObservation(name="error-rate", counts=counts(0, 0)), ERROR_RATE, min_requests=1
    )
    assert none.verdict is Verdict.INCONCLUSIVE


def test_figure_that_would_print_as_the_limit_gets_more_digits() -> None:
    result = judge_threshold(
        MetricObservation(name="error-rate", counts=counts(100000, 1000.4)), ERROR_RATE, min_requests=100
    )
    assert result.verdict is Verdict.FAIL
    assert result.reason.startswith("error-rate 0.010004 > max 0.01 ")


def test_builtin_without_limit_passes_only_with_enough_requests() -> None:
    spec = MetricSpec(name="error-rate")
    enough = judge_threshold(
        MetricObservation(name="error-rate", counts=counts(150, 30)), spec, min_requests=100
    )
    assert enough.verdict is Verdict.PASS
    assert "no absolute limit" in enough.reason
    few = judge_threshold(MetricObservation(name="error-rate", counts=counts(50, 0)), spec, min_requests=100)
    assert few.verdict is Verdict.INCONCLUSIVE


def test_latency_quantile_above_max_fails_in_seconds() -> None:
    spec = MetricSpec(name="latency", quantile=0.99, max=0.5)
    seen = MetricObservation(
        name="latency", counts=counts(2000, 80, 9000, 30), value=1.75, bucket=latency_bucket(0.5)
    )
    result = judge_threshold(seen, spec, min_requests=100)
    assert result.verdict is Verdict.FAIL
    assert result.reason == "latency p99 1.75 s > max 0.5 s (canary 2,000 requests; 80 slower than 0.5 s)"
    assert (result.value, result.limit) == (1.75, 0.5)
    assert result.figures.slow_above_seconds == 0.5


def test_latency_quantile_within_max_passes() -> None:
    spec = MetricSpec(name="latency", quantile=0.9, max=0.5)
    seen = MetricObservation(name="latency", counts=counts(300, 3), value=0.21, bucket=latency_bucket(0.5))
    result = judge_threshold(seen, spec, min_requests=100)
    assert result.verdict is Verdict.PASS
    assert result.reason == "latency p90 0.21 s within max 0.5 s (canary 300 requests; 3 slower than 0.5 s)"


def test_latency_without_quantile_data_is_inconclusive() -> None:
    spec = MetricSpec(name="latency", quantile=0.99, max=0.5)
    seen = MetricObservation(name="latency", counts=counts(300, 0), value=None, bucket=latency_bucket(0.5))
    result = judge_threshold(seen, spec, min_requests=100)
    assert result.verdict is Verdict.INCONCLUSIVE
    assert result.reason == "latency p99: no latency data for the canary (300 requests)"


def test_latency_max_without_quantile_is_only_a_slow_threshold() -> None:
    spec = MetricSpec(name="latency", max=0.3)
    seen = MetricObservation(name="latency", counts=counts(300, 250), bucket=latency_bucket(0.3))
    result = judge_threshold(seen, spec, min_requests=100)
    assert result.verdict is Verdict.PASS
    assert result.reason == "latency: no absolute limit (canary 300 requests; 250 slower than 0.5 s)"


def test_custom_metric_against_max_and_min() -> None:
    over = judge_threshold(
        MetricObservation(name="cpu", value=0.93),
        MetricSpec(name="cpu", query="q", max=0.8),
        min_requests=100,
    )
    assert (over.verdict, over.reason) == (Verdict.FAIL, "cpu 0.93 > max 0.8")
    under = judge_threshold(
        MetricObservation(name="rps", value=3.0), MetricSpec(name="rps", query="q", min=10), min_requests=100
    )
    assert (under.verdict, under.reason, under.limit) == (Verdict.FAIL, "rps 3 < min 10", 10)
    ok = judge_threshold(
        MetricObservation(name="rps", value=12.5),
        MetricSpec(name="rps", query="q", min=10, max=100),
        min_requests=100,
    )
    assert (ok.verdict, ok.reason) == (Verdict.PASS, "rps 12.5 within max 100 and min 10")


def test_custom_metric_without_data_is_inconclusive_not_fail() -> None:
    result = judge_threshold(
        MetricObservation(name="cpu", value=None),
        MetricSpec(name="cpu", query="q", max=0.8),
        min_requests=100,
    )
    assert (result.verdict, result.reason) == (Verdict.INCONCLUSIVE, "cpu: query returned no data")
