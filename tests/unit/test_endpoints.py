"""The operator's endpoints file, the URL checks and the one choice of what a policy may query
(`config.endpoints`, `config.urls`, `config.endpoint_choice`).

Covers:
- a full file is read into the model; ``--prometheus-url`` is one endpoint named ``default``;
- every kind of bad file is a `PolicyError` naming the file and the field path; a header value (possibly
  a credential) is never quoted in an error; any text at all gives a model or a `PolicyError` (Hypothesis);
- `redact_url` never returns userinfo, a query or a fragment, for any string (Hypothesis);
- policy URLs: schemes other than http/https, userinfo, ``?``, ``#``, ``%`` and backslashes are refused by
  the loader with the field path and the redacted URL;
- `prefix_admits`: scheme, host and port must be equal and the path must start with the prefix's path;
  host look-alikes, userinfo tricks, other ports and ``..`` are not admitted (also for generated URLs);
- ``songbird run`` refuses both Prometheus flags together, and an endpoints file with an error, naming it;
- `choose`: a named endpoint (missing, or closed to the namespace), the default, a URL equal to an operator
  endpoint's, a URL admitted or not by ``policyUrls`` for the namespace, and the timeout caps.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from songbird.config.endpoint_choice import Refusal, choose
from songbird.config.endpoints import (
    BasicAuth,
    Endpoint,
    EndpointSettings,
    PolicyUrlRule,
    load_endpoints,
    single,
)
from songbird.config.errors import PolicyError
from songbird.config.loader import load_policy_yaml
from songbird.config.policy import PrometheusSource
from songbird.config.urls import prefix_admits, redact_url
from songbird.controller.cli import main

FULL = """
default: main
endpoints:
  - name: main
    url: http://prometheus.monitoring:9090
    timeout: 3s
    bearerTokenFile: /etc/songbird/secrets/main/token
    basicAuth: {usernameFile: /etc/u, passwordFile: /etc/p}
    caFile: /etc/songbird/ca/ca.crt
    headers: {X-Scope-OrgID: team-a}
    namespaces: [team-a]
  - name: shared
    url: https://thanos.monitoring/prefix
policyUrls:
  - namespaces: [team-b]
    prefixes: ["http://prometheus.team-b.svc:9090/"]
"""


def test_a_full_file_is_read() -> None:
    settings = load_endpoints(FULL, source="/etc/songbird/endpoints.yaml")
    assert settings == EndpointSettings(
        default="main",
        endpoints=(
            Endpoint(
                name="main",
                url="http://prometheus.monitoring:9090",
                timeout=3.0,
                bearer_token_file="/etc/songbird/secrets/main/token",
                basic_auth=BasicAuth(username_file="/etc/u", password_file="/etc/p"),
                ca_file="/etc/songbird/ca/ca.crt",
                headers=(("X-Scope-OrgID", "team-a"),),
                namespaces=("team-a",),
            ),
            Endpoint(name="shared", url="https://thanos.monitoring/prefix"),
        ),
        policy_urls=(
            PolicyUrlRule(namespaces=("team-b",), prefixes=("http://prometheus.team-b.svc:9090/",)),
        ),
    )
    assert single("http://p:9090") == EndpointSettings(
        endpoints=(Endpoint(name="default", url="http://p:9090"),), default="default"
    )


@pytest.mark.parametrize(
    ("text", "path", "words"),
    [
        ("endpoints: [{name: a, url: 'http://p'}]\nextra: 1\n", "extra", "unknown key"),
        ("default: b\nendpoints: [{name: a, url: 'http://p'}]\n", "default", 'no endpoint is named "b"'),
        ("endpoints: [{name: A, url: 'http://p'}]\n", "endpoints[0].name", "not a DNS label"),
        ("endpoints: [{name: a, url: 'http://p'}, {name: a, url: 'http://q'}]", "endpoints[1].name", "twice"),
        ("endpoints: [{name: a, url: 'ftp://p'}]\n", "endpoints[0].url", "only http:// and https://"),
        ("endpoints: [{name: a, url: 'http://u:pw@p'}]\n", "endpoints[0].url", "credentials"),
        (
            "endpoints: [{name: a, url: 'http://p', timeout: soon}]\n",
            "endpoints[0].timeout",
            "not a duration",
        ),
        ("endpoints: [{name: a, url: 'http://p', caFile: rel.crt}]\n", "endpoints[0].caFile", "absolute"),
        (
            "endpoints: [{name: a, url: 'http://p', basicAuth: {usernameFile: /u}}]",
            "endpoints[0].basicAuth.passwordFile",
            "non-empty string",
        ),
        (
            "endpoints: [{name: a, url: 'http://p', headers: {Authorization: x}}]",
            "endpoints[0].headers.Authorization",
            "set by Songbird",
        ),
        (
            "endpoints: [{name: a, url: 'http://p', headers: {X-Org: 5}}]",
            "endpoints[0].headers.X-Org",
            "quote it",
        ),
        (
            "endpoints: [{name: a, url: 'http://p', namespaces: [Team]}]",
            "endpoints[0].namespaces[0]",
            "not a namespace",
        ),
        ("policyUrls: [{namespaces: [a]}]", "policyUrls[0].prefixes", "at least one prefix"),
        ("policyUrls: [{prefixes: ['http://p/?x']}]", "policyUrls[0].prefixes[0]", "a query"),
        ("endpoints: {name: a}\n", "endpoints", "expected a list"),
        ("[1, 2]\n", "(document)", "expected a mapping"),
        ("a: &x 1\nb: *x\n", "", "refused"),
    ],
)
def test_a_bad_file_names_the_file_and_the_field(text: str, path: str, words: str) -> None:
    with pytest.raises(PolicyError) as info:
        load_endpoints(text, source="/etc/e.yaml")
    assert (info.value.source, info.value.path) == ("/etc/e.yaml", path)
    assert words in info.value.message


def test_a_header_value_is_never_quoted_in_an_error() -> None:
    with pytest.raises(PolicyError) as info:
        load_endpoints("endpoints: [{name: a, url: 'http://p', headers: {X-Key: \"s3cret\\n\"}}]", source="f")
    assert info.value.path == "endpoints[0].headers.X-Key"
    assert "s3cret" not in str(info.value)


def test_a_file_over_the_limit_is_refused() -> None:
    with pytest.raises(PolicyError) as info:
        load_endpoints(b"#" * (64 * 1024 + 1), source="f")
    assert "at most 65,536" in info.value.message


@given(st.text(max_size=300))
def test_any_text_is_a_model_or_an_error(text: str) -> None:
    try:
        load_endpoints(text, source="f")
    except PolicyError as exc:
        assert exc.source == "f"


@given(
    st.sampled_from(["http", "https", "file", "gopher", "HTTP"]),
    st.text(alphabet="abc:@.%", max_size=12),
    st.text(alphabet="/x?#=&@:", max_size=12),
)
def test_redact_url_drops_userinfo_query_and_fragment(scheme: str, userinfo: str, rest: str) -> None:
    shown = redact_url(f"{scheme}://{userinfo}@host:9090/p{rest}")
    assert shown == "<unparsable URL>" or shown.startswith(f"{scheme.lower()}://host:9090/p")
    assert "?" not in shown and "#" not in shown


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("file:///etc/passwd", "only http:// and https://"),
        ("gopher://127.0.0.3:70/_x", "only http:// and https://"),
        ("http://u:pw@127.0.0.3", "credentials"),
        ("http://127.0.0.2:9090@127.0.0.3", "credentials"),
        ("http://127.0.0.3/admin?x=/api/v1/query", "a query (?)"),
        ("http://127.0.0.3/admin#/api", "a fragment (#)"),
        ("http://127.0.0.3/%2e%2e/admin", "percent-encoding"),
        ("http://127.0.0.3\\@other/", "backslashes"),
        ("http://127.0.0.3:99999/", "bad host or port"),
    ],
)
def test_the_loader_refuses_policy_urls_with_the_field_path(url: str, words: str) -> None:
    head = "ingress: nginx\ncanary: {deployment: b, service: b}\nsteps: [50]\n"
    text = head + f"analysis: {{prometheus: {{url: '{url}'}}}}\n"
    with pytest.raises(PolicyError) as info:
        load_policy_yaml(text, source="ns/p")
    assert info.value.path == "analysis.prometheus.url"
    assert words in info.value.message
    assert "pw" not in str(info.value) and "/api" not in str(info.value)


@pytest.mark.parametrize(
    ("url", "admitted"),
    [
        ("http://prom.b:9090", True),
        ("http://prom.b:9090/", True),
        ("http://PROM.b:9090/sub/path", True),
        ("https://prom.b:9090/", False),
        ("http://prom.b:9091/", False),
        ("http://prom.b/", False),
        ("http://prom.b.evil:9090/", False),
        ("http://prom.b:9090@evil/", False),
        ("http://evil/?http://prom.b:9090/", False),
        ("http://prom.b:9090/../admin", False),
    ],
)
def test_a_prefix_admits_only_its_origin_and_path(url: str, admitted: bool) -> None:
    assert prefix_admits("http://prom.b:9090/", url) is admitted


@given(st.text(alphabet="abcdefgh0123456789.:/@?#%\\-", max_size=40))
def test_no_generated_url_escapes_the_prefix_origin(tail: str) -> None:
    url = "http://" + tail
    if prefix_admits("http://prom.b:9090/api/", url):
        assert url.lower().startswith("http://prom.b:9090/api/")


SETTINGS = EndpointSettings(
    default="main",
    endpoints=(
        Endpoint(name="main", url="http://main:9090", timeout=3.0),
        Endpoint(name="team-a", url="http://a:9090", namespaces=("team-a",)),
    ),
    policy_urls=(PolicyUrlRule(namespaces=("team-b",), prefixes=("http://prom.b:9090/",)),),
)


def test_choose_an_endpoint() -> None:
    default = PrometheusSource()
    assert choose(SETTINGS, default, "any") == Endpoint(name="main", url="http://main:9090", timeout=3.0)
    timed = choose(SETTINGS, PrometheusSource(timeout=2.0), "any", max_timeout=1.5)
    assert isinstance(timed, Endpoint) and timed.timeout == 1.5
    chosen = choose(SETTINGS, PrometheusSource(endpoint="team-a"), "team-a")
    assert isinstance(chosen, Endpoint) and chosen.name == "team-a"
    assert choose(SETTINGS, PrometheusSource(endpoint="team-a"), "team-b") == Refusal(
        path="analysis.prometheus.endpoint",
        message='Prometheus endpoint "team-a" is not open to namespace "team-b"',
    )
    assert choose(SETTINGS, PrometheusSource(endpoint="nope"), "x") == Refusal(
        path="analysis.prometheus.endpoint",
        message='the operator defines no Prometheus endpoint named "nope"',
    )
    missing = choose(EndpointSettings(), default, "x")
    assert isinstance(missing, Refusal) and "no default endpoint" in missing.message


def test_choose_a_policy_url() -> None:
    same = choose(SETTINGS, PrometheusSource(url="http://main:9090/"), "any")
    assert isinstance(same, Endpoint) and same.name == "main"
    admitted = choose(SETTINGS, PrometheusSource(url="http://prom.b:9090/x"), "team-b")
    assert isinstance(admitted, Endpoint)
    assert (admitted.url, admitted.from_policy, admitted.label) == (
        "http://prom.b:9090/x",
        True,
        "http://prom.b:9090/x",
    )
    assert admitted.bearer_token_file is None and admitted.headers == ()
    elsewhere = choose(SETTINGS, PrometheusSource(url="http://prom.b:9090/x"), "team-c")
    assert elsewhere == Refusal(
        path="analysis.prometheus.url",
        message='"http://prom.b:9090/x" refused: the operator allows no such Prometheus URL for namespace '
        '"team-c" (policyUrls); use analysis.prometheus.endpoint',
    )
    closed = choose(SETTINGS, PrometheusSource(url="http://a:9090"), "team-b")
    assert isinstance(closed, Refusal)


def test_songbird_run_refuses_both_flags_and_a_bad_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "endpoints.yaml"
    bad.write_text("endpoints: [{name: a, url: 'http://user:pw@p'}]\n")
    assert main(["run", "--prometheus-url", "http://p", "--prometheus-endpoints", str(bad)]) == 2
    assert capsys.readouterr().err == "songbird: give --prometheus-url or --prometheus-endpoints, not both\n"
    assert main(["run", "--prometheus-endpoints", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"songbird: {bad}: endpoints[0].url: credentials (user:password@) are not allowed")
    assert "pw" not in err
