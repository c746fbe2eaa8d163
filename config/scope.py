"""Custom PromQL, parsed: whether it parses at all, and the same query forced to one namespace.

Songbird takes policies from every namespace, so a custom query is a tenant's: left alone it could read any
series in Prometheus. `scope` parses it with a real PromQL parser (the ``promql-parser`` package, a Rust
port of Prometheus' own grammar; this is the one module that imports it), walks the syntax tree and gives
every vector and range selector a ``<label>="<namespace>"`` matcher, wherever it sits: inside functions,
aggregations (their parameters included), subqueries, on either side of a binary operator (``or on()``,
``unless``, ``and``), with ``offset`` and ``@``. The tree is rendered back to text, never edited as a string.

Invariants (each refusal is a `PolicyError` on the field path given, ``analysis.metrics[i].query``):
- A selector that already has a matcher on the label keeps it only when it is exactly ``="<namespace>"``;
  a regex, ``!=``, ``!~`` or another namespace is refused, never widened or overridden. Matchers on
  ``__name__`` are the tenant's business: the namespace matcher applies to them as to any other.
- Fail closed: a node kind the walk does not know, ``or`` between matchers inside one selector (the
  parser's rendering of it does not parse back) and ``info()`` (it reads ``target_info`` series its
  selectors do not name) are refused.
- Faithful rendering: before anything is added, the parsed query is rendered and parsed again and must
  give the very same tree (the parser's debug form compared). What the parser renders wrongly (a quote
  or backslash in a string, a quoted UTF-8 name, a subquery without a step, which it prints as a plain
  range) is refused instead of being sent with another meaning.
- Belt and braces: the scoped text is parsed AGAIN, must render to itself, and that tree is checked with
  the parser's own `walk`, not ours: every selector carries the namespace matcher and nothing else on
  the label.
- Bounded work: the parser builds its tree recursively (its Python objects too), so a query with more
  than `MAX_STRUCTURE` brackets and operator characters is refused before it is parsed; without that a
  few thousand ``-`` or ``+`` crash the process (measured: 8,000 ``+x`` segfault, 1,000 raise
  RecursionError in the main thread).
- Pure: no I/O, no clock. ``scope(scope(q)) == scope(q)``.

What promql-parser 0.12 (Prometheus 2.45 grammar) does not handle, so neither does a custom query: the
Prometheus 3 quoted UTF-8 metric and label names (rendered unquoted, hence refused), experimental functions
beyond those it lists, and escapes in strings (rendered raw, hence refused). It parses ``offset`` (also
negative), ``@ <time>``/``start()``/``end()``, subqueries, ``or on()``/``ignoring``/``group_left``,
every aggregation with its parameter, ``histogram_quantile``, ``label_replace`` and string arguments.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Final

import promql_parser as pq

from songbird.config.errors import PolicyError
from songbird.config.fields import NAME_PATTERN
from songbird.config.text import bounded, quoted

MAX_STRUCTURE: Final = 500  # brackets and operator characters outside strings
DEFAULT_LABEL: Final = "namespace"
LABEL_PATTERN: Final = r"[a-zA-Z_][a-zA-Z0-9_]*"  # a Prometheus label name; "__" names are reserved
_STRUCTURE = frozenset("()[]{}+-*/%^<>=!,")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`|#[^\n]*', re.DOTALL)
_REFUSED_FUNCTIONS: Final = {"info": "info() joins target_info series its selectors do not name"}
_OPS: Final = (
    (pq.MatchOp.Equal, "="),
    (pq.MatchOp.NotEqual, "!="),
    (pq.MatchOp.Re, "=~"),
    (pq.MatchOp.NotRe, "!~"),
)


def label_problem(label: str) -> str | None:
    """Why ``label`` cannot be the namespace label (an operator setting), or None."""
    if not re.fullmatch(LABEL_PATTERN, label) or label.startswith("__"):
        return (
            f"{quoted(label)} is not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)"
        )
    return None


def check_parses(query: str, *, path: str) -> None:
    """Refuse a query the PromQL grammar does not accept (its placeholders already filled)."""
    _parse(query, path=path)


def scope(query: str, *, namespace: str, label: str = DEFAULT_LABEL, path: str = "query") -> str:
    """``query`` with every selector restricted to ``label="namespace"``, rendered from the syntax tree."""
    if not re.fullmatch(NAME_PATTERN, namespace):
        raise PolicyError(f"{quoted(namespace)} is not a namespace name", path=path)
    problem = label_problem(label)
    if problem is not None:
        raise PolicyError(problem, path=path)
    tree = _parse(query, path=path)
    try:
        selectors = [node for node in _nodes(tree, path=path) if isinstance(node, pq.VectorSelector)]
        if any(sel.matchers.or_matchers for sel in selectors):
            raise PolicyError(
                "'or' between label matchers inside one selector cannot be scoped; join two selectors "
                "with the 'or' operator instead",
                path=path,
            )
        _check_faithful(tree, path=path)
    except RecursionError as exc:
        raise PolicyError("the query is nested too deeply to be scoped", path=path) from exc
    for selector in selectors:
        _restrict(selector, namespace=namespace, label=label, path=path)
    try:
        rendered = str(tree)
    except RecursionError as exc:
        raise PolicyError("the query is nested too deeply to be scoped", path=path) from exc
    _check_scoped(rendered, namespace=namespace, label=label, path=path)
    return rendered


def _parse(query: str, *, path: str) -> pq.Expr:
    structure = sum(1 for c in _STRING.sub("", query) if c in _STRUCTURE)
    if structure > MAX_STRUCTURE:
        raise PolicyError(
            f"the query has {structure:,} brackets and operators; at most {MAX_STRUCTURE} are accepted",
            path=path,
        )
    try:
        return pq.parse(query)
    except (ValueError, RecursionError) as exc:
        raise PolicyError(f"not valid PromQL: {bounded(str(exc), 200)}", path=path) from exc


def _children(node: pq.Expr, *, path: str) -> list[pq.Expr]:
    if isinstance(node, pq.BinaryExpr):
        return [node.lhs, node.rhs]
    if isinstance(node, pq.AggregateExpr):
        return [node.expr] + ([node.param] if isinstance(node.param, pq.Expr) else [])
    if isinstance(node, pq.ParenExpr | pq.UnaryExpr | pq.SubqueryExpr):
        return [node.expr]
    if isinstance(node, pq.Call):
        refused = _REFUSED_FUNCTIONS.get(node.func.name)
        if refused is not None:
            raise PolicyError(f"cannot be scoped to one namespace: {refused}", path=path)
        return [arg for arg in node.args if isinstance(arg, pq.Expr)]
    if isinstance(node, pq.MatrixSelector):
        return [node.vector_selector]
    if isinstance(node, pq.VectorSelector | pq.NumberLiteral | pq.StringLiteral):
        return []
    raise PolicyError(f"cannot be scoped: unknown expression kind {type(node).__name__}", path=path)


def _nodes(tree: pq.Expr, *, path: str) -> Iterator[pq.Expr]:
    """Every node of the tree, depth first (an explicit stack: the depth is bounded, but not small)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(reversed(_children(node, path=path)))


def _show(matcher: pq.Matcher) -> str:
    op = next((text for op, text in _OPS if matcher.op == op), "?")  # MatchOp is not hashable
    return f"{bounded(matcher.name, 64)}{op}{quoted(matcher.value)}"


def _restrict(selector: pq.VectorSelector, *, namespace: str, label: str, path: str) -> None:
    """Add ``label="namespace"`` to one selector, or refuse a matcher on the label that is anything else."""
    matchers = selector.matchers
    own = [m for m in matchers.matchers if m.name == label]
    for m in own:
        if m.op != pq.MatchOp.Equal or m.value != namespace:
            raise PolicyError(
                f"the matcher {_show(m)} reaches beyond this policy's namespace; a query may only read "
                f'{label}="{namespace}" (added to every selector when absent)',
                path=path,
            )
    if not own:
        selector.matchers = pq.Matchers([*matchers.matchers, pq.Matcher(pq.MatchOp.Equal, label, namespace)])


def _unfaithful(path: str) -> PolicyError:
    return PolicyError(
        "cannot be scoped safely: the parser does not render this query back to itself (a quote or "
        "backslash in a string, a quoted UTF-8 name, or a subquery without a step?)",
        path=path,
    )


def _check_faithful(tree: pq.Expr, *, path: str) -> None:
    """The parser renders ``tree`` to text that parses back to the very same tree."""
    try:
        same = repr(pq.parse(str(tree))) == repr(tree)
    except ValueError as exc:
        raise _unfaithful(path) from exc
    if not same:
        raise _unfaithful(path)


def _check_scoped(rendered: str, *, namespace: str, label: str, path: str) -> None:
    """Parse the rendered text again: it must render to itself, and every selector must be scoped."""
    try:
        again = pq.parse(rendered)
        fixed = str(again) == rendered
    except (ValueError, RecursionError) as exc:
        raise _unfaithful(path) from exc
    if not fixed:
        raise _unfaithful(path)
    unscoped: list[str] = []

    def check(node: pq.Expr) -> bool:
        if isinstance(node, pq.VectorSelector):
            own = [m for m in node.matchers.matchers if m.name == label]
            exact = all(m.op == pq.MatchOp.Equal and m.value == namespace for m in own)
            if node.matchers.or_matchers or not own or not exact:
                unscoped.append(bounded(str(node), 120))
        return True

    pq.walk(again, pre_visit=check)
    if unscoped:  # the walk above must have scoped every selector: a mismatch is a bug, refused all the same
        raise PolicyError(
            f"cannot be scoped safely: {unscoped[0]} is not restricted to one namespace", path=path
        )
