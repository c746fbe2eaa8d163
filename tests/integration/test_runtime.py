"""The runtime's hard guarantees, with real `songbird run` processes against the API emulator.

Covers:
- SIGTERM with 25 policies whose ticks are all waiting on a silent Prometheus: the process exits 0 within
  10 s and releases the Lease;
- four policies with a huge ``analysis.prometheus.timeout`` against a silent endpoint (a socket that
  accepts and never answers) do not delay another policy on a healthy endpoint: its evaluations keep
  their cadence;
- a leader paused with SIGSTOP past its lease, while another replica takes over, never writes after it is
  resumed; it writes again only once it legitimately leads;
- in steady state (nothing changing) the controller makes no GET or LIST request outside leader election,
  and writes nothing (no status PATCH for an unchanged evaluation) while it keeps evaluating.
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.integration.test_daemon import controller, holder, wait_for
from tests.support.clusters import EmulatedCluster
from tests.support.kube_emulator import KubeEmulator
from tests.support.world import policy_configmap, seed

pytestmark = pytest.mark.slow

WRITES = {"PATCH", "POST", "PUT", "DELETE"}


def policy(url: str, *, timeout: str = "500ms", steps: str = "[50]") -> str:
    return f"""
ingress: nginx
canary: {{deployment: nginx-v2, service: nginx-v2}}
steps: {steps}
interval: 1h
analysis:
  prometheus: {{url: "{url}", timeout: {timeout}}}
  cadence: 1s
  window: 1s
  errorDeadline: 1h
"""


@contextmanager
def silent_endpoint() -> Iterator[str]:
    """A socket that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(128)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                held.append(conn)
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(2)
        for conn in held:
            conn.close()
        server.close()


class _Answering(http.server.BaseHTTPRequestHandler):
    times: list[float]

    def do_GET(self) -> None:
        self.times.append(time.monotonic())
        body = json.dumps({"status": "success", "data": {"resultType": "vector", "result": []}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        return


@contextmanager
def answering_endpoint() -> Iterator[tuple[str, list[float]]]:
    """An endpoint speaking Prometheus' query API that answers "no data" at once and records when."""
    times: list[float] = []
    handler = type("Handler", (_Answering,), {"times": times})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", times
    finally:
        server.shutdown()
        server.server_close()


def kubelet_all(kube: KubeEmulator, namespaces: list[str]) -> None:
    for namespace in namespaces:
        EmulatedCluster(kube, namespace).kubelet()


def test_sigterm_with_25_policies_in_flight_exits_within_10s(tmp_path: Path) -> None:
    namespaces = [f"team-{i:02d}" for i in range(25)]
    with KubeEmulator() as kube, silent_endpoint() as silent:
        seed(kube)
        for namespace in namespaces:
            seed(kube, namespace)
            cm = policy_configmap(policy(silent, timeout="1h"), namespace=namespace)
            kube.put("ConfigMap", namespace, cm)
        with controller(
            kube,
            "replica-a",
            tmp_path / "a.log",
            "--prometheus-max-timeout",
            "60",
            namespaces="",
            policy_urls=(silent,),
        ) as proc:
            wait_for("a leader", lambda: holder(kube) == "replica-a")
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:  # until every rollout has started and waits on Prometheus
                kubelet_all(kube, namespaces)
                started = [n for n in namespaces if kube.get("Ingress", n, "nginx-canary") is not None]
                if len(started) == len(namespaces):
                    break
                time.sleep(0.3)
            time.sleep(2)  # ticks now evaluate, each waiting on the silent endpoint
            began = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=15) == 0
            took = time.monotonic() - began
        assert took < 10, f"SIGTERM took {took:.1f}s"
        assert holder(kube) == "", "the Lease was not released"


def test_a_silent_prometheus_does_not_delay_other_rollouts(tmp_path: Path) -> None:
    slow = [f"slow-{i}" for i in range(4)]
    with KubeEmulator() as kube, silent_endpoint() as silent, answering_endpoint() as (healthy, times):
        seed(kube)
        for namespace in slow:
            seed(kube, namespace)
            kube.put(
                "ConfigMap", namespace, policy_configmap(policy(silent, timeout="1h"), namespace=namespace)
            )
        seed(kube, "fast")
        kube.put("ConfigMap", "fast", policy_configmap(policy(healthy), namespace="fast"))
        with controller(
            kube,
            "replica-a",
            tmp_path / "a.log",
            "--workers",
            "4",
            "--prometheus-max-timeout",
            "60",
            "--tick-deadline",
            "2",
            namespaces="",
            policy_urls=(silent, healthy),
        ):
            wait_for("a leader", lambda: holder(kube) == "replica-a")
            began = time.monotonic()
            while time.monotonic() < began + 14:
                kubelet_all(kube, [*slow, "fast"])
                time.sleep(0.3)
        window = [t for t in times if t > began + 6]  # once every rollout is evaluating
        assert window, "the healthy endpoint was never queried"
        gaps = [b - a for a, b in zip([began + 6, *window], [*window, began + 14], strict=True)]
        # Cadence 1 s, ticks every 1/3 s: with the silent endpoint holding only its own rollouts, the
        # healthy one is evaluated at least every 2 s.
        assert max(gaps) < 2.0, f"the healthy rollout waited {max(gaps):.1f}s between evaluations"


def test_a_paused_leader_never_writes_after_its_lease_expired(tmp_path: Path) -> None:
    timing = ("--lease-duration", "4", "--renew-deadline", "3", "--retry-period", "0.5")
    with KubeEmulator() as kube, silent_endpoint() as silent:
        seed(kube)
        kube.put("Namespace", None, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other"}})
        kube.put("ConfigMap", "default", policy_configmap(policy(silent)))
        # a manages the default namespace; b, which shares the Lease, manages another one: every write to
        # the default namespace (Leases aside) can only come from a.
        with controller(kube, "replica-a", tmp_path / "a.log", *timing, policy_urls=(silent,)) as a:
            wait_for("a to lead", lambda: holder(kube) == "replica-a")
            wait_for("a to start the rollout", lambda: kube.get("Ingress", "default", "nginx-canary"))
            with controller(
                kube, "replica-b", tmp_path / "b.log", *timing, namespaces="other", policy_urls=(silent,)
            ) as b:
                time.sleep(1)
                os.kill(a.pid, signal.SIGSTOP)
                wait_for("b to take over", lambda: holder(kube) == "replica-b", timeout=20)
                # What a leader would act on at once: the policy becomes invalid (a status write and an
                # Event), and the canary Deployment changes.
                kube.put(
                    "ConfigMap",
                    "default",
                    policy_configmap(policy(silent).replace("steps: [50]", "steps: [0]")),
                )
                kube.forget_requests()
                os.kill(a.pid, signal.SIGCONT)
                time.sleep(5)
                writes = [
                    r
                    for r in kube.requests
                    if r.method in WRITES and r.namespace == "default" and r.resource != "leases"
                ]
                assert writes == [], [(r.method, r.resource, r.name) for r in writes]
                assert holder(kube) == "replica-b"
                b.send_signal(signal.SIGTERM)
                assert b.wait(timeout=15) == 0
            # Once b released the Lease, a leads and acts on the invalid policy.
            wait_for("a to lead again", lambda: holder(kube) == "replica-a", timeout=15)
            blocked = wait_for(
                "a to report the policy error",
                lambda: [e for e in kube.events("default") if e.get("reason") == "RolloutBlocked"],
            )
            assert {e.get("reportingInstance") for e in blocked} == {"replica-a"}


def test_no_get_or_list_in_steady_state(tmp_path: Path) -> None:
    with KubeEmulator() as kube, answering_endpoint() as (healthy, queried):
        seed(kube)
        kube.put("ConfigMap", "default", policy_configmap(policy(healthy)))
        with controller(kube, "replica-a", tmp_path / "a.log", policy_urls=(healthy,)):
            wait_for("a to lead", lambda: holder(kube) == "replica-a")
            deadline = time.monotonic() + 8
            while time.monotonic() < deadline:  # the rollout starts and settles (hold at step 1)
                EmulatedCluster(kube).kubelet()
                time.sleep(0.3)
            kube.forget_requests()
            evaluated = len(queried)
            time.sleep(5)  # 15 ticks, 5 evaluations
            assert len(queried) > evaluated  # the rollout kept being evaluated
            reads = [r for r in kube.requests if r.verb in ("get", "list") and r.resource != "leases"]
            assert reads == [], [(r.verb, r.resource, r.name) for r in reads]
            # Unchanged evaluations (the same INCONCLUSIVE verdicts) write no status, nor anything else.
            writes = [
                r
                for r in kube.requests
                if r.verb in ("create", "patch", "update", "delete") and r.resource != "leases"
            ]
            assert writes == [], [(r.verb, r.resource, r.name) for r in writes]
            assert [r for r in kube.requests if r.verb == "watch"] == []  # the streams stay open
