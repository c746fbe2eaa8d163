"""Which Prometheus a policy may query: the one pure decision, shared by the reconciler (which refuses a
policy before it touches anything) and the evaluator (which never queries anything else).

`choose` takes the operator's `EndpointSettings`, the policy's ``analysis.prometheus`` and the policy's
namespace, and returns the `Endpoint` to query or a `Refusal` naming the field and what was refused:
- ``endpoint: NAME``: that operator endpoint, if it exists and is open to the namespace;
- ``url: URL``: the operator endpoint with that very URL (so a policy that spells out the operator's URL
  keeps working, under that endpoint's namespace rule); else a plain endpoint (no credentials of the
  operator's) when a ``policyUrls`` entry for the namespace admits it (`config.urls.prefix_admits`);
- neither: the operator's default endpoint, if open to the namespace.
The policy's timeout applies, never above the endpoint's own (when it sets one) nor the operator's maximum;
the returned endpoint always carries the timeout to use.

Invariants: pure and total; a refused URL is shown only redacted (`config.urls.redact_url`); no URL that
is not an operator endpoint or admitted by the allow-list is ever returned.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from songbird.config.endpoints import Endpoint, EndpointSettings
from songbird.config.policy import PrometheusSource
from songbird.config.text import LABEL_LIMIT, quoted
from songbird.config.urls import policy_url_problem, prefix_admits, redact_url, same_url

ENDPOINT_FIELD = "analysis.prometheus.endpoint"
URL_FIELD = "analysis.prometheus.url"
POLICY_URL_NAME = "policy-url"


@dataclass(frozen=True, kw_only=True)
class Refusal:
    """Why a policy may not query what it asks for; ``path`` is the field a user would change."""

    path: str
    message: str

    def describe(self) -> str:
        return f"{self.path}: {self.message}"


def choose(
    settings: EndpointSettings,
    prometheus: PrometheusSource,
    namespace: str,
    *,
    max_timeout: float | None = None,
) -> Endpoint | Refusal:
    """The endpoint the policy queries, or why it may not (see the module docstring)."""
    chosen = _pick(settings, prometheus, namespace)
    if isinstance(chosen, Refusal):
        return chosen
    timeout = prometheus.timeout if chosen.timeout is None else min(chosen.timeout, prometheus.timeout)
    if max_timeout is not None:
        timeout = min(timeout, max_timeout)
    return replace(chosen, timeout=timeout)


def _pick(settings: EndpointSettings, prometheus: PrometheusSource, namespace: str) -> Endpoint | Refusal:
    ns = quoted(namespace, LABEL_LIMIT)
    if prometheus.endpoint is not None:
        endpoint = settings.find(prometheus.endpoint)
        if endpoint is None:
            return Refusal(
                path=ENDPOINT_FIELD,
                message=f"the operator defines no Prometheus endpoint named {quoted(prometheus.endpoint)}",
            )
        if not endpoint.open_to(namespace):
            return Refusal(
                path=ENDPOINT_FIELD,
                message=f"Prometheus endpoint {quoted(endpoint.name)} is not open to namespace {ns}",
            )
        return endpoint
    if prometheus.url is not None:
        return _policy_url(settings, prometheus.url, namespace)
    if settings.default is None:
        return Refusal(
            path=ENDPOINT_FIELD,
            message=f"no Prometheus: the operator set no default endpoint; name one with {ENDPOINT_FIELD}",
        )
    endpoint = settings.find(settings.default)
    if endpoint is None or not endpoint.open_to(namespace):
        return Refusal(
            path=ENDPOINT_FIELD,
            message=f"the default Prometheus endpoint is not open to namespace {ns}; name one that is",
        )
    return endpoint


def _policy_url(settings: EndpointSettings, url: str, namespace: str) -> Endpoint | Refusal:
    shown = quoted(redact_url(url), 200)
    problem = policy_url_problem(url)
    if problem is not None:
        return Refusal(path=URL_FIELD, message=f"{shown} refused: {problem}")
    for endpoint in settings.endpoints:
        if same_url(endpoint.url, url) and endpoint.open_to(namespace):
            return endpoint
    admitted = settings.any_policy_url or any(
        rule.open_to(namespace) and any(prefix_admits(prefix, url) for prefix in rule.prefixes)
        for rule in settings.policy_urls
    )
    if not admitted:
        return Refusal(
            path=URL_FIELD,
            message=f"{shown} refused: the operator allows no such Prometheus URL for namespace "
            f"{quoted(namespace, LABEL_LIMIT)} (policyUrls); use {ENDPOINT_FIELD}",
        )
    return Endpoint(name=POLICY_URL_NAME, url=url.rstrip("/"), from_policy=True)
