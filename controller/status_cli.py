"""``songbird status [NAME] [--watch]`` and ``songbird history NAME``: the rollout status, read from the
cluster with the user's kubeconfig and drawn by the pure renderer `analysis.status_view`.

Without NAME, a table of the policies in the namespace (``-A``: all namespaces); with NAME, the detailed
view of one rollout. ``--watch`` redraws in place (ANSI: cursor home, clear screen) once a second until
Ctrl-C, which ends it with exit code 0. A failed read never ends or freezes the watch: each read has a
short timeout (`WATCH_API`), the last view stays on screen and a line says since when the API server is
unreachable and why.

Exit codes: 0 shown; 2 the rollout does not exist, or the cluster could not be read (without --watch).
``--output json`` prints the status records as JSON (the annotation as the controller wrote it, so keys
this CLI does not know yet are kept): one object, or with ``--watch`` one object per line on each change.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TextIO

from songbird.analysis.state import STATUS_ANNOTATION
from songbird.analysis.status_view import history_rows, render_history, render_status, render_table
from songbird.config.errors import PolicyError
from songbird.config.loader import load_policy_configmap
from songbird.config.policy import POLICY_LABEL
from songbird.config.text import bounded
from songbird.controller.command_request import status_record
from songbird.controller.errors import ClusterError, NotFound
from songbird.controller.ports import Kind, Obj

CLEAR = "\x1b[H\x1b[2J"
REFRESH_SECONDS = 1.0


class PolicyLister(Protocol):
    """The reads the views need (`controller.kube.KubeClient` has them)."""

    def get(self, kind: Kind, namespace: str, name: str) -> Obj | None: ...

    def list_policies(self, namespaces: Sequence[str] | None) -> list[Obj]: ...


@dataclass(frozen=True, kw_only=True)
class Query:
    """Which rollouts to show: one by name, the policies of some namespaces, or all (None)."""

    name: str | None
    namespaces: Sequence[str] | None


@dataclass(frozen=True, kw_only=True)
class Rollout:
    key: str  # namespace/name
    status: dict[str, Any]
    steps: int | None  # from the policy, when it loads


def _steps(configmap: Obj) -> int | None:
    try:
        return len(load_policy_configmap(configmap).steps)
    except PolicyError:
        return None


def read(cluster: PolicyLister, query: Query) -> list[Rollout]:
    """The rollouts ``query`` names; `NotFound` when a named one does not exist."""
    found = []
    if query.name and query.namespaces and len(query.namespaces) == 1:  # one GET, not a LIST
        one = cluster.get(Kind.CONFIGMAP, query.namespaces[0], query.name)
        labels = ((one or {}).get("metadata") or {}).get("labels") or {}
        configmaps = [one] if one is not None and labels.get(POLICY_LABEL) == "true" else []
    else:
        configmaps = cluster.list_policies(query.namespaces)
    for cm in configmaps:
        meta = cm.get("metadata") or {}
        if query.name and meta.get("name") != query.name:
            continue
        found.append(
            Rollout(
                key=f"{meta.get('namespace')}/{meta.get('name')}",
                status=status_record(cm, STATUS_ANNOTATION),
                steps=_steps(cm),
            )
        )
    if query.name and not found:
        where = ", ".join(query.namespaces) if query.namespaces else "any namespace"
        raise NotFound(f"no Songbird policy named {query.name!r} in {where}", obj=f"ConfigMap {query.name}")
    return found


def lines(rollouts: Sequence[Rollout], query: Query, *, now: float) -> list[str]:
    if query.name:
        return [line for r in rollouts for line in render_status(r.key, r.status, now=now, steps=r.steps)]
    if not rollouts:
        return ["no Songbird policies found"]
    return render_table([(r.key, r.status) for r in rollouts])


def as_json(rollouts: Sequence[Rollout]) -> str:
    return json.dumps({r.key: r.status for r in rollouts}, sort_keys=True)


def show(cluster: PolicyLister, query: Query, *, output: str, now: float, out: TextIO) -> int:
    rollouts = read(cluster, query)
    if output == "json":
        print(as_json(rollouts), file=out)
    else:
        print("\n".join(lines(rollouts, query, now=now)), file=out)
    return 0


def history(cluster: PolicyLister, query: Query, *, output: str, now: float, out: TextIO) -> int:
    (rollout,) = read(cluster, query)[:1]
    if output == "json":
        record = {
            "rollout": rollout.key,
            "phase": rollout.status.get("phase", "Idle"),
            "evaluations": history_rows(rollout.status),
            "lastCommand": rollout.status.get("lastCommand"),
        }
        print(json.dumps(record, sort_keys=True), file=out)
    else:
        print("\n".join(render_history(rollout.key, rollout.status, now=now, steps=rollout.steps)), file=out)
    return 0


def watch(
    cluster: PolicyLister,
    query: Query,
    *,
    output: str,
    out: TextIO,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Redraw until Ctrl-C (exit 0). JSON output prints a line per change instead of redrawing."""
    shown: list[str] = []
    last_json = ""
    down_since: float | None = None
    try:
        while True:
            now = clock()
            problem = ""
            try:
                rollouts = read(cluster, query)
                down_since = None
                if output == "json":
                    text = as_json(rollouts)
                    if text != last_json:
                        print(text, file=out, flush=True)
                        last_json = text
                else:
                    shown = lines(rollouts, query, now=now)
            except NotFound as exc:
                shown, problem = [], bounded(str(exc), 300)
            except ClusterError as exc:
                down_since = now if down_since is None else down_since
                since = time.strftime("%H:%M:%S", time.localtime(down_since))
                problem = f"API server unreachable since {since}: {bounded(str(exc), 300)}; retrying"
            if output == "json":
                if problem:
                    print(json.dumps({"error": problem}), file=sys.stderr, flush=True)
            else:
                stamp = time.strftime("%H:%M:%S", time.localtime(now))
                footer = [problem] if problem else []
                out.write(
                    CLEAR
                    + "\n".join([*shown, *footer, f"every {REFRESH_SECONDS:g}s at {stamp}; Ctrl-C ends"])
                )
                out.write("\n")
                out.flush()
            sleep(REFRESH_SECONDS)
    except KeyboardInterrupt:
        if output != "json":
            out.write("\n")
        return 0
