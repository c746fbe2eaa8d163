"""Bounded text: every message Songbird builds from text it did not write goes through `bounded`.

Text from outside (a Prometheus answer, a series label, a value in a policy document) can be of any length
and hold any characters. Copied whole into a status, an Event or a log line it can make every status write
fail (the API server refuses large objects), flood the logs, or forge extra log lines. So:

- `bounded` returns at most ``limit`` characters: longer text is cut and ends with ``...``; control
  characters (newlines, tabs, escapes, NUL) each become one space, so a message stays on one line.
- `quoted` is `bounded` inside double quotes, for a value shown within a sentence.

The limits Songbird uses are named here, so that every layer bounds the same way:
``LABEL_LIMIT`` (64) for one label name or value, ``REASON_LIMIT`` (300) for a reason derived from upstream
text, ``MESSAGE_LIMIT`` (1,000) for a whole error message. Pure, standard library only: the bottom layer,
importable by `config`, `analysis` and `controller` alike.
"""

from __future__ import annotations

import re

LABEL_LIMIT = 64
REASON_LIMIT = 300
MESSAGE_LIMIT = 1000
ELLIPSIS = "..."

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def bounded(text: str, limit: int = REASON_LIMIT) -> str:
    """``text`` on one line, at most ``limit`` characters (cut ones end with ``...``)."""
    if limit < len(ELLIPSIS):
        raise ValueError(f"limit must be at least {len(ELLIPSIS)}, got {limit}")
    # Cut before replacing, so a huge input costs no more than the kept part.
    head = text[: limit + 1]
    flat = _CONTROL.sub(" ", head)
    if len(text) <= limit:
        return flat
    return flat[: limit - len(ELLIPSIS)] + ELLIPSIS


def quoted(text: str, limit: int = LABEL_LIMIT) -> str:
    """``"text"``, bounded to ``limit`` characters inside the quotes (a double quote inside becomes ')."""
    return '"' + bounded(text, limit).replace('"', "'") + '"'
