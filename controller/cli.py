"""The ``songbird`` command line.

songbird run       the controller daemon (kubeconfig from --kubeconfig, KUBECONFIG or in-cluster)
songbird status    the rollout status of policy ConfigMaps, read from the cluster (--watch: live)
songbird history   the steps and verdicts of the current or last rollout
songbird promote|abort|pause|resume|retry NAME
                   operate a rollout by hand (controller/commands_cli.py); as `kubectl songbird ...` too
songbird validate  check a policy file offline, with the field path of every error
songbird schema    print the policy's JSON Schema
songbird bench     benchmarks: decisions (bench/decision_quality.py), robustness (bench/robustness.py)
songbird lab       a whole canary release on this machine (real nginx, Prometheus, emulated API)
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from songbird.config.endpoints import MAX_ENDPOINTS_BYTES, EndpointSettings, load_endpoints
from songbird.config.errors import PolicyError, SongbirdError
from songbird.config.fields import parse_duration
from songbird.config.loader import MAX_MANIFEST_BYTES, load_policy_file
from songbird.config.scope import DEFAULT_LABEL, label_problem


def _label(value: str) -> str:
    """``--namespace-label``: a Prometheus label name."""
    problem = label_problem(value)
    if problem is not None:
        raise argparse.ArgumentTypeError(problem)
    return value


_NAMESPACE_LABEL_HELP = "Prometheus label holding a series' namespace; custom queries are scoped on it"


def _run(args: argparse.Namespace) -> int:
    from songbird.controller import logs  # noqa: PLC0415  (the daemon's imports load only for `run`)
    from songbird.controller.daemon import Controller, Settings  # noqa: PLC0415

    logs.configure(args.log_level)
    if args.prometheus_url and args.prometheus_endpoints:
        raise UsageError("give --prometheus-url or --prometheus-endpoints, not both")
    settings = Settings(
        kubeconfig=args.kubeconfig,
        namespaces=tuple(n for n in (args.namespaces or "").split(",") if n),
        prometheus_url=args.prometheus_url,
        prometheus=read_endpoints(args.prometheus_endpoints) if args.prometheus_endpoints else None,
        metrics_address=args.metrics_address,
        leader_election=args.leader_election,
        lease_name=args.lease_name,
        lease_namespace=args.lease_namespace,
        identity=args.identity,
        annotation_prefix=args.annotation_prefix,
        resync=args.resync,
        tick_deadline=args.tick_deadline,
        prometheus_max_timeout=args.prometheus_max_timeout,
        prometheus_concurrency=args.prometheus_concurrency,
        workers=args.workers,
        lease_duration=args.lease_duration,
        renew_deadline=args.renew_deadline,
        retry_period=args.retry_period,
        namespace_label=args.namespace_label,
    )
    controller = Controller(settings)
    controller.install_signal_handlers()
    return controller.run()


class UsageError(SongbirdError):
    """Flags that do not go together."""


def read_endpoints(path: str) -> EndpointSettings:
    """The ``--prometheus-endpoints`` file, read up to its limit plus one byte (a larger one is refused)."""
    try:
        with open(path, "rb") as fh:
            content = fh.read(MAX_ENDPOINTS_BYTES + 1)
    except OSError as exc:
        raise PolicyError(f"cannot read the file: {exc.strerror or type(exc).__name__}", source=path) from exc
    return load_endpoints(content, source=path)


def _kube(args: argparse.Namespace, *, watching: bool = False) -> Any:
    from songbird.controller.kube import ApiSettings, KubeClient  # noqa: PLC0415

    # A person waits on these calls: short timeouts, and in --watch a single attempt per refresh so a dead
    # API server shows as "unreachable" within seconds instead of freezing the screen.
    settings = (
        ApiSettings(connect_timeout=1.0, read_timeout=2.0, attempts=1, budget=2.5)
        if watching
        else ApiSettings(connect_timeout=2.0, read_timeout=5.0, attempts=2, budget=6.0)
    )
    return KubeClient.from_config(args.kubeconfig, context=args.context, settings=settings)


def _namespace(args: argparse.Namespace) -> str:
    """``-n``, else the kubeconfig context's namespace, else ``default`` (as kubectl chooses)."""
    from songbird.controller.kube import KubeClient  # noqa: PLC0415

    return str(args.namespace or KubeClient.context_namespace(args.kubeconfig, args.context) or "default")


def _query(args: argparse.Namespace) -> Any:
    from songbird.controller.status_cli import Query  # noqa: PLC0415

    return Query(name=args.name, namespaces=None if args.all_namespaces else [_namespace(args)])


def _status(args: argparse.Namespace) -> int:
    from songbird.controller import status_cli  # noqa: PLC0415

    output = "json" if args.output == "json" else "text"
    kube = _kube(args, watching=args.watch)
    try:
        if args.watch:
            return status_cli.watch(kube, _query(args), output=output, out=sys.stdout)
        return status_cli.show(kube, _query(args), output=output, now=time.time(), out=sys.stdout)
    finally:
        kube.close()


def _history(args: argparse.Namespace) -> int:
    from songbird.controller import status_cli  # noqa: PLC0415

    kube = _kube(args)
    try:
        return status_cli.history(kube, _query(args), output=args.output, now=time.time(), out=sys.stdout)
    finally:
        kube.close()


def _command(args: argparse.Namespace) -> int:
    from songbird.controller.command_request import CommandRequest  # noqa: PLC0415
    from songbird.controller.commands_cli import report, send  # noqa: PLC0415

    request = CommandRequest.new(args.command, step=bool(getattr(args, "step", False)))
    namespace = _namespace(args)
    kube = _kube(args)
    try:
        outcome = send(kube, namespace=namespace, name=args.name, request=request, timeout=args.timeout)
    finally:
        kube.close()
    return report(outcome, output=args.output)


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _cluster_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-n", "--namespace", help="the policy's namespace (default: the kubeconfig context's)")
    p.add_argument("--kubeconfig", help="kubeconfig file (default: KUBECONFIG, ~/.kube/config)")
    p.add_argument("--context", help="kubeconfig context (default: the current one)")


_COMMAND_HELP = {
    "promote": "promote now, skipping the remaining steps and the analysis (--step: advance one step)",
    "abort": "roll back now",
    "pause": "hold at the current weight (a decisive FAIL still rolls back)",
    "resume": "continue a paused rollout",
    "retry": "start a Failed rollout again from the first step",
}


def _operator_commands(sub: Any) -> None:
    """promote, abort, pause, resume, retry NAME (controller.commands_cli), and history NAME."""
    for command, help_text in _COMMAND_HELP.items():
        p = sub.add_parser(command, help=help_text, description=help_text)
        p.add_argument("name", help="the policy ConfigMap")
        _cluster_options(p)
        if command == "promote":
            p.add_argument("--step", action="store_true", help="advance one step instead of promoting")
        p.add_argument(
            "--timeout",
            type=_duration,
            default=30.0,
            help="how long to wait for the controller's answer (default 30s)",
        )
        p.add_argument("-o", "--output", choices=["text", "json"], default="text")
        p.set_defaults(fn=_command)
    history = sub.add_parser("history", help="the steps and verdicts of the current or last rollout")
    history.add_argument("name", help="the policy ConfigMap")
    _cluster_options(history)
    history.add_argument("-o", "--output", choices=["text", "json"], default="text")
    history.set_defaults(fn=_history, all_namespaces=False)


def validate_file(path: str, *, namespace_label: str = DEFAULT_LABEL) -> str | None:
    """Check one file (a policy.yaml or a ConfigMap manifest): None if valid, else the error line.

    A manifest's custom queries are also scoped to its ``metadata.namespace`` on ``namespace_label``.

    Reads at most the manifest limit plus one byte, so a huge file or a device is refused, not read."""
    try:
        with open(path, "rb") as fh:
            content = fh.read(MAX_MANIFEST_BYTES + 1)
    except OSError as exc:
        return f"{path}: cannot read the file: {exc.strerror or type(exc).__name__}"
    try:
        load_policy_file(content, source=path, namespace_label=namespace_label)
    except PolicyError as exc:
        return str(exc)
    return None


def _validate(args: argparse.Namespace) -> int:
    failed = 0
    for path in args.files:
        error = validate_file(path, namespace_label=args.namespace_label)
        if error is None:
            print(f"{path}: ok")
        else:
            print(error, file=sys.stderr)
            failed += 1
    return 1 if failed else 0


def _schema(_: argparse.Namespace) -> int:
    from songbird.config.schema import main  # noqa: PLC0415

    main()
    return 0


@dataclass(frozen=True, kw_only=True)
class Delegated:
    """A command whose code lives outside the controller, in a package with its own extra."""

    command: str  # as the user types it: "songbird lab"
    module: str  # the entry point whose ``main(argv)`` runs it
    extra: str  # the pyproject extra that installs its dependencies


class MissingExtra(Exception):
    """A delegated command's third-party dependency cannot be imported (its extra is not installed)."""


def _delegate(target: Delegated, argv: list[str]) -> int:
    """Run ``target``'s ``main(argv)``. The lab and the benchmarks depend on packages the controller does
    not (kmock, numpy, matplotlib); a plain ``pip install songbird`` leaves them out, and the first import
    of one of them, at load or later, becomes `MissingExtra` naming the extra that adds it."""
    try:
        return int(importlib.import_module(target.module).main(argv) or 0)
    except ImportError as exc:
        missing = (exc.name or "").split(".")[0]
        if not missing or missing == "songbird":
            raise  # our own code is broken, or the import failed for another reason: not a missing extra
        raise MissingExtra(
            f"{target.command} needs the {target.extra} extra (cannot import {missing!r}): "
            f"pip install 'songbird[{target.extra}]'"
        ) from exc


_LAB = Delegated(command="songbird lab", module="songbird.lab.cli", extra="lab")
_BENCHES = {
    name: Delegated(command=f"songbird bench {name}", module=f"songbird.bench.{module}", extra="bench")
    for name, module in (("decisions", "decision_quality"), ("robustness", "robustness"), ("scale", "scale"))
}


def _bench(args: argparse.Namespace) -> int:
    return _delegate(_BENCHES[args.bench], args.rest)


def _lab(args: argparse.Namespace) -> int:
    return _delegate(_LAB, args.rest)


def parser(prog: str = "songbird") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Progressive delivery for Kubernetes.")
    # The installed distribution's version: pyproject.toml's `version`, also the image tag and appVersion.
    p.add_argument("--version", action="version", version=f"songbird {metadata.version('songbird')}")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the controller")
    run.add_argument("--kubeconfig", help="kubeconfig file (default: KUBECONFIG, ~/.kube/config, in-cluster)")
    run.add_argument("--namespaces", default="", help="comma-separated namespaces to watch (default: all)")
    run.add_argument(
        "--prometheus-url",
        help="Prometheus for policies that name none: shorthand for one endpoint named 'default'",
    )
    run.add_argument(
        "--prometheus-endpoints",
        metavar="FILE",
        help="YAML file of named Prometheus endpoints, the default one and the policy URL allow-list",
    )
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    run.add_argument("--metrics-address", default="0.0.0.0:8080", help="host:port of /metrics and probes")
    run.add_argument("--leader-election", action=argparse.BooleanOptionalAction, default=True)
    run.add_argument("--lease-name", default="songbird-leader")
    run.add_argument("--lease-namespace", help="default: POD_NAMESPACE, else default")
    run.add_argument("--identity", help="leader-election identity (default: POD_NAME, else host-pid)")
    run.add_argument(
        "--annotation-prefix",
        default="nginx.ingress.kubernetes.io",
        help="ingress-nginx's --annotations-prefix",
    )
    run.add_argument("--resync", type=float, default=10.0, help="seconds between resyncs of the timed jobs")
    run.add_argument(
        "--tick-deadline", type=float, default=4.0, help="seconds a tick may spend on the network in total"
    )
    run.add_argument(
        "--prometheus-max-timeout",
        type=float,
        default=5.0,
        help="upper bound of every policy's analysis.prometheus.timeout (seconds)",
    )
    run.add_argument(
        "--prometheus-concurrency", type=int, default=2, help="queries in flight per Prometheus endpoint"
    )
    run.add_argument("--workers", type=int, default=8, help="worker threads ticking rollouts")
    run.add_argument("--lease-duration", type=int, default=15, help="seconds a standby waits out the Lease")
    run.add_argument("--renew-deadline", type=float, default=10.0, help="seconds a leader may fail to renew")
    run.add_argument("--retry-period", type=float, default=2.0, help="seconds between Lease rounds")
    run.add_argument("--namespace-label", type=_label, default=DEFAULT_LABEL, help=_NAMESPACE_LABEL_HELP)
    run.set_defaults(fn=_run)

    status = sub.add_parser("status", help="show rollout status (NAME: one rollout in detail)")
    status.add_argument("name", nargs="?")
    _cluster_options(status)
    status.add_argument("-A", "--all-namespaces", action="store_true", help="policies in every namespace")
    status.add_argument("-w", "--watch", action="store_true", help="redraw every second until Ctrl-C")
    status.add_argument("-o", "--output", choices=["text", "table", "json"], default="text")
    status.set_defaults(fn=_status)
    _operator_commands(sub)

    validate = sub.add_parser("validate", help="check policy files (policy.yaml or a ConfigMap manifest)")
    validate.add_argument("files", nargs="+")
    validate.add_argument("--namespace-label", type=_label, default=DEFAULT_LABEL, help=_NAMESPACE_LABEL_HELP)
    validate.set_defaults(fn=_validate)

    sub.add_parser("schema", help="print the policy JSON Schema").set_defaults(fn=_schema)

    bench = sub.add_parser("bench", help="benchmarks")
    bench_sub = bench.add_subparsers(dest="bench", required=True)
    decisions = bench_sub.add_parser(
        "decisions", help="decision quality vs Flagger, Argo and SPRT", add_help=False
    )
    decisions.add_argument("rest", nargs=argparse.REMAINDER)
    decisions.set_defaults(fn=_bench)
    robustness = bench_sub.add_parser(
        "robustness",
        help="hostile policies through the loader and validate (tried/handled/failed)",
        add_help=False,
    )
    robustness.add_argument("rest", nargs=argparse.REMAINDER)
    robustness.set_defaults(fn=_bench)

    lab = sub.add_parser("lab", help="a whole canary release on this machine", add_help=False)
    lab.add_argument("rest", nargs=argparse.REMAINDER)
    lab.set_defaults(fn=_lab)
    return p


# Commands whose options belong to another entry point: argparse's REMAINDER does not pass on arguments
# that start with "--" (``songbird lab --scenario healthy``), so these are handed over before parsing.
_DELEGATED: dict[tuple[str, ...], Delegated] = {
    ("lab",): _LAB,
    **{("bench", name): target for name, target in _BENCHES.items()},
}


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    try:
        for prefix, target in _DELEGATED.items():
            if tuple(args_list[: len(prefix)]) == prefix:
                return _delegate(target, args_list[len(prefix) :])
        # Installed as kubectl-songbird, kubectl runs it as a plugin: `kubectl songbird promote NAME`.
        plugin = os.path.basename(sys.argv[0]).startswith("kubectl-")
        args = parser("kubectl songbird" if plugin else "songbird").parse_args(args_list)
        return int(args.fn(args))
    except SongbirdError as exc:
        print(f"songbird: {exc}", file=sys.stderr)
        return 2
    except MissingExtra as exc:
        print(exc, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
