"""Nothing secret leaves (issue 12): a ``songbird run`` process whose Prometheus needs credentials, behind
an upstream that fails with a body holding a marker and the credentials themselves. Every output of the run
is searched: the controller's log (stdout and stderr), every Event, the status annotation, /metrics.

Covers:
- userinfo in ``--prometheus-url`` (at info level): neither the user, the password nor the marker appear
  anywhere, while the credentials were sent (the upstream saw them) and the status says what failed
  (``HTTP 503 from Prometheus (unavailable)``, the endpoint by name);
- a bearer token file and an ``X-Scope-OrgID`` header from ``--prometheus-endpoints`` (at debug level,
  where the upstream body is logged for the operator): neither secret appears anywhere, and the marker
  appears in no Event, status or metric.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from tests.integration.test_daemon import controller, wait_for
from tests.support import scenario
from tests.support.kube_emulator import KubeEmulator
from tests.support.listeners import Listener, Reply
from tests.support.prom_server import free_port
from tests.support.world import BASE_POLICY, policy_configmap, seed

NAMESPACE = scenario.NAMESPACE
MARKER = "MARKER-7f3a-upstream-body"
PASSWORD = "Pw-9c1d-secret"
USER = "user-4be2"
TOKEN = "tok-2e8b-secret"
ORG = "org-51aa-secret"
POLICY = BASE_POLICY.replace("prometheus: {url: PROM_URL, timeout: 2s}", "prometheus: {timeout: 2s}")


def failing(secrets: list[str]) -> Reply:
    body = {"status": "error", "errorType": "unavailable", "error": f"{MARKER} {' '.join(secrets)}"}
    return Reply(status=503, body=json.dumps(body).encode())


def outputs(kube: KubeEmulator, log: Path, metrics: str) -> dict[str, str]:
    configmap = kube.get("ConfigMap", NAMESPACE, "nginx-rollout")
    assert configmap is not None
    return {
        "log": log.read_text(errors="replace"),
        "events": json.dumps(kube.events(NAMESPACE)),
        "status": configmap["metadata"]["annotations"]["songbird.dev/status"],
        "metrics": metrics,
    }


def status_says(kube: KubeEmulator, words: str) -> bool:
    configmap = kube.get("ConfigMap", NAMESPACE, "nginx-rollout") or {}
    return words in ((configmap.get("metadata") or {}).get("annotations") or {}).get(
        "songbird.dev/status", ""
    )


def run(kube: KubeEmulator, log: Path, *flags: str) -> str:
    port = free_port()
    with controller(kube, "redaction", log, "--metrics-address", f"127.0.0.1:{port}", *flags):
        wait_for("the failure recorded", lambda: status_says(kube, "HTTP 503 from Prometheus (unavailable)"))
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            return str(answer.read().decode())


def test_userinfo_in_the_url_is_used_and_never_shown(tmp_path: Path) -> None:
    with KubeEmulator() as kube, Listener("127.0.0.2", reply=failing([USER, PASSWORD])) as upstream:
        seed(kube)
        kube.put("ConfigMap", NAMESPACE, policy_configmap(POLICY))
        url = f"http://{USER}:{PASSWORD}@127.0.0.2:{upstream.port}"
        log = tmp_path / "controller.log"
        metrics = run(kube, log, "--prometheus-url", url, "--log-level", "info")
        assert upstream.requests and upstream.requests[0].headers["Authorization"].startswith("Basic ")
        found = outputs(kube, log, metrics)
        assert (
            'endpoint \\"default\\"/api/v1/query: HTTP 503 from Prometheus (unavailable)' in found["status"]
        )
        for where, text in found.items():
            for secret in (USER, PASSWORD, MARKER):
                assert secret not in text, f"{secret} in the {where}"


def test_token_and_header_values_are_used_and_never_shown(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text(TOKEN)
    with KubeEmulator() as kube, Listener("127.0.0.2", reply=failing([TOKEN, ORG])) as upstream:
        seed(kube)
        kube.put("ConfigMap", NAMESPACE, policy_configmap(POLICY))
        endpoints = tmp_path / "endpoints.yaml"
        endpoints.write_text(
            "default: main\n"
            f"endpoints: [{{name: main, url: '{upstream.url}', bearerTokenFile: '{token}', "
            f"headers: {{X-Scope-OrgID: {ORG}}}}}]\n"
        )
        log = tmp_path / "controller.log"
        metrics = run(kube, log, "--prometheus-endpoints", str(endpoints), "--log-level", "debug")
        seen = upstream.requests[0].headers
        assert (seen["Authorization"], seen["X-Scope-OrgID"]) == (f"Bearer {TOKEN}", ORG)
        found = outputs(kube, log, metrics)
        for where, text in found.items():
            for secret in (TOKEN, ORG):
                assert secret not in text, f"{secret} in the {where}"
            if where != "log":
                assert MARKER not in text, f"the upstream body in the {where}"
        assert MARKER in found["log"]  # at debug level, for the operator, with the secrets redacted
        assert "[redacted]" in found["log"]
