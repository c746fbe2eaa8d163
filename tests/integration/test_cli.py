"""The `songbird` command line as a user types it (a real process): `validate` accepts a good policy file
and a ConfigMap manifest and refuses a bad one with the field path and exit code 1; `schema` prints the
committed JSON Schema; `status` reads the rollout status from a cluster (the API emulator) as a table and
as JSON; a bad kubeconfig is a clear error, not a stack trace."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from songbird.analysis.state import STATUS_ANNOTATION, Phase, RolloutState
from tests.support.kube_emulator import KubeEmulator
from tests.support.world import BASE_POLICY, policy_configmap

ROOT = Path(__file__).resolve().parents[2]


def songbird(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "songbird.controller.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_validate(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(BASE_POLICY.replace("PROM_URL", "http://prometheus:9090"))
    manifest = tmp_path / "cm.yaml"
    manifest.write_text(yaml.safe_dump(policy_configmap(good.read_text())))
    bad = tmp_path / "bad.yaml"
    bad.write_text(good.read_text().replace("steps: [10, 20, 40, 60, 80]", "steps: [10, 5]"))
    result = songbird("validate", str(good), str(manifest))
    assert result.returncode == 0 and result.stdout.splitlines() == [f"{good}: ok", f"{manifest}: ok"]
    result = songbird("validate", str(bad))
    assert result.returncode == 1
    assert result.stderr.strip() == f"{bad}: steps[1]: steps must be strictly increasing; 5 follows 10"


def test_schema_is_the_committed_one() -> None:
    result = songbird("schema")
    assert result.returncode == 0
    assert json.loads(result.stdout) == json.loads((ROOT / "config" / "policy.schema.json").read_text())


def test_status_reads_the_cluster() -> None:
    with KubeEmulator() as kube:
        cm = policy_configmap(BASE_POLICY)
        state = RolloutState(
            phase=Phase.PROGRESSING,
            step=1,
            weight=20.0,
            canary="nginx-v2",
            stable="nginx-v1",
            reason="step 2/5 at 20%: 30s of 1m",
        )
        cm["metadata"]["annotations"] = {STATUS_ANNOTATION: state.to_json()}
        kube.put("ConfigMap", "default", cm)
        table = songbird("status", "--kubeconfig", str(kube.kubeconfig_path))
        assert table.returncode == 0, table.stderr
        header, row = table.stdout.splitlines()
        assert header.split()[:4] == ["ROLLOUT", "PHASE", "STEP", "WEIGHT"]
        assert row.split()[:4] == ["default/nginx-rollout", "Progressing", "2", "20%"]
        assert row.endswith("step 2/5 at 20%: 30s of 1m")
        as_json = songbird("status", "--kubeconfig", str(kube.kubeconfig_path), "-o", "json")
        assert json.loads(as_json.stdout)["default/nginx-rollout"]["weight"] == 20.0


def test_bad_kubeconfig_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    result = songbird("status", "--kubeconfig", str(missing))
    assert result.returncode == 2
    assert (
        result.stderr.startswith("songbird: no usable Kubernetes configuration from ")
        and str(missing) in result.stderr
    )
    assert "Traceback" not in result.stderr
