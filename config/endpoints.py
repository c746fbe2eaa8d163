"""The operator's Prometheus endpoints: the model of ``songbird run --prometheus-endpoints FILE``.

Prometheus endpoints belong to the operator, not to the tenants who write policies. The file names each
endpoint (URL, timeout, credentials, CA, extra headers, the namespaces whose policies may pick it), the
default one, and the allow-list of URLs a policy may give itself (``policyUrls``)::

    default: main
    endpoints:
      - name: main
        url: http://prometheus.monitoring:9090
        timeout: 5s
        bearerTokenFile: /etc/songbird/secrets/main/token
        basicAuth: {usernameFile: /etc/..., passwordFile: /etc/...}
        caFile: /etc/songbird/ca/ca.crt
        headers: {X-Scope-OrgID: team-a}
        namespaces: [team-a]
    policyUrls:
      - namespaces: [team-b]
        prefixes: ["http://prometheus.team-b.svc:9090/"]

Credentials are never in this model, only the paths of the files holding them (read by the Prometheus
adapter at each request, so a rotated token is used as soon as it is written). Header values are the one
secret-bearing text kept here; nothing shows them (`Endpoint.label` is the endpoint's name).

Invariants: the loader reads the file with the bounded YAML reader (`config.document.read_yaml`, at most
`MAX_ENDPOINTS_BYTES`); unknown keys, wrong types, duplicate names, a default that is not defined, bad
URLs (`config.urls`) and oversized lists are `PolicyError` naming the file (``source``) and the field path
(``endpoints[1].headers.X-Scope-OrgID``); never another exception. The model is frozen and hashable.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from songbird.config.document import QUOTE_LIMIT, read_yaml
from songbird.config.errors import PolicyError
from songbird.config.fields import parse_duration
from songbird.config.text import bounded, quoted
from songbird.config.urls import policy_url_problem, redact_url

MAX_ENDPOINTS_BYTES: Final = 64 * 1024
MAX_ENDPOINTS: Final = 64
MAX_RULES: Final = 64
MAX_ITEMS: Final = 64  # namespaces or prefixes of one entry
MAX_HEADERS: Final = 16
HEADER_VALUE_MAX: Final = 1024
PATH_MAX: Final = 4096
DEFAULT_NAME: Final = "default"  # the endpoint `--prometheus-url` defines

_NAME: Final = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")  # a DNS-1123 label
# An HTTP field name (RFC 9110 token) and a value of visible ASCII, spaces and tabs (no CR or LF).
_HEADER_NAME: Final = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$")
_HEADER_VALUE: Final = re.compile(r"^[\x20-\x7e\t]*$")
# Headers the adapter sets itself, or that carry credentials another key holds.
_RESERVED_HEADERS: Final = frozenset(
    {"authorization", "host", "content-length", "connection", "transfer-encoding", "accept-encoding"}
)


@dataclass(frozen=True, kw_only=True)
class BasicAuth:
    username_file: str
    password_file: str


@dataclass(frozen=True, kw_only=True)
class Endpoint:
    """One Prometheus endpoint. ``namespaces`` empty: every namespace may use it.

    ``url`` may hold userinfo only for the `--prometheus-url` shorthand (sent as basic auth); nothing
    shows ``url`` unredacted."""

    name: str
    url: str
    timeout: float | None = None  # None: the policy's own (still capped by --prometheus-max-timeout)
    bearer_token_file: str | None = None
    basic_auth: BasicAuth | None = None
    ca_file: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    namespaces: tuple[str, ...] = ()
    from_policy: bool = False  # a URL a policy gave (admitted by ``policyUrls``), not an operator endpoint

    @property
    def label(self) -> str:
        """What messages, logs and metric labels show: the name, or the redacted URL a policy gave."""
        return redact_url(self.url) if self.from_policy else f'endpoint "{self.name}"'

    def open_to(self, namespace: str) -> bool:
        return not self.namespaces or namespace in self.namespaces


@dataclass(frozen=True, kw_only=True)
class PolicyUrlRule:
    """Policies in ``namespaces`` (empty: every namespace) may give a URL that one of ``prefixes`` admits
    (`config.urls.prefix_admits`)."""

    namespaces: tuple[str, ...] = ()
    prefixes: tuple[str, ...] = ()

    def open_to(self, namespace: str) -> bool:
        return not self.namespaces or namespace in self.namespaces


@dataclass(frozen=True, kw_only=True)
class EndpointSettings:
    """Every endpoint, the default's name, and the policy URL allow-list.

    ``any_policy_url`` admits every policy URL that passes the static checks: the in-process mode of
    tests and benchmarks, never set from a file or a flag."""

    endpoints: tuple[Endpoint, ...] = ()
    default: str | None = None
    policy_urls: tuple[PolicyUrlRule, ...] = ()
    any_policy_url: bool = False

    def find(self, name: str) -> Endpoint | None:
        return next((e for e in self.endpoints if e.name == name), None)


def single(url: str | None) -> EndpointSettings:
    """What ``--prometheus-url URL`` means: one endpoint named ``default`` (or none without a URL)."""
    if not url:
        return EndpointSettings()
    return EndpointSettings(endpoints=(Endpoint(name=DEFAULT_NAME, url=url),), default=DEFAULT_NAME)


def unrestricted(url: str | None = None) -> EndpointSettings:
    """In-process use without operator settings (tests, benchmarks): ``url`` as the default, and any
    policy URL that passes the static checks admitted."""
    return EndpointSettings(endpoints=single(url).endpoints, default=single(url).default, any_policy_url=True)


# -- the loader ------------------------------------------------------------------------------------------


def load_endpoints(content: str | bytes, *, source: str) -> EndpointSettings:
    """Parse and validate the endpoints file (see the module docstring)."""
    try:
        return _settings(read_yaml(content, limit=MAX_ENDPOINTS_BYTES))
    except PolicyError as exc:
        path = "" if exc.path == "policy.yaml" else exc.path
        raise PolicyError(exc.message, path=path, source=source) from exc
    except Exception as exc:  # a rule failing on odd input still refuses the file, never crashes
        raise PolicyError(f"cannot be read ({type(exc).__name__})", source=source) from exc


def _settings(data: Any) -> EndpointSettings:
    doc = _object(data, "", ("default", "endpoints", "policyUrls"))
    endpoints = tuple(
        _endpoint(item, f"endpoints[{i}]") for i, item in enumerate(_list(doc.get("endpoints"), "endpoints"))
    )
    if len(endpoints) > MAX_ENDPOINTS:
        raise PolicyError(f"at most {MAX_ENDPOINTS} endpoints; got {len(endpoints)}", path="endpoints")
    seen: set[str] = set()
    for i, e in enumerate(endpoints):
        if e.name in seen:
            raise PolicyError(f"endpoint {quoted(e.name)} is defined twice", path=f"endpoints[{i}].name")
        seen.add(e.name)
    default = doc.get("default")
    if default is not None:
        default = _string(default, "default")
        if default not in seen:
            raise PolicyError(f"no endpoint is named {quoted(default, QUOTE_LIMIT)}", path="default")
    rules = tuple(
        _rule(item, f"policyUrls[{i}]") for i, item in enumerate(_list(doc.get("policyUrls"), "policyUrls"))
    )
    if len(rules) > MAX_RULES:
        raise PolicyError(f"at most {MAX_RULES} entries; got {len(rules)}", path="policyUrls")
    return EndpointSettings(endpoints=endpoints, default=default, policy_urls=rules)


def _endpoint(data: Any, path: str) -> Endpoint:
    keys = ("name", "url", "timeout", "bearerTokenFile", "basicAuth", "caFile", "headers", "namespaces")
    doc = _object(data, path, keys)
    name = _string(doc.get("name"), f"{path}.name")
    if not _NAME.fullmatch(name):
        raise PolicyError(
            f"{quoted(name, QUOTE_LIMIT)} is not a DNS label (lower case letters, digits, '-')",
            path=f"{path}.name",
        )
    url = _string(doc.get("url"), f"{path}.url")
    problem = policy_url_problem(url)
    if problem is not None:
        raise PolicyError(f"{problem} ({quoted(redact_url(url), QUOTE_LIMIT)})", path=f"{path}.url")
    timeout: float | None = None
    if doc.get("timeout") is not None:
        text = _string(doc["timeout"], f"{path}.timeout")
        try:
            timeout = parse_duration(text)
        except ValueError as exc:
            raise PolicyError(f"not a duration: {quoted(text, QUOTE_LIMIT)}", path=f"{path}.timeout") from exc
        if not timeout > 0:
            raise PolicyError("must be greater than 0s", path=f"{path}.timeout")
    basic = None
    if doc.get("basicAuth") is not None:
        bpath = f"{path}.basicAuth"
        auth = _object(doc["basicAuth"], bpath, ("usernameFile", "passwordFile"))
        basic = BasicAuth(
            username_file=_file(auth.get("usernameFile"), f"{bpath}.usernameFile"),
            password_file=_file(auth.get("passwordFile"), f"{bpath}.passwordFile"),
        )
    return Endpoint(
        name=name,
        url=url,
        timeout=timeout,
        bearer_token_file=_optional_file(doc.get("bearerTokenFile"), f"{path}.bearerTokenFile"),
        basic_auth=basic,
        ca_file=_optional_file(doc.get("caFile"), f"{path}.caFile"),
        headers=_headers(doc.get("headers"), f"{path}.headers"),
        namespaces=_names(doc.get("namespaces"), f"{path}.namespaces"),
    )


def _rule(data: Any, path: str) -> PolicyUrlRule:
    doc = _object(data, path, ("namespaces", "prefixes"))
    prefixes = [_string(p, f"{path}.prefixes[{i}]") for i, p in enumerate(_list(doc.get("prefixes"), path))]
    if not prefixes:
        raise PolicyError("at least one prefix is required", path=f"{path}.prefixes")
    if len(prefixes) > MAX_ITEMS:
        raise PolicyError(f"at most {MAX_ITEMS} prefixes; got {len(prefixes)}", path=f"{path}.prefixes")
    for i, prefix in enumerate(prefixes):
        problem = policy_url_problem(prefix)
        if problem is not None:
            raise PolicyError(
                f"{problem} ({quoted(redact_url(prefix), QUOTE_LIMIT)})", path=f"{path}.prefixes[{i}]"
            )
    return PolicyUrlRule(
        namespaces=_names(doc.get("namespaces"), f"{path}.namespaces"), prefixes=tuple(prefixes)
    )


def _headers(data: Any, path: str) -> tuple[tuple[str, str], ...]:
    if data is None:
        return ()
    if not isinstance(data, Mapping):
        raise PolicyError(f"expected a mapping of header names to values, got {_kind(data)}", path=path)
    if len(data) > MAX_HEADERS:
        raise PolicyError(f"at most {MAX_HEADERS} headers; got {len(data)}", path=path)
    out: list[tuple[str, str]] = []
    for key, value in data.items():
        if not isinstance(key, str) or not _HEADER_NAME.fullmatch(key):
            raise PolicyError(f"not an HTTP header name: {quoted(str(key), QUOTE_LIMIT)}", path=path)
        hpath = f"{path}.{key}"
        if key.lower() in _RESERVED_HEADERS:
            raise PolicyError(
                f"{key} is set by Songbird (credentials go in bearerTokenFile or basicAuth)", path=hpath
            )
        if not isinstance(value, str):
            raise PolicyError(f'expected a string (quote it: {key}: "..."), got {_kind(value)}', path=hpath)
        # The value is not quoted in these messages: it may be a credential.
        if len(value) > HEADER_VALUE_MAX or not _HEADER_VALUE.fullmatch(value):
            raise PolicyError(
                f"a header value is at most {HEADER_VALUE_MAX} printable ASCII characters, on one line",
                path=hpath,
            )
        out.append((key, value))
    return tuple(out)


def _names(data: Any, path: str) -> tuple[str, ...]:
    names = tuple(_string(n, f"{path}[{i}]") for i, n in enumerate(_list(data, path)))
    if len(names) > MAX_ITEMS:
        raise PolicyError(f"at most {MAX_ITEMS} namespaces; got {len(names)}", path=path)
    for i, name in enumerate(names):
        if not _NAME.fullmatch(name):
            raise PolicyError(f"{quoted(name, QUOTE_LIMIT)} is not a namespace name", path=f"{path}[{i}]")
    return names


def _file(data: Any, path: str) -> str:
    text = _string(data, path)
    if not text.startswith("/") or len(text) > PATH_MAX or "\x00" in text:
        raise PolicyError("expected an absolute file path", path=path)
    return text


def _optional_file(data: Any, path: str) -> str | None:
    return None if data is None else _file(data, path)


def _object(data: Any, path: str, keys: tuple[str, ...]) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise PolicyError(f"expected a mapping, got {_kind(data)}", path=path or "(document)")
    for key in data:
        if key not in keys:
            where = f"{path}.{key}" if path else str(key)
            raise PolicyError(
                f"unknown key {quoted(str(key), QUOTE_LIMIT)} (known: {', '.join(keys)})",
                path=bounded(where, 200),
            )
    return data


def _list(data: Any, path: str) -> list[Any]:
    if data is None:
        return []
    if not isinstance(data, list):
        raise PolicyError(f"expected a list, got {_kind(data)}", path=path)
    return data


def _string(data: Any, path: str) -> str:
    if not isinstance(data, str) or not data:
        raise PolicyError(f"expected a non-empty string, got {_kind(data)}", path=path)
    return data


def _kind(data: Any) -> str:
    if data is None:
        return "nothing"
    if isinstance(data, bool):
        return "a boolean"
    return {dict: "a mapping", list: "a list", str: "a string", int: "a number", float: "a number"}.get(
        type(data), type(data).__name__
    )
