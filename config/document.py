"""Read a YAML document into plain data under bounds, before any of it becomes a policy.

A policy is a few dozen lines of plain data. This module reads YAML while refusing everything a policy never
needs and that would let one document hurt the controller:

- a document larger than its limit (`MAX_POLICY_BYTES`, 64 KiB, for ``policy.yaml``; `MAX_MANIFEST_BYTES`,
  1 MiB, the API server's limit for a whole ConfigMap, for a manifest file), checked before parsing;
- bytes that are not UTF-8 text;
- anchors and aliases (``&a``, ``*a``): refused as the parser meets them, so an alias bomb never expands;
- collections nested deeper than `MAX_DEPTH` (20) levels: refused while composing, long before Python's
  recursion limit. Flow brackets are also counted before parsing (at most `MAX_OPEN_BRACKETS`, 100,
  open at once, quotes not considered): PyYAML's scanner spends time in proportion to the open brackets
  for every token, so 30,000 ``[`` took over a second before the composer could refuse them;
- more than `MAX_NODES` (2,000) values in one document (a policy within every range has fewer than 600):
  refused while composing, so reading any document costs at most about that many values, not 64 KiB of
  tokens (a pure-Python parse of 30,000 values took two seconds);
- explicit tags other than the core schema's (``!!str``, ``!!int``, ``!!float``, ``!!bool``, ``!!null``,
  ``!!seq``, ``!!map``): no ``!!python/...``, ``!!binary``, ``!!timestamp`` or custom tags. Dates are
  not resolved implicitly either: ``2024-01-01`` stays a string;
- a value its tag cannot read (``!!int nginx``) is an error at its line and column.

Invariant: `read_yaml` returns plain data (dict, list, str, int, float, bool, None) or raises `PolicyError`
whose path is the document key (``policy.yaml``); never any other exception. Messages quote at most
`QUOTE_LIMIT` (60) characters of the input.
"""

from __future__ import annotations

import re
from typing import Any, Final

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import Node, ScalarNode

from songbird.config.errors import PolicyError
from songbird.config.text import bounded, quoted

POLICY_DOCUMENT: Final = "policy.yaml"
MAX_POLICY_BYTES: Final = 64 * 1024
MAX_MANIFEST_BYTES: Final = 1024 * 1024
MAX_DEPTH: Final = 20
MAX_OPEN_BRACKETS: Final = 100
MAX_NODES: Final = 2000
QUOTE_LIMIT: Final = 60

_CORE = "tag:yaml.org,2002:"
_CORE_TAGS: Final = frozenset(_CORE + t for t in ("str", "int", "float", "bool", "null", "seq", "map"))
_NON_SPECIFIC: Final = (None, "!")


class _Refused(yaml.MarkedYAMLError):
    """A construct a policy never needs, at the place the parser met it."""


def _short_tag(tag: str) -> str:
    return "!!" + tag[len(_CORE) :] if tag.startswith(_CORE) else tag


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader with the refusals above: aliases, anchors, depth, tags, unreadable values."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        event: Any = self.peek_event()  # type: ignore[no-untyped-call]
        mark: Any = event.start_mark
        if isinstance(event, yaml.AliasEvent):
            raise _Refused(problem="YAML aliases (*name) are not allowed", problem_mark=mark)
        if getattr(event, "anchor", None) is not None:
            raise _Refused(problem="YAML anchors (&name) are not allowed", problem_mark=mark)
        tag = getattr(event, "tag", None)
        if tag not in _NON_SPECIFIC and tag not in _CORE_TAGS:
            raise _Refused(
                problem=f"the tag {quoted(_short_tag(str(tag)), QUOTE_LIMIT)} is not allowed "
                "(plain values only: strings, numbers, booleans, null, lists and mappings)",
                problem_mark=mark,
            )
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise _Refused(problem=f"more than {MAX_NODES} values in one document", problem_mark=mark)
        nested = isinstance(event, yaml.SequenceStartEvent | yaml.MappingStartEvent)
        if nested:
            self._depth += 1
            if self._depth > MAX_DEPTH:
                raise _Refused(problem=f"nested deeper than {MAX_DEPTH} levels", problem_mark=mark)
        try:
            return super().compose_node(parent, index)
        finally:
            if nested:
                self._depth -= 1

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except Exception as exc:  # ValueError from int('nginx'), OverflowError...: the value is unreadable
            shown = quoted(str(node.value), QUOTE_LIMIT) if isinstance(node, ScalarNode) else "this value"
            raise ConstructorError(
                problem=f"cannot read {shown} as {_short_tag(str(node.tag))}", problem_mark=node.start_mark
            ) from exc


# Dates and times are not policy values: without the implicit timestamp resolver they stay strings, and a
# malformed one (2024-13-45) cannot fail while being read.
_BoundedLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != _CORE + "timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _text(content: str | bytes, limit: int) -> str:
    if isinstance(content, bytes | bytearray):
        if len(content) > limit:
            raise PolicyError(_too_large(len(content), limit), path=POLICY_DOCUMENT)
        try:
            return bytes(content).decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise PolicyError(
                f"not UTF-8 text: byte 0x{exc.object[exc.start]:02x} at offset {exc.start}",
                path=POLICY_DOCUMENT,
            ) from exc
    if not isinstance(content, str):
        raise PolicyError(f"expected text, got {type(content).__name__}", path=POLICY_DOCUMENT)
    size = len(content) if len(content) > limit else len(content.encode("utf-8", "surrogatepass"))
    if size > limit:
        raise PolicyError(_too_large(size, limit), path=POLICY_DOCUMENT)
    return content


_BRACKET = re.compile(r"[\[\]{}]")


def _check_brackets(text: str) -> None:
    """Refuse text with more than `MAX_OPEN_BRACKETS` flow brackets open at once (a cheap upper bound on
    flow nesting: brackets inside quoted strings count too, which only a query could hold, balanced)."""
    depth = 0
    for match in _BRACKET.finditer(text):
        depth += 1 if match.group() in "[{" else -1
        if depth > MAX_OPEN_BRACKETS:
            raise PolicyError(
                f"more than {MAX_OPEN_BRACKETS} brackets ([ or {{) open at once; a policy nests at most "
                f"{MAX_DEPTH} levels",
                path=POLICY_DOCUMENT,
            )


def _too_large(size: int, limit: int) -> str:
    return f"the document has {size:,} bytes or more; at most {limit:,} ({limit // 1024} KiB) are read"


def read_yaml(content: str | bytes, *, limit: int = MAX_POLICY_BYTES) -> Any:
    """Plain data from one YAML document of at most ``limit`` bytes, or `PolicyError` (see above)."""
    text = _text(content, limit)
    _check_brackets(text)
    loader: _BoundedLoader | None = None
    try:
        loader = _BoundedLoader(text)  # the reader checks every character here
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        said = [part for part in (exc.context, exc.problem) if part]
        problem = ", ".join(said) or "unreadable"
        what = "refused" if isinstance(exc, _Refused) else "not valid YAML"
        raise PolicyError(f"{what}{where}: {bounded(problem)}", path=POLICY_DOCUMENT) from exc
    except yaml.YAMLError as exc:  # ReaderError: a control character or an unpaired surrogate
        raise PolicyError(f"not valid YAML: {bounded(str(exc))}", path=POLICY_DOCUMENT) from exc
    except RecursionError as exc:  # not reachable within MAX_DEPTH; kept so the invariant holds regardless
        raise PolicyError("not valid YAML: nested too deeply", path=POLICY_DOCUMENT) from exc
    except Exception as exc:  # any other failure of the parser is still a document we cannot read
        raise PolicyError(f"not valid YAML ({type(exc).__name__})", path=POLICY_DOCUMENT) from exc
    finally:
        if loader is not None:
            loader.dispose()
