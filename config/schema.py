"""Export the policy model as JSON Schema (draft 2020-12), from the same field metadata the loader reads.

``python -m songbird.config.schema > config/policy.schema.json`` regenerates the committed file; a
test checks that the committed file equals this output, so the schema cannot drift from the model.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, get_args, get_origin

from songbird.config.fields import (
    DURATION_MAX_LENGTH,
    DURATION_PATTERN,
    LABEL_KEY_MAX,
    LABEL_KEY_PATTERN,
    LABEL_VALUE_MAX,
    LABEL_VALUE_PATTERN,
    format_duration,
)
from songbird.config.policy import Policy


def _default(field: dataclasses.Field[Any]) -> Any:
    if field.default is not dataclasses.MISSING:
        value = field.default
    elif field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
    else:
        return dataclasses.MISSING
    if dataclasses.is_dataclass(value) or (
        isinstance(value, tuple) and value and dataclasses.is_dataclass(value[0])
    ):
        return dataclasses.MISSING  # nested defaults are described by the nested schema
    if field.metadata.get("kind") == "duration" and isinstance(value, float):
        return format_duration(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def _type_schema(tp: Any, meta: Mapping[str, Any]) -> dict[str, Any]:
    origin = get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        args = [a for a in get_args(tp) if a is not type(None)]
        inner = _type_schema(args[0], meta)
        return {"anyOf": [inner, {"type": "null"}]}
    if origin is Literal:
        return {"type": "string", "enum": list(get_args(tp))}
    if origin is tuple:
        item = _type_schema(get_args(tp)[0], meta)
        array: dict[str, Any] = {"type": "array", "items": item}
        if meta.get("max_items") is not None:
            array["maxItems"] = meta["max_items"]
        return array
    if origin is Mapping or tp is Mapping:
        labels: dict[str, Any] = {
            "type": "object",
            # The loader also bounds a key's prefix (253) and name (63) separately.
            "propertyNames": {"pattern": LABEL_KEY_PATTERN, "maxLength": LABEL_KEY_MAX},
            "additionalProperties": {
                "type": "string",
                "pattern": LABEL_VALUE_PATTERN,
                "maxLength": LABEL_VALUE_MAX,
            },
        }
        if meta.get("max_items") is not None:
            labels["maxProperties"] = meta["max_items"]
        return labels
    if dataclasses.is_dataclass(tp):
        return object_schema(tp)  # type: ignore[arg-type]
    out: dict[str, Any]
    if meta.get("kind") == "duration":
        # JSON Schema cannot compare durations: the range is in the description (`duration_range`).
        return {"type": "string", "pattern": DURATION_PATTERN, "maxLength": DURATION_MAX_LENGTH}
    if tp is bool:
        out = {"type": "boolean"}
    elif tp is int:
        out = {"type": "integer"}
    elif tp is float:
        out = {"type": "number"}
    else:
        out = {"type": "string"}
        if meta.get("pattern"):
            out["pattern"] = meta["pattern"]
        if meta.get("max_length") is not None:
            out["maxLength"] = meta["max_length"]
    for key, name in (
        ("minimum", "minimum"),
        ("maximum", "maximum"),
        ("exclusive_minimum", "exclusiveMinimum"),
    ):
        if meta.get(key) is not None and tp in (int, float):
            out[name] = meta[key]
    return out


def duration_range(meta: Mapping[str, Any]) -> str:
    """The range of a duration field in words, e.g. "More than 0s, at most 24h." """
    parts = []
    if meta.get("exclusive_minimum") is not None:
        parts.append(f"more than {format_duration(meta['exclusive_minimum'])}")
    if meta.get("minimum") is not None:
        parts.append(f"at least {format_duration(meta['minimum'])}")
    if meta.get("maximum") is not None:
        parts.append(f"at most {format_duration(meta['maximum'])}")
    text = ", ".join(parts)
    return f"{text[:1].upper()}{text[1:]}." if text else ""


def object_schema(cls: type[Any]) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    props: dict[str, Any] = {}
    required: list[str] = []
    for f in dataclasses.fields(cls):
        meta = f.metadata
        if meta.get("derived"):
            continue
        prop = _type_schema(hints[f.name], meta)
        if meta.get("kind") == "percent":
            # A weight (ascending), or a pause step between weights (`config.steps`).
            weight = {"type": "number", "exclusiveMinimum": 0, "maximum": 100}
            pause = {
                "type": "object",
                "additionalProperties": False,
                "required": ["pause"],
                "properties": {
                    "pause": {
                        "description": "Hold the weight: a duration (more than 0s, at most 24h), or {} until "
                        "resume or promote.",
                        "anyOf": [
                            {"type": "string", "pattern": DURATION_PATTERN, "maxLength": DURATION_MAX_LENGTH},
                            {"type": "object", "additionalProperties": False, "maxProperties": 0},
                        ],
                    }
                },
            }
            prop["items"] = {"anyOf": [weight, pause]}
            prop["minItems"] = 1
        doc = meta["doc"]
        if meta.get("kind") == "duration":
            doc = f"{doc} {duration_range(meta)}"
        prop = {"description": doc, **prop}
        default = _default(f)
        if default is not dataclasses.MISSING:
            prop["default"] = default
        if meta.get("example") is not None:
            prop["examples"] = [meta["example"]]
        props[meta["key"]] = prop
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            required.append(meta["key"])
    schema: dict[str, Any] = {"type": "object", "additionalProperties": False, "properties": props}
    if required:
        schema["required"] = required
    return schema


def policy_schema() -> dict[str, Any]:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://songbird.dev/schemas/policy.schema.json",
        "title": "Songbird rollout policy (the policy.yaml key of a ConfigMap labelled songbird.dev/policy)",
        **object_schema(Policy),
    }


def main() -> None:
    json.dump(policy_schema(), sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
