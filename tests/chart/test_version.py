"""One version, written once in pyproject.toml, everywhere a user meets it.

Covers:
- ``songbird --version`` prints pyproject's version (read through the installed package's metadata);
- the chart's ``appVersion`` is pyproject's version;
- the chart, rendered by the real helm with default values, runs exactly the image `make image` tags:
  scripts/build-image.sh's image name with pyproject's version as the tag.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

from tests.chart.values_doc import CHART

ROOT = Path(__file__).resolve().parents[2]
VERSION: str = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def built_image_name() -> str:
    """The name scripts/build-image.sh tags when SONGBIRD_IMAGE_NAME is not set."""
    script = (ROOT / "scripts" / "build-image.sh").read_text()
    match = re.search(r"^IMAGE_NAME=\$\{SONGBIRD_IMAGE_NAME:-([^}]+)\}$", script, re.MULTILINE)
    assert match, "scripts/build-image.sh no longer sets IMAGE_NAME from SONGBIRD_IMAGE_NAME"
    return match.group(1)


def test_the_cli_prints_the_pyproject_version() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "songbird.controller.cli", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == f"songbird {VERSION}"


def test_the_chart_app_version_is_the_pyproject_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == VERSION


def test_the_default_image_is_the_one_make_image_tags(tmp_path: Path) -> None:
    helm = ROOT / ".venv" / "bin" / "helm"
    env = {
        "HELM_CACHE_HOME": str(tmp_path / "cache"),
        "HELM_CONFIG_HOME": str(tmp_path / "config"),
        "HELM_DATA_HOME": str(tmp_path / "data"),
        "PATH": "/usr/bin:/bin",
    }
    rendered = subprocess.run(
        [str(helm), "template", "r", str(CHART), "--namespace", "songbird"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    deployments = [d for d in yaml.safe_load_all(rendered) if d and d.get("kind") == "Deployment"]
    images = {c["image"] for d in deployments for c in d["spec"]["template"]["spec"]["containers"]}
    assert images == {f"{built_image_name()}:{VERSION}"}
