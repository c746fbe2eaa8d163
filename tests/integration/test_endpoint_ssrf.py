"""A policy cannot make Songbird query an address the operator did not allow (issue 12, SSRF), shown on
the real ``songbird run`` process against the API emulator, with HTTP listeners on 127.0.0.2 and
127.0.0.3 that count every TCP connection they accept.

Covers:
- without ``policyUrls`` (``--prometheus-url`` only) a policy URL is refused with a Warning Event naming
  ``analysis.prometheus.url`` and the redacted URL, and the listener it names sees no connection; an
  ``analysis.prometheus.endpoint`` that does not exist is refused naming that field;
- with an allow-list for one host and port in namespace ``default``: the allowed URL is queried; another
  host, another port of the allowed host, userinfo tricks (``http://allowed@other``), ``?`` and ``#``
  path tricks, ``file://``, ``gopher://`` and the link-local metadata address are each refused with
  the message a user sees, and no connection reaches a listener they name; nothing of the refused
  policies' Deployments changes.
"""

from __future__ import annotations

from pathlib import Path

from tests.integration.test_daemon import controller, wait_for
from tests.support import scenario
from tests.support.kube_emulator import KubeEmulator
from tests.support.listeners import Listener
from tests.support.world import BASE_POLICY, policy_configmap, seed

NAMESPACE = scenario.NAMESPACE


def policy(url: str) -> str:
    return BASE_POLICY.replace("url: PROM_URL", f'url: "{url}"')


def blocked(kube: KubeEmulator) -> dict[str, str]:
    return {
        e["involvedObject"]["name"]: e["message"]
        for e in kube.events(NAMESPACE)
        if e.get("type") == "Warning" and e.get("reason") == "RolloutBlocked"
    }


def test_without_an_allow_list_a_policy_url_is_refused_and_never_contacted(tmp_path: Path) -> None:
    with KubeEmulator() as kube, Listener("127.0.0.2") as target:
        seed(kube)
        kube.put("ConfigMap", NAMESPACE, policy_configmap(policy(target.url + "/"), name="direct"))
        named = BASE_POLICY.replace("url: PROM_URL", "endpoint: team-b")
        kube.put("ConfigMap", NAMESPACE, policy_configmap(named, name="named"))
        with controller(
            kube, "ssrf-a", tmp_path / "controller.log", "--prometheus-url", "http://127.0.0.1:9"
        ):
            wait_for("both policies refused", lambda: {"direct", "named"} <= set(blocked(kube)))
        warnings = blocked(kube)
        assert warnings["direct"] == (
            f'ConfigMap {NAMESPACE}/direct: analysis.prometheus.url: "{target.url}/" refused: the operator '
            f'allows no such Prometheus URL for namespace "{NAMESPACE}" (policyUrls); use '
            "analysis.prometheus.endpoint"
        )
        assert warnings["named"] == (
            f"ConfigMap {NAMESPACE}/named: analysis.prometheus.endpoint: the operator defines no Prometheus "
            'endpoint named "team-b"'
        )
        assert target.connections == 0
        status = kube.get("ConfigMap", NAMESPACE, "direct")["metadata"]["annotations"]["songbird.dev/status"]
        assert "analysis.prometheus.url" in status and "refused" in status
        assert kube.get("Deployment", NAMESPACE, "nginx-v2")["spec"]["replicas"] == 0


def test_an_allow_list_admits_one_host_and_port_and_nothing_else(tmp_path: Path) -> None:
    with (
        KubeEmulator() as kube,
        Listener("127.0.0.2") as allowed,
        Listener("127.0.0.2") as other_port,
        Listener("127.0.0.3") as other_host,
    ):
        endpoints = tmp_path / "endpoints.yaml"
        endpoints.write_text(
            "default: main\n"
            "endpoints: [{name: main, url: 'http://127.0.0.1:9'}]\n"
            f"policyUrls: [{{namespaces: [{NAMESPACE}], prefixes: ['{allowed.url}/']}}]\n"
        )
        host3 = f"127.0.0.3:{other_host.port}"
        refused_by_controller = {
            "other-host": f"http://{host3}",
            "other-port": other_port.url,
            "metadata": "http://169.254.169.254/latest/meta-data",
            "longer-host": f"http://127.0.0.2.nip.io:{allowed.port}/",
        }
        refused_by_loader = {
            "userinfo": (f"http://127.0.0.2:{allowed.port}@{host3}/", "credentials (user:password@) are not"),
            "query": (f"http://{host3}/admin?x=/api/v1/query", "a query (?) is not allowed"),
            "fragment": (f"http://{host3}/admin#/api/v1/query", "a fragment"),
            "file": ("file:///etc/passwd", "only http:// and https:// URLs are allowed"),
            "gopher": (f"gopher://{host3}/_GET", "only http:// and https:// URLs are allowed"),
            "dotdot": (f"{allowed.url}/%2e%2e/admin", "percent-encoding"),
        }
        # Every object opts in to every policy here, so what is refused is refused for its URL alone.
        seed(kube, accept=("allowed", *refused_by_controller, *refused_by_loader))
        kube.put("ConfigMap", NAMESPACE, policy_configmap(policy(allowed.url), name="allowed"))
        for name, url in refused_by_controller.items():
            kube.put("ConfigMap", NAMESPACE, policy_configmap(policy(url), name=name))
        for name, (url, _) in refused_by_loader.items():
            kube.put("ConfigMap", NAMESPACE, policy_configmap(policy(url), name=name))
        names = set(refused_by_controller) | set(refused_by_loader)
        log = tmp_path / "controller.log"
        with controller(kube, "ssrf-b", log, "--prometheus-endpoints", str(endpoints)):
            wait_for("every refused policy reported", lambda: names <= set(blocked(kube)))
            wait_for("the allowed URL queried", lambda: allowed.requests)
        warnings = blocked(kube)
        assert "allowed" not in warnings
        assert not [e for e in kube.events(NAMESPACE) if e.get("reason") == "NotAccepted"]
        for name in refused_by_controller:
            assert f"ConfigMap {NAMESPACE}/{name}: analysis.prometheus.url: " in warnings[name]
            assert "refused: the operator allows no such Prometheus URL" in warnings[name]
        for name, (_, words) in refused_by_loader.items():
            said = f"ConfigMap {NAMESPACE}/{name}: invalid policy: analysis.prometheus.url: "
            assert said in warnings[name]
            assert words in warnings[name], warnings[name]
        # The query path ``?x=/api...`` quoted back would be a place to smuggle text; the URL is redacted.
        assert "/api/v1/query" not in warnings["query"]
        assert other_host.connections == 0
        assert other_port.connections == 0
        assert all(r.path.startswith("/api/v1/query?") for r in allowed.requests)
