"""The Helm chart, rendered by the real helm binary and checked by the real kubernetes-validate.

Covers:
- ``helm lint --strict`` passes for the default values and for every optional mode;
- every manifest rendered with default values, in namespaced mode, with the ServiceMonitor and with the
  example policy passes ``kubernetes-validate --strict -k 1.30.0``; the ServiceMonitor (a custom resource
  the validator has no schema for) is the only object it cannot check, so it is checked here by hand
  against the Service it must select;
- values.schema.json rejects a misspelt key at ``helm template`` time, naming it, and a
  ``controller.namespaceLabel`` that is not a Prometheus label name; the label reaches ``--namespace-label``;
- values.yaml, values.schema.json and the README's table agree (every value described);
- secure defaults: non-root 65532, read-only root filesystem, no privilege escalation, all capabilities
  dropped, seccomp RuntimeDefault, requests and limits;
- RBAC: no rule grants ``*``; the ClusterRole and each namespaced Role carry the same rules; namespaced mode
  creates one Role/RoleBinding per watched namespace, no ClusterRole, and the Lease Role in the release
  namespace;
- the container's flags: the agreed names only, and every ``$(VAR)`` they reference is defined (Kubernetes
  would otherwise pass the text through literally);
- the ``checksum/config`` pod annotation changes when a setting changes, and only then;
- the PodDisruptionBudget exists only with more than one replica; several replicas without leader election
  are refused;
- the example policy is a policy the controller's own loader accepts, for the seed scenario;
- the dashboard ConfigMap carries the dashboard file and the configured sidecar label.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from songbird.config.endpoints import load_endpoints
from songbird.config.loader import load_policy_configmap
from tests.chart.values_doc import CHART, check

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin"
NAMESPACE = "songbird"
FLAGS = {
    "--kubeconfig",
    "--namespaces",
    "--prometheus-url",
    "--prometheus-endpoints",
    "--log-level",
    "--metrics-address",
    "--leader-election",
    "--no-leader-election",
    "--lease-name",
    "--lease-namespace",
    "--annotation-prefix",
    "--tick-deadline",
    "--prometheus-max-timeout",
    "--prometheus-concurrency",
    "--workers",
    "--namespace-label",
}
ENDPOINTS = [
    "--set-json",
    'prometheus.endpoints=[{"name": "main", "url": "http://prometheus.monitoring:9090", "timeout": "5s",'
    ' "bearerToken": {"secretName": "prom-token", "key": "token"}, "headers": {"X-Scope-OrgID": "team-a"}},'
    ' {"name": "mimir", "url": "https://mimir.monitoring/prometheus", "namespaces": ["team-a"],'
    ' "basicAuth": {"secretName": "mimir-auth", "usernameKey": "user", "passwordKey": "password"},'
    ' "ca": {"configMapName": "mimir-ca", "key": "ca.crt"}}]',
    "--set-json",
    'prometheus.policyUrls=[{"namespaces": ["team-b"], "prefixes": ["http://prometheus.team-b.svc:9090/"]}]',
]
MODES: dict[str, list[str]] = {
    "default": [],
    "namespaced": ["--set", "rbac.namespaced=true", "--set", "watchNamespaces={shop,payments}"],
    "servicemonitor": ["--set", "serviceMonitor.enabled=true"],
    "example-policy": ["--set", "examplePolicy.enabled=true"],
    "endpoints": ENDPOINTS,
}

Helm = Callable[..., subprocess.CompletedProcess[str]]
Render = Callable[..., list[dict[str, Any]]]


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    home = tmp_path_factory.mktemp("helm-home")
    env = {
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
        "PATH": "/usr/bin:/bin",
    }

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "helm"), *args], env=env, capture_output=True, text=True, timeout=120, check=False
        )

    return run


@pytest.fixture(scope="module")
def render(helm: Helm) -> Render:
    def template(*args: str) -> list[dict[str, Any]]:
        result = helm("template", "rel", str(CHART), "--namespace", NAMESPACE, *args)
        assert result.returncode == 0, result.stderr
        return [d for d in yaml.safe_load_all(result.stdout) if d]

    return template


def validate(manifests: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
    text = yaml.safe_dump_all(manifests)
    return subprocess.run(
        [str(BIN / "kubernetes-validate"), "--strict", "-k", "1.30.0", "-"],
        input=text,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def by_kind(manifests: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [m for m in manifests if m["kind"] == kind]


def one(manifests: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(manifests, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def container(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    containers = one(manifests, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def rules_of(manifests: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for m in manifests:
        if m["kind"] in ("Role", "ClusterRole"):
            for rule in m["rules"]:
                yield f"{m['kind']}/{m['metadata'].get('namespace', '')}/{m['metadata']['name']}", rule


@pytest.mark.parametrize("mode", sorted(MODES))
def test_lint_strict_passes(helm: Helm, mode: str) -> None:
    result = helm("lint", "--strict", str(CHART), *MODES[mode])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("mode", sorted(MODES))
def test_every_manifest_passes_strict_kubernetes_validation(render: Render, mode: str) -> None:
    manifests = render(*MODES[mode])
    result = validate(manifests)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    checked = [m for m in manifests if m["apiVersion"] != "monitoring.coreos.com/v1"]
    for m in checked:
        assert f"passed for resource {m['kind'].lower()}/{m['metadata']['name']}" in output, output
    # The only warning allowed is the one for the custom resource the validator has no schema for.
    warnings = [line for line in output.splitlines() if line.startswith("WARN")]
    expected = ["ServiceMonitor"] if mode == "servicemonitor" else []
    assert [re.search(r"kind (\w+)", w)[1] for w in warnings if re.search(r"kind (\w+)", w)] == expected, (
        output
    )
    assert len(warnings) == len(expected), output


def test_service_monitor_selects_the_metrics_service(render: Render) -> None:
    manifests = render("--set", "serviceMonitor.enabled=true", "--set", "serviceMonitor.labels.release=kps")
    monitor, service = one(manifests, "ServiceMonitor"), one(manifests, "Service")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == [NAMESPACE]
    assert monitor["metadata"]["labels"]["release"] == "kps"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    assert set(monitor) == {"apiVersion", "kind", "metadata", "spec"}
    assert set(monitor["spec"]) == {"selector", "namespaceSelector", "endpoints"}
    assert set(endpoint) == {"port", "path", "interval", "scrapeTimeout"}


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ("controler.logLevel=debug", "controler"),  # misspelt section
        ("controller.loglevel=debug", "loglevel"),  # misspelt key
        ("securityContext.privileged=true", "privileged"),  # not a value of this chart
    ],
)
def test_schema_rejects_an_unknown_key(helm: Helm, setting: str, named: str) -> None:
    result = helm("template", "rel", str(CHART), "--set", setting)
    assert result.returncode != 0
    assert f"Additional property {named} is not allowed" in result.stderr


def test_schema_rejects_a_wrong_type(helm: Helm) -> None:
    result = helm("template", "rel", str(CHART), "--set", "controller.logLevel=verbose")
    assert result.returncode != 0
    assert "logLevel" in result.stderr


@pytest.mark.parametrize("label", ["__name__", "kubernetes-namespace", "1ns"])
def test_schema_rejects_a_namespace_label_that_is_not_a_label_name(helm: Helm, label: str) -> None:
    result = helm("template", "rel", str(CHART), "--set", f"controller.namespaceLabel={label}")
    assert result.returncode != 0
    assert "namespaceLabel" in result.stderr


def test_namespace_label_reaches_the_flag(render: Render) -> None:
    manifests = render("--set", "controller.namespaceLabel=kubernetes_namespace")
    assert settings(manifests)["SONGBIRD_NAMESPACE_LABEL"] == "kubernetes_namespace"
    assert "--namespace-label=$(SONGBIRD_NAMESPACE_LABEL)" in container(manifests)["args"]


def test_values_schema_and_readme_agree() -> None:
    assert check() == []


def test_secure_defaults(render: Render) -> None:
    manifests = render()
    pod = one(manifests, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    ctx = container(manifests)["securityContext"]
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"] == {"drop": ["ALL"]}
    resources = container(manifests)["resources"]
    assert set(resources["requests"]) == set(resources["limits"]) == {"cpu", "memory"}
    # A read-only root filesystem needs somewhere to write temporary files.
    assert {"name": "tmp", "mountPath": "/tmp"} in container(manifests)["volumeMounts"]


def test_probes_use_the_health_endpoints(render: Render) -> None:
    c = container(render())
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert c["ports"] == [{"name": "metrics", "containerPort": 8080, "protocol": "TCP"}]


@pytest.mark.parametrize("mode", sorted(MODES))
def test_no_rbac_rule_grants_everything(render: Render, mode: str) -> None:
    for where, rule in rules_of(render(*MODES[mode])):
        for field in ("apiGroups", "resources", "verbs", "resourceNames"):
            assert "*" not in rule.get(field, []), f"{where} grants * in {field}: {rule}"


def test_cluster_wide_mode(render: Render) -> None:
    manifests = render()
    cluster_role = one(manifests, "ClusterRole")
    binding = one(manifests, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == cluster_role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "rel-songbird", "namespace": NAMESPACE}]
    granted = {
        (g, r, v)
        for rule in cluster_role["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }
    assert ("", "configmaps", "patch") in granted
    assert ("networking.k8s.io", "ingresses", "delete") in granted
    assert ("apps", "deployments", "patch") in granted
    assert not any(r == "secrets" for _, r, _ in granted)
    assert not any(r == "leases" for _, r, _ in granted), "the Lease belongs in a Role in one namespace"
    (lease_role,) = [
        r for r in by_kind(manifests, "Role") if r["metadata"]["name"].endswith("leader-election")
    ]
    assert lease_role["metadata"]["namespace"] == NAMESPACE
    named = [rule for rule in lease_role["rules"] if "resourceNames" in rule]
    assert named == [
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": ["songbird-leader"],
            "verbs": ["get", "update"],
        }
    ]
    assert settings(manifests)["SONGBIRD_NAMESPACES"] == ""


def test_namespaced_mode(render: Render) -> None:
    cluster_wide = one(render(), "ClusterRole")["rules"]
    manifests = render(*MODES["namespaced"])
    assert by_kind(manifests, "ClusterRole") == [] and by_kind(manifests, "ClusterRoleBinding") == []
    roles = {(r["metadata"]["namespace"], r["metadata"]["name"]): r for r in by_kind(manifests, "Role")}
    assert set(roles) == {
        ("shop", "rel-songbird"),
        ("payments", "rel-songbird"),
        (NAMESPACE, "rel-songbird-leader-election"),
    }
    for namespace in ("shop", "payments"):
        assert roles[(namespace, "rel-songbird")]["rules"] == cluster_wide  # the same rules, written once
    bindings = {(b["metadata"]["namespace"], b["roleRef"]["name"]) for b in by_kind(manifests, "RoleBinding")}
    assert bindings == set(roles)
    assert settings(manifests)["SONGBIRD_NAMESPACES"] == "shop,payments"


def test_namespaced_mode_without_namespaces_watches_the_release_namespace(render: Render) -> None:
    manifests = render("--set", "rbac.namespaced=true")
    assert {r["metadata"]["namespace"] for r in by_kind(manifests, "Role")} == {NAMESPACE}
    assert settings(manifests)["SONGBIRD_NAMESPACES"] == NAMESPACE


def settings(manifests: list[dict[str, Any]]) -> dict[str, str]:
    (cm,) = [m for m in by_kind(manifests, "ConfigMap") if m["metadata"]["name"] == "rel-songbird"]
    return dict(cm["data"])


def test_flags_are_the_agreed_ones_and_every_reference_resolves(render: Render) -> None:
    manifests = render()
    c = container(manifests)
    assert c["args"][0] == "run"
    flags = [a.split("=", 1)[0] for a in c["args"][1:]]
    assert set(flags) <= FLAGS, set(flags) - FLAGS
    assert {
        "--prometheus-url",
        "--namespaces",
        "--log-level",
        "--metrics-address",
        "--leader-election",
        "--lease-name",
        "--lease-namespace",
        "--annotation-prefix",
    } <= set(flags)
    assert c["envFrom"] == [{"configMapRef": {"name": "rel-songbird"}}]
    env = set(settings(manifests)) | {e["name"] for e in c["env"]}
    for arg in c["args"]:
        for ref in re.findall(r"\$\((\w+)\)", arg):
            assert ref in env, f"{arg} references {ref}, which the container does not define"
    downward = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in c["env"]}
    assert downward == {"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace"}
    values = settings(manifests)
    assert values["SONGBIRD_METRICS_ADDRESS"] == "0.0.0.0:8080"
    assert values["SONGBIRD_ANNOTATION_PREFIX"] == "nginx.ingress.kubernetes.io"
    assert values["SONGBIRD_NAMESPACE_LABEL"] == "namespace"


def test_leader_election_off_with_one_replica(render: Render, helm: Helm) -> None:
    manifests = render("--set", "replicaCount=1", "--set", "controller.leaderElection.enabled=false")
    args = container(manifests)["args"]
    assert "--no-leader-election" in args and "--leader-election" not in args
    assert not [r for r in by_kind(manifests, "Role") if "leader-election" in r["metadata"]["name"]]
    refused = helm("template", "rel", str(CHART), "--set", "controller.leaderElection.enabled=false")
    assert refused.returncode != 0
    assert "replicaCount > 1 needs controller.leaderElection.enabled" in refused.stderr


def test_checksum_follows_the_settings(render: Render) -> None:
    def checksum(*args: str) -> str:
        deployment = one(render(*args), "Deployment")
        return str(deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"])

    base = checksum()
    assert re.fullmatch(r"[0-9a-f]{64}", base)
    assert checksum("--set", "controller.logLevel=debug") != base
    assert checksum("--set", "controller.prometheusUrl=http://other:9090") != base
    assert checksum("--set", "podLabels.team=shop") == base  # not a setting: no restart


def test_disruption_budget_only_with_several_replicas(render: Render) -> None:
    pdb = one(render(), "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= (
        one(render(), "Deployment")["spec"]["template"]["metadata"]["labels"].items()
    )
    assert by_kind(render("--set", "replicaCount=1"), "PodDisruptionBudget") == []


def test_example_policy_is_off_by_default_and_loads_when_on(render: Render) -> None:
    assert not [m for m in by_kind(render(), "ConfigMap") if "songbird.dev/policy" in m["metadata"]["labels"]]
    manifests = render(*MODES["example-policy"])
    (cm,) = [m for m in by_kind(manifests, "ConfigMap") if "songbird.dev/policy" in m["metadata"]["labels"]]
    assert cm["metadata"]["labels"]["songbird.dev/policy"] == "true"
    policy = load_policy_configmap(cm)
    assert policy.ingress == "nginx"
    assert policy.canary.deployment == "nginx-v2" and policy.canary.service == "nginx-v2"
    assert policy.steps == (10, 20, 40, 60, 80)


def test_dashboard_configmap(render: Render) -> None:
    def dashboard(*args: str) -> dict[str, Any]:
        (cm,) = [
            m
            for m in by_kind(render(*args), "ConfigMap")
            if m["metadata"]["name"] == "rel-songbird-dashboard"
        ]
        return cm

    cm = dashboard()
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = json.loads(cm["data"]["songbird.json"])
    assert shipped == json.loads((CHART / "dashboards" / "songbird.json").read_text(encoding="utf-8"))
    custom = dashboard(
        "--set",
        "dashboard.labels.grafana_dashboard=null",
        "--set",
        "dashboard.labels.team=sre",
        "--set",
        "dashboard.namespace=monitoring",
    )
    assert "grafana_dashboard" not in custom["metadata"]["labels"]
    assert custom["metadata"]["labels"]["team"] == "sre"
    assert custom["metadata"]["namespace"] == "monitoring"
    assert not [
        m for m in render("--set", "dashboard.enabled=false") if m["metadata"]["name"].endswith("dashboard")
    ]


def test_prometheus_endpoints_are_a_mounted_file_with_credentials_from_secrets(render: Render) -> None:
    manifests = render(*ENDPOINTS)
    c = container(manifests)
    assert "--prometheus-endpoints=/etc/songbird/endpoints/endpoints.yaml" in c["args"]
    assert not [a for a in c["args"] if a.startswith("--prometheus-url")]
    (cm,) = [m for m in by_kind(manifests, "ConfigMap") if m["metadata"]["name"] == "rel-songbird-prometheus"]
    settings_file = load_endpoints(cm["data"]["endpoints.yaml"], source="endpoints.yaml")
    main, mimir = settings_file.endpoints
    assert settings_file.default == "main"
    assert main.bearer_token_file == "/etc/songbird/prometheus/main/token/token"
    assert main.headers == (("X-Scope-OrgID", "team-a"),) and main.timeout == 5.0
    assert mimir.basic_auth is not None and mimir.ca_file == "/etc/songbird/prometheus/mimir/ca/ca.crt"
    assert mimir.namespaces == ("team-a",)
    assert settings_file.policy_urls[0].prefixes == ("http://prometheus.team-b.svc:9090/",)
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    for path in (
        "/etc/songbird/endpoints",
        "/etc/songbird/prometheus/main/token",
        "/etc/songbird/prometheus/mimir/ca",
    ):
        assert mounts[path]["readOnly"] is True
    volumes = {v["name"]: v for v in one(manifests, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    token = volumes[mounts["/etc/songbird/prometheus/main/token"]["name"]]["secret"]
    assert token == {"secretName": "prom-token", "items": [{"key": "token", "path": "token"}]}
    basic = volumes[mounts["/etc/songbird/prometheus/mimir/basic"]["name"]]["secret"]
    assert [i["path"] for i in basic["items"]] == ["username", "password"]
    assert "team-a" not in json.dumps(settings(manifests))  # header values stay out of the env settings


def test_without_endpoints_the_url_is_the_default_and_policy_urls_still_render(render: Render) -> None:
    assert "--prometheus-url=$(SONGBIRD_PROMETHEUS_URL)" in container(render())["args"]
    manifests = render("--set-json", 'prometheus.policyUrls=[{"prefixes": ["http://p.team-b:9090/"]}]')
    (cm,) = [m for m in by_kind(manifests, "ConfigMap") if m["metadata"]["name"] == "rel-songbird-prometheus"]
    loaded = load_endpoints(cm["data"]["endpoints.yaml"], source="endpoints.yaml")
    assert loaded.default == "default"
    assert loaded.endpoints[0].url == "http://prometheus-operated.monitoring.svc:9090"


def test_checksum_follows_the_endpoints(render: Render) -> None:
    def checksum(*args: str) -> str:
        deployment = one(render(*args), "Deployment")
        return str(deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"])

    assert checksum(*ENDPOINTS) != checksum()
