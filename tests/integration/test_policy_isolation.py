"""One bad policy never affects another (issue 11): the running daemon, against the API emulator, watches
every policy ConfigMap even when some hold hostile documents (a tag that cannot be read, a 400-digit
interval, an alias bomb, 1,000 levels of nesting, a non-string ``policy.yaml``), each bad one's tick is
refused with a Warning Event naming its field path, and the valid policy beside them starts its rollout."""

from __future__ import annotations

from pathlib import Path

from songbird.analysis.state import Phase
from songbird.controller.reconciler import read_state
from tests.integration.test_daemon import controller, wait_for
from tests.support import scenario
from tests.support.kube_emulator import KubeEmulator
from tests.support.world import BASE_POLICY, policy_configmap, seed

MINIMAL = "ingress: nginx\ncanary: {deployment: nginx-v2, service: nginx-v2}\nsteps: [50]\n"
HOSTILE = {
    "int-tag": (MINIMAL + "interval: !!int nginx\n", "policy.yaml: not valid YAML at line 4"),
    "digits": (MINIMAL + "interval: " + "9" * 400 + "s\n", "interval: invalid duration"),
    "total": (MINIMAL + "replicas: {total: " + "9" * 400 + "}\n", "replicas.total: must be at most 1000"),
    "bomb": ('a: &a ["x", "x"]\nb: &b [*a, *a]\nc: [*b, *b]\n', "policy.yaml: refused at line 1"),
    "deep": ("[" * 1000 + "]" * 1000, "policy.yaml: more than 100 brackets"),
}


def test_bad_policies_are_reported_and_the_good_one_runs(tmp_path: Path) -> None:
    namespace = scenario.NAMESPACE
    with KubeEmulator() as kube:
        seed(kube)
        kube.put(
            "ConfigMap", namespace, policy_configmap(BASE_POLICY.replace("PROM_URL", "http://127.0.0.1:9"))
        )
        for name, (text, _) in HOSTILE.items():
            kube.put("ConfigMap", namespace, policy_configmap(text, name=name))
        odd = policy_configmap("", name="not-text")
        odd["data"] = {"policy.yaml": "steps: [1"}
        kube.put("ConfigMap", namespace, odd)

        with controller(kube, "replica-a", tmp_path / "controller.log"):
            wait_for("every bad policy refused", lambda: len(blocked(kube, namespace)) == len(HOSTILE) + 1)
            wait_for("the valid rollout to start", lambda: started(kube, namespace))

        warnings = blocked(kube, namespace)
        for name, (_, expected) in HOSTILE.items():
            assert f"ConfigMap {namespace}/{name}: invalid policy: {expected}" in warnings[name]
            assert len(warnings[name]) <= 1024
        assert "policy.yaml: not valid YAML" in warnings["not-text"]
        assert "nginx-rollout" not in warnings
        assert started(kube, namespace)


def blocked(kube: KubeEmulator, namespace: str) -> dict[str, str]:
    return {
        e["involvedObject"]["name"]: e["message"]
        for e in kube.events(namespace)
        if e.get("type") == "Warning" and e.get("reason") == "RolloutBlocked"
    }


def started(kube: KubeEmulator, namespace: str) -> bool:
    good = kube.get("ConfigMap", namespace, "nginx-rollout")
    return good is not None and read_state(good).phase is not Phase.IDLE
