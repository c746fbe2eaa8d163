"""An operator's command as the CLI writes it and reads its outcome back: pure, no I/O.

The contract with the controller (shared with the branch that executes commands):
- the CLI writes the policy ConfigMap's ``songbird.dev/command`` annotation: a JSON object of at most
  1 KiB, ``{"id": "<1-64 chars [A-Za-z0-9._:-]>", "command": "promote"|"abort"|"pause"|"resume"|"retry",
  "step": true|false}`` (``step`` only for promote); the controller refuses unknown keys;
- the controller answers in the status (``songbird.dev/status``) with ``lastCommand``: ``{"id", "command"
  (display form, e.g. ``promote --step``), "at", "result": "executed"|"refused", "message", "by"}``.
A fresh id per invocation is what keeps one command from being executed twice, and what tells the CLI
that the answer it reads is the answer to *its* command.

Invariants: a `CommandRequest` is valid by construction (the constructor refuses what the controller
would); `annotation` is at most ``COMMAND_LIMIT`` bytes; `acknowledgement` never raises on any status.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from songbird.config.command import COMMAND_ANNOTATION, COMMAND_LIMIT, COMMANDS, ID_PATTERN
from songbird.config.text import bounded

FIELD_MANAGER = "songbird-cli"


class Exit(IntEnum):
    """The CLI's exit codes for a command."""

    EXECUTED = 0
    REFUSED = 1
    NOT_SENT = 2  # usage, policy not found, forbidden, API unreachable: the command was not written
    PENDING = 3  # written, but the controller did not answer in time: it stays pending


@dataclass(frozen=True, kw_only=True)
class CommandRequest:
    id: str
    command: str
    step: bool = False

    def __post_init__(self) -> None:
        if self.command not in COMMANDS:
            raise ValueError(f"unknown command {self.command!r}; one of {', '.join(COMMANDS)}")
        if not re.fullmatch(ID_PATTERN, self.id):
            raise ValueError("a command id is 1 to 64 characters of A-Z a-z 0-9 . _ : -")
        if self.step and self.command != "promote":
            raise ValueError("--step applies to promote only")

    @classmethod
    def new(cls, command: str, *, step: bool = False) -> CommandRequest:
        """A request with a fresh random id (uuid4, 32 hex digits)."""
        return cls(id=uuid.uuid4().hex, command=command, step=step)

    @property
    def display(self) -> str:
        """As the user typed it and as the controller reports it: ``promote --step``."""
        return f"{self.command} --step" if self.step else self.command

    def annotation(self) -> str:
        body: dict[str, Any] = {"id": self.id, "command": self.command}
        if self.command == "promote":
            body["step"] = self.step
        text = json.dumps(body, separators=(",", ":"), sort_keys=True)
        assert len(text.encode()) <= COMMAND_LIMIT  # 64-char id and a fixed command name: < 120 bytes
        return text

    def patch(self) -> dict[str, Any]:
        """The JSON merge patch that writes the annotation and touches nothing else."""
        return {"metadata": {"annotations": {COMMAND_ANNOTATION: self.annotation()}}}


@dataclass(frozen=True, kw_only=True)
class Acknowledgement:
    """The controller's answer to one command, read from the status' ``lastCommand``."""

    id: str
    command: str
    result: str  # "executed" | "refused" (anything else is shown as it is and counts as refused)
    message: str
    at: str
    by: str | None

    @property
    def exit(self) -> Exit:
        return Exit.EXECUTED if self.result == "executed" else Exit.REFUSED


def status_record(configmap: Mapping[str, Any], annotation: str) -> dict[str, Any]:
    """The status annotation as a JSON dict; empty when absent or not a JSON object."""
    text = ((configmap.get("metadata") or {}).get("annotations") or {}).get(annotation)
    if not isinstance(text, str) or not text:
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def acknowledgement(status: Mapping[str, Any], request_id: str) -> Acknowledgement | None:
    """The answer to ``request_id`` if the status' ``lastCommand`` is it, else None (not yet)."""
    last = status.get("lastCommand")
    if not isinstance(last, Mapping) or last.get("id") != request_id:
        return None
    by = last.get("by")
    return Acknowledgement(
        id=request_id,
        command=bounded(str(last.get("command") or ""), 64),
        result=bounded(str(last.get("result") or ""), 32),
        message=bounded(str(last.get("message") or ""), 300),
        at=bounded(str(last.get("at") or ""), 64),
        by=bounded(str(by), 128) if by else None,
    )


def pending_command(configmap: Mapping[str, Any]) -> str | None:
    """The id of a command already in the annotation, if any (it is replaced by a new one)."""
    text = ((configmap.get("metadata") or {}).get("annotations") or {}).get(COMMAND_ANNOTATION)
    if not isinstance(text, str):
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    found = data.get("id") if isinstance(data, dict) else None
    return bounded(found, 64) if isinstance(found, str) else None
