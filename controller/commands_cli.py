"""``songbird promote|abort|pause|resume|retry NAME``: send an operator's command and wait for its answer.

The command is written as the ``songbird.dev/command`` annotation of the policy ConfigMap (see
`controller.command_request` for the contract) with the user's own kubeconfig, as a JSON merge patch with
field manager ``songbird-cli``: the API server's RBAC decides who may send it, and ``managedFields``
records who did. The policy text is never touched, so a GitOps sync of the unchanged policy keeps it.
Then the CLI reads the status until ``lastCommand.id`` is the id it wrote, and prints the answer.

Exit codes (`command_request.Exit`): 0 executed, 1 refused by the controller (the message says why),
2 not sent (no such policy, forbidden, API unreachable; the API's message names the object), 3 no answer
within ``--timeout`` (the command stays pending on the ConfigMap and runs when the controller gets to it).

Invariants: every API call has a timeout (`kube.ApiSettings`) and the wait ends at the deadline, give or
take one call's budget; ``--output json`` prints exactly one JSON object on stdout whatever the outcome.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from songbird.analysis.state import STATUS_ANNOTATION
from songbird.config.policy import POLICY_LABEL
from songbird.controller.command_request import (
    FIELD_MANAGER,
    Acknowledgement,
    CommandRequest,
    Exit,
    acknowledgement,
    pending_command,
    status_record,
)
from songbird.controller.errors import ClusterError, ClusterUnavailable
from songbird.controller.ports import Kind, Obj

POLL_SECONDS = 0.5


class PolicyStore(Protocol):
    """The two API calls a command needs (`controller.kube.KubeClient` has them)."""

    def get(self, kind: Kind, namespace: str, name: str) -> Obj | None: ...

    def patch(
        self,
        kind: Kind,
        namespace: str,
        name: str,
        patch: Mapping[str, Any],
        *,
        field_manager: str | None = None,
    ) -> Obj: ...


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """What happened to one command, as printed (text or JSON) and as the exit code."""

    namespace: str
    name: str
    request: CommandRequest
    exit: Exit
    message: str
    answer: Acknowledgement | None = None
    replaced: str | None = None  # id of an unanswered command the new one overwrote

    @property
    def result(self) -> str:
        if self.answer is not None:
            return self.answer.result
        return "pending" if self.exit is Exit.PENDING else "not-sent"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "namespace": self.namespace,
            "name": self.name,
            "id": self.request.id,
            "command": self.request.display,
            "result": self.result,
            "message": self.message,
            "exitCode": int(self.exit),
        }
        if self.answer is not None:
            out["at"] = self.answer.at
            out["by"] = self.answer.by
        if self.replaced:
            out["replaced"] = self.replaced
        return out

    def text(self) -> str:
        where = f"{self.namespace}/{self.name}"
        if self.answer is not None:
            by = f" (asked by {self.answer.by})" if self.answer.by else ""
            return f"{where}: {self.request.display} {self.answer.result}{by}: {self.message}"
        return f"{where}: {self.request.display}: {self.message}"


def send(
    store: PolicyStore,
    *,
    namespace: str,
    name: str,
    request: CommandRequest,
    timeout: float,
    monotonic: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Outcome:
    """Write ``request`` on the policy ``namespace/name`` and wait up to ``timeout`` seconds for the
    controller's answer. Never raises a `ClusterError`: failures are outcomes with exit code 2 (not sent)
    or 3 (sent, no answer)."""

    def outcome(code: Exit, message: str, **extra: Any) -> Outcome:
        return Outcome(namespace=namespace, name=name, request=request, exit=code, message=message, **extra)

    deadline = monotonic() + timeout
    try:
        configmap = store.get(Kind.CONFIGMAP, namespace, name)
    except ClusterError as exc:
        return outcome(Exit.NOT_SENT, f"cannot read the policy: {exc}")
    if configmap is None:
        return outcome(Exit.NOT_SENT, f"ConfigMap {namespace}/{name}: not found")
    labels = (configmap.get("metadata") or {}).get("labels") or {}
    if labels.get(POLICY_LABEL) != "true":
        return outcome(
            Exit.NOT_SENT,
            f"ConfigMap {namespace}/{name} is not a Songbird policy (no label {POLICY_LABEL}=true)",
        )
    before = pending_command(configmap)
    answered = acknowledgement(status_record(configmap, STATUS_ANNOTATION), before or "")
    replaced = before if before and answered is None else None
    try:
        store.patch(Kind.CONFIGMAP, namespace, name, request.patch(), field_manager=FIELD_MANAGER)
    except ClusterUnavailable as exc:
        return outcome(
            Exit.NOT_SENT,
            f"the command may not have been written (run `songbird status {name}` to see): {exc}",
            replaced=replaced,
        )
    except ClusterError as exc:
        return outcome(Exit.NOT_SENT, f"the command was not written: {exc}", replaced=replaced)
    last_error = ""
    while True:
        try:
            current = store.get(Kind.CONFIGMAP, namespace, name)
        except ClusterError as exc:  # keep waiting: the API may come back before the deadline
            current, last_error = None, str(exc)
        if current is not None:
            answer = acknowledgement(status_record(current, STATUS_ANNOTATION), request.id)
            if answer is not None:
                return outcome(answer.exit, answer.message or answer.result, answer=answer, replaced=replaced)
        left = deadline - monotonic()
        if left <= 0:
            break
        sleep(min(POLL_SECONDS, left))
    seen = f" (last API error: {last_error})" if last_error else ""
    return outcome(
        Exit.PENDING,
        f"no answer from the controller within {timeout:g}s; the command (id {request.id}) stays pending "
        f"on the policy and runs when the controller next reaches it; to cancel it: kubectl annotate "
        f"configmap -n {namespace} {name} songbird.dev/command-{seen}",
        replaced=replaced,
    )


def report(result: Outcome, *, output: str) -> int:
    """Print ``result`` (one JSON object, or a line on stdout for an answer and stderr otherwise)."""
    if output == "json":
        print(json.dumps(result.to_json(), sort_keys=True))
    else:
        if result.replaced:
            print(
                f"note: replaced the command {result.replaced} the controller had not answered yet",
                file=sys.stderr,
            )
        stream = sys.stdout if result.answer is not None else sys.stderr
        print(result.text(), file=stream)
    return int(result.exit)
