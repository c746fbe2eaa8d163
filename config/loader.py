"""Turn the YAML of a policy ConfigMap into a validated `Policy`, or a `PolicyError` naming the field.

The document is read under bounds first (`config.document`: size, UTF-8, no aliases or anchors, nesting,
core tags only). The walk is then driven by the dataclass fields and their metadata (`config.fields.spec`):
unknown keys, wrong types, lengths, bad durations and out-of-range numbers are reported with the path a user
would write, such as ``analysis.metrics[1].max``. Cross-field rules follow in `validate`. Nothing here
touches the network.

Invariant: for any input (any text, any bytes, any plain data) the public functions return a `Policy` or
raise `PolicyError` with a non-empty path; never another exception. A message quotes at most
`QUOTE_LIMIT` (60) characters of a bad value; a whole message is at most `MESSAGE_LIMIT` (1,000)
characters, its path and source at most `PATH_LIMIT` (200) each.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import types
import typing
from collections.abc import Mapping
from typing import Any, Final, Literal, TypeVar, get_args, get_origin

from songbird.config.document import MAX_MANIFEST_BYTES, MAX_POLICY_BYTES, QUOTE_LIMIT, read_yaml
from songbird.config.errors import PolicyError
from songbird.config.fields import format_duration, label_key_problem, label_value_problem, parse_duration
from songbird.config.policy import BUILTIN_METRICS, POLICY_KEY, Policy
from songbird.config.scope import DEFAULT_LABEL, check_parses, scope
from songbird.config.steps import read_steps, yaml_index
from songbird.config.template import check_template, render_template
from songbird.config.text import MESSAGE_LIMIT, bounded, quoted
from songbird.config.urls import policy_url_problem, redact_url

T = TypeVar("T")
PATH_LIMIT: Final = 200

__all__ = [
    "MAX_MANIFEST_BYTES",
    "MAX_POLICY_BYTES",
    "load_policy_configmap",
    "load_policy_file",
    "load_policy_yaml",
    "policy_from_data",
]


def load_policy_yaml(
    text: str | bytes, *, source: str = "", namespace: str | None = None, namespace_label: str = DEFAULT_LABEL
) -> Policy:
    """Parse and validate the text of ``policy.yaml``. ``source`` (namespace/name) goes into errors.

    Custom queries must parse as PromQL (their placeholders filled with sample values); when
    ``namespace`` is given they must also be scopable to it on ``namespace_label`` (`config.scope`).

    Every tick loads its rollout's policy, so valid texts are parsed once and kept (a `Policy` is frozen
    all the way down, so sharing one is safe); the cache holds at most `POLICY_CACHE` distinct texts and
    errors are not cached."""
    try:
        return _parsed(text, namespace, namespace_label)
    except PolicyError as exc:
        raise _bounded_error(exc, source) from exc


POLICY_CACHE: Final = 4096


@functools.lru_cache(maxsize=POLICY_CACHE)
def _parsed(text: str | bytes, namespace: str | None, namespace_label: str) -> Policy:
    data = read_yaml(text, limit=MAX_POLICY_BYTES)
    return policy_from_data(data, namespace=namespace, namespace_label=namespace_label)


def load_policy_configmap(
    configmap: Mapping[str, Any], *, source: str | None = None, namespace_label: str | None = None
) -> Policy:
    """Parse the policy held by a ConfigMap object (as returned by the API, or read from a manifest).

    ``source`` defaults to ``namespace/name`` from the object's metadata. With ``namespace_label``, custom
    queries are also checked to scope to the ConfigMap's namespace (when its metadata names one)."""
    if source is None:
        meta = _mapping(configmap.get("metadata")) if isinstance(configmap, Mapping) else {}
        source = f"{meta.get('namespace', '')}/{meta.get('name', '')}"
    data = _mapping(configmap.get("data")) if isinstance(configmap, Mapping) else {}
    text = data.get(POLICY_KEY)
    if text is None:
        error = PolicyError(f"the ConfigMap has no data key {POLICY_KEY!r}", path=f"data.{POLICY_KEY}")
        raise _bounded_error(error, str(source))
    if not isinstance(text, str):
        error = PolicyError(f"expected a string, got {_type_name(text)}", path=f"data.{POLICY_KEY}")
        raise _bounded_error(error, str(source))
    namespace = _mapping(configmap.get("metadata")).get("namespace") if namespace_label is not None else None
    if not isinstance(namespace, str) or not namespace:
        namespace = None
    return load_policy_yaml(
        text, source=str(source), namespace=namespace, namespace_label=namespace_label or DEFAULT_LABEL
    )


def load_policy_file(content: str | bytes, *, source: str, namespace_label: str = DEFAULT_LABEL) -> Policy:
    """What ``songbird validate`` checks: a ``policy.yaml`` file, or a ConfigMap manifest holding one
    (whose custom queries are then also scoped to its ``metadata.namespace`` on ``namespace_label``).

    The manifest may be up to `MAX_MANIFEST_BYTES` (1 MiB); the policy inside it, as any policy, up to
    `MAX_POLICY_BYTES` (64 KiB)."""
    try:
        document = read_yaml(content, limit=MAX_MANIFEST_BYTES)
    except PolicyError as exc:
        raise _bounded_error(exc, source) from exc
    if isinstance(document, dict) and document.get("kind") == "ConfigMap":
        return load_policy_configmap(document, source=source, namespace_label=namespace_label)
    return load_policy_yaml(content, source=source)


def policy_from_data(
    data: Any, *, namespace: str | None = None, namespace_label: str = DEFAULT_LABEL
) -> Policy:
    """Build and validate a `Policy` from plain data (what YAML or JSON parsing gives)."""
    if data is None:
        raise PolicyError("the policy is empty", path=POLICY_KEY)
    try:
        policy = parse(Policy, data, "")
        validate(policy, namespace=namespace, namespace_label=namespace_label)
    except PolicyError:
        raise
    except Exception as exc:  # a rule that fails on odd input still refuses the policy, never crashes
        raise PolicyError(
            f"cannot be read ({type(exc).__name__}: {bounded(str(exc), QUOTE_LIMIT)})", path=POLICY_KEY
        ) from exc
    return policy


def _bounded_error(exc: PolicyError, source: str) -> PolicyError:
    return PolicyError(
        bounded(exc.message, MESSAGE_LIMIT),
        path=bounded(exc.path, PATH_LIMIT) or POLICY_KEY,
        source=bounded(source, PATH_LIMIT),
    )


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _join(path: str, key: str) -> str:
    key = bounded(key, QUOTE_LIMIT)
    return f"{path}.{key}" if path else key


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
        list: "list",
        dict: "mapping",
    }.get(type(value), type(value).__name__)


def _show(value: Any) -> str:
    """A value as a message quotes it: at most `QUOTE_LIMIT` characters."""
    if isinstance(value, str):
        return quoted(value, QUOTE_LIMIT)
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**QUOTE_LIMIT:
        return f"a {len(str(abs(value)))}-digit number"
    return bounded(repr(value), QUOTE_LIMIT)


_HINTS: dict[type[Any], dict[str, Any]] = {}


def _hints(cls: type[Any]) -> dict[str, Any]:
    """The resolved field types of a model class (resolved once: it is the slow part of a walk)."""
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def parse(cls: type[T], data: Any, path: str) -> T:
    """Build dataclass ``cls`` from plain YAML data, checking every field against its metadata."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise PolicyError(f"expected a mapping, got {_type_name(data)}", path=path or "(top level)")
    fields = {
        f.metadata["key"]: f
        for f in dataclasses.fields(cls)  # type: ignore[arg-type]
        if not f.metadata.get("derived")
    }
    for key in data:
        if not isinstance(key, str):
            raise PolicyError(
                f"keys are strings; got {_type_name(key)} {_show(key)}", path=_join(path, str(key))
            )
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise PolicyError(
            f"unknown key {_show(unknown[0])} (known: {', '.join(sorted(fields))})",
            path=_join(path, unknown[0]),
        )
    hints = _hints(cls)
    kwargs: dict[str, Any] = {}
    for key, f in fields.items():
        fpath = _join(path, key)
        if key not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise PolicyError("required key is missing", path=fpath)
            continue
        if f.metadata.get("kind") == "percent":  # weights and pause steps (`config.steps`)
            _value(list[Any], data[key], fpath, f.metadata)  # a list, within its size
            kwargs[f.name], kwargs["pauses"] = read_steps(data[key], fpath, f.metadata, _number)
            continue
        kwargs[f.name] = _value(hints[f.name], data[key], fpath, f.metadata)
    return cls(**kwargs)


def _value(tp: Any, value: Any, path: str, meta: Mapping[str, Any]) -> Any:
    origin = get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        args = [a for a in get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _value(args[0], value, path, meta)
    if origin is Literal:
        allowed = get_args(tp)
        if not isinstance(value, str) or value not in allowed:
            raise PolicyError(f"must be one of {', '.join(map(str, allowed))}; got {_show(value)}", path=path)
        return value
    if origin is tuple or origin is list:
        if not isinstance(value, list):
            raise PolicyError(f"expected a list, got {_type_name(value)}", path=path)
        _check_size(len(value), path, meta, "items")
        if origin is list:
            return value
        (item_tp, _) = get_args(tp)
        return tuple(_value(item_tp, v, f"{path}[{i}]", meta) for i, v in enumerate(value))
    if origin is Mapping or tp is Mapping:
        return _labels(value, path, meta)
    if dataclasses.is_dataclass(tp):
        return parse(tp, value, path)  # type: ignore[arg-type]
    if meta.get("kind") == "duration":
        if not isinstance(value, str):
            raise PolicyError(
                f"expected a duration string like 30s or 1m, got {_type_name(value)} {_show(value)}",
                path=path,
            )
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            raise PolicyError(str(exc), path=path) from exc
        _check_bounds(seconds, path, meta, shown=value)
        return seconds
    if tp is bool:
        if not isinstance(value, bool):
            raise PolicyError(f"expected true or false, got {_type_name(value)}", path=path)
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise PolicyError(f"expected an integer, got {_type_name(value)}", path=path)
        _check_bounds(value, path, meta)
        return value
    if tp is float:
        return _number(value, path, meta)
    if tp is str:
        if not isinstance(value, str):
            raise PolicyError(f"expected a string, got {_type_name(value)}", path=path)
        _check_string(value, path, meta)
        return value
    raise TypeError(f"unsupported policy field type {tp!r} at {path}")  # a bug in the model, not user input


def _number(value: Any, path: str, meta: Mapping[str, Any]) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PolicyError(f"expected a number, got {_type_name(value)}", path=path)
    try:
        number = float(value)  # an integer beyond the float range raises OverflowError
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise PolicyError(f"expected a finite number, got {_show(value)}", path=path)
    _check_bounds(number, path, meta, shown=value)
    return number


def _check_string(value: str, path: str, meta: Mapping[str, Any]) -> None:
    if meta.get("kind") == "url":  # checked, and shown, only without what a URL may hide (credentials)
        problem = policy_url_problem(value)
        if problem is not None:
            raise PolicyError(f"{problem}; got {_show(redact_url(value))}", path=path)
    longest = meta.get("max_length")
    if longest is not None and len(value) > longest:
        raise PolicyError(f"at most {longest} characters; got {len(value):,}: {_show(value)}", path=path)
    pattern = meta.get("pattern")
    if pattern and not re.fullmatch(pattern, value):
        raise PolicyError(f"invalid value {_show(value)} (must match {pattern})", path=path)


def _labels(value: Any, path: str, meta: Mapping[str, Any]) -> dict[str, str]:
    """A label map (nodeSelector): string keys and values, checked as Kubernetes checks labels."""
    if not isinstance(value, dict):
        raise PolicyError(f"expected a mapping, got {_type_name(value)}", path=path)
    _check_size(len(value), path, meta, "entries")
    out: dict[str, str] = {}
    for k, v in value.items():
        kpath = _join(path, str(k))
        if not isinstance(k, str):
            raise PolicyError(f"a label key is a string; got {_type_name(k)} (quote it)", path=kpath)
        problem = label_key_problem(k)
        if problem is not None:
            raise PolicyError(f"invalid label key {_show(k)}: {problem}", path=kpath)
        if not isinstance(v, str):
            raise PolicyError(
                f'expected a string value, got {_type_name(v)} (quote it: {k}: "...")', path=kpath
            )
        problem = label_value_problem(v)
        if problem is not None:
            raise PolicyError(f"invalid label value {_show(v)}: {problem}", path=kpath)
        out[k] = v
    return out


def _check_size(size: int, path: str, meta: Mapping[str, Any], what: str) -> None:
    most = meta.get("max_items")
    if most is not None and size > most:
        raise PolicyError(f"at most {most} {what}; got {size:,}", path=path)


def _check_bounds(value: float, path: str, meta: Mapping[str, Any], shown: Any = None) -> None:
    text = _show(value if shown is None else shown)
    lo, hi, xlo = meta.get("minimum"), meta.get("maximum"), meta.get("exclusive_minimum")
    duration = meta.get("kind") == "duration"
    if lo is not None and value < lo:
        raise PolicyError(f"must be at least {_limit(lo, duration)}; got {text}", path=path)
    if xlo is not None and value <= xlo:
        raise PolicyError(f"must be greater than {_limit(xlo, duration)}; got {text}", path=path)
    if hi is not None and value > hi:
        raise PolicyError(f"must be at most {_limit(hi, duration)}; got {text}", path=path)


def _limit(bound: float, duration: bool) -> str:
    if duration:
        return format_duration(bound)
    return str(int(bound)) if float(bound).is_integer() else f"{bound:g}"


def validate(policy: Policy, *, namespace: str | None = None, namespace_label: str = DEFAULT_LABEL) -> None:
    """Rules that span fields. Raises the first `PolicyError` found, with its path.

    A custom query must parse once its placeholders are filled (with sample values, or ``namespace`` when
    known); with ``namespace`` it must also scope to it (`config.scope.scope` on ``namespace_label``)."""
    if not policy.steps:
        raise PolicyError("at least one step is required", path="steps")
    if not policy.analysis.metrics and not policy.analysis.allow_no_metrics:
        raise PolicyError(
            "an analysis needs at least one metric; to advance on time alone, with no analysis, set "
            "analysis.allowNoMetrics: true",
            path="analysis.metrics",
        )
    previous = 0.0
    for i, weight in enumerate(policy.steps):
        at = f"steps[{yaml_index(policy, i)}]"
        if not 0 < weight <= 100:
            raise PolicyError(f"weight must be in (0, 100]; got {weight:g}", path=at)
        if weight <= previous:
            raise PolicyError(f"steps must be strictly increasing; {weight:g} follows {previous:g}", path=at)
        previous = weight
    if policy.stable.deployment is not None and policy.stable.deployment == policy.canary.deployment:
        raise PolicyError("the canary Deployment must differ from the stable one", path="canary.deployment")
    source = policy.analysis.prometheus
    if source.url is not None and source.endpoint is not None:
        raise PolicyError("give either an endpoint or a url, not both", path="analysis.prometheus.url")
    if policy.replicas.mode == "fixed" and policy.replicas.canary is None:
        raise PolicyError("fixed mode needs the number of canary replicas", path="replicas.canary")
    a = policy.analysis
    if a.window < a.cadence:
        raise PolicyError(
            f"window ({a.window:g}s) must be at least the cadence ({a.cadence:g}s), or "
            "requests between evaluations are never seen",
            path="analysis.window",
        )
    seen: set[str] = set()
    for i, m in enumerate(a.metrics):
        mpath = f"analysis.metrics[{i}]"
        if m.name in seen:
            raise PolicyError(f"metric {_show(m.name)} is listed twice", path=f"{mpath}.name")
        seen.add(m.name)
        if m.name in BUILTIN_METRICS:
            if m.query is not None:
                raise PolicyError(
                    f"{_show(m.name)} is built in; give a custom metric another name to use a query",
                    path=f"{mpath}.query",
                )
            if m.name == "error-rate" and m.max is not None and not 0 <= m.max <= 1:
                raise PolicyError(f"error-rate is a share in [0, 1]; got {m.max:g}", path=f"{mpath}.max")
            if m.name != "latency" and (m.quantile is not None or m.threshold is not None):
                key = "quantile" if m.quantile is not None else "threshold"
                raise PolicyError("only the latency metric takes this key", path=f"{mpath}.{key}")
        else:
            if m.query is None:
                raise PolicyError(
                    f"custom metric {_show(m.name)} needs a query (built-ins: {', '.join(BUILTIN_METRICS)})",
                    path=f"{mpath}.query",
                )
            if m.max is None and m.min is None:
                raise PolicyError("a custom metric needs max or min", path=f"{mpath}.max")
            if m.quantile is not None or m.threshold is not None:
                key = "quantile" if m.quantile is not None else "threshold"
                raise PolicyError("only the latency metric takes this key", path=f"{mpath}.{key}")
            check_template(m.query, path=f"{mpath}.query")
            _check_query(policy, m.query, namespace, namespace_label, path=f"{mpath}.query")


def _check_query(policy: Policy, query: str, namespace: str | None, label: str, *, path: str) -> None:
    """The custom query, rendered with sample values, parses; with a known namespace it also scopes."""
    values = {
        "namespace": namespace or "sample-namespace",
        "ingress": policy.ingress,
        "canary": "sample-canary",
        "stable": "sample-stable",
        "window": "1m",
    }
    rendered = render_template(query, values, path=path)
    if namespace is None:
        check_parses(rendered, path=path)
    else:
        scope(rendered, namespace=namespace, label=label, path=path)
