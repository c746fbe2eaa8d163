"""Draw docs/dashboard.png: the main panels of the Grafana dashboard, from real query results.

It starts the same recorded rollout the dashboard tests use (`tests.chart.dashboard_scenario`: a real
Prometheus holding a failed canary rolled back for error-rate, then a good one promoted), runs each chosen
panel's PromQL exactly as written in charts/songbird/dashboards/songbird.json (variables filled as Grafana
would), and plots the answers with matplotlib, with the dashboard's annotations as vertical lines.

Run from the repository root: ``.venv/bin/python -m docs.render_dashboard [OUT.png]``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from tests.chart.dashboard_scenario import Recording, query_range, recorded_rollout, substitute
from tests.support.prom_server import PrometheusServer

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = json.loads((ROOT / "charts/songbird/dashboards/songbird.json").read_text(encoding="utf-8"))
PANELS = {p["title"]: p for p in DASHBOARD["panels"] if p["type"] != "row"}
MAIN = (
    ("Canary weight and step", None),
    ("Requests: canary vs stable", None),
    ("5xx ratio", "percent"),
    ("Latency p50 / p99", None),
    ("Evidence (e-values)", "log"),
    ("Kubernetes API requests", None),
)
COLOURS = {"Step change": "#5794f2", "Promotion": "#37872d", "Rollback": "#c4162a"}


def legend(fmt: str, labels: dict[str, str]) -> str:
    out = fmt
    for key, value in labels.items():
        out = out.replace("{{" + key + "}}", value)
    return out or ",".join(f"{k}={v}" for k, v in labels.items())


def series(
    prom: PrometheusServer, rec: Recording, panel: dict[str, Any]
) -> list[tuple[str, list[float], list[float]]]:
    out = []
    for target in panel["targets"]:
        for result in query_range(prom, substitute(target["expr"]), rec):
            xs = [(float(ts) - rec.start) / 60 for ts, _ in result["values"]]
            ys = [float(v) for _, v in result["values"]]
            out.append((legend(target["legendFormat"], result["metric"]), xs, ys))
    return out


def annotations(prom: PrometheusServer, rec: Recording) -> dict[str, list[float]]:
    marks: dict[str, list[float]] = {}
    for ann in DASHBOARD["annotations"]["list"]:
        if "expr" not in ann:
            continue
        times = sorted(
            {float(ts) for r in query_range(prom, substitute(ann["expr"]), rec) for ts, _ in r["values"]}
        )
        firsts = [t for i, t in enumerate(times) if i == 0 or t - times[i - 1] > 20]
        marks[ann["name"]] = [(t - rec.start) / 60 for t in firsts]
    return marks


def draw(prom: PrometheusServer, rec: Recording, out: Path) -> None:
    fig, axes = plt.subplots(3, 2, figsize=(15, 11), sharex=True)
    fig.suptitle(
        "Songbird rollouts: default/nginx (recorded rollout, real Prometheus query results)", fontsize=13
    )
    marks = annotations(prom, rec)
    for ax, (title, scale) in zip(axes.flat, MAIN, strict=True):
        panel = PANELS[title]
        for name, xs, raw in series(prom, rec, panel):
            ys = [100 * y for y in raw] if scale == "percent" else raw
            ax.plot(
                xs, ys, label=name, linewidth=1.4, drawstyle="steps-post" if "weight" in title else "default"
            )
        for kind, xs in marks.items():
            for i, x in enumerate(xs):
                ax.axvline(
                    x,
                    color=COLOURS[kind],
                    linestyle="--",
                    linewidth=0.8,
                    alpha=0.7,
                    label=kind if ax is axes.flat[0] and i == 0 else None,
                )
        if scale == "log":
            ax.set_yscale("log")
        ax.set_title(title, fontsize=11)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", ncol=2)
        unit = panel["fieldConfig"]["defaults"].get("unit", "")
        ax.set_ylabel({"percent": "%", "percentunit": "%", "reqps": "req/s", "s": "seconds"}.get(unit, ""))
    for ax in axes[-1]:
        ax.set_xlabel("minutes since the first rollout began")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else ROOT / "docs" / "dashboard.png"
    with recorded_rollout() as (prom, rec, _):
        draw(prom, rec, out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
