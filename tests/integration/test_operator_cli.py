"""The operator's commands as a user types them (real processes against the API emulator over real HTTP):
`songbird promote|promote --step|abort|pause|resume|retry NAME` each write exactly the contract's
`songbird.dev/command` annotation (a fresh id, the command, `step` for promote) as a JSON merge patch with
field manager `songbird-cli`, leaving the policy text untouched, and print the controller's answer: exit 0
executed, 1 refused, 2 not sent (no such policy, a ConfigMap that is not a policy, RBAC refusing the
patch: the API's message names the object), 3 no answer in time (the command stays pending on the
ConfigMap); `--output json` prints one JSON object in every case; `-n` and the kubeconfig context's
namespace; a command that replaces an unanswered one says so; `songbird status` lists the context
namespace's rollouts (`-A` every namespace's, `-n` one), exits 2 for a missing one, and with NAME shows
the paused flag and the last command; `songbird history NAME` the evaluations (text and JSON); and the
same entry point as a kubectl plugin (`kubectl songbird promote NAME`, the real kubectl binary finding
`kubectl-songbird` on PATH).

The controller side of commands is built on another branch: here a stand-in thread plays the controller,
answering each new command by writing `lastCommand` into the status as the contract says. A test with the
real controller is added once both branches are merged.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from songbird.analysis.state import STATUS_ANNOTATION
from tests.support.kube_emulator import KubeEmulator
from tests.support.world import BASE_POLICY, policy_configmap

COMMAND = "songbird.dev/command"
POLICY = BASE_POLICY.replace("PROM_URL", "http://prometheus:9090")
NAME, NS = "nginx-rollout", "default"
STATUS = {
    "phase": "Progressing",
    "step": 1,
    "weight": 20.0,
    "canary": "nginx-v2",
    "stable": "nginx-v1",
    "reason": "step 2/5 at 20%: 30s of 1m",
    "started_at": 1_700_000_000.0,
    "history": [
        {"at": 1_700_000_015.0, "step": 0, "weight": 10.0, "verdicts": "PI", "canary_requests": 40.0},
        {
            "at": 1_700_000_075.0,
            "step": 1,
            "weight": 20.0,
            "results": [
                {"name": "error-rate", "verdict": "PASS", "reason": "ratio 0.8", "canary_requests": 130.0},
                {"name": "latency", "verdict": "INCONCLUSIVE", "reason": "too few requests"},
            ],
        },
    ],
}


def songbird(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "songbird.controller.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def annotations(kube: KubeEmulator, name: str = NAME, namespace: str = NS) -> dict[str, str]:
    obj = kube.get("ConfigMap", namespace, name)
    assert obj is not None
    return dict(obj["metadata"].get("annotations") or {})


def seed(kube: KubeEmulator, *, namespace: str = NS, status: dict[str, Any] | None = None) -> None:
    cm = policy_configmap(POLICY, namespace=namespace)
    cm["metadata"]["annotations"] = {STATUS_ANNOTATION: json.dumps(status or STATUS)}
    kube.put("ConfigMap", namespace, cm)


class StandIn:
    """Plays the controller: answers each new command on the policy with ``lastCommand`` in the status."""

    def __init__(self, kube: KubeEmulator, *, result: str = "executed", namespace: str = NS) -> None:
        self.kube, self.result, self.namespace = kube, result, namespace
        self.seen: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> StandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        answered = ""
        while not self._stop.wait(0.05):
            obj = self.kube.get("ConfigMap", self.namespace, NAME)
            text = ((obj or {}).get("metadata", {}).get("annotations") or {}).get(COMMAND)
            if obj is None or not text or json.loads(text)["id"] == answered:
                continue
            command = json.loads(text)
            answered = command["id"]
            status = json.loads(obj["metadata"]["annotations"][STATUS_ANNOTATION])
            if (status.get("lastCommand") or {}).get("id") == command["id"]:
                continue  # answered before: a command runs once
            self.seen.append(command)
            display = command["command"] + (" --step" if command.get("step") else "")
            status["lastCommand"] = {
                "id": command["id"],
                "command": display,
                "at": "2026-12-01T19:00:00Z",
                "result": self.result,
                "message": f"{display} {self.result} at step 2/5",
                "by": "songbird-cli",
            }
            status["paused"] = command["command"] == "pause"
            obj["metadata"]["annotations"][STATUS_ANNOTATION] = json.dumps(status)
            self.kube.put("ConfigMap", self.namespace, obj)


@pytest.fixture
def kube() -> Iterator[KubeEmulator]:
    with KubeEmulator() as emulator:
        seed(emulator)
        yield emulator


CASES = [
    (["promote"], {"command": "promote", "step": False}, "promote"),
    (["promote", "--step"], {"command": "promote", "step": True}, "promote --step"),
    (["abort"], {"command": "abort"}, "abort"),
    (["pause"], {"command": "pause"}, "pause"),
    (["resume"], {"command": "resume"}, "resume"),
    (["retry"], {"command": "retry"}, "retry"),
]


def test_each_command_writes_the_contract_annotation_and_prints_the_answer(kube: KubeEmulator) -> None:
    policy_before = kube.get("ConfigMap", NS, NAME)["data"]  # type: ignore[index]
    ids = set()
    for argv, expected, display in CASES:
        kube.forget_requests()
        with StandIn(kube) as controller:
            result = songbird(*argv, NAME, "--kubeconfig", str(kube.kubeconfig_path), "--timeout", "10s")
        assert result.returncode == 0, result.stderr
        written = json.loads(annotations(kube)[COMMAND])
        assert set(written) == {"id", *expected}
        assert {k: v for k, v in written.items() if k != "id"} == expected
        assert re.fullmatch(r"[0-9a-f]{32}", written["id"]) and written["id"] not in ids
        ids.add(written["id"])
        assert controller.seen == [written]
        assert result.stdout == (
            f"default/nginx-rollout: {display} executed (asked by songbird-cli): "
            f"{display} executed at step 2/5\n"
        )
        patches = [r for r in kube.requests if r.method == "PATCH"]
        assert len(patches) == 1
        assert patches[0].body == {"metadata": {"annotations": {COMMAND: annotations(kube)[COMMAND]}}}
        assert patches[0].content_type == "application/merge-patch+json"
        assert patches[0].query.get("fieldManager") == "songbird-cli"
    assert kube.get("ConfigMap", NS, NAME)["data"] == policy_before  # type: ignore[index]


def test_a_refused_command_exits_1_and_json_is_one_object(kube: KubeEmulator) -> None:
    with StandIn(kube, result="refused"):
        result = songbird("retry", NAME, "--kubeconfig", str(kube.kubeconfig_path), "-o", "json")
    assert result.returncode == 1, result.stderr
    answer = json.loads(result.stdout)
    written = json.loads(annotations(kube)[COMMAND])
    assert answer == {
        "namespace": NS,
        "name": NAME,
        "id": written["id"],
        "command": "retry",
        "result": "refused",
        "message": "retry refused at step 2/5",
        "at": "2026-12-01T19:00:00Z",
        "by": "songbird-cli",
        "exitCode": 1,
    }


def test_no_answer_in_time_exits_3_and_the_command_stays_pending(kube: KubeEmulator) -> None:
    result = songbird("abort", NAME, "--kubeconfig", str(kube.kubeconfig_path), "--timeout", "1s")
    assert result.returncode == 3
    written = json.loads(annotations(kube)[COMMAND])
    assert "no answer from the controller within 1s" in result.stderr
    assert f"the command (id {written['id']}) stays pending" in result.stderr
    as_json = songbird(
        "pause", NAME, "--kubeconfig", str(kube.kubeconfig_path), "--timeout", "500ms", "-o", "json"
    )
    assert as_json.returncode == 3
    answer = json.loads(as_json.stdout)
    assert answer["result"] == "pending" and answer["exitCode"] == 3
    # The abort was never answered: the pause replaced it, and says so.
    assert answer["replaced"] == written["id"]
    assert json.loads(annotations(kube)[COMMAND])["command"] == "pause"


def test_unknown_policy_forbidden_and_not_a_policy_exit_2(kube: KubeEmulator) -> None:
    config = str(kube.kubeconfig_path)
    missing = songbird("promote", "nope", "--kubeconfig", config)
    assert missing.returncode == 2
    assert missing.stderr.strip() == "default/nope: promote: ConfigMap default/nope: not found"
    as_json = songbird("promote", "nope", "--kubeconfig", config, "-o", "json")
    assert as_json.returncode == 2
    assert json.loads(as_json.stdout)["result"] == "not-sent"

    plain = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "plain", "namespace": NS}}
    kube.put("ConfigMap", NS, plain)
    refused = songbird("abort", "plain", "--kubeconfig", config)
    assert refused.returncode == 2
    assert "ConfigMap default/plain is not a Songbird policy" in refused.stderr
    assert COMMAND not in annotations(kube, "plain")

    kube.fail("ConfigMap", status=403, method="PATCH", name=NAME)
    forbidden = songbird("pause", NAME, "--kubeconfig", config)
    assert forbidden.returncode == 2
    assert "the command was not written: ConfigMap default/nginx-rollout: injected fault: HTTP 403" in (
        forbidden.stderr
    )
    assert COMMAND not in annotations(kube)
    assert "Traceback" not in missing.stderr + refused.stderr + forbidden.stderr


def test_namespace_from_the_flag_and_from_the_kubeconfig_context(kube: KubeEmulator, tmp_path: Path) -> None:
    seed(kube, namespace="shop")
    with StandIn(kube, namespace="shop"):
        flagged = songbird("pause", NAME, "-n", "shop", "--kubeconfig", str(kube.kubeconfig_path))
    assert flagged.returncode == 0, flagged.stderr
    assert json.loads(annotations(kube, namespace="shop")[COMMAND])["command"] == "pause"
    config = json.loads(json.dumps(__import__("yaml").safe_load(kube.kubeconfig_path.read_text())))
    config["contexts"].append(
        {"name": "shop", "context": {**config["contexts"][0]["context"], "namespace": "shop"}}
    )
    shop_config = tmp_path / "kubeconfig"
    shop_config.write_text(json.dumps(config))
    with StandIn(kube, namespace="shop"):
        by_context = songbird("resume", NAME, "--kubeconfig", str(shop_config), "--context", "shop")
    assert by_context.returncode == 0, by_context.stderr
    assert json.loads(annotations(kube, namespace="shop")[COMMAND])["command"] == "resume"
    assert COMMAND not in annotations(kube)  # the default namespace's policy was never touched


def test_status_and_history_show_the_command_and_the_evaluations(kube: KubeEmulator) -> None:
    config = str(kube.kubeconfig_path)
    with StandIn(kube):
        assert songbird("pause", NAME, "--kubeconfig", config).returncode == 0
    view = songbird("status", NAME, "--kubeconfig", config)
    assert view.returncode == 0, view.stderr
    lines = view.stdout.splitlines()
    assert lines[0] == "default/nginx-rollout  Progressing  step 2/5  weight 20%  PAUSED"
    assert any(line.split()[:2] == ["error-rate", "PASS"] for line in lines)
    assert any(line.split()[:2] == ["latency", "INCONCLUSIVE"] for line in lines)
    assert lines[-1].startswith(
        "  last command: pause: executed at 2026-12-01T19:00:00Z by songbird-cli (id "
    )
    history = songbird("history", NAME, "--kubeconfig", config)
    assert history.returncode == 0, history.stderr
    rows = [line.split() for line in history.stdout.splitlines() if line.startswith("  2023-")]
    assert rows == [
        ["2023-11-14T22:13:35Z", "1", "10%", "PASS", "INCONCL", "40"],
        ["2023-11-14T22:14:35Z", "2", "20%", "PASS", "INCONCL", "130"],
    ]
    as_json = json.loads(songbird("history", NAME, "--kubeconfig", config, "-o", "json").stdout)
    assert [e["verdicts"] for e in as_json["evaluations"]] == [
        {"error-rate": "PASS", "latency": "INCONCLUSIVE"}
    ] * 2
    assert as_json["lastCommand"]["command"] == "pause"
    missing = songbird("history", "nope", "--kubeconfig", config)
    assert missing.returncode == 2 and "no Songbird policy named 'nope'" in missing.stderr


def test_kubectl_runs_it_as_a_plugin(kube: KubeEmulator) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed (make system-deps installs Debian's kubernetes-client)")
    bin_dir = Path(sys.executable).parent
    assert (bin_dir / "kubectl-songbird").exists(), "the kubectl-songbird console script is not installed"
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    with StandIn(kube):
        result = subprocess.run(
            [
                kubectl,
                "songbird",
                "promote",
                NAME,
                "--step",
                "--kubeconfig",
                str(kube.kubeconfig_path),
                "-o",
                "json",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env=env,
        )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["command"] == "promote --step"
    assert json.loads(annotations(kube)[COMMAND])["step"] is True
    usage = subprocess.run(
        [kubectl, "songbird", "promote", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert usage.returncode == 0 and usage.stdout.startswith("usage: kubectl songbird promote")


def test_status_scope_context_namespace_all_namespaces_and_a_missing_rollout(kube: KubeEmulator) -> None:
    config = str(kube.kubeconfig_path)
    seed(
        kube, namespace="shop", status={"phase": "Failed", "step": 4, "weight": 0.0, "reason": "rolled back"}
    )
    here = songbird("status", "--kubeconfig", config)
    assert here.returncode == 0, here.stderr
    assert [line.split()[0] for line in here.stdout.splitlines()[1:]] == ["default/nginx-rollout"]
    everywhere = songbird("status", "-A", "--kubeconfig", config, "-o", "json")
    assert {k: v["phase"] for k, v in json.loads(everywhere.stdout).items()} == {
        "default/nginx-rollout": "Progressing",
        "shop/nginx-rollout": "Failed",
    }
    shop = songbird("status", NAME, "-n", "shop", "--kubeconfig", config)
    assert shop.stdout.splitlines()[0] == "shop/nginx-rollout  Failed  step 5/5  weight 0%"
    missing = songbird("status", "nope", "--kubeconfig", config)
    assert missing.returncode == 2
    assert missing.stderr.strip() == "songbird: ConfigMap nope: no Songbird policy named 'nope' in default"
