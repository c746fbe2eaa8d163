"""Keep the chart's values documented in one place: the ``# --`` comments of ``values.yaml``.

From those comments (helm-docs' convention, as argo-helm's charts use it) this module
- fills the ``description`` of the matching properties of ``values.schema.json``, and
- renders the values table of the chart's README between ``<!-- values:start -->`` and
  ``<!-- values:end -->``.

`check` lists every way the three files disagree: a key without a ``# --`` comment, a key the schema does
not know, a schema property without a description, a stale description or a stale table. The chart tests
call it; ``python -m tests.chart.values_doc --write`` regenerates the schema descriptions and the table.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parents[2] / "charts" / "songbird"
START, END = "<!-- values:start -->", "<!-- values:end -->"
_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.-]+):(?:\s.*)?$")


@dataclass(frozen=True)
class Key:
    path: str
    doc: str | None
    line: int


def parse_keys(text: str) -> list[Key]:
    """Every mapping key of values.yaml with its dotted path and its ``# --`` description, if any."""
    keys: list[Key] = []
    stack: list[tuple[int, str]] = []
    doc: list[str] | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("# --"):
            doc = [stripped[4:].strip()]
            continue
        if stripped.startswith("#"):
            if doc is not None:
                doc.append(stripped[1:].strip())
            continue
        if not stripped:
            doc = None
            continue
        match = _KEY.match(line)
        if match is None:  # a list item or a continuation: not a key
            doc = None
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match["key"]))
        keys.append(Key(".".join(k for _, k in stack), " ".join(doc) if doc else None, number))
        doc = None
    return keys


def schema_node(schema: dict[str, Any], path: str) -> dict[str, Any] | None:
    """The schema of a dotted values path, or None when the schema has no such property."""
    node = schema
    for part in path.split("."):
        props = node.get("properties")
        if not isinstance(props, dict) or part not in props:
            return None
        node = props[part]
    return node


def _is_map_entry(schema: dict[str, Any], path: str) -> bool:
    """A key inside a free-form map (labels, annotations...): documented by its parent, not itself."""
    parent, _, _ = path.rpartition(".")
    node = schema_node(schema, parent) if parent else None
    return (
        node is not None and "properties" not in node and isinstance(node.get("additionalProperties"), dict)
    )


def _schema_paths(node: dict[str, Any], prefix: str = "") -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    for name, child in (node.get("properties") or {}).items():
        path = f"{prefix}{name}"
        out.append((path, child))
        out += _schema_paths(child, f"{path}.")
        items = child.get("items")
        if isinstance(items, dict):
            out.append((f"{path}[]", items))
            out += _schema_paths(items, f"{path}[].")
    return out


def _default(values: dict[str, Any], path: str) -> Any:
    node: Any = values
    for part in path.split("."):
        node = node[part]
    return node


def _type(node: dict[str, Any]) -> str:
    kind = node.get("type")
    if kind is None and "oneOf" in node:
        return " or ".join(sorted({str(o.get("type")) for o in node["oneOf"]}))
    return {"array": "list"}.get(str(kind), str(kind))


def documented(keys: list[Key], schema: dict[str, Any]) -> list[Key]:
    """Keys that are values in their own right (not entries of a free-form map)."""
    return [k for k in keys if not _is_map_entry(schema, k.path)]


def render_table(keys: list[Key], schema: dict[str, Any], values: dict[str, Any]) -> str:
    """One row per leaf value: key, type, default, description."""
    own = documented(keys, schema)
    parents = {k.path.rpartition(".")[0] for k in own}
    rows = ["| Key | Type | Default | Description |", "|-----|------|---------|-------------|"]
    for key in own:
        if key.path in parents:
            continue
        node = schema_node(schema, key.path) or {}
        default = json.dumps(_default(values, key.path))
        rows.append(f"| {key.path} | {_type(node)} | `{default}` | {key.doc or ''} |")
    return "\n".join(rows)


def with_descriptions(schema: dict[str, Any], keys: list[Key]) -> dict[str, Any]:
    """The schema with each documented key's description set from its ``# --`` comment."""
    out = json.loads(json.dumps(schema))
    for key in documented(keys, out):
        node = schema_node(out, key.path)
        if node is not None and key.doc:
            node["description"] = key.doc
    return out


def with_table(readme: str, table: str) -> str:
    head, start, rest = readme.partition(START)
    _, end, tail = rest.partition(END)
    if not start or not end:
        raise ValueError(f"the README has no {START} ... {END} block")
    return f"{head}{START}\n{table}\n{END}{tail}"


def load(chart: Path = CHART) -> tuple[str, dict[str, Any], dict[str, Any], str]:
    text = (chart / "values.yaml").read_text(encoding="utf-8")
    schema = json.loads((chart / "values.schema.json").read_text(encoding="utf-8"))
    return text, schema, yaml.safe_load(text), (chart / "README.md").read_text(encoding="utf-8")


def check(chart: Path = CHART) -> list[str]:
    """Every disagreement between values.yaml, values.schema.json and README.md, as readable lines."""
    text, schema, values, readme = load(chart)
    keys = parse_keys(text)
    problems: list[str] = []
    for key in documented(keys, schema):
        if key.doc is None:
            problems.append(f"values.yaml:{key.line}: {key.path} has no '# --' description")
        if schema_node(schema, key.path) is None:
            problems.append(f"values.yaml:{key.line}: {key.path} is not in values.schema.json")
    for path, node in _schema_paths(schema):
        if not node.get("description"):
            problems.append(f"values.schema.json: {path} has no description")
        if node.get("type") == "object" or "properties" in node:
            extra = node.get("additionalProperties")
            if "properties" in node and extra is not False:
                problems.append(f"values.schema.json: {path} lists properties but allows others")
            if "properties" not in node and extra is None:
                problems.append(f"values.schema.json: {path} is an object with no additionalProperties")
    if with_descriptions(schema, keys) != schema:
        problems.append("values.schema.json descriptions differ from values.yaml: run --write")
    if with_table(readme, render_table(keys, schema, values)) != readme:
        problems.append("README.md values table is stale: run --write")
    return problems


def write(chart: Path = CHART) -> None:
    text, schema, values, readme = load(chart)
    keys = parse_keys(text)
    schema = with_descriptions(schema, keys)
    (chart / "values.schema.json").write_text(json.dumps(schema, indent=2) + "\n", encoding="utf-8")
    (chart / "README.md").write_text(with_table(readme, render_table(keys, schema, values)), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--write", action="store_true", help="regenerate descriptions and the table")
    args = parser.parse_args(argv)
    if args.write:
        write()
    problems = check()
    for line in problems:
        print(line, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
