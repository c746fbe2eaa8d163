"""Keeps N backend processes (`lab.backend`) running per Deployment, like a ReplicaSet on one machine.

``scale(deployment, n, version=..., profile=...)`` starts or stops processes until n answer; a change of
version or profile replaces them all (new ones are started and ready before the old ones stop, so an
upstream never loses every endpoint at once). With ``drain=False`` the retired replicas keep serving until
``drain()``, so the caller can first reload nginx without them. Processes that died are forgotten at the
next ``scale`` and replaced then. ``addresses(deployment)`` gives the ``127.0.0.1:port`` of the live
replicas, lowest index first.

What can go wrong, and what happens:
- a replica that does not print ``READY <port>`` within ``start_timeout`` is killed and `BackendStartError`
  is raised with the tail of its stderr (kept in the supervisor's temporary directory);
- every process runs in its own process group and is stopped (SIGTERM, then SIGKILL after a grace period)
  by ``scale`` down, ``stop_all`` or leaving the ``with`` block, including on Ctrl-C; a replica also exits by
  itself when this process dies (see `lab.backend`).
"""

from __future__ import annotations

import contextlib
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from songbird.lab.backend import READY_PREFIX, BackendProfile

_STOP_GRACE = 3.0
_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)


class BackendStartError(RuntimeError):
    """A backend process did not come up."""


@dataclass
class _Replica:
    index: int
    port: int
    process: subprocess.Popen[bytes]
    version: str
    profile: BackendProfile

    @property
    def alive(self) -> bool:
        return self.process.poll() is None


class ReplicaSupervisor:
    def __init__(self, *, python: str = sys.executable, start_timeout: float = 15.0) -> None:
        self._python = python
        self._start_timeout = start_timeout
        self._lock = threading.RLock()
        self._replicas: dict[str, list[_Replica]] = {}
        self._draining: list[_Replica] = []
        self._dir: Path | None = None

    def __enter__(self) -> ReplicaSupervisor:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop_all()

    def scale(
        self, deployment: str, replicas: int, *, version: str, profile: BackendProfile, drain: bool = True
    ) -> None:
        """Make exactly ``replicas`` live processes of this Deployment serve ``version`` with ``profile``.

        Replicas no longer wanted leave `addresses` at once; they are stopped now when ``drain`` is true,
        else at the next `drain` call (so a caller can first point nginx away from them).
        """
        if replicas < 0:
            raise ValueError(f"replicas must be >= 0, got {replicas}")
        with self._lock:
            current = [r for r in self._replicas.get(deployment, []) if r.alive or _reap(r)]
            stale = [r for r in current if r.version != version or r.profile != profile]
            keep = sorted((r for r in current if r not in stale), key=lambda r: r.index)
            retired = list(stale)
            if stale and replicas > 0:
                # Replace: bring the new set up first, then retire the old one.
                retired += keep
                keep = self._start(deployment, range(replicas), version, profile)
            elif len(keep) > replicas:
                retired += keep[replicas:]
                keep = keep[:replicas]
            elif len(keep) < replicas:
                used = {r.index for r in keep}
                free = [i for i in range(replicas + len(used)) if i not in used][: replicas - len(keep)]
                keep += self._start(deployment, free, version, profile)
            if keep:
                self._replicas[deployment] = sorted(keep, key=lambda r: r.index)
            else:
                self._replicas.pop(deployment, None)
            self._draining += retired
            if drain:
                self.drain()

    def drain(self) -> None:
        """Stop the replicas that `scale` retired."""
        with self._lock:
            retired, self._draining = self._draining, []
        _stop(retired)

    def addresses(self, deployment: str) -> tuple[str, ...]:
        with self._lock:
            return tuple(f"127.0.0.1:{r.port}" for r in self._replicas.get(deployment, []) if r.alive)

    def ready(self, deployment: str) -> int:
        return len(self.addresses(deployment))

    def deployments(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(sorted(self._replicas))

    def pids(self, deployment: str) -> tuple[int, ...]:
        with self._lock:
            return tuple(r.process.pid for r in self._replicas.get(deployment, []) if r.alive)

    def stop_all(self) -> None:
        with self._lock:
            everything = [r for group in self._replicas.values() for r in group] + self._draining
            self._replicas.clear()
            self._draining = []
            _stop(everything)
            if self._dir is not None:
                shutil.rmtree(self._dir, ignore_errors=True)
                self._dir = None

    def _workdir(self) -> Path:
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="songbird-lab-backends-"))
        return self._dir

    def _start(
        self,
        deployment: str,
        indexes: range | list[int],
        version: str,
        profile: BackendProfile,
    ) -> list[_Replica]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        started: list[tuple[int, subprocess.Popen[bytes], Path]] = []
        try:
            for index in indexes:
                stderr_path = self._workdir() / f"{deployment}-{index}-{time.monotonic_ns()}.stderr"
                with stderr_path.open("wb") as stderr:
                    proc = subprocess.Popen(
                        [
                            self._python,
                            "-m",
                            "songbird.lab.backend",
                            f"--deployment={deployment}",
                            f"--version={version}",
                            f"--replica={index}",
                            "--port=0",
                            *profile.args(),
                        ],
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.PIPE,
                        stderr=stderr,
                        env=env,
                        start_new_session=True,
                    )
                started.append((index, proc, stderr_path))
            deadline = time.monotonic() + self._start_timeout
            return [
                _Replica(index, _await_ready(proc, deadline, err), proc, version, profile)
                for index, proc, err in started
            ]
        except BaseException:
            for _, proc, _ in started:
                _kill_group(proc)
            raise


def _await_ready(proc: subprocess.Popen[bytes], deadline: float, stderr_path: Path) -> int:
    assert proc.stdout is not None
    line = b""
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(timeout=left):
                break
            chunk = os.read(proc.stdout.fileno(), 256)
            if not chunk:
                break
            line += chunk
    proc.stdout.close()
    text = line.decode(errors="replace").strip()
    if text.startswith(READY_PREFIX):
        return int(text[len(READY_PREFIX) :])
    _kill_group(proc)
    tail = stderr_path.read_text(errors="replace")[-2000:] if stderr_path.exists() else ""
    raise BackendStartError(f"backend {proc.args!r} did not report READY: {text!r}\n{tail}")


def _reap(replica: _Replica) -> bool:
    replica.process.wait(timeout=0.1)
    return False


def _stop(replicas: list[_Replica]) -> None:
    for r in replicas:
        _signal_group(r.process, signal.SIGTERM)
    deadline = time.monotonic() + _STOP_GRACE
    for r in replicas:
        try:
            r.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _kill_group(r.process)


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    _signal_group(proc, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=_STOP_GRACE)
