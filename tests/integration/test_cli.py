"""The `songbird` command line as a user types it (a real process): `validate` accepts a good policy file
and a ConfigMap manifest and refuses a bad one with the field path and exit code 1 (custom PromQL that
does not parse, or that reaches another namespace than the manifest's), and refuses every
hostile file (broken YAML, an alias bomb, deep nesting, bad tags, huge numbers, binary bytes, an empty
file, a missing file, a directory) with one line naming the file and the field, never a traceback; `bench
robustness --quick` runs the generated-policy campaign and reports no failure; `schema` prints the
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


def test_validate_checks_custom_promql_and_scopes_a_manifest_to_its_namespace(tmp_path: Path) -> None:
    """A query that does not parse is refused in any file; one reaching another namespace is refused when
    the file is a ConfigMap manifest naming its namespace, on the label given by --namespace-label."""
    metric = "    - {name: error-rate, max: 0.02}\n"
    text = BASE_POLICY.replace("PROM_URL", "http://prometheus:9090")
    broken = tmp_path / "broken.yaml"
    broken.write_text(text.replace(metric, metric + "    - {name: hits, max: 5, query: 'sum(rate(x[1m])'}\n"))
    result = songbird("validate", str(broken))
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"{broken}: analysis.metrics[1].query: not valid PromQL: unclosed left parenthesis"
    )
    foreign = text.replace(metric, metric + "    - {name: hits, max: 5, query: 'sum(x{namespace=\"b\"})'}\n")
    manifest = tmp_path / "cm.yaml"
    configmap = policy_configmap(foreign)
    assert configmap["metadata"]["namespace"] != "b"
    manifest.write_text(yaml.safe_dump(configmap))
    result = songbird("validate", str(manifest))
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f'{manifest}: analysis.metrics[1].query: the matcher namespace="b" reaches beyond this policy\'s '
        f'namespace; a query may only read namespace="{configmap["metadata"]["namespace"]}" (added to every '
        "selector when absent)"
    )
    result = songbird("validate", "--namespace-label", "kubernetes_namespace", str(manifest))
    assert result.returncode == 0, result.stderr
    result = songbird("validate", "--namespace-label", "__name__", str(manifest))
    assert result.returncode == 2
    assert "is not a Prometheus label name" in result.stderr
    result = songbird("run", "--namespace-label", "kubernetes-namespace")  # refused before any connection
    assert result.returncode == 2
    assert (
        'argument --namespace-label: "kubernetes-namespace" is not a Prometheus label name' in result.stderr
    )


MINIMAL = "ingress: nginx\ncanary: {deployment: v2, service: v2}\nsteps: [50]\n"
HOSTILE: dict[str, tuple[bytes, str]] = {
    # file name: (content, the field path the error names)
    "broken.yaml": (b"{a: 1\n", "policy.yaml: not valid YAML at line 2, column 1"),
    "empty.yaml": (b"", "policy.yaml: the policy is empty"),
    "binary.yaml": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "policy.yaml: not UTF-8 text"),
    "nul.yaml": (b"ingress: \x00", "policy.yaml: not valid YAML"),
    "bomb.yaml": (b'a: &a ["x", "x"]\nb: &b [*a, *a]\nc: [*b, *b]\n', "policy.yaml: refused at line 1"),
    "deep.yaml": (b"[" * 5000 + b"]" * 5000, "policy.yaml: more than 100 brackets"),
    "deep-block.yaml": (b"- " * 100, "policy.yaml: refused at line 1, column 41: nested deeper than 20"),
    "int-tag.yaml": (MINIMAL.encode() + b"interval: !!int nginx\n", "policy.yaml: not valid YAML at line 4"),
    "python.yaml": (MINIMAL.encode() + b"x: !!python/name:os.system\n", "policy.yaml: refused at line 4"),
    "digits.yaml": (MINIMAL.encode() + b"replicas: {total: " + b"9" * 400 + b"}\n", "replicas.total: "),
    "interval.yaml": (MINIMAL.encode() + b"interval: " + b"9" * 400 + b"s\n", "interval: invalid duration"),
    "labels.yaml": (
        MINIMAL.encode() + b"placement: {nodeSelector: {a b: c}}\n",
        "placement.nodeSelector.a b",
    ),
    "no-metrics.yaml": (MINIMAL.encode() + b"analysis: {metrics: []}\n", "analysis.metrics: "),
    "huge.yaml": (MINIMAL.encode() + b"#" * (2 * 1024 * 1024), "policy.yaml: the document has"),
    "manifest.yaml": (
        b"kind: ConfigMap\ndata: {policy.yaml: 'steps: [1'}\n",
        "policy.yaml: not valid YAML at line 1, column 10",
    ),
    "manifest-no-key.yaml": (
        b"kind: ConfigMap\ndata: {}\n",
        "data.policy.yaml: the ConfigMap has no data key",
    ),
}


def test_validate_refuses_every_hostile_file_with_its_path(tmp_path: Path) -> None:
    files = []
    for name, (content, _) in HOSTILE.items():
        (tmp_path / name).write_bytes(content)
        files.append(str(tmp_path / name))
    (tmp_path / "a-directory").mkdir()
    missing, directory = tmp_path / "missing.yaml", tmp_path / "a-directory"
    result = songbird("validate", *files, str(missing), str(directory))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == len(HOSTILE) + 2, result.stderr
    for line, (name, (_, expected)) in zip(lines, HOSTILE.items(), strict=False):
        assert line.startswith(f"{tmp_path / name}: {expected}"), line
        assert len(line) < 600, line
    assert lines[-2] == f"{missing}: cannot read the file: No such file or directory"
    assert lines[-1] == f"{directory}: cannot read the file: Is a directory"


def test_validate_the_issue_example_and_a_valid_file_together(tmp_path: Path) -> None:
    broken, good = tmp_path / "x.yaml", tmp_path / "good.yaml"
    broken.write_text("{a: 1\n")
    good.write_text(MINIMAL)
    result = songbird("validate", str(good), str(broken))
    assert result.returncode == 1
    assert result.stdout == f"{good}: ok\n"
    assert result.stderr == (
        f"{broken}: policy.yaml: not valid YAML at line 2, column 1: while parsing a flow mapping, "
        "expected ',' or '}', but got '<stream end>'\n"
    )
    assert songbird("validate", str(good)).returncode == 0


def test_bench_robustness_quick_handles_every_case() -> None:
    result = songbird("bench", "robustness", "--quick")
    assert result.returncode == 0, result.stdout + result.stderr
    total = next(line for line in result.stdout.splitlines() if line.startswith("total"))
    tried, handled, failed = (int(x) for x in total.split()[1:4])
    assert tried >= 200 and handled == tried and failed == 0


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
