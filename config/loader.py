"""Turn the YAML of a policy ConfigMap into a validated `Policy`, or a `PolicyError` naming the field.

The walk is driven by the dataclass fields and their metadata (`config.fields.spec`): unknown keys, wrong
types, bad durations and out-of-range numbers are reported with the path a user would write, such as
``analysis.metrics[1].max``. Cross-field rules follow in `validate`. Nothing here touches the network.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar, get_args, get_origin

import yaml

from songbird.config.errors import PolicyError
from songbird.config.fields import parse_duration
from songbird.config.policy import BUILTIN_METRICS, POLICY_KEY, Policy
from songbird.config.template import check_template

T = TypeVar("T")


def load_policy_yaml(text: str, *, source: str = "") -> Policy:
    """Parse and validate the text of ``policy.yaml``. ``source`` (namespace/name) goes into errors.

    Every tick loads its rollout's policy, so valid texts are parsed once and kept (a `Policy` is frozen
    all the way down, so sharing one is safe); the cache is bounded by `POLICY_CACHE` distinct texts."""
    try:
        return _parsed(text)
    except PolicyError as exc:
        raise exc.with_source(source) from (exc.__cause__ if exc.__cause__ is not None else exc)


POLICY_CACHE = 4096


@functools.lru_cache(maxsize=POLICY_CACHE)
def _parsed(text: str) -> Policy:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise PolicyError(f"not valid YAML{where}: {getattr(exc, 'problem', exc)}", path=POLICY_KEY) from exc
    policy = parse(Policy, data, "")
    validate(policy)
    return policy


def load_policy_configmap(configmap: Mapping[str, Any]) -> Policy:
    """Parse the policy held by a ConfigMap object (as returned by the API)."""
    meta = configmap.get("metadata") or {}
    source = f"{meta.get('namespace', '')}/{meta.get('name', '')}"
    text = (configmap.get("data") or {}).get(POLICY_KEY)
    if text is None:
        raise PolicyError(
            f"the ConfigMap has no data key {POLICY_KEY!r}", path=f"data.{POLICY_KEY}", source=source
        )
    return load_policy_yaml(text, source=source)


def _join(path: str, key: str) -> str:
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


def parse(cls: type[T], data: Any, path: str) -> T:
    """Build dataclass ``cls`` from plain YAML data, checking every field against its metadata."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise PolicyError(f"expected a mapping, got {_type_name(data)}", path=path or "(top level)")
    fields = {f.metadata["key"]: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(map(str, data)) - set(fields))
    if unknown:
        raise PolicyError(
            f"unknown key {unknown[0]!r} (known: {', '.join(sorted(fields))})", path=_join(path, unknown[0])
        )
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for key, f in fields.items():
        fpath = _join(path, key)
        if key not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise PolicyError("required key is missing", path=fpath)
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
        if value not in allowed:
            raise PolicyError(f"must be one of {', '.join(map(str, allowed))}; got {value!r}", path=path)
        return value
    if origin is tuple:
        (item_tp, _) = get_args(tp)
        if not isinstance(value, list):
            raise PolicyError(f"expected a list, got {_type_name(value)}", path=path)
        return tuple(_value(item_tp, v, f"{path}[{i}]", meta) for i, v in enumerate(value))
    if origin is Mapping or tp is Mapping:
        if not isinstance(value, dict):
            raise PolicyError(f"expected a mapping, got {_type_name(value)}", path=path)
        out: dict[str, str] = {}
        for k, v in value.items():
            if not isinstance(v, str):
                raise PolicyError(f"expected a string value, got {_type_name(v)}", path=f"{path}.{k}")
            out[str(k)] = v
        return out
    if dataclasses.is_dataclass(tp):
        return parse(tp, value, path)  # type: ignore[arg-type]
    if meta.get("kind") == "duration":
        if not isinstance(value, str):
            raise PolicyError(
                f"expected a duration string like 30s or 1m, got {_type_name(value)} {value!r}", path=path
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
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise PolicyError(f"expected a number, got {_type_name(value)}", path=path)
        _check_bounds(float(value), path, meta)
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise PolicyError(f"expected a string, got {_type_name(value)}", path=path)
        pattern = meta.get("pattern")
        if pattern and not re.fullmatch(pattern, value):
            raise PolicyError(f"invalid value {value!r} (must match {pattern})", path=path)
        return value
    raise TypeError(f"unsupported policy field type {tp!r} at {path}")  # a bug in the model, not user input


def _check_bounds(value: float, path: str, meta: Mapping[str, Any], shown: Any = None) -> None:
    shown = value if shown is None else shown
    lo, hi, xlo = meta.get("minimum"), meta.get("maximum"), meta.get("exclusive_minimum")
    if lo is not None and value < lo:
        raise PolicyError(f"must be at least {lo}; got {shown}", path=path)
    if xlo is not None and value <= xlo:
        raise PolicyError(f"must be greater than {xlo}; got {shown}", path=path)
    if hi is not None and value > hi:
        raise PolicyError(f"must be at most {hi}; got {shown}", path=path)


def validate(policy: Policy) -> None:
    """Rules that span fields. Raises the first `PolicyError` found, with its path."""
    if not policy.steps:
        raise PolicyError("at least one step is required", path="steps")
    previous = 0.0
    for i, weight in enumerate(policy.steps):
        if not 0 < weight <= 100:
            raise PolicyError(f"weight must be in (0, 100]; got {weight:g}", path=f"steps[{i}]")
        if weight <= previous:
            raise PolicyError(
                f"steps must be strictly increasing; {weight:g} follows {previous:g}", path=f"steps[{i}]"
            )
        previous = weight
    if policy.stable.deployment is not None and policy.stable.deployment == policy.canary.deployment:
        raise PolicyError("the canary Deployment must differ from the stable one", path="canary.deployment")
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
            raise PolicyError(f"metric {m.name!r} is listed twice", path=f"{mpath}.name")
        seen.add(m.name)
        if m.name in BUILTIN_METRICS:
            if m.query is not None:
                raise PolicyError(
                    f"{m.name!r} is built in; give a custom metric another name to use a query",
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
                    f"custom metric {m.name!r} needs a query (built-ins: {', '.join(BUILTIN_METRICS)})",
                    path=f"{mpath}.query",
                )
            if m.max is None and m.min is None:
                raise PolicyError("a custom metric needs max or min", path=f"{mpath}.max")
            if m.quantile is not None or m.threshold is not None:
                key = "quantile" if m.quantile is not None else "threshold"
                raise PolicyError("only the latency metric takes this key", path=f"{mpath}.{key}")
            check_template(m.query, path=f"{mpath}.query")
