"""The ``songbird.dev/command`` annotation (`config.command`) and who wrote it (`controller.commands`).

Covers: each valid command parsed, with its display form; each way a text is refused (not JSON, not an
object, an unknown key, a bad id, an unknown command, ``step`` not a boolean or with another command, over
1 KiB) with a message naming the problem; the parser is total (Hypothesis: any text, and any JSON value,
gives a `Command` or a `CommandError`, never another exception); a refused text has a stable identity
within the id pattern; the field manager is the newest managedFields entry owning the annotation, None when
none does."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from songbird.config.command import (
    COMMAND_LIMIT,
    ID_PATTERN,
    Command,
    CommandError,
    parse_command,
    refused_id,
)
from songbird.controller.commands import read_request, requested_by


@pytest.mark.parametrize(
    ("text", "display"),
    [
        ('{"id": "a1", "command": "promote"}', "promote"),
        ('{"id": "a1", "command": "promote", "step": true}', "promote --step"),
        ('{"id": "2026-12-01T19:00:00Z.x", "command": "abort", "step": false}', "abort"),
        ('{"id": "p", "command": "pause"}', "pause"),
        ('{"id": "r", "command": "resume"}', "resume"),
        ('{"id": "t", "command": "retry"}', "retry"),
    ],
)
def test_valid_commands(text: str, display: str) -> None:
    command = parse_command(text)
    assert command.display == display
    assert command.id == json.loads(text)["id"]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("promote", "not JSON"),
        ('["promote"]', "expected a JSON object, got list"),
        ('{"id": "a", "command": "abort", "force": true}', 'unknown key "force"'),
        ('{"command": "abort"}', "id must be 1 to 64 characters"),
        ('{"id": "", "command": "abort"}', "id must be 1 to 64 characters"),
        ('{"id": "a b", "command": "abort"}', 'got "a b"'),
        ('{"id": "' + "x" * 65 + '", "command": "abort"}', "id must be 1 to 64"),
        ('{"id": 7, "command": "abort"}', "got int"),
        (
            '{"id": "a", "command": "rollback"}',
            'command must be one of promote, abort, pause, resume, retry; got "rollback"',
        ),
        ('{"id": "a", "command": "promote", "step": "yes"}', 'step must be true or false; got "yes"'),
        ('{"id": "a", "command": "abort", "step": true}', "step is for promote only; got it with abort"),
        ('{"id": "a", "command": "abort", "pad": "' + "x" * COMMAND_LIMIT + '"}', "at most 1024 bytes"),
    ],
)
def test_refused_commands_say_why(text: str, problem: str) -> None:
    with pytest.raises(CommandError) as caught:
        parse_command(text)
    assert problem in caught.value.message


def _total(text: str) -> None:
    try:
        command = parse_command(text)
    except CommandError as exc:
        assert 0 < len(exc.message) <= 300
        ident = refused_id(text)
        assert re.fullmatch(ID_PATTERN, ident) and ident == refused_id(text)
    else:
        assert isinstance(command, Command) and re.fullmatch(ID_PATTERN, command.id)
        assert len(text.encode()) <= COMMAND_LIMIT


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=70),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
near_commands = st.fixed_dictionaries(
    {"id": st.one_of(st.from_regex(ID_PATTERN, fullmatch=True), json_values)},
    optional={
        "command": st.one_of(st.sampled_from(["promote", "abort", "pause", "resume", "retry"]), json_values),
        "step": json_values,
        "extra": json_values,
    },
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=2000), json_values.map(json.dumps), near_commands.map(json.dumps)))
def test_the_parser_is_total(text: str) -> None:
    _total(text)


def _entry(manager: str, time: str, *, command: bool) -> dict[str, object]:
    annotations: dict[str, object] = {"f:songbird.dev/status": {}}
    if command:
        annotations["f:songbird.dev/command"] = {}
    return {
        "manager": manager,
        "operation": "Update",
        "apiVersion": "v1",
        "time": time,
        "fieldsType": "FieldsV1",
        "fieldsV1": {"f:metadata": {"f:annotations": annotations}},
    }


def test_the_newest_manager_of_the_annotation_asked() -> None:
    cm = {
        "metadata": {
            "annotations": {"songbird.dev/command": '{"id": "x", "command": "abort"}'},
            "managedFields": [
                _entry("kubectl-annotate", "2026-12-01T10:00:00Z", command=True),
                _entry("songbird", "2026-12-01T12:00:00Z", command=False),  # newer, but not the command
                _entry("songbird-cli", "2026-12-01T11:00:00Z", command=True),
                _entry("argocd-controller", "2026-12-01T09:00:00Z", command=True),
            ],
        }
    }
    assert requested_by(cm) == "songbird-cli"
    request = read_request(cm)
    assert request is not None and request.by == "songbird-cli" and request.display == "abort"


def test_no_manager_recorded_is_none() -> None:
    cm = {"metadata": {"annotations": {"songbird.dev/command": "{"}}}
    assert requested_by(cm) is None
    request = read_request(cm)
    assert request is not None and request.command is None and request.who == "an unknown manager"
    assert request.id == refused_id("{") and "not JSON" in request.problem
    assert read_request({"metadata": {"annotations": {}}}) is None
    odd = {"metadata": {"managedFields": [{"manager": "x"}, "junk", {"fieldsV1": {"f:metadata": 3}}]}}
    assert requested_by(odd) is None
