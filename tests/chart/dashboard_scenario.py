"""A recorded rollout for checking and drawing the Grafana dashboard: one Prometheus holding 25 minutes of
ingress-nginx traffic and of the controller's own metrics, in the seed scenario (namespace ``default``,
main Ingress ``nginx`` -> ``nginx-v1``, canary ``nginx-v2``, policy ConfigMap ``nginx``).

The story: a first canary fails at 20% (its 5xx share climbs to 8%), is rolled back for ``error-rate``;
a fixed canary then walks the steps 10, 20, 40, 60, 80 and is promoted.

How the controller's series get into Prometheus: a real `ControllerMetrics` is driven through the story
behind a real `controller.health.HealthServer`; at every simulated scrape (every 10 s of story time) its
``/metrics`` page is fetched over HTTP and its samples are stamped with that time, then everything is
backfilled (`tests.support.prom_server`) before the server starts, so queries at pinned times are
deterministic. The same server also scrapes the live endpoint every second, proving real Prometheus can
read the page. The ingress-nginx side comes from `tests.support.nginx_series`, whose traffic follows the
canary weight of the story, so both halves agree.
"""

from __future__ import annotations

import math
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from songbird.analysis.figures import Figures
from songbird.analysis.state import Evaluation, Phase, RolloutState
from songbird.analysis.verdict import MetricResult, Verdict
from songbird.controller.health import HealthServer, Readiness
from songbird.controller.metrics import ControllerMetrics
from tests.support.nginx_series import IngressNames, Traffic, ingress_nginx_series
from tests.support.prom_server import PrometheusServer, ScrapeTarget, Series

NAMESPACE, ROLLOUT, INGRESS = "default", "nginx", "nginx"
SCRAPE = 10.0  # seconds of story time between two simulated scrapes
LENGTH = 1500.0  # seconds of story
TOTAL_RPS = 40.0
INSTANCE = {"job": "songbird", "instance": "10.0.0.7:8080"}
STEPS = (10.0, 20.0, 40.0, 60.0, 80.0)


@dataclass(frozen=True)
class Moment:
    """What the rollout looks like from ``at`` seconds into the story."""

    at: float
    phase: Phase
    step: int
    weight: float
    decision: str = ""  # action recorded when the moment begins
    reason: str = ""


# The policy's interval is 2 minutes; the second attempt starts 5 minutes after the first failed.
TIMELINE = (
    Moment(0, Phase.INITIALIZING, -1, 0.0),
    Moment(60, Phase.PROGRESSING, 0, 10.0, "advance"),
    Moment(180, Phase.PROGRESSING, 1, 20.0, "advance"),
    Moment(270, Phase.ROLLING_BACK, 1, 0.0, "rollback", "error-rate"),
    Moment(300, Phase.FAILED, 1, 0.0),
    Moment(600, Phase.INITIALIZING, -1, 0.0),
    *(Moment(630 + 120 * i, Phase.PROGRESSING, i, w, "advance") for i, w in enumerate(STEPS)),
    Moment(1230, Phase.PROMOTING, 4, 100.0, "promote"),
    Moment(1290, Phase.SUCCEEDED, 4, 100.0),
)
FAILING = (200.0, 270.0)  # the first canary's 5xx share is high in this span


def moment(t: float) -> Moment:
    return [m for m in TIMELINE if m.at <= t][-1]


def canary_error_share(t: float) -> float:
    return 0.08 if FAILING[0] <= t < FAILING[1] else 0.004


def story_weight(t: float) -> float:
    return moment(t).weight


@dataclass(frozen=True)
class Recording:
    start: float  # epoch second of story time 0
    end: float

    def at(self, story_seconds: float) -> float:
        return self.start + story_seconds


def _evaluation(t: float, m: Moment, state: RolloutState) -> Evaluation | None:
    """What the judge would have recorded at story time ``t`` (every 15 s while progressing)."""
    if m.phase is not Phase.PROGRESSING:
        return None
    in_step = t - m.at
    canary_requests = TOTAL_RPS * m.weight / 100 * 60
    stable_requests = TOTAL_RPS * (100 - m.weight) / 100 * 60
    share_c, share_s = canary_error_share(t), 0.004
    enough = in_step >= 30
    failing = FAILING[0] <= t < FAILING[1]
    n = len([e for e in state.history if e.step == m.step]) + 1
    e_bad = min(1e4, 1.6 ** (n * 3)) if failing and enough else 0.5
    e_good = 0.5 if failing or t < 600 else min(400.0, 1.35 ** ((t - 600) / 15))
    error_rate = MetricResult(
        name="error-rate",
        verdict=(Verdict.FAIL if failing and enough else Verdict.PASS) if enough else Verdict.INCONCLUSIVE,
        reason="story",
        value=share_c / share_s,
        canary_requests=canary_requests,
        stable_requests=stable_requests,
        figures=Figures(canary_share=share_c, stable_share=share_s, e_bad=e_bad, e_good=e_good),
    )
    timeout = 700 <= t < 715  # one Prometheus timeout in the second attempt
    latency = MetricResult(
        name="latency",
        verdict=Verdict.ERROR if timeout else (Verdict.PASS if enough else Verdict.INCONCLUSIVE),
        reason="story",
        canary_requests=None if timeout else canary_requests,
        stable_requests=None if timeout else stable_requests,
        figures=Figures()
        if timeout
        else Figures(
            canary_bad=0.01 * canary_requests,
            canary_total=canary_requests,
            stable_bad=0.01 * stable_requests,
            stable_total=stable_requests,
            e_bad=0.8,
            e_good=e_good,
        ),
    )
    return Evaluation(at=t, step=m.step, weight=m.weight, results=(error_rate, latency))


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if not s.name.endswith("_created"):
                out[(s.name, tuple(sorted({**s.labels, **INSTANCE}.items())))] = s.value
    return out


def drive(metrics: ControllerMetrics, server: HealthServer, start: float) -> list[Series]:
    """Play the story on ``metrics``, scraping ``server`` every `SCRAPE` seconds of story time."""
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], list[tuple[float, float]]] = {}
    state = RolloutState()
    previous: Moment | None = None
    last_eval = -math.inf
    metrics.set_leader(True)
    for tick in range(int(LENGTH / SCRAPE) + 1):
        t = tick * SCRAPE
        m = moment(t)
        if m is not previous:
            if previous is not None and previous.phase is Phase.PROGRESSING:
                metrics.observe_step_duration(NAMESPACE, ROLLOUT, m.at - previous.at)
            if m.decision:
                metrics.record_decision(NAMESPACE, ROLLOUT, m.decision, m.reason)  # type: ignore[arg-type]
            if m.phase is Phase.INITIALIZING:
                state = RolloutState()
            state = replace(state, phase=m.phase, step=m.step, weight=m.weight, step_started_at=start + m.at)
            previous = m
        else:
            metrics.record_decision(NAMESPACE, ROLLOUT, "hold", "")
        if t - last_eval >= 15:
            evaluation = _evaluation(t, m, state)
            if evaluation is not None:
                state = state.with_evaluation(evaluation)
                last_eval = t
                if any(r.verdict is Verdict.ERROR for r in evaluation.results):
                    metrics.record_decision(NAMESPACE, ROLLOUT, "error", "latency")
        for _ in range(3):
            metrics.observe_prometheus_query(0.03 + 0.01 * (tick % 5), ok=not 700 <= t < 715)
        metrics.observe_kube_call("get", "ingresses", True, 0.008 + 0.002 * (tick % 3))
        metrics.observe_kube_call("patch", "configmaps", True, 0.015)
        if tick % 40 == 7:
            metrics.observe_kube_call("patch", "ingresses", False, 0.02, status=409)
        total = 10
        canary = round(total * m.weight / 100) if m.phase is not Phase.SUCCEEDED else total
        metrics.observe_rollout(NAMESPACE, ROLLOUT, state, canary, total - canary if m.weight < 100 else 0)
        for key, value in _scrape(server.port).items():
            samples.setdefault(key, []).append((start + t, value))
    return [Series(name, dict(labels), tuple(points)) for (name, labels), points in samples.items()]


def ingress_series(start: float) -> list[Series]:
    def canary_rate(ts: float) -> float:
        return TOTAL_RPS * story_weight(ts - start) / 100

    def stable_rate(ts: float) -> float:
        return TOTAL_RPS - canary_rate(ts)

    return ingress_nginx_series(
        start=start,
        end=start + LENGTH,
        step=SCRAPE,
        stable=Traffic(rate=stable_rate, error_share=0.004, latency={0.02: 0.7, 0.06: 0.25, 0.3: 0.05}),
        canary=Traffic(
            rate=canary_rate,
            error_share=lambda ts: canary_error_share(ts - start),
            latency={0.02: 0.6, 0.08: 0.33, 0.4: 0.07},
        ),
        names=IngressNames(
            namespace=NAMESPACE, ingress=INGRESS, stable_service="nginx-v1", canary_service="nginx-v2"
        ),
    )


@contextmanager
def recorded_rollout() -> Iterator[tuple[PrometheusServer, Recording, HealthServer]]:
    """A started Prometheus holding the story (ending two minutes ago), scraping the live health server."""
    end = math.floor(time.time() / SCRAPE) * SCRAPE - 120
    start = end - LENGTH
    metrics = ControllerMetrics(version="0.1.0")
    with HealthServer(
        metrics, lambda: Readiness(api_reachable=True, role="leader"), address="127.0.0.1:0"
    ) as health:
        controller_series = drive(metrics, health, start)
        prom = PrometheusServer(
            scrape_targets=[ScrapeTarget(address=f"127.0.0.1:{health.port}", job="songbird-live")]
        )
        prom.backfill([*ingress_series(start), *controller_series])
        with prom:
            yield prom, Recording(start=start, end=end), health


def substitute(expr: str, *, interval: str = "20s", rate_interval: str = "1m", range_: str = "25m") -> str:
    """Fill the dashboard's variables as Grafana would for the recorded rollout."""
    values = {
        "$__rate_interval": rate_interval,
        "$__interval": interval,
        "$__range": range_,
        "$namespace": NAMESPACE,
        "$rollout": ROLLOUT,
        "$ingress": INGRESS,
    }
    for key in sorted(values, key=len, reverse=True):  # $__rate_interval before $__interval
        expr = expr.replace(key, values[key])
    return expr


def query_range(
    prom: PrometheusServer, expr: str, rec: Recording, step: float = SCRAPE
) -> list[dict[str, Any]]:
    data = prom.api(
        "query_range", {"query": expr, "start": repr(rec.start), "end": repr(rec.end), "step": repr(step)}
    )
    return list(data["result"])
