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
