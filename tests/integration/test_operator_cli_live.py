"""The operator's commands end to end: the real CLI (`songbird pause|resume|abort|retry|promote NAME`) against
a real controller process (`songbird run`), both talking to the API emulator over real HTTP.

Covers: each command is executed by the controller and acknowledged to the waiting CLI (exit 0, the
controller's answer printed, the status' phase and weight changed as the command says); a command that
does not apply to the phase is refused (exit 1, the reason printed, nothing changed); the CLI's
field manager is what the controller names as who asked when the API server records managedFields (the
emulator records none, so here "an unknown manager" is expected and asserted).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from songbird.analysis.state import Phase
from songbird.controller.reconciler import read_state
from tests.integration.test_daemon import controller, kubelet, wait_for
from tests.support.kube_emulator import KubeEmulator
from tests.support.world import POLICY_NAME, policy_configmap, seed

pytestmark = pytest.mark.slow

# Prometheus never answers (127.0.0.1:9): the analysis is ERROR, so the rollout holds at its first weight
# for an hour and only the commands move it.
POLICY = """
ingress: nginx
canary: {deployment: nginx-v2, service: nginx-v2}
steps: [10, 50]
interval: 1h
analysis:
  prometheus: {url: "http://127.0.0.1:9", timeout: 500ms}
  cadence: 1s
  window: 1s
  errorDeadline: 1h
promotion: {scaleDownDelay: 0s}
"""


def songbird(kube: KubeEmulator, *args: str) -> subprocess.CompletedProcess[str]:
    flags = ("-n", "default", "--kubeconfig", str(kube.kubeconfig_path), "--timeout", "30s", "-o", "json")
    return subprocess.run(
        [sys.executable, "-m", "songbird.controller.cli", *args, POLICY_NAME, *flags],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def running(tmp_path: Path) -> Iterator[KubeEmulator]:
    """A controller driving the policy, with a stand-in kubelet making pods ready."""
    with KubeEmulator() as kube:
        seed(kube)
        kube.put("ConfigMap", "default", policy_configmap(POLICY))
        stop = threading.Event()

        def pods() -> None:
            while not stop.wait(0.2):
                kubelet(kube)

        thread = threading.Thread(target=pods, daemon=True)
        thread.start()
        try:
            with controller(kube, "cli-live", tmp_path / "controller.log"):
                yield kube
        finally:
            stop.set()
            thread.join(timeout=5)


def state(kube: KubeEmulator) -> tuple[Phase, float, bool]:
    cm = kube.get("ConfigMap", "default", POLICY_NAME)
    assert cm is not None
    current = read_state(cm)
    return current.phase, current.weight, current.paused


def test_commands_from_the_cli_are_executed_by_the_controller(running: KubeEmulator) -> None:
    kube = running
    wait_for("the rollout at its first weight", lambda: state(kube)[:2] == (Phase.PROGRESSING, 10.0), 60)

    resume = songbird(kube, "resume")
    assert resume.returncode == 1, resume.stderr
    refused = json.loads(resume.stdout)
    assert refused["result"] == "refused" and refused["command"] == "resume"
    assert "not paused" in refused["message"]
    assert state(kube)[:2] == (Phase.PROGRESSING, 10.0)

    pause = songbird(kube, "pause")
    assert pause.returncode == 0, pause.stderr
    assert json.loads(pause.stdout)["result"] == "executed"
    assert state(kube)[1:] == (10.0, True)

    resumed = songbird(kube, "resume")
    assert resumed.returncode == 0, resumed.stderr
    assert state(kube)[1:] == (10.0, False)

    # 50% needs more canary pods than 10%: the command is executed at once, the canary is scaled up, and
    # the weight follows when the pods are ready.
    step = songbird(kube, "promote", "--step")
    assert step.returncode == 0, step.stderr
    assert json.loads(step.stdout)["result"] == "executed"
    wait_for("the next weight after promote --step", lambda: state(kube)[:2] == (Phase.PROGRESSING, 50.0), 30)

    abort = songbird(kube, "abort")
    assert abort.returncode == 0, abort.stderr
    answer = json.loads(abort.stdout)
    assert answer["result"] == "executed"
    assert answer["message"] == "aborted by an unknown manager" and answer["by"] is None
    wait_for("the abort to end in Failed at weight 0", lambda: state(kube)[:2] == (Phase.FAILED, 0.0), 30)
    assert kube.get("Ingress", "default", "nginx-canary") is None

    retry = songbird(kube, "retry")
    assert retry.returncode == 0, retry.stderr
    wait_for(
        "the retried rollout at its first weight", lambda: state(kube)[:2] == (Phase.PROGRESSING, 10.0), 60
    )

    again = songbird(kube, "retry")
    assert again.returncode == 1, again.stderr
    assert "only a Failed rollout can be retried" in json.loads(again.stdout)["message"]
