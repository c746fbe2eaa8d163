"""One whole canary release on this machine: `Lab(options).run()` starts everything, watches, stops all.

What runs (every server on 127.0.0.1, every file in temporary directories):
1. the Kubernetes API (`lab.apiserver`), seeded with the scenario's objects (`lab.scenarios`);
2. the data plane: backends per Deployment replica (`lab.replicas`), a real nginx playing ingress-nginx
   (`lab.nginx`) and `lab.sync`, which reads the API in-process and writes Deployment status back;
3. the real controller, ``songbird run`` as a child process against the API's kubeconfig, without leader
   election, its /metrics on a free port;
4. a real Prometheus (`lab.prometheus`) scraping nginx's metrics port and the controller every second;
5. the load generator (`lab.load`): plain requests at ``rate`` plus every ``header_every``-th request with
   ``Region: always``.
Once Prometheus holds nginx's series the policy ConfigMap is applied, and the rollout starts. Every half
second a `lab.timeline.Sample` is taken (the controller's status, nginx's routing, the traffic just
measured) and handed to ``on_sample``; the run ends ``settle`` seconds after the rollout finished, or was
held on a traffic split mismatch (outcome ``held``: it cannot move until the route is fixed), or at
``timeout``, with Prometheus' error-rate and latency series copied into the timeline.

With ``LabOptions.cluster`` (``songbird lab --kubeconfig``) steps 1, 2 and 4 are the cluster's own: the
lab starts no emulator, nginx, backends or Prometheus. It checks that the namespace holds the seed objects
(`lab.cluster.missing_seed`; a `LabError` names what is missing) and that the main Ingress still routes
to ``nginx-v1``, runs the controller against the given kubeconfig and Prometheus, sends the load to the
given ingress-nginx address, waits for that Prometheus to hold the main Ingress' request series, applies
the policy ConfigMap there, and samples the ConfigMap's status and the routing the Ingress objects ask for
(`lab.cluster.routing_model`): when ingress-nginx applies a change is not visible from the API, so the
served weight is the requested one.

Failures and what the user sees: a missing nginx or Prometheus, or a traffic port already taken, is a
`LabError` before anything starts, naming the fix (``make system-deps``); a controller that exits early
is a `LabError` with the tail of its log. Whatever happens, including Ctrl-C, every process started here
is stopped (in reverse order of starting) and the temporary directories are removed.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from songbird.analysis.cause import Cause
from songbird.analysis.state import STATUS_ANNOTATION, Phase, RolloutState
from songbird.lab import scenarios
from songbird.lab.apiserver import KubeEmulator
from songbird.lab.cluster import ClusterError, KubeCluster, missing_seed, routing_model
from songbird.lab.load import LoadGenerator, LoadPlan, LoadReport
from songbird.lab.model import RoutingModel
from songbird.lab.nginx import NginxError, NginxServer, check_port_free, find_lua_modules, find_nginx
from songbird.lab.prometheus import (
    PrometheusApi,
    PrometheusServer,
    PrometheusServerError,
    ScrapeTarget,
    find_binary,
    free_port,
)
from songbird.lab.replicas import ReplicaSupervisor
from songbird.lab.scenarios import LabPolicy, Scenario
from songbird.lab.sync import DataPlaneSync, Obj
from songbird.lab.timeline import Bucket, Sample, Series, Timeline

INSTALL_HINT = "run `make system-deps` (or `sudo apt-get install nginx libnginx-mod-http-lua prometheus`)"
SAMPLE_EVERY = 0.5  # seconds
RECENT = 5  # seconds of traffic behind `Sample.share_recent`
_STARTUP_TIMEOUT = 30.0
_CONTROLLER_STOP = 15.0


class LabError(RuntimeError):
    """The lab could not run; the message says why and what to do."""


@dataclass(frozen=True, kw_only=True)
class ClusterTarget:
    """A real cluster to run the rollout on (``songbird lab --kubeconfig``) instead of the local stand-ins."""

    kubeconfig: str
    namespace: str = scenarios.NAMESPACE
    prometheus_url: str = ""  # the cluster's Prometheus, scraping ingress-nginx
    ingress_url: str = ""  # http://host:port of the cluster's ingress-nginx


@dataclass(frozen=True, kw_only=True)
class LabOptions:
    scenario: Scenario
    rate: float | None = None  # plain + header requests per second; None: the scenario's default
    header_every: int = 20
    port: int = 0  # nginx's traffic port; 0: a free one
    timeout: float = 360.0  # seconds from the policy to giving up on an outcome
    settle: float = 8.0  # seconds of traffic kept after the outcome
    policy: LabPolicy = field(default_factory=LabPolicy)
    seed: int | None = None  # the backends' draws; None: a new one each run
    cluster: ClusterTarget | None = None

    @property
    def load_rate(self) -> float:
        return self.rate if self.rate is not None else scenarios.default_rate(self.scenario)


class _View:
    """`lab.sync.ClusterView` over the emulator's store (the API's own data, read in-process)."""

    def __init__(self, kube: KubeEmulator) -> None:
        self._kube = kube

    def list_ingresses(self) -> list[Obj]:
        return self._kube.objects("Ingress", scenarios.NAMESPACE)

    def list_services(self) -> list[Obj]:
        return self._kube.objects("Service", scenarios.NAMESPACE)

    def list_deployments(self) -> list[Obj]:
        return self._kube.objects("Deployment", scenarios.NAMESPACE)


@dataclass(frozen=True, kw_only=True)
class _Plane:
    """What the watch loop reads, in either mode: the policy ConfigMap and the routing in force."""

    configmap: Callable[[], Obj | None]
    model: Callable[[], RoutingModel | None]
    events: Callable[[], list[Obj]]  # the namespace's Events, for the decision that ended the rollout


def preflight(port: int = 0) -> None:
    """Fail fast, before starting anything, when a binary is missing or the traffic port is taken."""
    try:
        find_nginx()
        find_lua_modules()
    except NginxError as exc:
        raise LabError(f"nginx is not usable: {exc}\nTo fix: {INSTALL_HINT}") from exc
    for binary in ("prometheus", "promtool"):
        try:
            find_binary(binary)
        except RuntimeError as exc:
            raise LabError(
                f"Prometheus is not installed (`{binary}` not found on PATH)\nTo fix: {INSTALL_HINT}"
            ) from exc
    if port:
        try:
            check_port_free(port)
        except NginxError as exc:
            raise LabError(f"{exc} (--port {port})") from exc


class Lab:
    def __init__(
        self,
        options: LabOptions,
        *,
        on_sample: Callable[[Sample], None] | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.options = options
        self._on_sample = on_sample or (lambda _: None)
        self._progress = progress or (lambda _: None)

    def run(self) -> Timeline:
        if self.options.cluster is not None:
            return self._run_cluster(self.options.cluster)
        return self._run_local()

    def _run_local(self) -> Timeline:
        opts = self.options
        preflight(opts.port)
        seed = opts.seed if opts.seed is not None else random.SystemRandom().randrange(1, 1_000_000)
        with contextlib.ExitStack() as stack:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="songbird-lab-")))
            self._progress("starting the Kubernetes API (kmock emulator)")
            kube = stack.enter_context(KubeEmulator())
            for kind, body in scenarios.seed_objects(opts.scenario, seed=seed):
                kube.put(kind, scenarios.NAMESPACE, body)
            seeded = time.time()

            self._progress("starting nginx and the backends (3 replicas of nginx-v1)")
            replicas = stack.enter_context(ReplicaSupervisor())
            try:
                nginx = stack.enter_context(NginxServer(port=opts.port))
            except NginxError as exc:
                raise LabError(f"{exc}\nTo fix: {INSTALL_HINT} or choose another --port") from exc

            def patch_status(name: str, status: Obj) -> None:
                kube.merge_status("Deployment", scenarios.NAMESPACE, name, status)

            sync = DataPlaneSync(
                _View(kube),
                patch_status,
                nginx=nginx,
                replicas=replicas,
                ingress_class=scenarios.INGRESS_CLASS,
                annotation_prefix=scenarios.annotations_prefix(opts.scenario),
            )
            stack.enter_context(sync)
            _wait("nginx to route foo.example.com to 3 ready replicas", lambda: _stable_ready(kube, nginx))
            # Ingresses are ordered by creationTimestamp (whole seconds), a tie by namespace/name descending
            # (`lab.translator`), which would put "nginx-canary" before "nginx": the canary Ingress, made
            # once the policy is applied below, must be created in a later second than the main one.
            time.sleep(max(0.0, math.floor(seeded) + 1.0 - time.time()))

            controller_port = free_port()
            self._progress("starting Prometheus (scraping nginx and the controller every second)")
            try:
                prom = stack.enter_context(
                    PrometheusServer(
                        scrape_targets=[
                            ScrapeTarget(address=f"127.0.0.1:{nginx.metrics_port}", job="ingress-nginx"),
                            ScrapeTarget(address=f"127.0.0.1:{controller_port}", job="songbird"),
                        ]
                    )
                )
            except PrometheusServerError as exc:
                raise LabError(f"Prometheus did not start: {exc}") from exc
            plane = _Plane(
                configmap=lambda: kube.get("ConfigMap", scenarios.NAMESPACE, scenarios.POLICY_NAME),
                model=lambda: nginx.model,
                events=lambda: kube.events(scenarios.NAMESPACE),
            )
            return self._rollout(
                stack,
                workdir=workdir,
                kubeconfig=str(kube.kubeconfig_path),
                namespace=scenarios.NAMESPACE,
                prom=PrometheusApi(prom.url),
                controller_port=controller_port,
                target=nginx.url,
                remote=False,
                apply=lambda cm: kube.put("ConfigMap", scenarios.NAMESPACE, cm),
                plane=plane,
                seed=seed,
                scraped=lambda: _scraped_local(prom),
            )
        raise AssertionError("unreachable")  # pragma: no cover  (ExitStack does not swallow exceptions)

    def _run_cluster(self, target: ClusterTarget) -> Timeline:
        """The same rollout on a real cluster's seed objects: no emulator, data plane or backends here."""
        if not target.prometheus_url:
            raise LabError(
                "--kubeconfig needs --prometheus-url: the cluster's Prometheus scraping ingress-nginx"
            )
        parts = urlsplit(target.ingress_url)
        if parts.scheme != "http" or not parts.hostname:
            raise LabError(
                "--kubeconfig needs --ingress-url http://<host>:<port>: the address of the cluster's "
                f"ingress-nginx (got {target.ingress_url!r})"
            )
        namespace = target.namespace
        with contextlib.ExitStack() as stack:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="songbird-lab-")))
            self._progress(f"reading the seed objects in namespace {namespace}")
            try:
                cluster = stack.enter_context(KubeCluster(target.kubeconfig, namespace))
                wanted = [
                    (kind, str(body["metadata"]["name"]))
                    for kind, body in scenarios.seed_objects(self.options.scenario, namespace)
                ]
                missing = missing_seed(cluster, wanted)
            except ClusterError as exc:
                raise LabError(f"the cluster could not be read: {exc}") from exc
            if missing:
                raise LabError(
                    f"the cluster at {cluster.server} lacks the seed objects in namespace {namespace}: "
                    + ", ".join(missing)
                    + "\nTo fix: create them (Deployments nginx-v1 with 3 replicas and nginx-v2 with 0, a "
                    "Service for each, and the Ingress nginx for foo.example.com routing to nginx-v1), or "
                    "choose their namespace with --namespace"
                )
            main = cluster.get("Ingress", scenarios.MAIN_INGRESS) or {}
            if scenarios.STABLE not in json.dumps(main.get("spec") or {}):
                raise LabError(
                    f"the Ingress {namespace}/{scenarios.MAIN_INGRESS} does not route to {scenarios.STABLE} "
                    "(a previous rollout promoted the canary?)\nTo fix: point it back at nginx-v1, scale "
                    "nginx-v1 to 3 and nginx-v2 to 0"
                )

            def read(kind: str) -> list[Obj]:
                return cluster.list(kind)

            def model() -> RoutingModel | None:
                try:
                    return routing_model(read("Ingress"), read("Service"), read("Deployment"))
                except ClusterError:
                    return None

            def configmap() -> Obj | None:
                try:
                    return cluster.get("ConfigMap", scenarios.POLICY_NAME)
                except ClusterError:
                    return None

            def events() -> list[Obj]:
                try:
                    return cluster.list("Event")
                except ClusterError:
                    return []

            def apply(cm: Obj) -> None:
                try:
                    cluster.apply(cm)
                except ClusterError as exc:
                    raise LabError(f"the policy ConfigMap could not be applied: {exc}") from exc

            prom = PrometheusApi(target.prometheus_url)
            return self._rollout(
                stack,
                workdir=workdir,
                kubeconfig=target.kubeconfig,
                namespace=namespace,
                prom=prom,
                controller_port=free_port(),
                target=target.ingress_url,
                remote=True,
                apply=apply,
                plane=_Plane(configmap=configmap, model=model, events=events),
                seed=0,
                scraped=lambda: _scraped_cluster(prom, namespace),
            )
        raise AssertionError("unreachable")  # pragma: no cover

    def _rollout(
        self,
        stack: contextlib.ExitStack,
        *,
        workdir: Path,
        kubeconfig: str,
        namespace: str,
        prom: PrometheusApi,
        controller_port: int,
        target: str,
        remote: bool,
        apply: Callable[[Obj], object],
        plane: _Plane,
        seed: int,
        scraped: Callable[[], bool],
    ) -> Timeline:
        """Controller, load, policy, watch, report: the part both modes share."""
        opts = self.options
        rate = opts.load_rate
        self._progress("starting the controller: songbird run")
        controller = stack.enter_context(
            _controller(kubeconfig, namespace, prom.url, controller_port, workdir)
        )
        timeline = Timeline(
            scenario=opts.scenario.value,
            rate=rate,
            started_at=time.time(),
            policy=opts.policy.text(prom.url),
            seed=seed,
        )
        load = LoadGenerator(
            LoadPlan(
                target=target,
                rate=rate,
                duration=opts.timeout + opts.settle + 120.0,
                max_requests=int(rate * (opts.timeout + opts.settle + 120.0)) + 1,
                header=("Region", "always"),
                header_every=opts.header_every,
                concurrency=32,
                timeout=5.0,
                remote=remote,
                images=scenarios.IMAGES,
            )
        )
        stop_load = threading.Event()
        stack.enter_context(_running(load, stop_load))
        self._progress(f"sending {rate:g} requests/s to foo.example.com")
        try:
            _wait("Prometheus to scrape ingress-nginx and the controller", scraped, timeout=60.0)
        except PrometheusServerError as exc:
            raise LabError(f"Prometheus did not answer: {exc}") from exc

        self._progress("applying the rollout policy (ConfigMap nginx-rollout)")
        apply(scenarios.policy_configmap(timeline.policy, namespace))
        applied = time.time()
        self._watch(timeline, plane, load, controller, applied, workdir)
        stop_load.set()
        timeline.buckets = _buckets(load.snapshot(), timeline.started_at)
        try:
            timeline.series = _series(prom, namespace, timeline.started_at, time.time())
        except PrometheusServerError as exc:
            self._progress(f"no error-rate and latency series in the report: {exc}")
        return timeline

    def _watch(
        self,
        timeline: Timeline,
        plane: _Plane,
        load: LoadGenerator,
        controller: subprocess.Popen[bytes],
        applied: float,
        workdir: Path,
    ) -> None:
        opts = self.options
        finished_at: float | None = None
        while True:
            now = time.time()
            if controller.poll() is not None:
                log = _tail(workdir / "controller.log")
                raise LabError(f"the controller exited with code {controller.returncode}:\n{log}")
            sample = _sample(now - timeline.started_at, plane, load.snapshot())
            timeline.samples.append(sample)
            self._on_sample(sample)
            if sample.phase in (Phase.PROMOTING.value, Phase.ROLLING_BACK.value) and not timeline.reason:
                timeline.reason = sample.reason
            if finished_at is None and sample.phase in (Phase.SUCCEEDED.value, Phase.FAILED.value):
                finished_at = now
                timeline.outcome = "promoted" if sample.phase == Phase.SUCCEEDED.value else "rolled back"
                timeline.duration = now - applied
                # The status is sampled twice a second and a watch-driven controller can pass through
                # Promoting or RollingBack faster than that; the Event it emitted on entering the phase
                # keeps the decision's reason.
                timeline.reason = _outcome_reason(plane.events()) or timeline.reason or sample.reason
            if finished_at is None and sample.cause == Cause.SPLIT_MISMATCH.value:
                # Held on a traffic split mismatch: the rollout will not move until the route is fixed.
                finished_at = now
                timeline.outcome = "held"
                timeline.duration = now - applied
                timeline.reason = sample.reason
            if finished_at is None and now - applied > opts.timeout:
                timeline.outcome = "timed out"
                timeline.duration = now - applied
                timeline.reason = f"no outcome within {opts.timeout:g} s: {sample.reason}"
                finished_at = now - opts.settle
            if finished_at is not None and now - finished_at >= opts.settle:
                timeline.final_reason = sample.reason
                return
            time.sleep(max(0.0, SAMPLE_EVERY - (time.time() - now)))


# -- pieces ----------------------------------------------------------------------------------------------


def _wait(what: str, check: Callable[[], bool], timeout: float = _STARTUP_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise LabError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.2)


def _stable_ready(kube: KubeEmulator, nginx: NginxServer) -> bool:
    model = nginx.model
    route = model.route(scenarios.HOST) if model is not None else None
    deployment = kube.get("Deployment", scenarios.NAMESPACE, scenarios.STABLE) or {}
    ready = (deployment.get("status") or {}).get("readyReplicas")
    return route is not None and len(route.main.endpoints) == 3 and ready == 3


def _scraped_local(prom: PrometheusServer) -> bool:
    up = prom.query("up")
    requests = prom.value("sum(nginx_ingress_controller_requests)")
    return len(up) == 2 and all(r["value"][1] == "1" for r in up) and bool(requests)


def _scraped_cluster(prom: PrometheusApi, namespace: str) -> bool:
    """The cluster's Prometheus holds ingress-nginx's request series of the main Ingress."""
    found = prom.query(
        f'sum(nginx_ingress_controller_requests{{namespace="{namespace}",ingress="{scenarios.MAIN_INGRESS}"}})'
    )
    return bool(found)


@contextlib.contextmanager
def _controller(
    kubeconfig: str, namespace: str, prom_url: str, port: int, workdir: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """``songbird run`` as a user would start it, stopped with SIGTERM (then SIGKILL) on the way out."""
    log = workdir / "controller.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "songbird.controller.cli",
                "run",
                f"--kubeconfig={kubeconfig}",
                f"--namespaces={namespace}",
                f"--prometheus-url={prom_url}",
                f"--metrics-address=127.0.0.1:{port}",
                "--no-leader-election",
                "--resync=1",
                "--log-level=info",
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "POD_NAME": "songbird-lab"},
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=_CONTROLLER_STOP)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=_CONTROLLER_STOP)


@contextlib.contextmanager
def _running(load: LoadGenerator, stop: threading.Event) -> Iterator[None]:
    thread = threading.Thread(target=load.run, args=(stop,), name="lab-load", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=load.plan.timeout + 5.0)


def _outcome_reason(events: list[Obj]) -> str | None:
    """The reason of the decision that started the promotion or the rollback, from the controller's Event
    on the policy ConfigMap (its message is ``"<Phase>: <reason>"``); the earliest one, by ``eventTime``
    (a real API server lists Events by name, not in creation order)."""
    for event in sorted(events, key=lambda e: str(e.get("eventTime") or e.get("firstTimestamp") or "")):
        involved = event.get("involvedObject") or {}
        reason = event.get("reason")
        phase = {"Promoting": Phase.PROMOTING.value, "RollingBack": Phase.ROLLING_BACK.value}.get(str(reason))
        if involved.get("name") != scenarios.POLICY_NAME or phase is None:
            continue
        message = str(event.get("message") or "")
        if message.startswith(f"{phase}: "):
            return message[len(phase) + 2 :]
    return None


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def _state(plane: _Plane) -> RolloutState:
    cm = plane.configmap() or {}
    raw = ((cm.get("metadata") or {}).get("annotations") or {}).get(STATUS_ANNOTATION)
    if not raw:
        return RolloutState(reason="waiting for the controller")
    try:
        return RolloutState.from_json(raw)
    except ValueError as exc:
        return RolloutState(reason=f"unreadable status: {exc}")


def _sample(t: float, plane: _Plane, report: LoadReport) -> Sample:
    state = _state(plane)
    verdicts: dict[str, str] = {}
    if state.history:
        verdicts = {r.name: r.verdict.value for r in state.history[-1].results}
    model = plane.model()
    route = model.route(scenarios.HOST) if model is not None else None
    nginx_weight: float | None = None
    header = False
    if route is not None and route.canary is not None and route.canary.backend.endpoints:
        nginx_weight = 100.0 * route.canary.weight / route.canary.effective_total
        header = bool(route.canary.header)
    recent = [b for b in report.buckets if b.start + b.width <= time.time()][-RECENT:]
    # The split check of the current step only (the status keeps the last step's until the next check).
    checked = state.split if state.split is not None and state.split.step == state.step else None
    plain = sum(b.plain for b in recent)
    with_header = sum(sum(b.header_versions.values()) for b in recent)
    return Sample(
        t=round(t, 3),
        phase=state.phase.value,
        step=state.step + 1 if state.step >= 0 else 0,
        weight=state.weight,
        reason=state.reason,
        verdicts=verdicts,
        nginx_weight=nginx_weight,
        nginx_header=header,
        main_service=route.main.service if route is not None else "",
        share_recent=sum(b.versions["v2"] for b in recent) / plain if plain else None,
        header_recent=sum(b.header_versions["v2"] for b in recent) / with_header if with_header else None,
        cause=state.cause.value,
        split=checked.status.value if checked is not None else "",
        split_share=checked.share if checked is not None else None,
        last_command=state.last_command.to_dict() if state.last_command is not None else None,
    )


def _buckets(report: LoadReport, t0: float) -> list[Bucket]:
    return [
        Bucket(
            t=round(b.start - t0, 3),
            plain=dict(b.versions),
            header=dict(b.header_versions),
            errors=dict(b.errors),
            failures=b.failures,
        )
        for b in report.buckets
    ]


# Series of one version: canary traffic is reported under the stable Service with a non-empty ``canary``
# label, and after promotion the main route itself serves v2; `or` takes the union of those series.
_VERSION_LABELS = {
    "v1": ['canary="",service="nginx-v1"'],
    "v2": ['canary!=""', 'canary="",service="nginx-v2"'],
}
_REQUESTS = "nginx_ingress_controller_requests"
_BUCKET = "nginx_ingress_controller_request_duration_seconds_bucket"
_5XX = ',status=~"5.."'


def _union(namespace: str, version: str, metric: str, extra: str = "") -> str:
    ingress = f'namespace="{namespace}",ingress="{scenarios.MAIN_INGRESS}"'
    return " or ".join(
        f"rate({metric}{{{ingress},{labels}{extra}}}[10s])" for labels in _VERSION_LABELS[version]
    )


def _queries(namespace: str, version: str) -> dict[str, str]:
    requests, errors, buckets = (
        _union(namespace, version, _REQUESTS),
        _union(namespace, version, _REQUESTS, _5XX),
        _union(namespace, version, _BUCKET),
    )
    return {
        # "or 0 * ...": a version without any 5xx yet has an error rate of 0, not no value.
        "error_rate": f"sum(({errors}) or 0 * ({requests})) / sum({requests})",
        "latency_p50": f"histogram_quantile(0.5, sum by (le) ({buckets}))",
        "latency_p99": f"histogram_quantile(0.99, sum by (le) ({buckets}))",
    }


def _series(prom: PrometheusApi, namespace: str, t0: float, end: float) -> list[Series]:
    """Error rate and latency per version as Prometheus recorded them, seconds since ``t0``."""
    out: list[Series] = []
    for version in _VERSION_LABELS:
        for name, query in _queries(namespace, version).items():
            data: Any = prom.api(
                "query_range", {"query": query, "start": repr(t0), "end": repr(end), "step": "1"}
            )
            points = [
                (round(float(ts) - t0, 3), float(v))
                for result in data["result"]
                for ts, v in result["values"]
                if math.isfinite(float(v))  # NaN: no traffic at that instant
            ]
            out.append(Series(name=name, version=version, points=sorted(points)))
    return out
