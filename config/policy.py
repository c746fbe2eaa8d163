"""The policy model: what a user writes under ``policy.yaml`` in a ConfigMap labelled
``songbird.dev/policy: "true"``.

Every class is a frozen, keyword-only dataclass; durations are seconds (float), weights are percent.
Every field has a range: strings a pattern and a length, numbers and durations an upper bound, lists a
largest size (the bounds are listed in the README's policy reference and in the exported schema).
Field metadata (YAML key, description, bounds) lives beside each field and drives both the loader and the
JSON Schema, so the two cannot drift apart. Cross-field rules (steps strictly increasing, a custom metric
needs a query and a limit...) live in `config.loader.validate`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from songbird.config.fields import (
    COOKIE_PATTERN,
    DAY,
    ENDPOINT_MAX,
    ENDPOINT_PATTERN,
    HEADER_PATTERN,
    HEADER_VALUE_PATTERN,
    HOUR,
    METRIC_NAME_PATTERN,
    NAME_MAX,
    NAME_PATTERN,
    QUERY_MAX,
    SERVICE_MAX,
    SERVICE_PATTERN,
    TOKEN_MAX,
    URL_MAX,
    URL_PATTERN,
    spec,
)

POLICY_LABEL = "songbird.dev/policy"
POLICY_KEY = "policy.yaml"

BUILTIN_METRICS = ("error-rate", "latency")

# Upper bounds of counts (durations are bounded in `config.fields` units: at most 24 h, cadence 1 h,
# Prometheus timeout 1 min). Each is far above any sensible policy and far below what would hurt a
# cluster (a stable Deployment scaled to 2^31) or the controller (10,000 steps, an infinite wait).
MAX_REPLICAS = 1000
MAX_STEPS = 100
MAX_METRICS = 20
MAX_NODE_LABELS = 32
MAX_FAILURE_LIMIT = 100
MAX_MIN_REQUESTS = 10_000_000


@dataclass(frozen=True, kw_only=True)
class CanaryTarget:
    deployment: str = spec(
        "deployment",
        "Deployment running the canary version (a DNS-1123 subdomain).",
        pattern=NAME_PATTERN,
        max_length=NAME_MAX,
    )
    service: str = spec(
        "service",
        "Service selecting the canary pods; the canary Ingress routes to it (a DNS-1035 label).",
        pattern=SERVICE_PATTERN,
        max_length=SERVICE_MAX,
    )


@dataclass(frozen=True, kw_only=True)
class StableTarget:
    deployment: str | None = spec(
        "deployment",
        "Deployment running the stable version. Default: the Deployment selected by the Service the main "
        "Ingress routes to now.",
        default=None,
        pattern=NAME_PATTERN,
        max_length=NAME_MAX,
    )


@dataclass(frozen=True, kw_only=True)
class HeaderRoute:
    name: str = spec(
        "name",
        "Request header that sends a request to the canary (canary-by-header).",
        pattern=HEADER_PATTERN,
        max_length=TOKEN_MAX,
        example="Region",
    )
    value: str = spec(
        "value",
        "Header value that routes to the canary. 'always' also enables 'never' "
        "(to force stable); any other value must match exactly.",
        default="always",
        pattern=HEADER_VALUE_PATTERN,
        max_length=TOKEN_MAX,
    )


@dataclass(frozen=True, kw_only=True)
class Routing:
    header: HeaderRoute | None = spec(
        "header", "Header routing to the canary for the whole rollout.", default=None
    )
    cookie: str | None = spec(
        "cookie",
        "Cookie name: value 'always' routes to the canary, 'never' to stable (canary-by-cookie).",
        default=None,
        pattern=COOKIE_PATTERN,
        max_length=TOKEN_MAX,
    )
    sticky: bool = spec(
        "sticky", "A client keeps the version it first reached (cookie affinity).", default=False
    )


@dataclass(frozen=True, kw_only=True)
class Replicas:
    mode: Literal["proportional", "fixed"] = spec(
        "mode",
        "proportional: canary replicas follow the weight; fixed: the canary runs 'canary' replicas.",
        default="proportional",
    )
    min: int = spec(
        "min",
        "Fewest canary replicas while the canary receives traffic.",
        default=1,
        minimum=0,
        maximum=MAX_REPLICAS,
    )
    canary: int | None = spec(
        "canary", "Canary replicas in fixed mode.", default=None, minimum=1, maximum=MAX_REPLICAS
    )
    total: int | None = spec(
        "total",
        "Replicas of the whole service. Default: the stable Deployment's count when the rollout starts.",
        default=None,
        minimum=1,
        maximum=MAX_REPLICAS,
    )


@dataclass(frozen=True, kw_only=True)
class Placement:
    node_selector: Mapping[str, str] = spec(
        "nodeSelector",
        "Node labels the canary pods must run on (merged into the pod template). Keys and values are "
        "checked as Kubernetes checks labels.",
        factory=dict,
        kind="labels",
        max_items=MAX_NODE_LABELS,
        example={"dtype": "secondary"},
    )


@dataclass(frozen=True, kw_only=True)
class PrometheusSource:
    endpoint: str | None = spec(
        "endpoint",
        "Name of a Prometheus endpoint the operator defined (songbird run --prometheus-endpoints) and opened "
        "to this namespace. Default: the operator's default endpoint.",
        default=None,
        pattern=ENDPOINT_PATTERN,
        max_length=ENDPOINT_MAX,
        example="main",
    )
    url: str | None = spec(
        "url",
        "Prometheus base URL (http or https, no credentials, query or fragment). Used only when the operator "
        "allows it for this namespace (policyUrls in the endpoints file); prefer 'endpoint'.",
        default=None,
        kind="url",
        pattern=URL_PATTERN,
        max_length=URL_MAX,
        example="http://prometheus.monitoring:9090",
    )
    timeout: float = spec(
        "timeout",
        "Timeout of one Prometheus query.",
        default=5.0,
        kind="duration",
        exclusive_minimum=0,
        maximum=60.0,
    )


@dataclass(frozen=True, kw_only=True)
class MetricSpec:
    name: str = spec(
        "name",
        "Built-in 'error-rate' or 'latency', or any name for a custom query.",
        pattern=METRIC_NAME_PATTERN,
        max_length=TOKEN_MAX,
    )
    max: float | None = spec(
        "max",
        "Highest acceptable value (absolute limit). Required for custom queries unless 'min' is given.",
        default=None,
    )
    min: float | None = spec("min", "Lowest acceptable value (custom queries).", default=None)
    quantile: float | None = spec(
        "quantile",
        "Latency quantile compared with 'max' (latency only).",
        default=None,
        exclusive_minimum=0,
        maximum=1,
    )
    threshold: float | None = spec(
        "threshold",
        "Latency: a request slower than this many seconds counts as a slow request for the "
        "canary-vs-stable comparison. Use a histogram bucket boundary. Default: 'max', else 0.5.",
        default=None,
        exclusive_minimum=0,
        maximum=HOUR,
    )
    query: str | None = spec(
        "query",
        "Custom PromQL returning one number. Placeholders: {{ namespace }}, {{ ingress }}, "
        "{{ canary }}, {{ stable }}, {{ window }}.",
        default=None,
        max_length=QUERY_MAX,
    )
    dry_run: bool = spec(
        "dryRun",
        "Query and judge this metric, and show its verdict (status, log, Events, /metrics), but never let "
        "it hold, roll back, pause or promote the rollout, nor count toward failureLimit.",
        default=False,
    )


@dataclass(frozen=True, kw_only=True)
class Compare:
    tolerance: float = spec(
        "tolerance",
        "Canary/stable bad-event ratio that is tolerated (rollback evidence is against ratios above it).",
        default=1.2,
        minimum=1.0,
        maximum=1.5,
    )
    bad_ratio: float = spec(
        "badRatio",
        "Ratio the canary must be shown to stay below before promotion.",
        default=2.0,
        exclusive_minimum=1.0,
        maximum=100.0,
    )
    false_rollback: float = spec(
        "falseRollback",
        "Highest probability of rolling back a healthy canary over the whole rollout (alpha).",
        default=0.01,
        exclusive_minimum=0,
        maximum=0.5,
    )
    missed_regression: float = spec(
        "missedRegression",
        "Highest probability of promoting a canary that is badRatio times worse (beta).",
        default=0.05,
        exclusive_minimum=0,
        maximum=0.5,
    )
    on_inconclusive: Literal["pause", "promote", "rollback"] = spec(
        "onInconclusive",
        "What to do when the last step ends without enough evidence either way.",
        default="pause",
    )
    max_wait: float = spec(
        "maxWait",
        "After the last step's interval, how long to wait for promotion "
        "evidence before onInconclusive applies.",
        default=600.0,
        kind="duration",
        minimum=0,
        maximum=DAY,
    )


@dataclass(frozen=True, kw_only=True)
class Analysis:
    prometheus: PrometheusSource = spec("prometheus", "Where to query.", factory=PrometheusSource)
    cadence: float = spec(
        "cadence",
        "How often metrics are evaluated within a step.",
        default=15.0,
        kind="duration",
        exclusive_minimum=0,
        maximum=HOUR,
    )
    window: float = spec(
        "window", "Range of each query.", default=60.0, kind="duration", exclusive_minimum=0, maximum=DAY
    )
    min_requests: int = spec(
        "minRequests",
        "Canary requests needed before a metric can PASS (built-ins: since the current step started, at its "
        "weight; custom metrics: in "
        "the window). Too few is INCONCLUSIVE, never FAIL.",
        default=100,
        minimum=0,
        maximum=MAX_MIN_REQUESTS,
    )
    metrics: tuple[MetricSpec, ...] = spec(
        "metrics",
        "Metrics to judge. Default: error-rate and latency compared with stable. An empty list is refused "
        "unless allowNoMetrics is true.",
        factory=lambda: (MetricSpec(name="error-rate"), MetricSpec(name="latency")),
        max_items=MAX_METRICS,
    )
    allow_no_metrics: bool = spec(
        "allowNoMetrics",
        "Allow 'metrics: []': the steps then advance on time alone, with no analysis at all.",
        default=False,
    )
    failure_limit: int = spec(
        "failureLimit",
        "Consecutive FAIL evaluations that trigger a rollback (threshold checks; the statistical comparison "
        "rolls back as soon as its evidence suffices).",
        default=2,
        minimum=1,
        maximum=MAX_FAILURE_LIMIT,
    )
    rollback_while_paused: bool = spec(
        "rollbackWhilePaused",
        "While a rollout is paused (a pause command or a pause step), a failed analysis still rolls it back. "
        "false: it holds, and the failure counts once the rollout resumes.",
        default=True,
    )
    error_deadline: float = spec(
        "errorDeadline",
        "Prometheus unanswering this long: roll back (meanwhile hold, never advance).",
        default=300.0,
        kind="duration",
        exclusive_minimum=0,
        maximum=DAY,
    )
    compare: Compare = spec("compare", "Canary-vs-stable statistical comparison.", factory=Compare)


@dataclass(frozen=True, kw_only=True)
class Promotion:
    scale_down_delay: float = spec(
        "scaleDownDelay",
        "Wait after switching the main Ingress before the old stable is scaled to 0.",
        default=30.0,
        kind="duration",
        minimum=0,
        maximum=DAY,
    )


@dataclass(frozen=True, kw_only=True)
class PauseStep:
    """A ``{pause: 5m}`` or ``{pause: {}}`` entry of ``steps``: after the weight step ``after`` (an index
    into `Policy.steps`) has run its interval and its analysis lets it go on, the weight is held for
    ``duration`` seconds (None: until ``resume`` or ``promote``), then the next weight (or the promotion)
    follows, as an Argo Rollouts pause step does."""

    after: int
    duration: float | None


@dataclass(frozen=True, kw_only=True)
class Policy:
    ingress: str = spec(
        "ingress",
        "Main Ingress, in the ConfigMap's namespace (a DNS-1123 subdomain; the canary Ingress is named "
        "<ingress>-canary, so at most 246 characters).",
        pattern=NAME_PATTERN,
        max_length=NAME_MAX - len("-canary"),
    )
    canary: CanaryTarget = spec("canary", "The version being introduced.")
    stable: StableTarget = spec("stable", "The version serving now.", factory=StableTarget)
    steps: tuple[float, ...] = spec(
        "steps",
        "Canary weight per step in percent, strictly increasing, each "
        "in (0, 100]; promotion follows the last. Between weights (and after the last) a pause step holds "
        "the weight: {pause: 5m} for a time, {pause: {}} until resume or promote.",
        kind="percent",
        max_items=MAX_STEPS,
        example=[10, 20, 40, 60, 80],
    )
    interval: float = spec(
        "interval", "Time per step.", default=60.0, kind="duration", exclusive_minimum=0, maximum=DAY
    )
    routing: Routing = spec("routing", "Header, cookie and stickiness.", factory=Routing)
    replicas: Replicas = spec("replicas", "Canary and stable replica counts.", factory=Replicas)
    placement: Placement = spec("placement", "Where canary pods run.", factory=Placement)
    analysis: Analysis = spec("analysis", "How the canary is judged.", factory=Analysis)
    promotion: Promotion = spec("promotion", "What happens after the last step.", factory=Promotion)
    pauses: tuple[PauseStep, ...] = spec(
        "pauses", "The pause entries of steps (built by the loader).", factory=tuple, derived=True
    )

    def pause_after(self, step: int) -> PauseStep | None:
        """The pause step that follows weight step ``step``, if any."""
        return next((p for p in self.pauses if p.after == step), None)
