"""The operator's command: the ``songbird.dev/command`` annotation of a policy ConfigMap, parsed.

A command is written beside the policy, never into it, so a GitOps sync of the unchanged policy neither
runs nor undoes it. The annotation is a JSON object of at most `COMMAND_LIMIT` bytes::

    {"id": "<1-64 chars [A-Za-z0-9._:-]>", "command": "promote"|"abort"|"pause"|"resume"|"retry",
     "step": true|false}

``step`` is for ``promote`` only (default false: skip every remaining step). Unknown keys are refused.

Invariant: `parse_command` is total: for any text it returns a `Command` or raises `CommandError` whose
message says what is wrong (at most `config.text.REASON_LIMIT` characters); never another exception.
A text that is refused still has an identity (`refused_id`), so the controller refuses it once, not on
every tick. Pure, standard library only.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any, Final, Literal

from songbird.config.errors import SongbirdError
from songbird.config.text import bounded, quoted

QUOTE_LIMIT_SHORT: Final = 40

COMMAND_ANNOTATION: Final = "songbird.dev/command"
COMMAND_LIMIT: Final = 1024  # bytes of the annotation's value
ID_PATTERN: Final = r"[A-Za-z0-9._:-]{1,64}"
COMMANDS: Final = ("promote", "abort", "pause", "resume", "retry")
_KEYS: Final = ("command", "id", "step")

CommandName = Literal["promote", "abort", "pause", "resume", "retry"]


class CommandError(SongbirdError):
    """The command annotation cannot be executed as written (the message says why)."""

    def __init__(self, message: str) -> None:
        super().__init__(bounded(message))
        self.message = bounded(message)


@dataclass(frozen=True, kw_only=True)
class Command:
    id: str
    command: CommandName
    step: bool = False

    @property
    def display(self) -> str:
        """How a person writes it: ``promote --step``, ``abort``..."""
        return f"{self.command} --step" if self.step else self.command


def refused_id(text: str) -> str:
    """The identity of a command text that was refused: stable for the same text, never a valid command's
    id by accident of the same text (it is derived from the whole text), and within `ID_PATTERN`."""
    return "invalid:" + hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:16]


def _name(value: Any) -> str:
    if isinstance(value, str):
        return quoted(value, QUOTE_LIMIT_SHORT)
    return type(value).__name__ if value is not None else "null"


def parse_command(text: str) -> Command:
    """The command in the annotation's ``text``, or `CommandError`."""
    size = len(text.encode("utf-8", "replace"))
    if size > COMMAND_LIMIT:
        raise CommandError(f"at most {COMMAND_LIMIT} bytes; got {size:,}")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise CommandError(f"not JSON ({bounded(str(exc), 80)})") from exc
    if not isinstance(data, dict):
        raise CommandError(f"expected a JSON object, got {type(data).__name__}")
    unknown = sorted(k for k in data if k not in _KEYS)
    if unknown:
        raise CommandError(f"unknown key {quoted(unknown[0], QUOTE_LIMIT_SHORT)} (known: {', '.join(_KEYS)})")
    ident, name, step = data.get("id"), data.get("command"), data.get("step", False)
    if not isinstance(ident, str) or not re.fullmatch(ID_PATTERN, ident):
        raise CommandError(f"id must be 1 to 64 characters of [A-Za-z0-9._:-]; got {_name(ident)}")
    if name not in COMMANDS:
        raise CommandError(f"command must be one of {', '.join(COMMANDS)}; got {_name(name)}")
    if not isinstance(step, bool):
        raise CommandError(f"step must be true or false; got {_name(step)}")
    if step and name != "promote":
        raise CommandError(f"step is for promote only; got it with {name}")
    return Command(id=ident, command=name, step=step)


__all__ = [
    "COMMANDS",
    "COMMAND_ANNOTATION",
    "COMMAND_LIMIT",
    "Command",
    "CommandError",
    "CommandName",
    "parse_command",
    "refused_id",
]
