"""`songbird run` as a user starts it: real processes with the real CLI, a kubeconfig pointing at the API
emulator. Two replicas share one Lease: only the leader writes (every Event it emits names it as the
reporting instance); SIGTERM stops the leader cleanly (exit code 0, Lease released) and the standby takes
over at once and acts; the JSON log has one line per decision with the promised fields."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.support.kube_emulator import KubeEmulator
from tests.support.world import policy_configmap, seed

pytestmark = pytest.mark.slow

POLICY = """
ingress: nginx
canary: {deployment: nginx-v2, service: nginx-v2}
steps: [50]
interval: 2s
analysis:
  prometheus: {url: "http://127.0.0.1:9", timeout: 500ms}
  cadence: 1s
  window: 1s
  errorDeadline: 1h
"""


def wait_for(what: str, check: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


@contextmanager
def controller(
    kube: KubeEmulator,
    identity: str,
    log: Path,
    *extra: str,
    namespaces: str = "default",
    policy_urls: tuple[str, ...] = ("http://127.0.0.1:9/",),
) -> Iterator[subprocess.Popen[bytes]]:
    """`songbird run` as a process against the emulator, with ``extra`` flags; killed on exit (resumed
    first, in case a test stopped it with SIGSTOP). Unless ``extra`` names the Prometheus endpoints, an
    endpoints file beside ``log`` makes ``http://127.0.0.1:9`` the default and lets policies in every
    namespace give the ``policy_urls``."""
    if not {"--prometheus-url", "--prometheus-endpoints"} & set(extra):
        endpoints = log.with_suffix(".endpoints.yaml")
        endpoints.write_text(
            json.dumps(
                {
                    "default": "default",
                    "endpoints": [{"name": "default", "url": "http://127.0.0.1:9"}],
                    "policyUrls": [{"prefixes": list(policy_urls)}],
                }
            )
        )
        extra = ("--prometheus-endpoints", str(endpoints), *extra)
    env = {**os.environ, "POD_NAME": identity}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "songbird.controller.cli",
                "run",
                "--kubeconfig",
                str(kube.kubeconfig_path),
                "--namespaces",
                namespaces,
                "--metrics-address",
                "127.0.0.1:0",
                "--lease-namespace",
                "default",
                "--resync",
                "1",
                "--log-level",
                "info",
                *extra,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)
                proc.kill()
                proc.wait(timeout=10)


def holder(kube: KubeEmulator) -> str | None:
    lease = kube.get("Lease", "default", "songbird-leader")
    return None if lease is None else lease.get("spec", {}).get("holderIdentity")


def kubelet(kube: KubeEmulator) -> None:
    for dep in kube.list("Deployment", "default"):
        replicas = dep["spec"].get("replicas", 1)
        if dep.get("status", {}).get("readyReplicas") != replicas:
            dep["status"] = {"replicas": replicas, "readyReplicas": replicas}
            kube.put("Deployment", "default", dep)


def test_two_replicas_one_leader_and_a_clean_handover(tmp_path: Path) -> None:
    with KubeEmulator() as kube:
        seed(kube)
        kube.put("ConfigMap", "default", policy_configmap(POLICY))
        with controller(kube, "replica-a", tmp_path / "a.log") as a:
            leader = wait_for("a leader", lambda: holder(kube))
            assert leader == "replica-a"
            with controller(kube, "replica-b", tmp_path / "b.log") as b:
                # The leader starts the rollout; the standby only watches.
                wait_for("the rollout to start", lambda: kube.get("Ingress", "default", "nginx-canary"))
                deadline = time.monotonic() + 6
                while time.monotonic() < deadline:
                    kubelet(kube)
                    time.sleep(0.3)
                events = kube.events("default")
                assert events and {e.get("reportingInstance") for e in events} == {"replica-a"}
                assert holder(kube) == "replica-a"

                a.send_signal(signal.SIGTERM)
                assert a.wait(timeout=15) == 0
                # Released on the way out, so the standby takes over without waiting out the lease.
                wait_for("the standby to lead", lambda: holder(kube) == "replica-b", timeout=10)
                # The new leader acts: a broken policy is reported by it.
                kube.put(
                    "ConfigMap", "default", policy_configmap(POLICY.replace("steps: [50]", "steps: [0]"))
                )
                blocked = wait_for(
                    "replica-b to report the policy error",
                    lambda: [e for e in kube.events("default") if e.get("reason") == "RolloutBlocked"],
                )
                assert {e.get("reportingInstance") for e in blocked} == {"replica-b"}
                assert "steps[0]" in blocked[0]["message"]
                b.send_signal(signal.SIGTERM)
                assert b.wait(timeout=15) == 0

        lines = [json.loads(x) for x in (tmp_path / "a.log").read_text().splitlines() if x.startswith("{")]
        decisions = [x for x in lines if x.get("event") == "decision"]
        assert decisions, "no decision logged"
        for field in ("rollout", "step", "weight", "verdicts", "action", "reason", "phase", "timestamp"):
            assert field in decisions[0], field
        assert decisions[0]["rollout"] == "default/nginx-rollout"
        assert any(x.get("event") == "songbird stopped" for x in lines)
