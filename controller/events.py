"""The core/v1 Event Songbird records about an object: its body, built from the object and the moment.

Pure: `KubeClient.event` sends what `event_body` returns. With ``eventTime`` set, core/v1 validation
requires ``reportingComponent``, ``reportingInstance`` and ``action``, and limits reason and action to 128
and the message to 1024 characters (kubernetes/kubernetes pkg/apis/core/validation/events.go,
legacyValidateEvent); the body keeps within those limits.
"""

from __future__ import annotations

import datetime
import secrets
from collections.abc import Mapping
from typing import Any

from songbird.controller.ports import Obj

EVENT_COMPONENT = "songbird"
EVENT_REPORTER = "songbird.dev/controller"


def rfc3339(epoch: float, *, micro: bool = False) -> str:
    """A UTC timestamp as the API writes it, with microseconds for ``eventTime``."""
    moment = datetime.datetime.fromtimestamp(epoch, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ")


def event_body(
    obj: Mapping[str, Any], *, reason: str, message: str, warning: bool, now: float, instance: str
) -> Obj:
    """The Event about ``obj`` (in its namespace, ``default`` for cluster-scoped objects)."""
    meta = obj.get("metadata") or {}
    namespace = meta.get("namespace") or "default"
    involved = {
        key: value
        for key, value in (
            ("apiVersion", obj.get("apiVersion")),
            ("kind", obj.get("kind")),
            ("name", meta.get("name")),
            ("namespace", meta.get("namespace")),
            ("uid", meta.get("uid")),
            ("resourceVersion", meta.get("resourceVersion")),
        )
        if value
    }
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": f"{meta.get('name') or 'songbird'}.{secrets.token_hex(8)}",
            "namespace": namespace,
        },
        "involvedObject": involved,
        "reason": reason[:128],
        "action": reason[:128],
        "message": message[:1024],
        "type": "Warning" if warning else "Normal",
        "source": {"component": EVENT_COMPONENT},
        "reportingComponent": EVENT_REPORTER,
        "reportingInstance": instance,
        "firstTimestamp": rfc3339(now),
        "lastTimestamp": rfc3339(now),
        "eventTime": rfc3339(now, micro=True),
        "count": 1,
    }
