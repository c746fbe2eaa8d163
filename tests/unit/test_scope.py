"""`config.scope` (custom PromQL forced to one namespace) and where it is applied (the loader, `custom`).

Covers:
- every selector gets ``namespace="<ns>"``: plain, ``__name__`` matchers, inside functions, aggregations
  (and their parameter), subqueries, ``offset``/``@``, both sides of ``or on()``/``unless``/``and``;
- a matcher on the label is kept only when exactly ``="<ns>"``; another namespace, a regex, ``!=``, ``!~``
  are refused with the field path and the matcher in the message;
- refused because unsafe to render: ``or`` between matchers, escapes in strings, a subquery without a
  step, ``info()``, more than MAX_STRUCTURE operators (which would crash the parser), bad label names;
- another label name (``kubernetes_namespace``) scopes on that label;
- properties (Hypothesis): any text is scoped or refused with a PolicyError, never another exception; for
  generated queries the output parses, every selector carries exactly the namespace matcher, scoping is
  idempotent; a foreign namespace matcher anywhere is always refused;
- the loader rejects a custom query that does not parse (placeholders filled with sample values), and, with
  a known namespace, one that cannot be scoped; `queries.custom` sends only the scoped text.
"""

from __future__ import annotations

import promql_parser as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from songbird.analysis.queries import IngressTarget, custom
from songbird.config.errors import PolicyError
from songbird.config.loader import load_policy_configmap, load_policy_yaml
from songbird.config.scope import MAX_STRUCTURE, scope

PATH = "analysis.metrics[0].query"


def scoped(query: str, label: str = "namespace") -> str:
    return scope(query, namespace="a", label=label, path=PATH)


def refusal(query: str) -> str:
    with pytest.raises(PolicyError) as caught:
        scoped(query)
    assert caught.value.path == PATH
    return caught.value.message


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("x", 'x{namespace="a"}'),
        ('{__name__="x"}', '{__name__="x",namespace="a"}'),
        ('{__name__=~".+"}', '{__name__=~".+",namespace="a"}'),
        ('x{namespace="a"}', 'x{namespace="a"}'),
        ("sum(rate(x[5m] offset 1m))", 'sum(rate(x{namespace="a"}[5m] offset 1m))'),
        ("x @ 100", 'x{namespace="a"} @ 100.000'),
        ("max_over_time(x[5m:1m])", 'max_over_time(x{namespace="a"}[5m:1m])'),
        ("sum(x) or on() sum(y)", 'sum(x{namespace="a"}) or on () sum(y{namespace="a"})'),
        ("x unless on(a) y", 'x{namespace="a"} unless on (a) y{namespace="a"}'),
        ("topk(scalar(y), x)", 'topk(scalar(y{namespace="a"}), x{namespace="a"})'),
        ("count by (namespace) (x)", 'count by (namespace)(x{namespace="a"})'),
        (
            'label_replace(x, "namespace", "b", "namespace", ".*")',
            'label_replace(x{namespace="a"}, "namespace", "b", "namespace", ".*")',
        ),
        ("absent(x)", 'absent(x{namespace="a"})'),
        ("vector(1)", "vector(1)"),
        (
            "histogram_quantile(0.99, sum by (le) (rate(h_bucket[5m])))",
            'histogram_quantile(0.99, sum by (le)(rate(h_bucket{namespace="a"}[5m])))',
        ),
    ],
)
def test_every_selector_is_scoped(query: str, expected: str) -> None:
    assert scoped(query) == expected


@pytest.mark.parametrize(
    ("query", "shown"),
    [
        ('{namespace="b"}', 'namespace="b"'),
        ('x{namespace=~"b|a"}', 'namespace=~"b|a"'),
        ('x{namespace=~"a"}', 'namespace=~"a"'),
        ('x{namespace!="a"}', 'namespace!="a"'),
        ('x{namespace!~"a"}', 'namespace!~"a"'),
        ('x{namespace=""}', 'namespace=""'),
        ('x{namespace="a",namespace="b"}', 'namespace="b"'),
        ('sum(x) or on() sum(y{namespace="b"})', 'namespace="b"'),
        ('max_over_time(x{namespace="b"}[5m:1m] offset 1m)', 'namespace="b"'),
        ('absent(x{namespace="b"})', 'namespace="b"'),
    ],
)
def test_a_matcher_reaching_another_namespace_is_refused(query: str, shown: str) -> None:
    assert refusal(query) == (
        f"the matcher {shown} reaches beyond this policy's namespace; a query may only read "
        'namespace="a" (added to every selector when absent)'
    )


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ('x{a="1" or b="2"}', "'or' between label matchers inside one selector cannot be scoped"),
        ('x{a="q\\"b"}', "does not render this query back to itself"),
        ("rate(x[1h:])", "does not render this query back to itself"),
        ("info(x)", "info() joins target_info series"),
        ("sum(", "not valid PromQL"),
        ("-" * (MAX_STRUCTURE + 1) + "x", f"at most {MAX_STRUCTURE} are accepted"),
        ("x" + "+x" * 8000, f"at most {MAX_STRUCTURE} are accepted"),  # would segfault the parser
    ],
)
def test_what_cannot_be_scoped_safely_is_refused(query: str, words: str) -> None:
    assert words in refusal(query)


def test_another_label_name_is_scoped_on_that_label() -> None:
    out = scoped('x{namespace="b"}', label="kubernetes_namespace")
    assert out == 'x{namespace="b",kubernetes_namespace="a"}'
    with pytest.raises(PolicyError, match="not a Prometheus label name"):
        scope("x", namespace="a", label="__name__", path=PATH)


# A small PromQL grammar: selectors with random matchers (the namespace label among them, exactly "a")
# inside the constructs a tenant could hide one in.
_NAMES = st.sampled_from(["x", "up", "http_requests_total"])
_MATCHER = st.sampled_from(['job="j"', 'code=~"5.."', 'pod!="p"', 'namespace="a"', 'le!~"1"'])


@st.composite
def _selector(draw: st.DrawFn) -> str:
    name = draw(st.sampled_from(["", *["x", "up"]]))
    matchers = draw(st.lists(_MATCHER, max_size=3))
    if not name:  # Prometheus wants a non-empty positive matcher in a selector without a name
        matchers = ['__name__=~"x|y"', *matchers]
    body = name + "{" + ",".join(matchers) + "}"
    return body + draw(st.sampled_from(["", " offset 5m", " @ 100", " offset -1m"]))


def _extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        inner.map(lambda q: f"sum({q})"),
        inner.map(lambda q: f"count by (namespace) ({q})"),
        inner.map(lambda q: f"max_over_time(({q})[5m:1m])"),
        st.tuples(inner, inner).map(lambda p: f"{p[0]} or on() {p[1]}"),
        st.tuples(inner, inner).map(lambda p: f"{p[0]} unless {p[1]}"),
        st.tuples(inner, inner).map(lambda p: f"{p[0]} / ignoring(code) {p[1]}"),
        inner.map(lambda q: f'label_replace({q}, "namespace", "b", "", "")'),
        inner.map(lambda q: f"topk(scalar({q}), {q})"),
        inner.map(lambda q: f"absent({q})"),
    )


_QUERIES = st.recursive(st.one_of(_selector(), _NAMES.map(lambda n: f"rate({n}[5m])")), _extend, max_leaves=6)


def _selectors(tree: pq.Expr) -> list[pq.VectorSelector]:
    found: list[pq.VectorSelector] = []
    pq.walk(tree, pre_visit=lambda n: found.append(n) if isinstance(n, pq.VectorSelector) else None)
    return found


@settings(max_examples=300, deadline=None)
@given(_QUERIES)
def test_property_every_selector_carries_exactly_the_namespace_matcher(query: str) -> None:
    out = scoped(query)
    selectors = _selectors(pq.parse(out))
    assert selectors
    for sel in selectors:
        own = [m for m in sel.matchers.matchers if m.name == "namespace"]
        assert own and all(m.op == pq.MatchOp.Equal and m.value == "a" for m in own)
    assert scoped(out) == out


@settings(max_examples=200, deadline=None)
@given(_QUERIES, st.sampled_from(['namespace="b"', 'namespace=~".*"', 'namespace!="a"']))
def test_property_a_foreign_namespace_anywhere_is_refused(query: str, foreign: str) -> None:
    poisoned = query.replace("{", "{" + foreign + ",", 1) if "{" in query else f"{query} or x{{{foreign}}}"
    with pytest.raises(PolicyError) as caught:
        scoped(poisoned)
    assert caught.value.path == PATH


POLICY = """
ingress: web
canary: {{deployment: web-canary, service: web-canary}}
steps: [10, 50]
analysis:
  metrics:
    - name: custom
      max: 1
      query: '{query}'
"""


def test_the_loader_rejects_a_query_that_does_not_parse_with_its_field_path() -> None:
    with pytest.raises(PolicyError) as caught:
        load_policy_yaml(POLICY.format(query='sum(rate(x{namespace="{{ namespace }}"}[1m])'))
    assert caught.value.path == PATH
    assert caught.value.message == "not valid PromQL: unclosed left parenthesis"


def test_the_loader_scopes_only_where_the_namespace_is_known() -> None:
    text = POLICY.format(query='sum(x{namespace="other"})')
    load_policy_yaml(text)  # no namespace: it parses, that is all that can be said
    configmap = {"metadata": {"namespace": "a", "name": "p"}, "data": {"policy.yaml": text}}
    load_policy_configmap(configmap)  # the controller scopes at query time, with its own label
    with pytest.raises(PolicyError) as caught:
        load_policy_configmap(configmap, namespace_label="namespace")
    assert str(caught.value) == (
        'a/p: analysis.metrics[0].query: the matcher namespace="other" reaches beyond this policy\'s '
        'namespace; a query may only read namespace="a" (added to every selector when absent)'
    )
    load_policy_configmap(configmap, namespace_label="kubernetes_namespace")


def test_custom_sends_the_scoped_rendering() -> None:
    target = IngressTarget(namespace="a", ingress="web", canary="web-canary", stable="web")
    query = 'sum(rate(x{ingress="{{ ingress }}"}[{{ window }}]))'
    assert custom(query, target, 60, path=PATH) == 'sum(rate(x{ingress="web",namespace="a"}[1m]))'
    relabelled = IngressTarget(
        namespace="a", ingress="web", canary="web-canary", stable="web", namespace_label="k8s_ns"
    )
    assert custom(query, relabelled, 60, path=PATH) == 'sum(rate(x{ingress="web",k8s_ns="a"}[1m]))'


_PROMQL_CHARS = st.sampled_from(
    [*"xyz(){}[]\"'`=~!,:+-*/^%<>@ 015m.#\\\n", "sum", "by", "or", "on", "offset"]
)


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(max_size=80), st.lists(_PROMQL_CHARS, max_size=40).map("".join)))
def test_property_any_text_is_scoped_or_refused_never_another_error(text: str) -> None:
    try:
        out = scoped(text)
    except PolicyError as exc:
        assert exc.path == PATH
        return
    assert scoped(out) == out
