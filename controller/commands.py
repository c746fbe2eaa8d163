"""The operator's command as the controller finds it on a policy ConfigMap: the ``songbird.dev/command``
annotation (`config.command`), and who wrote it.

Who: the field manager of the newest ``metadata.managedFields`` entry whose ``fieldsV1`` owns
``f:metadata`` -> ``f:annotations`` -> ``f:songbird.dev/command`` (`requested_by`); the API server records
one per manager (kubectl's client-side ``kubectl annotate`` is ``kubectl-annotate``, a server-side apply
names its ``--field-manager``). None when there is no such entry (an API server that records none, or an
entry without ``fieldsV1``). Newest is by the entry's ``time`` (RFC 3339, second precision, all UTC, so
the strings compare as times); on a tie the later entry in the list wins.

The controller only reads the annotation: it never removes or changes it (a GitOps tool would see a
difference and put it back), and a command is taken up once, by its id (`analysis.command.pending`).
Pure functions over the object as read; no I/O.
"""

from __future__ import annotations

from typing import Any

from songbird.analysis.command import Request
from songbird.config.command import COMMAND_ANNOTATION, CommandError, parse_command, refused_id
from songbird.controller.ports import Obj

_FIELD = f"f:{COMMAND_ANNOTATION}"


def requested_by(configmap: Obj) -> str | None:
    """The field manager that last wrote the command annotation, or None when none is recorded."""
    meta = configmap.get("metadata") or {}
    entries = meta.get("managedFields") or []
    best: tuple[str, int] | None = None
    manager: str | None = None
    for i, entry in enumerate(entries if isinstance(entries, list) else []):
        if not isinstance(entry, dict) or not _owns_command(entry.get("fieldsV1")):
            continue
        key = (str(entry.get("time") or ""), i)
        if best is None or key >= best:
            best, name = key, entry.get("manager")
            manager = str(name) if isinstance(name, str) and name else None
    return manager


def _owns_command(fields: Any) -> bool:
    if not isinstance(fields, dict):
        return False
    meta = fields.get("f:metadata")
    annotations = meta.get("f:annotations") if isinstance(meta, dict) else None
    return isinstance(annotations, dict) and _FIELD in annotations


def read_request(configmap: Obj) -> Request | None:
    """The command on ``configmap``: parsed, or refused with the reason; None when there is none."""
    annotations = (configmap.get("metadata") or {}).get("annotations") or {}
    text = annotations.get(COMMAND_ANNOTATION)
    if text is None:
        return None
    by = requested_by(configmap)
    text = str(text)
    try:
        command = parse_command(text)
    except CommandError as exc:
        return Request(id=refused_id(text), command=None, problem=exc.message, by=by)
    return Request(id=command.id, command=command, by=by)


__all__ = ["read_request", "requested_by"]
