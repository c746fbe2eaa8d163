"""Properties of the policy loader, over generated input (Hypothesis):

- any text, any bytes, YAML-shaped text and any plain data (dumped to YAML, and mutations of a valid
  policy) give a `Policy` or a `PolicyError` with a non-empty path and a bounded message, never another
  exception; the same holds for the ConfigMap loader and for what `songbird validate` reads;
- every policy generated within the documented ranges loads, and its values come back as written.
"""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from songbird.config.errors import PolicyError
from songbird.config.loader import load_policy_configmap, load_policy_file, load_policy_yaml
from songbird.config.policy import Policy

# Example counts keep the module to a few seconds: the loader reads YAML in pure Python (about 5 ms a
# policy), and the generated documents are small.
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DOCUMENTS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# The longest message a loader error may carry: a 1,000-character message, a 200-character path and a
# 200-character source, with their separators.
LONGEST_ERROR = 1000 + 200 + 200 + 4

VALID = {
    "ingress": "nginx",
    "canary": {"deployment": "nginx-v2", "service": "nginx-v2"},
    "steps": [10, 50],
    "analysis": {"metrics": [{"name": "error-rate", "max": 0.01}]},
}


def outcome(load: Any, *args: Any, **kwargs: Any) -> Policy | PolicyError:
    """Run a loader; only a Policy or a well-formed PolicyError may come out."""
    try:
        policy = load(*args, **kwargs)
    except PolicyError as exc:
        assert exc.path, f"no field path in {exc!r}"
        assert exc.message, f"no message in {exc!r}"
        assert len(str(exc)) <= LONGEST_ERROR, f"unbounded message of {len(str(exc))} characters"
        assert "\n" not in str(exc)
        return exc
    assert isinstance(policy, Policy)
    return policy


YAML_ALPHABET = "{}[]:,-?&*!|>'\"#%@`\n\t .0123456789abcdeEinfxyz_/\\~^"
yaml_text = st.text(alphabet=YAML_ALPHABET, max_size=200)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**300, max_value=10**400),
    st.floats(),
    st.text(max_size=80),
)
plain_data = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.dictionaries(st.one_of(st.text(max_size=12), scalars), inner, max_size=5),
    ),
    max_leaves=15,
)


@PROPERTY
@given(st.text(max_size=300))
def test_any_text(text: str) -> None:
    outcome(load_policy_yaml, text, source="ns/cm")


@PROPERTY
@given(yaml_text)
def test_yaml_shaped_text(text: str) -> None:
    outcome(load_policy_yaml, text, source="ns/cm")


@PROPERTY
@given(st.binary(max_size=300))
def test_any_bytes_through_validate_and_the_loader(content: bytes) -> None:
    outcome(load_policy_file, content, source="x.yaml")
    outcome(load_policy_yaml, content, source="x.yaml")


@DOCUMENTS
@given(plain_data)
def test_any_plain_data(data: Any) -> None:
    outcome(load_policy_yaml, yaml.safe_dump(data), source="ns/cm")


def _paths(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(data, dict):
        for k, v in data.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out += _paths(v, (*prefix, i))
    return out


@DOCUMENTS
@given(st.data())
def test_mutations_of_a_valid_policy(data: st.DataObject) -> None:
    policy = yaml.safe_load(yaml.safe_dump(VALID))
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(_paths(policy)[1:]))
        *parents, last = path
        holder = policy
        for step in parents:
            holder = holder[step]
        holder[last] = data.draw(plain_data)
    outcome(load_policy_yaml, yaml.safe_dump(policy), source="ns/cm")


@DOCUMENTS
@given(st.one_of(plain_data, st.dictionaries(st.sampled_from(["metadata", "data"]), plain_data)))
def test_any_configmap(configmap: Any) -> None:
    outcome(load_policy_configmap, configmap if isinstance(configmap, dict) else {"data": configmap})


# -- valid policies within the documented ranges -------------------------------------------------------

LOWER, DIGITS = "abcdefghijklmnopqrstuvwxyz", "0123456789"
ALNUM = LOWER + LOWER.upper() + DIGITS


def _name(first: str, middle: str, last: str, longest: int) -> st.SearchStrategy[str]:
    """first char, then optionally (middle chars and one last char): the shape of Kubernetes names."""
    end = st.text(alphabet=middle, max_size=longest - 2).flatmap(
        lambda mid: st.sampled_from(last).map(lambda tail: mid + tail)
    )
    return st.builds(lambda a, b: a + b, st.sampled_from(first), st.one_of(st.just(""), end))


dns_label = _name(LOWER, LOWER + DIGITS + "-", LOWER + DIGITS, 16)
label_name = _name(ALNUM, ALNUM + "-_.", ALNUM, 22)
label_key = st.one_of(label_name, st.builds(lambda p, n: f"{p}.io/{n}", dns_label, label_name))
label_value = st.one_of(st.just(""), label_name)
seconds = st.integers(min_value=1, max_value=86_400)
share = st.floats(min_value=0.0, max_value=1.0)


@st.composite
def valid_policies(draw: st.DrawFn) -> dict[str, Any]:
    cadence = draw(st.integers(min_value=1, max_value=3600))
    canary, stable = draw(st.lists(dns_label, min_size=2, max_size=2, unique=True))
    metrics = draw(
        st.lists(
            st.one_of(
                st.builds(lambda m: {"name": "error-rate", "max": m}, share),
                st.builds(
                    lambda q, m: {"name": "latency", "quantile": q, "max": m},
                    st.floats(min_value=0.01, max_value=1.0),
                    st.floats(min_value=0.001, max_value=60.0),
                ),
                st.builds(
                    lambda n, m: {"name": f"custom-{n}", "query": "sum(x{ns='{{ namespace }}'})", "min": m},
                    st.integers(0, 9),
                    st.floats(min_value=-1e9, max_value=1e9),
                ),
            ),
            min_size=1,
            max_size=4,
            unique_by=lambda m: str(m["name"]),
        )
    )
    return {
        "ingress": draw(dns_label),
        "canary": {"deployment": canary, "service": canary},
        "stable": {"deployment": stable},
        "steps": sorted(draw(st.lists(st.integers(1, 100), min_size=1, max_size=30, unique=True))),
        "interval": f"{draw(seconds)}s",
        "routing": {"sticky": draw(st.booleans()), "cookie": draw(label_name.filter(lambda s: "." not in s))},
        "replicas": {
            "mode": "fixed",
            "min": draw(st.integers(0, 1000)),
            "canary": draw(st.integers(1, 1000)),
            "total": draw(st.integers(1, 1000)),
        },
        "placement": {"nodeSelector": draw(st.dictionaries(label_key, label_value, max_size=6))},
        "analysis": {
            "prometheus": {
                "url": f"http://{draw(dns_label)}:9090",
                "timeout": f"{draw(st.integers(1, 60))}s",
            },
            "cadence": f"{cadence}s",
            "window": f"{draw(st.integers(cadence, 86_400))}s",
            "minRequests": draw(st.integers(0, 10_000_000)),
            "metrics": metrics,
            "failureLimit": draw(st.integers(1, 100)),
            "errorDeadline": f"{draw(seconds)}s",
            "compare": {
                "tolerance": draw(st.floats(min_value=1.0, max_value=1.5)),
                "badRatio": draw(st.floats(min_value=1.001, max_value=100.0)),
                "falseRollback": draw(st.floats(min_value=1e-9, max_value=0.5)),
                "missedRegression": draw(st.floats(min_value=1e-9, max_value=0.5)),
                "onInconclusive": draw(st.sampled_from(["pause", "promote", "rollback"])),
                "maxWait": f"{draw(st.integers(0, 86_400))}s",
            },
        },
        "promotion": {"scaleDownDelay": f"{draw(st.integers(0, 86_400))}s"},
    }


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_policies())
def test_valid_policies_load_and_round_trip(doc: dict[str, Any]) -> None:
    p = load_policy_yaml(yaml.safe_dump(doc), source="ns/cm")
    a = doc["analysis"]
    assert p.ingress == doc["ingress"] and p.canary.deployment == doc["canary"]["deployment"]
    assert p.stable.deployment == doc["stable"]["deployment"]
    assert p.steps == tuple(doc["steps"])
    assert p.interval == float(doc["interval"][:-1])
    assert p.routing.cookie == doc["routing"]["cookie"] and p.routing.sticky == doc["routing"]["sticky"]
    assert (p.replicas.min, p.replicas.canary, p.replicas.total) == (
        doc["replicas"]["min"],
        doc["replicas"]["canary"],
        doc["replicas"]["total"],
    )
    assert dict(p.placement.node_selector) == doc["placement"]["nodeSelector"]
    assert p.analysis.prometheus.url == a["prometheus"]["url"]
    assert p.analysis.cadence == float(a["cadence"][:-1]) and p.analysis.window == float(a["window"][:-1])
    assert p.analysis.min_requests == a["minRequests"] and p.analysis.failure_limit == a["failureLimit"]
    assert [m.name for m in p.analysis.metrics] == [m["name"] for m in a["metrics"]]
    for got, want in zip(p.analysis.metrics, a["metrics"], strict=True):
        assert (got.max, got.min, got.quantile) == (want.get("max"), want.get("min"), want.get("quantile"))
    c = a["compare"]
    assert (p.analysis.compare.tolerance, p.analysis.compare.bad_ratio) == (c["tolerance"], c["badRatio"])
    assert p.analysis.compare.on_inconclusive == c["onInconclusive"]
    assert p.analysis.compare.max_wait == float(c["maxWait"][:-1])
    assert p.promotion.scale_down_delay == float(doc["promotion"]["scaleDownDelay"][:-1])
