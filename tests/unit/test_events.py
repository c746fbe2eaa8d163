"""The Event body Songbird records (controller.events).

Covers: the Event names the object it is about (kind, namespace, name, uid, resourceVersion) and lands in
its namespace; reason, action and message are cut to the lengths core/v1 validation accepts when
eventTime is set (128 and 1024), with the reporting fields that validation requires; timestamps are RFC
3339 in UTC; a Warning is typed so; two Events about one object get different names.
"""

from __future__ import annotations

from songbird.controller.events import EVENT_REPORTER, event_body, rfc3339

POLICY = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"namespace": "shop", "name": "nginx", "uid": "u-1", "resourceVersion": "42"},
}
NOW = 1_767_225_600.25  # 2026-01-01T00:00:00.25Z


def test_an_event_names_its_object_and_lands_in_its_namespace() -> None:
    body = event_body(POLICY, reason="RolloutBlocked", message="m", warning=True, now=NOW, instance="pod-a")
    assert body["metadata"]["namespace"] == "shop"
    assert body["metadata"]["name"].startswith("nginx.")
    assert body["involvedObject"] == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "nginx",
        "namespace": "shop",
        "uid": "u-1",
        "resourceVersion": "42",
    }
    assert body["type"] == "Warning"
    assert body["reportingComponent"] == EVENT_REPORTER and body["reportingInstance"] == "pod-a"
    assert body["eventTime"] == "2026-01-01T00:00:00.250000Z"
    assert body["firstTimestamp"] == body["lastTimestamp"] == "2026-01-01T00:00:00Z"


def test_long_reasons_and_messages_are_cut_to_what_the_api_accepts() -> None:
    body = event_body(POLICY, reason="R" * 300, message="m" * 5000, warning=False, now=NOW, instance="p")
    assert len(body["reason"]) == len(body["action"]) == 128
    assert len(body["message"]) == 1024
    assert body["type"] == "Normal"


def test_two_events_about_one_object_get_different_names() -> None:
    a = event_body(POLICY, reason="R", message="m", warning=False, now=NOW, instance="p")
    b = event_body(POLICY, reason="R", message="m", warning=False, now=NOW, instance="p")
    assert a["metadata"]["name"] != b["metadata"]["name"]


def test_timestamps_are_utc() -> None:
    assert rfc3339(0.0) == "1970-01-01T00:00:00Z"
    assert rfc3339(0.5, micro=True) == "1970-01-01T00:00:00.500000Z"
