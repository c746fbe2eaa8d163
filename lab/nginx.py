"""Runs the Debian nginx binary as a plain child process playing ingress-nginx, and applies routing models.

``with NginxServer() as nginx: nginx.apply(model)``: the server starts with an empty model (every Host gets
the 404 default backend), ``apply`` renders the model (`lab.render`), checks it with ``nginx -t`` and swaps
it in with a graceful reload (SIGHUP: in-flight requests finish on the old workers). ``apply`` returns once
the new configuration answers: the metrics port serves the configuration's generation number, and
``apply`` polls it.

Invariants:
- nginx listens on 127.0.0.1 only, on ``port`` (traffic) and ``metrics_port`` (``/metrics``); pid file,
  error log and temporary files live in a private temporary directory that is removed on stop;
- a configuration that ``nginx -t`` refuses is never loaded: `NginxConfigError` carries nginx's message and
  the running configuration stays as it was;
- the process runs in its own process group and is stopped when the ``with`` block ends, also on Ctrl-C or
  an exception: SIGQUIT (graceful), then SIGTERM, then SIGKILL;
- the Lua module comes from Debian's ``libnginx-mod-http-lua`` (``ngx_http_lua_module.so``, which needs
  ``ndk_http_module.so`` loaded first), looked up in Debian's module directory.

Errors name the fix: a missing binary or module raises `NginxNotInstalledError` ("install Debian packages
nginx and libnginx-mod-http-lua, or run make demo"); a taken port raises `NginxPortInUseError` before nginx
starts (or after, if nginx reports it); anything else raises `NginxError` with the tail of the error log.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

from songbird.lab.model import RoutingModel
from songbird.lab.render import RenderOptions, render_config

INSTALL_HINT = "install Debian packages nginx and libnginx-mod-http-lua, or run make demo"
# Where Debian's packages put dynamic modules (the binary's --modules-path is /usr/lib/nginx/modules).
MODULE_DIRS = ("/usr/lib/nginx/modules", "/usr/share/nginx/modules", "/usr/lib64/nginx/modules")
LUA_MODULES = ("ndk_http_module.so", "ngx_http_lua_module.so")

_HTTP_TIMEOUT = 2.0
_CHECK_TIMEOUT = 30.0
_STOP_GRACE = 5.0


class NginxError(RuntimeError):
    """nginx did not do what was asked; the message carries the relevant part of its log."""


class NginxNotInstalledError(NginxError):
    pass


class NginxPortInUseError(NginxError):
    pass


class NginxConfigError(NginxError):
    """``nginx -t`` refused a rendered configuration."""


def find_nginx(binary: str | None = None) -> str:
    """The nginx executable: ``binary`` if given, else ``nginx`` on PATH or in /usr/sbin."""
    if binary:
        found = shutil.which(binary)
    else:
        found = shutil.which("nginx") or next(
            (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
        )
    if found is None:
        raise NginxNotInstalledError(f"nginx not found ({binary or 'nginx'}): {INSTALL_HINT}")
    return found


def find_lua_modules(dirs: tuple[str, ...] = MODULE_DIRS) -> tuple[str, ...]:
    """Absolute paths of the NDK and Lua modules, in load order."""
    for directory in dirs:
        paths = tuple(str(Path(directory) / name) for name in LUA_MODULES)
        if all(Path(p).is_file() for p in paths):
            return paths
    raise NginxNotInstalledError(f"nginx Lua module not found in {', '.join(dirs)}: {INSTALL_HINT}")


def _children(pid: int) -> set[int]:
    """Live child processes of ``pid`` (nginx's workers), from /proc; empty where /proc is absent."""
    found: set[int] = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 1 and fields[1] == str(pid):
            found.add(int(stat.parent.name))
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def check_port_free(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as nginx does for its listeners
        try:
            s.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise NginxPortInUseError(
                    f"127.0.0.1:{port} is already in use; stop what listens there or choose another port"
                ) from exc
            raise


class NginxServer:
    def __init__(
        self,
        *,
        port: int = 0,
        metrics_port: int = 0,
        binary: str | None = None,
        ready_timeout: float = 15.0,
    ) -> None:
        self._binary = binary
        self._requested = (port, metrics_port)
        self.port = port
        self.metrics_port = metrics_port
        self._ready_timeout = ready_timeout
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._dir: Path | None = None
        self._modules: tuple[str, ...] = ()
        self._generation = 0
        self._model: RoutingModel | None = None

    # -- lifecycle ---------------------------------------------------------------------------------------

    def __enter__(self) -> NginxServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self, model: RoutingModel | None = None) -> None:
        with self._lock:
            if self._process is not None:
                raise NginxError("nginx is already running")
            binary = find_nginx(self._binary)
            self._modules = find_lua_modules()
            port, metrics_port = self._requested
            for p in (port, metrics_port):
                if p:
                    check_port_free(p)
            self.port = port or free_port()
            self.metrics_port = metrics_port or free_port()
            self._dir = Path(tempfile.mkdtemp(prefix="songbird-lab-nginx-"))
            # Workers run as an unprivileged user when the master is root: let them reach their files.
            self._dir.chmod(0o755)
            try:
                text = self._render(model or RoutingModel(), 1)
                self._check(binary, text)
                self._conf.write_text(text)
                with (self._dir / "stderr.log").open("wb") as out:
                    self._process = subprocess.Popen(
                        [binary, "-p", f"{self._dir}/", "-c", str(self._conf)],
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                self._wait_generation(1)
                self._generation = 1
                self._model = model or RoutingModel()
            except BaseException:
                self._shutdown()
                raise

    def stop(self) -> None:
        with self._lock:
            self._shutdown()

    # -- configuration -----------------------------------------------------------------------------------

    def apply(self, model: RoutingModel) -> None:
        """Check, load and wait for ``model``; `NginxConfigError` (old config kept) if nginx refuses it."""
        with self._lock:
            if self._process is None or self._dir is None:
                raise NginxError("nginx is not running")
            generation = self._generation + 1
            text = self._render(model, generation)
            self._check(find_nginx(self._binary), text)
            self._conf.write_text(text)
            old_workers = _children(self._process.pid)
            self._process.send_signal(signal.SIGHUP)
            self._wait_generation(generation)
            self._wait_gone(old_workers)
            self._generation = generation
            self._model = model

    @property
    def model(self) -> RoutingModel | None:
        return self._model

    @property
    def generation(self) -> int:
        return self._generation

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def config_text(self) -> str:
        return self._conf.read_text() if self._dir is not None and self._conf.exists() else ""

    def error_log(self, tail: int = 4000) -> str:
        if self._dir is None:
            return ""
        parts = []
        for name in ("error.log", "stderr.log"):
            path = self._dir / name
            if path.exists():
                parts.append(path.read_text(errors="replace")[-tail:])
        return "\n".join(p for p in parts if p)

    # -- internals ---------------------------------------------------------------------------------------

    @property
    def _conf(self) -> Path:
        assert self._dir is not None
        return self._dir / "nginx.conf"

    def _render(self, model: RoutingModel, generation: int) -> str:
        assert self._dir is not None
        return render_config(
            model,
            RenderOptions(
                listen_port=self.port,
                metrics_port=self.metrics_port,
                runtime_dir=str(self._dir),
                modules=self._modules,
                generation=generation,
            ),
        )

    def _check(self, binary: str, text: str) -> None:
        assert self._dir is not None
        candidate = self._dir / "nginx.conf.next"
        candidate.write_text(text)
        try:
            done = subprocess.run(
                [binary, "-t", "-q", "-p", f"{self._dir}/", "-c", str(candidate)],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=_CHECK_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise NginxConfigError(f"nginx -t did not finish within {_CHECK_TIMEOUT:.0f} s") from exc
        if done.returncode != 0:
            message = (done.stderr or done.stdout).decode(errors="replace").strip()
            raise NginxConfigError(f"nginx refused the rendered configuration: {message}")

    def _wait_generation(self, generation: int) -> None:
        url = f"http://127.0.0.1:{self.metrics_port}/songbird/generation"
        deadline = time.monotonic() + self._ready_timeout
        last = ""
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                self._raise_exited()
            try:
                with urllib.request.urlopen(url, timeout=_HTTP_TIMEOUT) as response:
                    last = response.read().decode().strip()
                if last == str(generation):
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
                last = str(exc)
            time.sleep(0.02)
        raise NginxError(
            f"nginx did not serve configuration generation {generation} within {self._ready_timeout:.0f} s "
            f"(last answer: {last!r})\n{self.error_log()}"
        )

    def _wait_gone(self, pids: set[int]) -> None:
        """Wait (bounded) for the old workers to exit: until then they may still accept a new connection
        and close it unanswered when their graceful shutdown reaches it."""
        deadline = time.monotonic() + self._ready_timeout
        while pids and time.monotonic() < deadline:
            pids = {p for p in pids if Path(f"/proc/{p}").exists()}
            if pids:
                time.sleep(0.01)

    def _raise_exited(self) -> None:
        log = self.error_log()
        if "Address already in use" in log:
            raise NginxPortInUseError(
                f"nginx could not bind 127.0.0.1:{self.port} or :{self.metrics_port}: already in use\n{log}"
            )
        raise NginxError(f"nginx exited unexpectedly\n{log}")

    def _shutdown(self) -> None:
        proc, self._process = self._process, None
        if proc is not None and proc.poll() is None:
            for sig, grace in (
                (signal.SIGQUIT, _STOP_GRACE),
                (signal.SIGTERM, _STOP_GRACE),
                (signal.SIGKILL, 0),
            ):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(timeout=grace or _STOP_GRACE)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
