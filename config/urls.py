"""Prometheus base URLs: how one is shown, what a policy may give, and whether an allow-list admits it.

Three pure functions, the only places that take a Prometheus URL apart:
- `redact_url`: the form of a URL that may be shown anywhere (a status, an Event, a log line): scheme, host,
  port and path only. Userinfo (``user:password@``), the query and the fragment are dropped, whatever they
  hold; a URL that cannot be parsed is shown as ``<unparsable URL>``, never as given.
- `policy_url_problem`: what the policy loader refuses statically in ``analysis.prometheus.url``: any
  scheme other than http/https, no host, userinfo, a ``?`` query, a ``#`` fragment, a bad port, spaces or
  control characters, a backslash (read as a path separator by some clients, as a host by others),
  percent-encoding (``%2e%2e`` would hide a ``..`` from the prefix check).
- `prefix_admits`: an operator allow-list entry admits a URL only when scheme, host and port are equal (the
  default port made explicit) and the URL's path starts with the entry's path. The comparison is on the
  parsed parts, so ``http://allowed:9090@other`` (userinfo tricks) or ``http://allowed.evil`` never pass.

Invariant: total (no exception for any string), no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final
from urllib.parse import SplitResult, urlsplit

SCHEMES: Final = ("http", "https")
_DEFAULT_PORT: Final = {"http": 80, "https": 443}
_BAD_CHARACTERS: Final = re.compile(r"[\s\\\x00-\x1f\x7f]")
UNPARSABLE: Final = "<unparsable URL>"


@dataclass(frozen=True, kw_only=True)
class Origin:
    """The parsed parts of an http(s) URL that decide where a request goes, and its path."""

    scheme: str
    host: str
    port: int
    path: str


def _split(url: str) -> SplitResult | None:
    try:
        parts = urlsplit(url)
        _ = parts.port  # a bad port raises here
    except ValueError:
        return None
    return parts


def redact_url(url: str) -> str:
    """``url`` without userinfo, query or fragment (see the module docstring)."""
    parts = _split(url)
    if parts is None or not parts.scheme:
        return UNPARSABLE
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}{parts.path}"


def origin(url: str) -> Origin | None:
    """Scheme, host (lower case), port (the scheme's default when none is written) and path of an http(s)
    URL, or None when it is not one."""
    parts = _split(url)
    if parts is None or parts.scheme not in SCHEMES or not parts.hostname:
        return None
    port = parts.port if parts.port is not None else _DEFAULT_PORT[parts.scheme]
    return Origin(scheme=parts.scheme, host=parts.hostname.lower(), port=port, path=parts.path or "/")


def policy_url_problem(url: str) -> str | None:
    """Why a policy may not give ``url`` as its Prometheus, or None (see the module docstring)."""
    if _BAD_CHARACTERS.search(url):
        return "a URL may not hold spaces, control characters or backslashes"
    parts = _split(url)
    if parts is None:
        return "not a URL (bad host or port)"
    if parts.scheme not in SCHEMES:
        return "only http:// and https:// URLs are allowed"
    if not parts.hostname:
        return "the URL has no host"
    if "@" in parts.netloc:
        return (
            "credentials (user:password@) are not allowed in the URL; an operator endpoint's bearer token "
            "or basic auth carries them"
        )
    if "?" in url:
        return "a query (?) is not allowed in a Prometheus base URL"
    if "#" in url:
        return "a fragment (#) is not allowed in a Prometheus base URL"
    if "%" in url:
        return "percent-encoding (%) is not allowed in a Prometheus base URL"
    return None


def prefix_admits(prefix: str, url: str) -> bool:
    """Whether the allow-list entry ``prefix`` admits ``url`` (see the module docstring). A URL with a
    static problem (`policy_url_problem`) is never admitted."""
    if policy_url_problem(url) is not None:
        return False
    want, have = origin(prefix), origin(url)
    if want is None or have is None:
        return False
    if (want.scheme, want.host, want.port) != (have.scheme, have.host, have.port):
        return False
    if ".." in have.path.split("/"):
        return False
    return have.path.startswith(want.path) or have.path + "/" == want.path


def same_url(a: str, b: str) -> bool:
    """Two base URLs naming the same place (origin equal, paths equal but for a trailing slash)."""
    one, two = origin(a), origin(b)
    if one is None or two is None:
        return False
    return (one.scheme, one.host, one.port, one.path.rstrip("/")) == (
        two.scheme,
        two.host,
        two.port,
        two.path.rstrip("/"),
    )
