"""The report of a lab run: ``timeline.json`` (everything measured) and ``report.png`` (three panels).

Panels, sharing the time axis (seconds since the lab started):
1. traffic: the weight the controller set and the weight nginx served, against v2's measured share of
   plain requests per second (and of header requests), with the outcome in the title;
2. error rate per version (5xx share, from Prometheus, 10 s rate);
3. latency per version (p50 solid, p99 dashed, from Prometheus' histogram, 10 s rate).

Drawn with matplotlib's Agg backend, so no display is needed; the output directory is created if missing.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from songbird.lab.timeline import CANARY_VERSION, Sample, Timeline

COLORS = {"v1": "tab:blue", "v2": "tab:orange"}


def write_report(timeline: Timeline, out: Path) -> tuple[Path, Path]:
    """Write ``timeline.json`` and ``report.png`` into ``out``; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "timeline.json"
    json_path.write_text(json.dumps(timeline.to_dict(), indent=1, allow_nan=False) + "\n")
    png_path = out / "report.png"
    _plot(timeline, png_path)
    return json_path, png_path


def _served(s: Sample) -> float:
    """The share of plain traffic nginx's routing gives v2: all of it once the main route serves v2."""
    if s.main_service.endswith("-v2"):
        return 100.0
    return s.nginx_weight if s.nginx_weight is not None else 0.0


def _plot(timeline: Timeline, path: Path) -> None:
    fig, (traffic, errors, latency) = plt.subplots(3, 1, figsize=(11, 9), sharex=True)
    try:
        ts = [s.t for s in timeline.samples]
        traffic.step(
            ts, [s.weight for s in timeline.samples], where="post", color="black", label="weight set"
        )
        traffic.step(
            ts,
            [_served(s) for s in timeline.samples],
            where="post",
            color="grey",
            linestyle=":",
            label="v2 weight nginx serves",
        )
        shown = [b for b in timeline.buckets if b.plain_total]
        traffic.plot(
            [b.t + 0.5 for b in shown],
            [100.0 * b.plain.get(CANARY_VERSION, 0) / b.plain_total for b in shown],
            ".",
            color=COLORS["v2"],
            markersize=4,
            label="v2 share of plain requests (per second)",
        )
        with_header = [b for b in timeline.buckets if sum(b.header.values())]
        traffic.plot(
            [b.t + 0.5 for b in with_header],
            [100.0 * b.header.get(CANARY_VERSION, 0) / sum(b.header.values()) for b in with_header],
            "x",
            color="tab:green",
            markersize=4,
            label="v2 share of Region: always requests",
        )
        traffic.set_ylabel("% of requests")
        traffic.set_ylim(-5, 105)
        traffic.legend(loc="center left", fontsize=8)
        traffic.set_title(
            f"songbird lab --scenario {timeline.scenario}: {timeline.outcome or 'no outcome'} "
            f"after {timeline.duration:.0f} s ({timeline.rate:g} requests/s)"
        )
        for name, axis, scale, unit in (
            ("error_rate", errors, 100.0, "5xx %"),
            ("latency_p50", latency, 1000.0, ""),
        ):
            for s in timeline.series:
                if s.name == name:
                    axis.plot(
                        [p[0] for p in s.points],
                        [p[1] * scale for p in s.points],
                        color=COLORS.get(s.version),
                        label=f"{s.version} p50" if unit == "" else s.version,
                    )
            axis.set_ylabel(unit or "latency ms")
        for s in timeline.series:
            if s.name == "latency_p99":
                latency.plot(
                    [p[0] for p in s.points],
                    [p[1] * 1000.0 for p in s.points],
                    color=COLORS.get(s.version),
                    linestyle="--",
                    label=f"{s.version} p99",
                )
        errors.set_title("error rate per version (Prometheus, rate over 10 s)", fontsize=9)
        latency.set_title("latency per version (Prometheus histogram, rate over 10 s)", fontsize=9)
        for axis in (errors, latency):
            if axis.get_legend_handles_labels()[0]:
                axis.legend(loc="upper left", fontsize=8)
        latency.set_xlabel("seconds since the lab started")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)
