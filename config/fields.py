"""Field declarations shared by the policy model, its loader and its JSON Schema export.

Each dataclass field of the policy carries its YAML key (camelCase), a one-line description and, where the
Python type is not enough, a ``kind`` (``duration``, ``name``, ``percent``...) and numeric bounds. The loader
(`config.loader`) and the schema exporter (`config.schema`) read the same metadata, which is what keeps the
exported schema in sync with the model.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Final

# Kubernetes object names (DNS-1123 subdomain). Names are also substituted into PromQL, so this pattern is
# the injection guard as well: no quotes, braces, spaces or operators can pass.
NAME_PATTERN: Final = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"
# Label keys (optionally prefixed) and values, for nodeSelector.
LABEL_KEY_PATTERN: Final = (
    r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
LABEL_VALUE_PATTERN: Final = r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$"
# An HTTP header name (RFC 9110 token, restricted to what ingress-nginx accepts) and a cookie name.
HEADER_PATTERN: Final = r"^[A-Za-z0-9][-A-Za-z0-9_]*$"
COOKIE_PATTERN: Final = r"^[A-Za-z0-9][-A-Za-z0-9_]*$"
HEADER_VALUE_PATTERN: Final = r"^[A-Za-z0-9][-A-Za-z0-9_.:/]*$"
METRIC_NAME_PATTERN: Final = r"^[a-z][-a-z0-9]*$"
DURATION_PATTERN: Final = r"^(\d+(\.\d+)?(ms|s|m|h))+$"

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_SECONDS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """``"1h30m"`` -> 5400.0 seconds. Raises ValueError on anything else (no bare numbers)."""
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"invalid duration {text!r}: use a number with a unit, like 500ms, 15s, 1m or 1h30m")
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))


def format_duration(seconds: float) -> str:
    """The inverse of parse_duration for display: 90.0 -> ``"1m30s"``."""
    if seconds < 1 and seconds != 0:
        return f"{round(seconds * 1000)}ms"
    whole = int(seconds)
    h, rest = divmod(whole, 3600)
    m, s = divmod(rest, 60)
    out = (f"{h}h" if h else "") + (f"{m}m" if m else "") + (f"{s}s" if s or whole == 0 else "")
    frac = seconds - whole
    return out if frac == 0 else f"{seconds:g}s"


def spec(
    key: str,
    doc: str,
    *,
    default: Any = dataclasses.MISSING,
    factory: Any = dataclasses.MISSING,
    kind: str | None = None,
    pattern: str | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: float | None = None,
    example: Any = None,
) -> Any:
    """A dataclass field with the metadata the loader and the schema exporter read."""
    metadata = {
        "key": key,
        "doc": doc,
        "kind": kind,
        "pattern": pattern,
        "minimum": minimum,
        "maximum": maximum,
        "exclusive_minimum": exclusive_minimum,
        "example": example,
    }
    if factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)
