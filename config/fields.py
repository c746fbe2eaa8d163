"""Field declarations shared by the policy model, its loader and its JSON Schema export.

Each dataclass field of the policy carries its YAML key (camelCase), a one-line description and, where the
Python type is not enough, a ``kind`` (``duration``, ``percent``, ``labels``), numeric bounds (durations in
seconds), a maximum string length and a maximum number of items. The loader
(`config.loader`) and the schema exporter (`config.schema`) read the same metadata, which is what keeps the
exported schema in sync with the model.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Final

from songbird.config.text import quoted

# Kubernetes names, as k8s.io/apimachinery/pkg/util/validation checks them (IsDNS1123Subdomain,
# IsDNS1035Label, IsQualifiedName, IsValidLabelValue). Names are also substituted into PromQL, so these
# patterns are the injection guard as well: no quotes, braces, spaces or operators can pass. Lengths are
# checked separately (``max_length`` in the field metadata), which keeps the patterns linear and usable
# by any JSON Schema validator (no look-ahead).
_DNS_LABEL: Final = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
# Deployments and Ingresses: a DNS-1123 subdomain (dot-separated labels, at most 253 characters).
NAME_PATTERN: Final = rf"^{_DNS_LABEL}(\.{_DNS_LABEL})*$"
NAME_MAX: Final = 253
# Services: a DNS-1035 label (starts with a letter, at most 63 characters).
SERVICE_PATTERN: Final = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
SERVICE_MAX: Final = 63
# Label keys (an optional DNS-subdomain prefix of at most 253 characters, "/", a name of at most 63) and
# label values (empty, or at most 63 characters). `label_key_problem` checks the two lengths of a key,
# which one pattern cannot express.
_QUALIFIED_NAME: Final = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
LABEL_KEY_PATTERN: Final = rf"^({_DNS_LABEL}(\.{_DNS_LABEL})*/)?{_QUALIFIED_NAME}$"
LABEL_KEY_MAX: Final = 253 + 1 + 63
LABEL_VALUE_PATTERN: Final = rf"^({_QUALIFIED_NAME})?$"
LABEL_VALUE_MAX: Final = 63
# An HTTP header name (RFC 9110 token, restricted to what ingress-nginx accepts) and a cookie name.
HEADER_PATTERN: Final = r"^[A-Za-z0-9][-A-Za-z0-9_]*$"
COOKIE_PATTERN: Final = r"^[A-Za-z0-9][-A-Za-z0-9_]*$"
HEADER_VALUE_PATTERN: Final = r"^[A-Za-z0-9][-A-Za-z0-9_.:/]*$"
METRIC_NAME_PATTERN: Final = r"^[a-z][-a-z0-9]*$"
TOKEN_MAX: Final = 63  # header names and values, cookie names, metric names
URL_PATTERN: Final = r"^https?://[^\s/?#@\\%]+(/[^\s?#\\%]*)?$"  # `config.urls.policy_url_problem` says why
ENDPOINT_PATTERN: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"  # an operator endpoint's name (a DNS label)
ENDPOINT_MAX: Final = 63
URL_MAX: Final = 2048
QUERY_MAX: Final = 4096  # characters of a custom PromQL query
DURATION_PATTERN: Final = r"^(\d+(\.\d+)?(ms|s|m|h))+$"
DURATION_MAX_LENGTH: Final = 32  # characters of a duration string ("1h30m15s500ms" has 13)

# Upper bounds, in the units the model keeps (seconds, counts).
HOUR: Final = 3600.0
DAY: Final = 24 * HOUR


def label_key_problem(key: str) -> str | None:
    """Why ``key`` is not a valid Kubernetes label key, or None (IsQualifiedName's rules)."""
    if len(key) > LABEL_KEY_MAX or not re.fullmatch(LABEL_KEY_PATTERN, key):
        return (
            "a label key is an optional DNS-subdomain prefix and '/', then a name of letters, digits, "
            "'-', '_' or '.' that starts and ends with a letter or digit"
        )
    prefix, _, name = key.rpartition("/")
    if len(prefix) > NAME_MAX:
        return f"the prefix of a label key has at most {NAME_MAX} characters; got {len(prefix)}"
    if len(name) > LABEL_VALUE_MAX:
        return f"the name of a label key has at most {LABEL_VALUE_MAX} characters; got {len(name)}"
    return None


def label_value_problem(value: str) -> str | None:
    """Why ``value`` is not a valid Kubernetes label value, or None (IsValidLabelValue's rules)."""
    if len(value) > LABEL_VALUE_MAX:
        return f"a label value has at most {LABEL_VALUE_MAX} characters; got {len(value)}"
    if not re.fullmatch(LABEL_VALUE_PATTERN, value):
        return (
            "a label value is empty or letters, digits, '-', '_' or '.' that start and end with a letter "
            "or digit"
        )
    return None


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_SECONDS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """``"1h30m"`` -> 5400.0 seconds. Raises ValueError on anything else (no bare numbers, nothing longer
    than `DURATION_MAX_LENGTH` characters, so the result is always finite)."""
    if len(text) > DURATION_MAX_LENGTH or not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(
            f"invalid duration {quoted(text)}: use a number with a unit, like 500ms, 15s, 1m or 1h30m "
            f"(at most {DURATION_MAX_LENGTH} characters)"
        )
    seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))
    if not math.isfinite(seconds):  # unreachable within the length bound; kept for direct callers
        raise ValueError(f"duration {quoted(text)} is too long")
    return seconds


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
    max_length: int | None = None,
    max_items: int | None = None,
    example: Any = None,
    derived: bool = False,
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
        "max_length": max_length,
        "max_items": max_items,
        "example": example,
        "derived": derived,  # built by the loader from another key: no YAML key of its own, not in the schema
    }
    if factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)
