"""One bad policy never affects another (issue 11): the daemon's discovery, against the API emulator, lists
every policy ConfigMap even when some hold hostile documents (a tag that cannot be read, a 400-digit
interval, an alias bomb, 1,000 levels of nesting, a non-string ``policy.yaml``), each bad one's tick is
refused with a Warning Event naming its field path, and the valid policy beside them starts its rollout."""

from __future__ import annotations

from songbird.analysis.state import Phase
from songbird.controller.daemon import Controller, Settings
from songbird.controller.reconciler import read_state
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


def test_bad_policies_are_reported_and_the_good_one_runs() -> None:
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

        controller = Controller(Settings(kubeconfig=str(kube.kubeconfig_path), leader_election=False))
        try:
            jobs = controller.discover()
            assert {job.name for job in jobs} == {"nginx-rollout", "not-text", *HOSTILE}
            for job in jobs:
                controller.tick(job.namespace, job.name)
        finally:
            controller.kube.close()

        warnings = {
            e["involvedObject"]["name"]: e["message"]
            for e in kube.events(namespace)
            if e.get("type") == "Warning" and e.get("reason") == "RolloutBlocked"
        }
        for name, (_, expected) in HOSTILE.items():
            assert f"ConfigMap {namespace}/{name}: invalid policy: {expected}" in warnings[name]
            assert len(warnings[name]) <= 1024
        assert "policy.yaml: not valid YAML" in warnings["not-text"]
        assert "nginx-rollout" not in warnings
        good = kube.get("ConfigMap", namespace, "nginx-rollout")
        assert good is not None and read_state(good).phase is not Phase.IDLE
