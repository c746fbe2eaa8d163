"""The controller's OCI image as `make image` builds it (no base image pulled), run by the real podman.

Covers:
- `make image` tags ``localhost/songbird:<pyproject version>``; its configuration is what the Helm chart
  expects: entrypoint ``songbird``, command ``run``, user 65532:65532, working directory /, the version in
  the org.opencontainers.image.version label;
- ``songbird --version`` in the container prints pyproject's version;
- ``songbird run`` in the container, as uid 65532 on a read-only root filesystem with the host's network,
  drives a rollout against the API emulator on the host's 127.0.0.1 to its first step: the canary Ingress
  carries the first step's weight and the policy's status annotation says Progressing, step 1; SIGTERM
  (``podman stop``) ends it with exit code 0.

The first build downloads the Debian root (minutes); later ones reuse it from build/image/. podman reads
scripts/containers/*.conf (runc, ulimits within the host's limits), as the build does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from songbird.analysis.state import Phase, RolloutState
from songbird.controller.reconciler import read_state
from tests.support.kube_emulator import KubeEmulator
from tests.support.world import POLICY_NAME, policy_configmap, seed

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parents[2]
VERSION: str = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
IMAGE = f"localhost/songbird:{VERSION}"
PODMAN_ENV = {
    **os.environ,
    "CONTAINERS_CONF": str(ROOT / "scripts" / "containers" / "containers.conf"),
    "CONTAINERS_STORAGE_CONF": str(ROOT / "scripts" / "containers" / "storage.conf"),
}
NAMESPACE = "default"
FIRST_STEP = 20
POLICY = f"""
ingress: nginx
canary: {{deployment: nginx-v2, service: nginx-v2}}
steps: [{FIRST_STEP}, 60]
interval: 1h
analysis:
  prometheus: {{url: "http://127.0.0.1:9", timeout: 500ms}}
  cadence: 1s
  window: 1s
  errorDeadline: 1h
"""


def podman(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", *args], env=PODMAN_ENV, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def image() -> str:
    """Builds the image with `make image` (which installs mmdebstrap, buildah and podman when missing)."""
    build = subprocess.run(
        ["make", "-C", str(ROOT), "image"], capture_output=True, text=True, timeout=1500, check=False
    )
    assert build.returncode == 0, f"make image failed:\n{build.stdout[-4000:]}\n{build.stderr[-4000:]}"
    assert shutil.which("podman"), "make image did not install podman"
    return IMAGE


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


def test_the_image_is_configured_as_the_chart_expects(image: str) -> None:
    inspected = podman(
        "image",
        "inspect",
        "--format",
        "{{json .Config.Entrypoint}} {{json .Config.Cmd}} {{.Config.User}} {{.Config.WorkingDir}} "
        '{{index .Labels "org.opencontainers.image.version"}}',
        image,
    )
    assert inspected.returncode == 0, inspected.stderr
    assert inspected.stdout.split() == ['["songbird"]', '["run"]', "65532:65532", "/", VERSION]


def test_version_prints_the_pyproject_version(image: str) -> None:
    result = podman("run", "--rm", "--read-only", image, "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"songbird {VERSION}"


def kubelet(kube: KubeEmulator) -> None:
    """Plays the kubelet: every Deployment's replicas become ready."""
    for dep in kube.list("Deployment", NAMESPACE):
        replicas = dep["spec"].get("replicas", 1)
        if dep.get("status", {}).get("readyReplicas") != replicas:
            dep["status"] = {"replicas": replicas, "readyReplicas": replicas}
            kube.put("Deployment", NAMESPACE, dep)


def rollout_state(kube: KubeEmulator) -> RolloutState | None:
    cm = kube.get("ConfigMap", NAMESPACE, POLICY_NAME)
    return None if cm is None else read_state(cm)


@pytest.fixture
def container_name() -> Iterator[str]:
    name = f"songbird-image-test-{os.getpid()}"
    yield name
    podman("rm", "--force", "--ignore", name)


def test_run_in_the_container_drives_a_rollout_to_its_first_step(
    image: str, tmp_path: Path, container_name: str
) -> None:
    with KubeEmulator() as kube:
        seed(kube)
        kube.put("ConfigMap", NAMESPACE, policy_configmap(POLICY))
        # The file alone is mounted, readable by the container's uid (the emulator's directory is private).
        kubeconfig = tmp_path / "kubeconfig"
        shutil.copyfile(kube.kubeconfig_path, kubeconfig)
        kubeconfig.chmod(0o644)
        log = tmp_path / "container.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [
                    "podman",
                    "run",
                    "--rm",
                    "--name",
                    container_name,
                    "--network=host",
                    "--read-only",
                    "--user",
                    "65532:65532",
                    "--env",
                    "POD_NAME=songbird-image-test",
                    "--volume",
                    f"{kubeconfig}:/etc/songbird/kubeconfig:ro",
                    image,
                    "run",
                    "--kubeconfig",
                    "/etc/songbird/kubeconfig",
                    "--namespaces",
                    NAMESPACE,
                    "--metrics-address",
                    "127.0.0.1:0",
                    "--lease-namespace",
                    NAMESPACE,
                    "--resync",
                    "1",
                    "--prometheus-url",
                    "http://127.0.0.1:9",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=PODMAN_ENV,
            )
            try:

                def first_step() -> RolloutState | None:
                    assert proc.poll() is None, f"the container exited:\n{log.read_text()}"
                    kubelet(kube)
                    state = rollout_state(kube)
                    return state if state is not None and state.phase is Phase.PROGRESSING else None

                state = wait_for("the rollout's first step", first_step, timeout=90)
                assert (state.step, state.weight) == (0, FIRST_STEP)
                canary = kube.get("Ingress", NAMESPACE, "nginx-canary")
                assert canary is not None
                annotations = canary["metadata"]["annotations"]
                assert annotations["nginx.ingress.kubernetes.io/canary-weight"] == str(FIRST_STEP)
                lease = kube.get("Lease", NAMESPACE, "songbird-leader")
                assert lease is not None and lease["spec"]["holderIdentity"] == "songbird-image-test"

                stopped = podman("stop", "--time", "15", container_name, timeout=60)
                assert stopped.returncode == 0, stopped.stderr
                assert proc.wait(timeout=30) == 0, log.read_text()
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(timeout=30)
