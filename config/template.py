"""Placeholders in custom PromQL: ``{{ namespace }}``, ``{{ ingress }}``, ``{{ canary }}``, ``{{ stable }}``,
``{{ window }}``.

Rendering fails on an unknown or missing placeholder (as Flagger's named templates do), and values are
checked against the Kubernetes name pattern before substitution, so an object name cannot inject PromQL.
Messages quote at most 60 characters of a placeholder or value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from songbird.config.errors import PolicyError
from songbird.config.fields import NAME_PATTERN
from songbird.config.text import bounded, quoted

PLACEHOLDERS = ("namespace", "ingress", "canary", "stable", "window")
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_WINDOW = re.compile(r"^\d+(ms|s|m|h)$")


def check_template(query: str, *, path: str) -> None:
    """Reject a query that names a placeholder we do not fill."""
    if not query.strip():
        raise PolicyError("the query is empty", path=path)
    for name in _PLACEHOLDER.findall(query):
        if name not in PLACEHOLDERS:
            raise PolicyError(
                f"unknown placeholder {{{{ {bounded(name, 60)} }}}} (known: {', '.join(PLACEHOLDERS)})",
                path=path,
            )


def render_template(query: str, values: Mapping[str, str], *, path: str = "query") -> str:
    """Substitute the placeholders; every value must be a plain Kubernetes name or a PromQL duration."""
    for key, value in values.items():
        ok = _WINDOW.fullmatch(value) if key == "window" else re.fullmatch(NAME_PATTERN, value)
        if not ok:
            raise PolicyError(f"value {quoted(value, 60)} for {{{{ {key} }}}} is not a plain name", path=path)

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise PolicyError(f"placeholder {{{{ {bounded(name, 60)} }}}} has no value", path=path)
        return values[name]

    return _PLACEHOLDER.sub(fill, query)
