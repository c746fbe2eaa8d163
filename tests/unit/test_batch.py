"""The pure part of batched queries (`analysis.batch`).

Covers:
- `slot`: over a run of jittered, late and missed ticks, consecutive windows never overlap (the judge's
  validity condition), every window after the first recorded one starts on the cadence grid and is
  grouped, a long gap is clamped by skipping (never by overlapping), and a switch from per-rollout
  evaluations (no recorded end) also never overlaps;
- the grouped PromQL per kind, and picking one rollout's figure out of a grouped answer: canary versus
  stable by the ``canary`` label only, other namespaces and Ingresses left out, absent groups as the
  per-rollout query's empty answer (None, or 0 for 5xx), slow requests as +Inf minus the bucket;
- `histogram_quantile` as Prometheus computes it (interpolation, the +Inf bucket, no observations);
- `controller.batch.QueryBatcher`: concurrent ticks share one grouped query per key, a later cadence asks
  again, a failed query is not cached, the cache is bounded.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from dataclasses import replace

import pytest

from songbird.analysis import batch
from songbird.analysis.batch import GroupedAnswer, GroupKind, Pick, histogram_quantile
from songbird.analysis.queries import IngressTarget, Version
from songbird.analysis.state import Phase, RolloutState
from songbird.config.endpoints import Endpoint
from songbird.config.errors import MetricsUnavailable
from songbird.config.loader import load_policy_yaml
from songbird.controller.batch import QueryBatcher
from songbird.controller.endpoints import Endpoints

_P = Endpoint(name="p", url="http://p")

POLICY = load_policy_yaml("""
ingress: web
canary: {deployment: web-v2, service: web-v2}
steps: [50]
analysis: {cadence: 30s}
""")
TARGET = IngressTarget(namespace="shop", ingress="web", canary="web-v2", stable="web-v1")


def run(state: RolloutState, ticks: list[float]) -> list[tuple[float, float, bool]]:
    """Evaluate at each tick as the evaluator does; the (start, end, grouped) of every window."""
    windows = []
    for now in ticks:
        chosen = batch.slot(POLICY, state, now)
        windows.append((chosen.at - chosen.window, chosen.at, chosen.grouped))
        state = replace(state, evidence=batch.recorded(state.evidence, chosen.at), last_evaluated_at=now)
    return windows


def test_windows_never_overlap_and_align_to_the_grid() -> None:
    rng = random.Random(7)
    now, ticks = 1_000_000.0 + 13.3, []
    for _ in range(300):
        now += 30 * rng.choice([1, 1, 1, 2, 5]) + rng.uniform(-1.4, 9.0)  # late, early, missed ticks
        ticks.append(now)
    start = RolloutState(phase=Phase.PROGRESSING, step_started_at=1_000_000.0 + 13.3)
    windows = run(start, ticks)
    for (_, end, _), (begin, _, _) in itertools.pairwise(windows):
        assert begin >= end - 1e-9  # no request counted twice
    for begin, end, grouped in windows[1:]:
        assert grouped and begin % 30 == 0 and end % 30 == 0 and end - begin <= 600
    assert not windows[0][2]  # the first window starts at the step start, off the grid: asked per rollout


def test_a_long_gap_is_skipped_not_overlapped() -> None:
    state = RolloutState(phase=Phase.PROGRESSING, evidence={batch.WINDOW_KEY: {"end": 900.0}})
    chosen = batch.slot(POLICY, state, 5000.0)
    assert (chosen.at, chosen.window, chosen.grouped) == (4980.0, 600.0, True)


def test_after_per_rollout_evaluations_the_first_window_starts_at_the_last_tick() -> None:
    # Evaluated without batching up to 1012.5 (its window ended there, not on the grid).
    state = RolloutState(phase=Phase.PROGRESSING, last_evaluated_at=1012.5)
    chosen = batch.slot(POLICY, state, 1047.0)
    assert (chosen.at, chosen.window, chosen.grouped) == (1020.0, 7.5, False)
    early = batch.slot(POLICY, state, 1013.0)  # no grid time after 1012.5 yet: up to now, per rollout
    assert (early.at, early.window, early.grouped) == (1013.0, 1.0, False)


def test_grouped_queries() -> None:
    assert batch.grouped_query(GroupKind.REQUESTS, 60) == (
        "sum by (namespace, ingress, canary) (increase(nginx_ingress_controller_requests[60s]))"
    )
    assert 'status=~"5.."' in batch.grouped_query(GroupKind.SERVER_ERRORS, 60)
    assert batch.grouped_query(GroupKind.DURATION, 90).startswith("sum by (namespace, ingress, canary, le) (")


def answer(kind: GroupKind, rows: list[tuple[dict[str, str], float]]) -> GroupedAnswer:
    return GroupedAnswer.of(kind, window=60, at=0, samples=rows)


def test_picking_a_rollout_out_of_a_grouped_answer() -> None:
    rows = [
        ({"namespace": "shop", "ingress": "web", "canary": ""}, 100.0),
        ({"namespace": "shop", "ingress": "web", "canary": "shop-web-v2-80"}, 10.0),
        ({"namespace": "shop", "ingress": "web", "canary": "shop-web-v0-80"}, 2.5),  # an older canary
        ({"namespace": "pay", "ingress": "web", "canary": ""}, 1000.0),
        ({"namespace": "shop", "ingress": "api", "canary": "shop-api-v2-80"}, 1000.0),
    ]
    got = answer(GroupKind.REQUESTS, rows)
    assert Pick(kind=GroupKind.REQUESTS, version=Version.STABLE).value(got, TARGET) == 100.0
    assert Pick(kind=GroupKind.REQUESTS, version=Version.CANARY).value(got, TARGET) == 12.5
    empty = answer(GroupKind.SERVER_ERRORS, [])
    assert Pick(kind=GroupKind.REQUESTS, version=Version.CANARY).value(empty, TARGET) is None
    assert (
        Pick(kind=GroupKind.SERVER_ERRORS, version=Version.CANARY, default_zero=True).value(empty, TARGET)
        == 0
    )


def test_slow_requests_are_every_request_minus_the_bucket() -> None:
    canary = {"namespace": "shop", "ingress": "web", "canary": "shop-web-v2-80"}
    got = answer(GroupKind.DURATION, [({**canary, "le": "0.5"}, 30.0), ({**canary, "le": "+Inf"}, 40.0)])
    assert (
        Pick(kind=GroupKind.DURATION, version=Version.CANARY, le="0.5", slow=True).value(got, TARGET) == 10.0
    )
    assert Pick(kind=GroupKind.DURATION, version=Version.CANARY, le="1", slow=True).value(got, TARGET) is None
    assert Pick(kind=GroupKind.DURATION, version=Version.STABLE, le="+Inf").value(got, TARGET) is None


def test_histogram_quantile_as_prometheus() -> None:
    buckets = {"0.1": 50.0, "0.5": 90.0, "1": 100.0, "+Inf": 100.0}
    assert histogram_quantile(0.5, buckets) == 0.1  # rank 50 lands on the first bound
    assert abs((histogram_quantile(0.7, buckets) or 0) - 0.3) < 1e-12  # 0.1 + 0.4 * (20 / 40)
    assert histogram_quantile(0.99, {"0.1": 5.0, "+Inf": 10.0}) == 0.1  # in +Inf: the highest finite bound
    assert histogram_quantile(0.5, {"0.1": 0.0, "+Inf": 0.0}) is None
    assert histogram_quantile(0.5, {"0.1": 3.0}) is None  # no +Inf bucket


class Slow:
    """A vector source that answers once released, counting the queries it got."""

    def __init__(self, *, fail: bool = False) -> None:
        self.release = threading.Event()
        self.asked: list[str] = []
        self.fail = fail

    def query_vector(self, promql: str, *, at: float) -> list[tuple[dict[str, str], float]]:
        self.asked.append(promql)
        self.release.wait(5)
        if self.fail:
            raise MetricsUnavailable("prometheus said no")
        return [({"namespace": "shop", "ingress": "web", "canary": ""}, 42.0)]


def test_concurrent_ticks_share_one_grouped_query() -> None:
    source = Slow()
    batcher = QueryBatcher(endpoints=Endpoints(limit=2), timeout=1.0, sources=lambda url: source)
    got: list[float | None] = []

    def tick() -> None:
        found = batcher.grouped(_P, GroupKind.REQUESTS, window=60, at=1200)
        got.append(found.total(TARGET, Version.STABLE))

    threads = [threading.Thread(target=tick) for _ in range(8)]
    for thread in threads:
        thread.start()
    time.sleep(0.2)
    source.release.set()
    for thread in threads:
        thread.join(5)
    assert got == [42.0] * 8 and len(source.asked) == 1 and batcher.queries == 1
    batcher.grouped(_P, GroupKind.REQUESTS, window=60, at=1200)  # later tick: from the cache
    batcher.grouped(_P, GroupKind.REQUESTS, window=60, at=1260)  # next cadence: asked again
    assert len(source.asked) == 2


def test_a_failed_grouped_query_is_not_cached() -> None:
    source = Slow(fail=True)
    source.release.set()
    batcher = QueryBatcher(endpoints=Endpoints(limit=2, failures=10), timeout=1.0, sources=lambda url: source)
    for _ in range(2):
        with pytest.raises(MetricsUnavailable, match="said no"):
            batcher.grouped(_P, GroupKind.SERVER_ERRORS, window=60, at=1200)
    assert len(source.asked) == 2


def test_the_cache_is_bounded() -> None:
    source = Slow()
    source.release.set()
    batcher = QueryBatcher(endpoints=Endpoints(), timeout=1.0, capacity=2, sources=lambda url: source)
    for at in (60.0, 120.0, 180.0, 60.0):
        batcher.grouped(_P, GroupKind.REQUESTS, window=60, at=at)
    assert len(source.asked) == 4  # the first key was dropped when the third came
