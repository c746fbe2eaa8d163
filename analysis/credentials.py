"""The credentials one Prometheus query sends, read from the operator's files at the moment of the query.

`credentials` turns an operator `config.endpoints.Endpoint` into the request headers of one query:
``bearerTokenFile`` as ``Authorization: Bearer <token>``, ``basicAuth`` files (or the userinfo of the
``--prometheus-url`` shorthand) as ``Authorization: Basic``, and the endpoint's extra ``headers``. The files
are read every time (at most `SECRET_FILE_BYTES` each), so a rotated token is used from the next query on,
with no watch and no restart. It also returns every secret it put into a header, for `scrub`, which
replaces them in text that may reach a log (an upstream's body may echo a request).

Invariants: a credential only ever travels as a header value (never in a URL); an unreadable, empty,
oversized or non-UTF-8 file, or a token with characters a header cannot carry, is `SecretUnreadable`
whose message names the kind of file, never its content.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Final

from songbird.config.endpoints import Endpoint

SECRET_FILE_BYTES: Final = 16 * 1024  # a token or password file is read up to this size
_HEADER_SAFE: Final = re.compile(r"^[\x20-\x7e]*$")


class SecretUnreadable(Exception):
    """A credential file of the endpoint cannot be read or holds what a header cannot carry."""


def _read_secret(path: str, what: str) -> str:
    """A token or password file's text, surrounding whitespace removed (bounded; never shown)."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(SECRET_FILE_BYTES + 1)
    except OSError as exc:
        raise SecretUnreadable(f"cannot read its {what} file ({exc.strerror or type(exc).__name__})") from exc
    if len(raw) > SECRET_FILE_BYTES:
        raise SecretUnreadable(f"its {what} file is larger than {SECRET_FILE_BYTES:,} bytes")
    try:
        text = raw.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise SecretUnreadable(f"its {what} file is not UTF-8 text") from exc
    if not text:
        raise SecretUnreadable(f"its {what} file is empty")
    return text


@dataclass(frozen=True, kw_only=True)
class Credentials:
    """The headers one query sends, and the secrets in them (to redact from what is logged)."""

    headers: dict[str, str]
    secrets: tuple[str, ...]


def credentials(endpoint: Endpoint, url_auth: tuple[bytes, bytes] | None) -> Credentials:
    """The endpoint's authentication and extra headers, its files read now (token rotation)."""
    headers = dict(endpoint.headers)
    secrets = [value for _, value in endpoint.headers]
    user_pass: tuple[bytes, bytes] | None = url_auth
    if endpoint.basic_auth is not None:
        user = _read_secret(endpoint.basic_auth.username_file, "basic-auth username")
        password = _read_secret(endpoint.basic_auth.password_file, "basic-auth password")
        user_pass = (user.encode(), password.encode())
    if user_pass is not None:
        secrets.extend(part.decode("utf-8", "replace") for part in user_pass if part)
        token = base64.b64encode(b":".join(user_pass)).decode("ascii")
        headers["Authorization"] = f"Basic {token}"
        secrets.append(token)
    if endpoint.bearer_token_file is not None:
        token = _read_secret(endpoint.bearer_token_file, "bearer token")
        if not _HEADER_SAFE.fullmatch(token):
            raise SecretUnreadable("its bearer token file holds characters a header cannot carry")
        headers["Authorization"] = f"Bearer {token}"
        secrets.append(token)
    return Credentials(headers=headers, secrets=tuple(s for s in secrets if s))


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` with every secret (longest first) replaced by ``[redacted]``."""
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "[redacted]")
    return text
