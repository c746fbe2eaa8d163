"""Throwaway installs of Songbird for the packaging tests: a wheel built from a copy of the sources, and
virtualenvs holding either that wheel or an editable install, beside exactly the controller's declared
dependencies and nothing else.

The dependencies are not downloaded again (a resolve against the index takes over a minute here): the
closure of the wheel's own ``Requires-Dist`` (extras excluded) is read from the distributions installed in
the running environment, and their top-level files are linked into one directory that a ``.pth`` file adds
to each virtualenv. A virtualenv therefore sees the controller's dependencies and not the lab's or the
benchmarks' (kmock, matplotlib, numpy): it is what ``pip install songbird`` gives a user.
Building the wheel and the editable install go through pip with build isolation, as a user's would.
"""

from __future__ import annotations

import email.parser
import importlib.metadata
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
# What the wheel is built from (pyproject's package-dir maps these folders into `songbird`).
SOURCES = ("pyproject.toml", "README.md", "config", "analysis", "controller", "lab", "bench")
PIP_TIMEOUT = 240.0  # seconds; an isolated build fetches setuptools from the index


def copy_sources(dest: Path) -> Path:
    """The files a build reads, copied to ``dest`` (a build writes ``build/`` and egg-info beside them)."""
    dest.mkdir(parents=True)
    for name in SOURCES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dest / name)
    return dest


def pip(*args: str) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args], timeout=PIP_TIMEOUT)


def run(
    argv: Sequence[str | Path], *, cwd: Path | None = None, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    return result


def build_wheel(source: Path, out: Path) -> Path:
    result = pip("wheel", "--no-deps", "-w", str(out), str(source))
    assert result.returncode == 0, result.stderr
    (wheel,) = out.glob("songbird-*.whl")
    return wheel


def wheel_requirements(wheel: Path) -> list[str]:
    """The wheel's ``Requires-Dist`` lines, extras' included (their markers say so)."""
    with zipfile.ZipFile(wheel) as archive:
        (metadata,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        message = email.parser.Parser().parsestr(archive.read(metadata).decode())
    return list(message.get_all("Requires-Dist") or [])


def extra_requirements(wheel: Path, extra: str) -> set[str]:
    """The distributions (normalized names) the wheel's ``extra`` adds to a plain install."""
    names: set[str] = set()
    for line in wheel_requirements(wheel):
        req = Requirement(line)
        if (
            req.marker is not None
            and req.marker.evaluate({"extra": extra})
            and not req.marker.evaluate({"extra": ""})
        ):
            names.add(canonicalize_name(req.name))
    return names


def closure(requirements: Iterable[str]) -> dict[str, importlib.metadata.Distribution]:
    """Every installed distribution the requirements need, without any extra (markers evaluated here)."""
    found: dict[str, importlib.metadata.Distribution] = {}
    todo: list[tuple[Requirement, str]] = [(Requirement(r), "") for r in requirements]
    done: set[tuple[str, str]] = set()
    while todo:
        req, extra = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": extra}):
            continue
        key = canonicalize_name(req.name)
        for wanted in ("", *sorted(req.extras)):
            if (key, wanted) in done:
                continue
            done.add((key, wanted))
            dist = found.get(key) or importlib.metadata.distribution(req.name)
            found[key] = dist
            todo.extend((Requirement(r), wanted) for r in dist.requires or [])
    return found


def link_distributions(dists: Iterable[importlib.metadata.Distribution], dest: Path) -> Path:
    """A directory of links to each distribution's top-level files and folders (its dist-info included)."""
    dest.mkdir(parents=True)
    for dist in dists:
        for file in dist.files or ():
            top = file.parts[0]
            if top in ("..", "__pycache__") or top.endswith(".pth") or (dest / top).exists():
                continue  # scripts outside site-packages, byte code, path hooks; a folder already linked
            (dest / top).symlink_to(Path(str(dist.locate_file(top))).resolve())
    return dest


@dataclass(frozen=True, kw_only=True)
class Venv:
    root: Path

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    @property
    def songbird(self) -> Path:
        return self.root / "bin" / "songbird"

    def site_packages(self) -> Path:
        purelib = sysconfig.get_path("purelib", vars={"base": str(self.root), "platbase": str(self.root)})
        return Path(purelib)


def make_venv(root: Path, deps: Path) -> Venv:
    """A virtualenv without pip (the running pip installs into it) that sees ``deps`` through a .pth."""
    result = run([sys.executable, "-m", "venv", "--without-pip", root])
    assert result.returncode == 0, result.stderr
    venv = Venv(root=root)
    (venv.site_packages() / "songbird_test_dependencies.pth").write_text(f"{deps}\n")
    return venv


def install(venv: Venv, *args: str) -> None:
    result = pip("--python", str(venv.python), "install", "--no-deps", *args)
    assert result.returncode == 0, result.stderr
