"""Songbird as a user installs it (slow: each test module builds a wheel and two virtualenvs, ~40 s).

Covers:
- the wheel holds the `songbird` package (every subpackage, the policy schema) and its dist-info, nothing
  else: no top-level `config`, `analysis`, `controller`, `lab` or `bench`;
- the controller's declared dependencies pull in none of the lab's or the benchmarks' packages;
- from a directory holding the user's own ``config.py``, ``analysis.py`` and ``controller.py`` (which
  fail loudly if imported), for a regular and for an editable install (setuptools serves a package-dir
  mapping through an import hook there): ``songbird validate``, ``python -m songbird.controller.cli``
  and ``from songbird.config.loader import load_policy_yaml`` use Songbird's modules, and the editable
  install imports them from its source folders;
- without the extras: ``songbird --help`` and ``songbird validate`` work; ``songbird lab --help`` and
  ``songbird bench decisions --quick`` exit 2 with one line naming the missing module and the pip
  command that adds the extra, no traceback.
"""

from __future__ import annotations

import re
import textwrap
import zipfile
from pathlib import Path

import pytest

from tests.packaging.venvs import (
    Venv,
    build_wheel,
    closure,
    copy_sources,
    extra_requirements,
    install,
    link_distributions,
    make_venv,
    run,
    wheel_requirements,
)

pytestmark = pytest.mark.slow

SUBPACKAGES = ("config", "analysis", "controller", "controller/routers", "lab", "bench")
# Imported by lab/ or bench/ only; a plain install must not carry them.
EXTRAS_ONLY = {"kmock", "matplotlib", "numpy"}

POLICY = """
ingress: shop
canary: {deployment: shop-v2, service: shop-v2}
steps: [5, 25, 50]
interval: 2m
analysis:
  prometheus: {url: "http://prometheus.monitoring:9090"}
  metrics:
    - {name: error-rate, max: 0.01}
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    return build_wheel(copy_sources(tmp / "src"), tmp / "dist")


@pytest.fixture(scope="module")
def deps(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return link_distributions(
        closure(wheel_requirements(wheel)).values(), tmp_path_factory.mktemp("deps") / "d"
    )


@pytest.fixture(scope="module")
def installed(wheel: Path, deps: Path, tmp_path_factory: pytest.TempPathFactory) -> Venv:
    venv = make_venv(tmp_path_factory.mktemp("installed") / "venv", deps)
    install(venv, "--no-index", str(wheel))
    return venv


@pytest.fixture(scope="module")
def editable_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_sources(tmp_path_factory.mktemp("editable") / "src")


@pytest.fixture(scope="module")
def editable(editable_source: Path, deps: Path) -> Venv:
    venv = make_venv(editable_source.parent / "venv", deps)
    install(venv, "-e", str(editable_source))
    return venv


@pytest.fixture
def user_dir(tmp_path: Path) -> Path:
    """A user's project: modules named like Songbird's folders, and a policy file to check."""
    for name in ("config", "analysis", "controller"):
        (tmp_path / f"{name}.py").write_text(
            f"raise RuntimeError('the user\\'s own {name}.py was imported')\n"
        )
    (tmp_path / "policy.yaml").write_text(textwrap.dedent(POLICY))
    return tmp_path


def test_wheel_holds_only_the_songbird_package(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    tops = {n.split("/")[0] for n in names}
    (dist_info,) = [t for t in tops if t.endswith(".dist-info")]
    assert tops == {"songbird", dist_info}
    for sub in SUBPACKAGES:
        assert f"songbird/{sub}/__init__.py" in names
    assert "songbird/config/policy.schema.json" in names
    assert "songbird/__init__.py" not in names  # a namespace package


def test_controller_dependencies_leave_out_the_lab_and_benchmarks(wheel: Path) -> None:
    plain = set(closure(wheel_requirements(wheel)))
    assert {"kubernetes", "pyyaml", "structlog"} <= plain
    assert plain.isdisjoint(EXTRAS_ONLY)
    assert extra_requirements(wheel, "lab") >= EXTRAS_ONLY
    assert {"numpy", "matplotlib"} <= extra_requirements(wheel, "bench")


@pytest.mark.parametrize("kind", ["wheel", "editable"])
def test_runs_beside_the_users_own_config_py(
    kind: str, request: pytest.FixtureRequest, user_dir: Path
) -> None:
    venv: Venv = request.getfixturevalue("installed" if kind == "wheel" else "editable")
    result = run([venv.songbird, "validate", "policy.yaml"], cwd=user_dir)
    assert (result.returncode, result.stdout, result.stderr) == (0, "policy.yaml: ok\n", "")
    # `python -m` and `python -c` put the current directory first on sys.path.
    result = run([venv.python, "-m", "songbird.controller.cli", "validate", "policy.yaml"], cwd=user_dir)
    assert (result.returncode, result.stdout, result.stderr) == (0, "policy.yaml: ok\n", "")
    code = (
        "import songbird.config, songbird.analysis.decision, songbird.controller.reconciler\n"
        "from songbird.config.loader import load_policy_yaml\n"
        "policy = load_policy_yaml(open('policy.yaml').read(), source='policy.yaml')\n"
        "print([float(s) for s in policy.steps], songbird.config.__file__, sep='|')\n"
    )
    result = run([venv.python, "-c", code], cwd=user_dir)
    assert result.returncode == 0, result.stderr
    steps, location = result.stdout.strip().split("|")
    assert steps == "[5.0, 25.0, 50.0]"
    where = Path(location.strip()).resolve()
    if kind == "wheel":
        assert where == (venv.site_packages() / "songbird" / "config" / "__init__.py").resolve()
    else:
        source = request.getfixturevalue("editable_source")
        assert where == (source / "config" / "__init__.py").resolve()


def test_help_works_without_extras(installed: Venv, user_dir: Path) -> None:
    result = run([installed.songbird, "--help"], cwd=user_dir)
    assert result.returncode == 0 and "validate" in result.stdout and "lab" in result.stdout
    missing = run([installed.python, "-c", "import kmock"], cwd=user_dir)
    assert missing.returncode == 1 and "No module named 'kmock'" in missing.stderr  # truly without extras


@pytest.mark.parametrize(
    ("argv", "command", "extra"),
    [
        (["lab", "--help"], "songbird lab", "lab"),
        (["lab", "--scenario", "healthy"], "songbird lab", "lab"),
        (["bench", "decisions", "--quick"], "songbird bench decisions", "bench"),
    ],
)
def test_lab_and_bench_without_their_extra_give_the_pip_command(
    installed: Venv, wheel: Path, user_dir: Path, argv: list[str], command: str, extra: str
) -> None:
    result = run([installed.songbird, *argv], cwd=user_dir)
    assert result.returncode == 2 and result.stdout == ""
    assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 1
    match = re.fullmatch(
        rf"{command} needs the {extra} extra \(cannot import '(\w+)'\): pip install 'songbird\[{extra}\]'\n",
        result.stderr,
    )
    assert match is not None, result.stderr
    assert match.group(1) in extra_requirements(wheel, extra)  # the pip command does install it
