"""``songbird lab``: a whole canary release on this machine, with a live view and a report.

    songbird lab --scenario healthy|bad-errors|bad-latency|canary-ignored [--rate N] [--out DIR] [--port N]
                 [--quiet]

Prints a live view (one line per change of phase, step, weight, verdicts, served weight, traffic split
check or last operator command, plus a line every 10 s; on a terminal the current line also refreshes in
place; ``split ok 9.8%`` is Songbird's own check of the canary's measured share, `analysis.split`; ``cmd
pause executed by songbird-cli`` the last command the controller took up, e.g. from ``songbird pause
nginx-rollout`` in another terminal, with a ``..`` line giving its time, id and message when it comes in),
then ``promoted``, ``rolled back``
or ``held`` (the canary-ignored scenario: the lab's ingress controller reads another annotation prefix than
Songbird writes, so the canary receives nothing; a traffic split mismatch) with the controller's reason, the
measured traffic share per step against its weight, and writes ``timeline.json`` and ``report.png`` into
``--out`` (default ``out/lab-<scenario>``).

Exit codes: 0 when the outcome is the scenario's expected one (healthy: promoted; bad-*: rolled back;
canary-ignored: held), 1 when it is not (or no outcome came in time), 2 when the lab could not run (the
message says what to do), 130 on Ctrl-C or SIGTERM, after every process the lab started has been stopped.

``--kubeconfig K --prometheus-url P --ingress-url http://host:port [--namespace N]`` runs the same rollout
on a real cluster instead: nothing local is started but the controller (``songbird run --kubeconfig K``,
without leader election: stop any in-cluster Songbird watching that namespace first) and the load. The
seed objects must exist in the namespace (the lab refuses, naming what is missing); the lab applies the
scenario's policy ConfigMap there, sends its load to the cluster's ingress-nginx at ``--ingress-url`` with
``Host: foo.example.com``, judges nothing itself, and reads the outcome from the ConfigMap's status. The
scenario names the policy and the expected outcome only: how v2 behaves is up to what runs in the cluster.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import TextIO

import structlog

from songbird.analysis.status_view import last_command_line
from songbird.config.text import bounded
from songbird.lab.report import write_report
from songbird.lab.run import ClusterTarget, Lab, LabError, LabOptions
from songbird.lab.scenarios import Scenario, expected_outcome
from songbird.lab.timeline import Sample, Timeline

HEARTBEAT = 10.0  # seconds between progress lines when nothing changes


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="songbird lab",
        description="A whole canary release on this machine: emulated Kubernetes API, real nginx, "
        "real Prometheus, the real controller.",
    )
    p.add_argument("--scenario", required=True, choices=[s.value for s in Scenario])
    p.add_argument(
        "--rate",
        type=float,
        help="requests per second (default: healthy 80, the others 150)",
    )
    p.add_argument("--out", type=Path, help="report directory (default out/lab-<scenario>)")
    p.add_argument("--port", type=int, default=0, help="nginx's traffic port on 127.0.0.1 (default: free)")
    p.add_argument("--timeout", type=float, default=360.0, help="seconds to wait for an outcome")
    p.add_argument("--seed", type=int, help="the local backends' draws (default: a new one each run)")
    p.add_argument("--quiet", action="store_true", help="print only the outcome and the report paths")
    real = p.add_argument_group("a real cluster instead of the local one")
    real.add_argument("--kubeconfig", help="run the rollout on this cluster's seed objects")
    real.add_argument("--namespace", default="default", help="where the seed objects are (default: default)")
    real.add_argument("--prometheus-url", help="the cluster's Prometheus, scraping ingress-nginx (required)")
    real.add_argument("--ingress-url", help="http://host:port of the cluster's ingress-nginx (required)")
    return p


class LiveView:
    """Prints samples: a line per change, a heartbeat line, and on a TTY a status line refreshed in place."""

    def __init__(self, stream: TextIO, *, steps: int, quiet: bool) -> None:
        self.stream = stream
        self.steps = steps
        self.quiet = quiet
        self.tty = stream.isatty()
        self._last_key: object = None
        self._last_line = 0.0
        self._pending = False

    def message(self, text: str) -> None:
        if not self.quiet:
            self._clear()
            print(f"  .. {text}", file=self.stream, flush=True)

    def __call__(self, s: Sample) -> None:
        if self.quiet:
            return
        key = (
            s.phase,
            s.step,
            s.weight,
            s.nginx_weight,
            s.main_service,
            tuple(sorted(s.verdicts.items())),
            s.split,
            _command_key(s),
        )
        line = self.format(s)
        now = time.monotonic()
        if key != self._last_key or now - self._last_line >= HEARTBEAT:
            self._clear()
            if _command_key(s) != _command_key_of(self._last_key):
                # A new command: the whole record once (when, id, the controller's message), from the
                # renderer `songbird status` uses.
                detail = last_command_line({"lastCommand": s.last_command}, now=time.time())
                if detail:
                    print(f"  .. command {detail}", file=self.stream, flush=True)
            print(line, file=self.stream, flush=True)
            self._last_key, self._last_line = key, now
        elif self.tty:
            self.stream.write("\r" + line[:160] + "\x1b[K")
            self.stream.flush()
            self._pending = True

    def _clear(self) -> None:
        if self._pending:
            self.stream.write("\r\x1b[K")
            self._pending = False

    def format(self, s: Sample) -> str:
        share = "  -  " if s.share_recent is None else f"{100 * s.share_recent:5.1f}%"
        header = " - " if s.header_recent is None else f"{100 * s.header_recent:3.0f}%"
        served = "-" if s.nginx_weight is None else f"{s.nginx_weight:g}%"
        step = f"{s.step}/{self.steps}" if s.step else "-"
        verdicts = " ".join(f"{name}={v}" for name, v in s.verdicts.items()) or "no evaluation yet"
        command = command_text(s)
        return (
            f"{s.t:6.1f}s  {s.phase:<12} step {step:<4} weight {s.weight:>3g}% (nginx {served:>4})  "
            f"v2 share {share}  Region:always->v2 {header}  {split_text(s)}  {verdicts}"
            + (f"  {command}" if command else "")
        )


def command_text(s: Sample) -> str:
    """The last operator command as the live line shows it: ``cmd promote --step executed by alice``
    (``by`` left out when the API server recorded no field manager); empty before any command."""
    command = s.last_command
    if not command or not command.get("id"):
        return ""
    what = bounded(str(command.get("command") or "?"), 40)
    result = bounded(str(command.get("result") or "?"), 20)
    by = command.get("by")
    who = f" by {bounded(by, 80)}" if isinstance(by, str) and by else ""
    return f"cmd {what} {result}{who}"


def _command_key(s: Sample) -> tuple[str, str] | None:
    command = s.last_command
    return (str(command.get("id")), str(command.get("result"))) if command else None


def _command_key_of(key: object) -> object:
    return key[-1] if isinstance(key, tuple) and key else None


def split_text(s: Sample) -> str:
    """The traffic split check as the live view shows it: ``split ok 9.8%``, ``split MISMATCH 0.0%``,
    ``split ?`` (too few requests yet), ``split -`` (no check at this step yet)."""
    share = "" if s.split_share is None else f" {100 * s.split_share:.1f}%"
    if s.split == "consistent":
        return f"split ok{share}"
    if s.split == "mismatch":
        return f"split MISMATCH{share}"
    return "split ?" if s.split == "undecided" else "split -"


def summary(timeline: Timeline, stream: TextIO) -> None:
    print(f"\n{timeline.outcome}: {timeline.reason}", file=stream)
    if timeline.outcome == "held":
        print(
            "the rollout stays at its weight until the canary receives its share (never rolled back)",
            file=stream,
        )
    print(f"rollout took {timeline.duration:.0f} s at {timeline.rate:g} requests/s", file=stream)
    steps = timeline.step_shares()
    if steps:
        print("measured v2 share of plain requests while nginx served each weight:", file=stream)
        for st in steps:
            print(
                f"  weight {st.weight:>3g}%: {100 * st.share:5.1f}% of {st.requests:>5} requests "
                f"({(st.z if st.sigma else 0):+.1f} sigma)",
                file=stream,
            )
    v2, total = timeline.final_share()
    if total:
        print(
            f"after promotion: v2 answered {v2} of {total} plain requests ({100 * v2 / total:.1f}%)",
            file=stream,
        )


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(list(argv) if argv is not None else None)
    cluster: ClusterTarget | None = None
    if args.kubeconfig:
        if not args.prometheus_url or not args.ingress_url:
            print(
                "songbird lab: --kubeconfig needs --prometheus-url (the cluster's Prometheus scraping "
                "ingress-nginx) and --ingress-url (http://host:port of its ingress-nginx)",
                file=sys.stderr,
            )
            return 2
        cluster = ClusterTarget(
            kubeconfig=args.kubeconfig,
            namespace=args.namespace,
            prometheus_url=args.prometheus_url,
            ingress_url=args.ingress_url,
        )
    elif args.prometheus_url or args.ingress_url:
        print("songbird lab: --prometheus-url and --ingress-url go with --kubeconfig", file=sys.stderr)
        return 2
    if args.rate is not None and not 1 <= args.rate <= 200:
        print("songbird lab: --rate must be within [1, 200] requests/s", file=sys.stderr)
        return 2
    # The data plane logs each scale and reload; the live view already shows them.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    scenario = Scenario(args.scenario)
    out: Path = args.out or Path("out") / f"lab-{scenario.value}"
    options = LabOptions(
        scenario=scenario,
        rate=args.rate,
        port=args.port,
        timeout=args.timeout,
        seed=args.seed,
        cluster=cluster,
    )
    view = LiveView(sys.stdout, steps=len(options.policy.steps), quiet=args.quiet)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        timeline = Lab(options, on_sample=view, progress=view.message).run()
    except LabError as exc:
        print(f"songbird lab: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nsongbird lab: interrupted; every process the lab started has been stopped", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    if not args.quiet:
        summary(timeline, sys.stdout)
    else:
        print(f"{timeline.outcome}: {timeline.reason}")
    json_path, png_path = write_report(timeline, out)
    print(f"report: {png_path} and {json_path}")
    return 0 if timeline.outcome == expected_outcome(scenario) else 1


if __name__ == "__main__":
    sys.exit(main())
