"""The policy contract: the documented example loads; every kind of bad input is refused with the field
path a user would write; the committed JSON Schema equals the one exported from the model and agrees with
the loader on good and bad examples."""

from __future__ import annotations

import json
import pathlib

import jsonschema
import pytest
import yaml

from songbird.config.errors import PolicyError
from songbird.config.fields import format_duration, parse_duration
from songbird.config.loader import load_policy_configmap, load_policy_yaml
from songbird.config.schema import policy_schema
from songbird.config.template import render_template

ROOT = pathlib.Path(__file__).resolve().parents[2]

EXAMPLE = """
ingress: nginx
canary: {deployment: nginx-v2, service: nginx-v2}
stable: {deployment: nginx-v1}
steps: [10, 20, 40, 60, 80]
interval: 1m
routing:
  header: {name: Region, value: always}
  cookie: canary
  sticky: false
replicas: {mode: proportional, min: 1}
placement: {nodeSelector: {dtype: secondary}}
analysis:
  prometheus: {url: http://prometheus.monitoring:9090, timeout: 5s}
  cadence: 15s
  window: 1m
  minRequests: 100
  metrics:
    - {name: error-rate, max: 0.01}
    - {name: latency, quantile: 0.99, max: 0.5}
    - {name: queue-depth, query: 'sum(my_metric{namespace="{{ namespace }}"})', max: 10}
  failureLimit: 2
  errorDeadline: 5m
promotion: {scaleDownDelay: 30s}
"""


def test_documented_example_loads_with_its_values() -> None:
    p = load_policy_yaml(EXAMPLE, source="default/nginx")
    assert p.steps == (10, 20, 40, 60, 80)
    assert p.interval == 60 and p.analysis.cadence == 15 and p.analysis.error_deadline == 300
    assert p.routing.header is not None and p.routing.header.name == "Region"
    assert p.placement.node_selector == {"dtype": "secondary"}
    assert [m.name for m in p.analysis.metrics] == ["error-rate", "latency", "queue-depth"]
    assert p.promotion.scale_down_delay == 30


def test_minimal_policy_takes_defaults() -> None:
    p = load_policy_yaml("ingress: nginx\ncanary: {deployment: v2, service: v2}\nsteps: [50]\n")
    assert p.interval == 60 and p.replicas.mode == "proportional" and p.stable.deployment is None
    assert [m.name for m in p.analysis.metrics] == ["error-rate", "latency"]
    assert p.analysis.compare.false_rollback == 0.01


@pytest.mark.parametrize(
    ("change", "path", "words"),
    [
        (("max: 0.5}", "max: fast}"), "analysis.metrics[1].max", "expected a number"),
        (("steps: [10, 20, 40, 60, 80]", "steps: [10, 40, 20]"), "steps[2]", "strictly increasing"),
        (("steps: [10, 20, 40, 60, 80]", "steps: [10, 120]"), "steps[1]", "(0, 100]"),
        (("steps: [10, 20, 40, 60, 80]", "steps: [0, 10]"), "steps[0]", "(0, 100]"),
        (("interval: 1m", "interval: 1 minute"), "interval", "invalid duration"),
        (("interval: 1m", "interval: 60"), "interval", "duration string"),
        (("minRequests: 100", "minRequests: many"), "analysis.minRequests", "integer"),
        (("cadence: 15s", "cadense: 15s"), "analysis.cadense", "unknown key"),
        (("mode: proportional", "mode: linear"), "replicas.mode", "one of"),
        (
            ("deployment: nginx-v2", "deployment: 'nginx\"} or vector(1)'"),
            "canary.deployment",
            "invalid value",
        ),
        (("{{ namespace }}", "{{ tenant }}"), "analysis.metrics[2].query", "unknown placeholder"),
        (("stable: {deployment: nginx-v1}", "stable: {deployment: nginx-v2}"), "canary.deployment", "differ"),
        (("window: 1m", "window: 5s"), "analysis.window", "at least the cadence"),
    ],
)
def test_bad_input_names_the_field(change: tuple[str, str], path: str, words: str) -> None:
    text = EXAMPLE.replace(*change)
    assert text != EXAMPLE
    with pytest.raises(PolicyError) as info:
        load_policy_yaml(text, source="shop/nginx")
    assert info.value.path == path
    assert words in info.value.message
    assert str(info.value).startswith(f"shop/nginx: {path}: ")


def test_configmap_without_policy_key_and_broken_yaml() -> None:
    with pytest.raises(PolicyError, match="no data key 'policy.yaml'") as info:
        load_policy_configmap({"metadata": {"namespace": "a", "name": "b"}, "data": {}})
    assert info.value.source == "a/b"
    with pytest.raises(PolicyError, match="not valid YAML at line 3"):
        load_policy_yaml("ingress: nginx\nsteps: [10,\n")


def test_durations_round_trip() -> None:
    assert parse_duration("1h30m") == 5400 and parse_duration("500ms") == 0.5
    assert format_duration(90) == "1m30s" and format_duration(0.5) == "500ms"


def test_template_refuses_injection() -> None:
    assert (
        render_template("x{ns='{{ namespace }}'}[{{window}}]", {"namespace": "shop", "window": "1m"})
        == "x{ns='shop'}[1m]"
    )
    with pytest.raises(PolicyError, match="not a plain name"):
        render_template("{{ namespace }}", {"namespace": 'a"} or vector(1) #'})


def test_committed_schema_is_the_exported_one() -> None:
    committed = json.loads((ROOT / "config" / "policy.schema.json").read_text())
    assert committed == policy_schema(), "run `make schema` and commit config/policy.schema.json"


def test_schema_and_loader_agree() -> None:
    schema = policy_schema()
    jsonschema.validate(yaml.safe_load(EXAMPLE), schema)
    for change in [
        ("cadence: 15s", "cadense: 15s"),
        ("interval: 1m", "interval: 60"),
        ("mode: proportional", "mode: linear"),
        ("sticky: false", "sticky: 'no'"),
    ]:
        bad = yaml.safe_load(EXAMPLE.replace(*change))
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)
        with pytest.raises(PolicyError):
            load_policy_yaml(EXAMPLE.replace(*change))


# -- hostile documents and ranges (issue 11) ------------------------------------------------------------

MINIMAL = "ingress: nginx\ncanary: {deployment: v2, service: v2}\nsteps: [50]\n"


@pytest.mark.parametrize(
    ("text", "path", "words"),
    [
        ("{a: 1\n", "policy.yaml", "not valid YAML at line 2, column 1"),
        ("", "policy.yaml", "the policy is empty"),
        (MINIMAL + "#" + "x" * 70_000 + "\n", "policy.yaml", "at most 65,536 (64 KiB)"),
        ('a: &a ["x", "x"]\nb: [*a, *a]\n', "policy.yaml", "anchors (&name) are not allowed"),
        (MINIMAL + "interval: *a\n", "policy.yaml", "aliases (*name) are not allowed"),
        ("[" * 1000 + "]" * 1000, "policy.yaml", "more than 100 brackets ([ or {) open at once"),
        ("[" * 30 + "]" * 30, "policy.yaml", "refused at line 1, column 21: nested deeper than 20 levels"),
        ("a:\n" + "".join(f"{'  ' * i}- a{i}:\n" for i in range(25)), "policy.yaml", "nested deeper than 20"),
        ("".join(f"k{i}: v\n" for i in range(5000)), "policy.yaml", "more than 2000 values in one document"),
        (
            MINIMAL + "interval: !!int nginx\n",
            "policy.yaml",
            'line 4, column 11: cannot read "nginx" as !!int',
        ),
        (MINIMAL + "interval: !!python/object/apply:os.system [ls]\n", "policy.yaml", "is not allowed"),
        (MINIMAL + "interval: !!binary aGVsbG8=\n", "policy.yaml", 'tag "!!binary" is not allowed'),
        (MINIMAL + "interval: !mine 1m\n", "policy.yaml", 'tag "!mine" is not allowed'),
        (MINIMAL + "interval: 2024-13-45\n", "interval", "invalid duration"),
        ("a: \x00\n", "policy.yaml", "not valid YAML"),
        ("[1, 2]\n", "(top level)", "expected a mapping, got list"),
        (MINIMAL + "interval: " + "9" * 400 + "s\n", "interval", "at most 32 characters"),
        (MINIMAL + "interval: 25h\n", "interval", "must be at most 24h"),
        (MINIMAL + "promotion: {scaleDownDelay: 1000000h}\n", "promotion.scaleDownDelay", "at most 24h"),
        (MINIMAL + "analysis: {cadence: 2h}\n", "analysis.cadence", "at most 1h"),
        (MINIMAL + "analysis: {window: 25h}\n", "analysis.window", "at most 24h"),
        (MINIMAL + "analysis: {errorDeadline: 48h}\n", "analysis.errorDeadline", "at most 24h"),
        (MINIMAL + "analysis: {compare: {maxWait: 48h}}\n", "analysis.compare.maxWait", "at most 24h"),
        (MINIMAL + "analysis: {prometheus: {timeout: 2m}}\n", "analysis.prometheus.timeout", "at most 1m"),
        (MINIMAL + "replicas: {total: 2147483648}\n", "replicas.total", "at most 1000; got 2147483648"),
        (MINIMAL + "replicas: {total: " + "9" * 400 + "}\n", "replicas.total", "got a 400-digit number"),
        (MINIMAL + "replicas: {min: 1001}\n", "replicas.min", "at most 1000"),
        (MINIMAL + "replicas: {mode: fixed, canary: 5000}\n", "replicas.canary", "at most 1000"),
        (
            MINIMAL + "analysis: {compare: {tolerance: " + "9" * 400 + "}}\n",
            "analysis.compare.tolerance",
            "expected a finite number, got a 400-digit number",
        ),
        (MINIMAL + "analysis: {compare: {badRatio: .inf}}\n", "analysis.compare.badRatio", "finite number"),
        (MINIMAL + "analysis: {compare: {badRatio: 1000}}\n", "analysis.compare.badRatio", "at most 100"),
        (MINIMAL + "analysis: {failureLimit: 1000}\n", "analysis.failureLimit", "at most 100"),
        (MINIMAL + "analysis: {minRequests: 100000000}\n", "analysis.minRequests", "at most 10000000"),
        (MINIMAL.replace("[50]", str(list(range(1, 102)))), "steps", "at most 100 items; got 101"),
        (MINIMAL + "analysis: {metrics: []}\n", "analysis.metrics", "allowNoMetrics: true"),
        (
            MINIMAL + "placement: {nodeSelector: {'bad key': x}}\n",
            "placement.nodeSelector.bad key",
            'invalid label key "bad key"',
        ),
        (
            MINIMAL + "placement: {nodeSelector: {'" + "a" * 254 + ".io/x': y}}\n",
            "placement.nodeSelector." + "a" * 57 + "...",
            "prefix of a label key has at most 253 characters; got 257",
        ),
        (
            MINIMAL + "placement: {nodeSelector: {dtype: " + "a" * 64 + "}}\n",
            "placement.nodeSelector.dtype",
            "a label value has at most 63 characters; got 64",
        ),
        (MINIMAL + "placement: {nodeSelector: {dtype: -x}}\n", "placement.nodeSelector.dtype", "label value"),
        (MINIMAL + "placement: {nodeSelector: {dtype: 5}}\n", "placement.nodeSelector.dtype", "quote it"),
        (MINIMAL + "placement: {nodeSelector: {5: x}}\n", "placement.nodeSelector.5", "key is a string"),
        (MINIMAL.replace("service: v2", "service: 2v"), "canary.service", 'invalid value "2v"'),
        (MINIMAL.replace("deployment: v2", "deployment: a..b"), "canary.deployment", "invalid value"),
        (MINIMAL.replace("ingress: nginx", "ingress: " + "a" * 247), "ingress", "at most 246 characters"),
        (
            MINIMAL + "analysis: {prometheus: {url: 'file:///etc/passwd'}}\n",
            "analysis.prometheus.url",
            "only http:// and https:// URLs are allowed",
        ),
        (MINIMAL + "x" * 1000 + ": 1\n", "x" * 57 + "...", "unknown key"),
        (MINIMAL + "1: x\n", "1", "keys are strings; got integer 1"),
    ],
)
def test_hostile_documents_are_refused_with_a_path(text: str, path: str, words: str) -> None:
    with pytest.raises(PolicyError) as info:
        load_policy_yaml(text, source="shop/nginx")
    assert info.value.path == path
    assert words in info.value.message
    assert len(str(info.value)) < 600  # values are quoted at most 60 characters long


def test_an_alias_bomb_is_refused_before_it_expands() -> None:
    # Nine levels of nine aliases: 387 million strings if expanded; refused at the first anchor.
    lines = ['a0: &a0 "lol"'] + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    with pytest.raises(PolicyError, match=r"line 1, column 5: YAML anchors \(&name\) are not allowed"):
        load_policy_yaml("\n".join(lines))


def test_bytes_are_read_as_utf8_text() -> None:
    assert load_policy_yaml(MINIMAL.encode()).steps == (50,)
    with pytest.raises(PolicyError, match="not UTF-8 text: byte 0xff at offset 0") as info:
        load_policy_yaml(b"\xff\xfe\x00junk")
    assert info.value.path == "policy.yaml"


def test_a_policy_without_metrics_is_allowed_only_when_it_says_so() -> None:
    p = load_policy_yaml(MINIMAL + "analysis: {metrics: [], allowNoMetrics: true}\n")
    assert p.analysis.metrics == () and p.analysis.allow_no_metrics


def test_the_largest_values_in_range_are_accepted() -> None:
    p = load_policy_yaml(
        MINIMAL.replace("[50]", str([round(0.5 + i * 0.995, 3) for i in range(100)]))
        + "interval: 24h\nreplicas: {mode: fixed, min: 1000, canary: 1000, total: 1000}\n"
        + "placement: {nodeSelector: {'"
        + "a" * 253
        + "/"
        + "b" * 63
        + "': '"
        + "c" * 63
        + "', kubernetes.io/os: linux, empty: ''}}\n"
        + "analysis: {cadence: 1h, window: 24h, errorDeadline: 24h, minRequests: 10000000,\n"
        + "  failureLimit: 100,\n"
        + "  prometheus: {timeout: 1m}, compare: {maxWait: 24h, badRatio: 100}}\n"
        + "promotion: {scaleDownDelay: 24h}\n"
    )
    assert len(p.steps) == 100 and p.interval == 86_400 and p.replicas.total == 1000
    assert p.placement.node_selector["kubernetes.io/os"] == "linux"
    assert p.analysis.compare.max_wait == 86_400 and p.promotion.scale_down_delay == 86_400


def test_configmap_loader_refuses_odd_objects() -> None:
    with pytest.raises(PolicyError, match="expected a string, got integer") as info:
        load_policy_configmap({"metadata": {"namespace": "a", "name": "b"}, "data": {"policy.yaml": 5}})
    assert info.value.path == "data.policy.yaml" and info.value.source == "a/b"
    with pytest.raises(PolicyError, match="no data key"):
        load_policy_configmap({"metadata": "odd", "data": ["odd"]})


def test_schema_refuses_what_the_loader_refuses_beyond_the_ranges() -> None:
    schema = policy_schema()
    base = yaml.safe_load(EXAMPLE)
    for bad in [
        {"replicas": {"total": 2147483648}},
        {"steps": list(range(1, 102))},
        {"placement": {"nodeSelector": {"bad key": "x"}}},
        {"placement": {"nodeSelector": {"dtype": "a" * 64}}},
        {"canary": {"deployment": "v2", "service": "2v"}},
        {"analysis": {"failureLimit": 1000}},
    ]:
        doc = {**base, **bad}
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(doc, schema)
        with pytest.raises(PolicyError):
            load_policy_yaml(yaml.safe_dump(doc))
