"""A real Prometheus server on 127.0.0.1: the Debian ``prometheus`` binary run as a plain process.

The lab scrapes its nginx and the controller with it, and the tests query it (``tests/support/prom_server``
re-exports this module).

What it keeps:
- the server listens on 127.0.0.1 on a free port, with its own temporary data directory and a 100-year
  retention, so it never meets a system Prometheus on :9090 and never drops backfilled history;
- history is deterministic: `PrometheusServer.backfill` writes an OpenMetrics file and runs
  ``promtool tsdb create-blocks-from openmetrics`` into the data directory BEFORE the server starts
  (blocks added to a running server appear only after a reload, so backfilling later is refused);
- live mode: scrape targets on 127.0.0.1 given to the constructor are scraped every second;
- the process is always stopped (terminate, then kill) when the ``with`` block ends, even on error, and
  startup waits on ``/-/ready`` with a deadline instead of sleeping.

Pitfalls of the backfill, from running promtool 2.42 (see also the OpenMetrics text format):
the file must end with ``# EOF``; timestamps are seconds (milliseconds land in a far future year);
samples of one series must be in ascending time order (out-of-order ones are dropped silently);
``# TYPE <name> unknown`` keeps a name like ``nginx_ingress_controller_requests`` exactly as written
(a ``counter`` type would expect a ``_total`` suffix).

Usage::

    with PrometheusServer() as prom:            # or PrometheusServer(scrape_targets=["127.0.0.1:9113"])
        ...
    server = PrometheusServer()
    server.backfill(series)                      # before start
    with server:
        server.value('sum(nginx_ingress_controller_requests)', at=1_700_000_600)
"""

from __future__ import annotations

import json
import math
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

MISSING_BINARY = "install it with `make system-deps` (or `sudo apt-get install prometheus`)"
_READY_DEADLINE = 30.0
_STOP_GRACE = 10.0
_HTTP_TIMEOUT = 10.0


class PrometheusNotInstalledError(RuntimeError):
    """The ``prometheus`` or ``promtool`` binary is not on PATH."""


class PrometheusServerError(RuntimeError):
    """The server or promtool did not do what was asked; carries the tail of its log."""


@dataclass(frozen=True)
class Series:
    """One time series: metric name, labels, and (epoch seconds, value) samples in ascending time."""

    name: str
    labels: Mapping[str, str]
    samples: Sequence[tuple[float, float]] = field(default_factory=tuple)


@dataclass(frozen=True)
class ScrapeTarget:
    """Something on 127.0.0.1 (or another address) exposing Prometheus metrics."""

    address: str  # host:port
    job: str = "live"
    metrics_path: str = "/metrics"


def find_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise PrometheusNotInstalledError(f"`{name}` not found on PATH: {MISSING_BINARY}")
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


def _timestamp(ts: float) -> str:
    # OpenMetrics timestamps are seconds; a float keeps sub-second scrapes.
    return str(int(ts)) if float(ts).is_integer() else repr(float(ts))


def to_openmetrics(series: Iterable[Series]) -> str:
    """Render series as OpenMetrics text: one ``unknown`` family per metric name, samples ascending."""
    families: dict[str, list[Series]] = {}
    for s in series:
        families.setdefault(s.name, []).append(s)
    lines: list[str] = []
    for name, members in families.items():
        lines.append(f"# TYPE {name} unknown")
        for s in members:
            labels = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(s.labels.items()))
            selector = f"{name}{{{labels}}}" if labels else name
            last = -math.inf
            for ts, value in s.samples:
                if ts <= last:
                    raise ValueError(f"samples of {selector} are not in ascending time order at {ts}")
                last = ts
                lines.append(f"{selector} {_number(value)} {_timestamp(ts)}")
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


class PrometheusServer:
    """One Prometheus process (for a lab run, a test module or a test). Use as a context manager."""

    def __init__(
        self,
        *,
        scrape_targets: Sequence[str | ScrapeTarget] = (),
        scrape_interval: str = "1s",
        ready_deadline: float = _READY_DEADLINE,
    ) -> None:
        self.prometheus = find_binary("prometheus")
        self.promtool = find_binary("promtool")
        self.targets = tuple(
            t if isinstance(t, ScrapeTarget) else ScrapeTarget(address=t) for t in scrape_targets
        )
        self.scrape_interval = scrape_interval
        self.ready_deadline = ready_deadline
        self._tmp = tempfile.TemporaryDirectory(prefix="songbird-prom-")
        self.root = Path(self._tmp.name)
        self.data_dir = self.root / "data"
        self.data_dir.mkdir()
        self.log_path = self.root / "prometheus.log"
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    # -- history ---------------------------------------------------------------------------------------

    def backfill(self, series: Iterable[Series]) -> None:
        """Write the series into the data directory as TSDB blocks. Only before the server starts."""
        self.backfill_openmetrics(to_openmetrics(series))

    def backfill_openmetrics(self, text: str) -> None:
        if self._process is not None:
            raise PrometheusServerError(
                "backfill before starting the server: a running one sees new blocks late"
            )
        if not text.rstrip().endswith("# EOF"):
            raise ValueError("OpenMetrics text must end with '# EOF'")
        source = self.root / f"backfill-{len(list(self.root.glob('backfill-*')))}.om"
        source.write_text(text, encoding="utf-8")
        result = subprocess.run(
            [self.promtool, "tsdb", "create-blocks-from", "openmetrics", str(source), str(self.data_dir)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            raise PrometheusServerError(
                f"promtool create-blocks-from failed ({result.returncode}): "
                f"{(result.stderr or result.stdout)[-2000:]}"
            )

    # -- lifecycle -------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if not self.port:
            raise PrometheusServerError("the server is not started")
        return f"http://127.0.0.1:{self.port}"

    def _write_config(self) -> Path:
        lines = [
            "global:",
            f"  scrape_interval: {self.scrape_interval}",
            f"  evaluation_interval: {self.scrape_interval}",
            "scrape_configs:",
        ]
        jobs: dict[tuple[str, str], list[str]] = {}
        for target in self.targets:
            jobs.setdefault((target.job, target.metrics_path), []).append(target.address)
        for index, ((job, path), addresses) in enumerate(jobs.items()):
            # Two targets with one job name but different paths need distinct job names.
            name = job if sum(1 for j, _ in jobs if j == job) == 1 else f"{job}-{index}"
            lines += [
                f"  - job_name: {json.dumps(name)}",
                f"    metrics_path: {json.dumps(path)}",
                f"    scrape_interval: {self.scrape_interval}",
                f"    scrape_timeout: {self.scrape_interval}",
                "    static_configs:",
                f"      - targets: {json.dumps(addresses)}",
            ]
        if not jobs:
            lines[-1] = "scrape_configs: []"
        config = self.root / "prometheus.yml"
        config.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return config

    def start(self) -> PrometheusServer:
        config = self._write_config()
        last_error = ""
        for _ in range(3):  # a free port can be taken between probing and binding: retry, bounded
            self.port = free_port()
            with self.log_path.open("wb") as log:
                self._process = subprocess.Popen(
                    [
                        self.prometheus,
                        f"--config.file={config}",
                        f"--storage.tsdb.path={self.data_dir}",
                        f"--web.listen-address=127.0.0.1:{self.port}",
                        "--storage.tsdb.retention.time=100y",
                        "--web.enable-lifecycle",
                        "--log.level=warn",
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            try:
                self._wait_ready()
                return self
            except PrometheusServerError as exc:
                last_error = str(exc)
                self.stop()
                if "address already in use" not in last_error:
                    break
        raise PrometheusServerError(last_error)

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-2000:]
        except OSError:
            return ""

    def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.ready_deadline
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise PrometheusServerError(
                    f"prometheus exited with {self._process.returncode}: {self._log_tail()}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1.0) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        raise PrometheusServerError(
            f"prometheus not ready within {self.ready_deadline:.0f} s: {self._log_tail()}"
        )

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=_STOP_GRACE)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=_STOP_GRACE)

    def close(self) -> None:
        try:
            self.stop()
        finally:
            self._tmp.cleanup()

    def __enter__(self) -> PrometheusServer:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- queries ---------------------------------------------------------------------------------------

    def api(self, path: str, params: Mapping[str, str]) -> Any:
        """GET ``/api/v1/<path>`` and return its ``data``; raise PrometheusServerError on an error answer."""
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=_HTTP_TIMEOUT) as response:
                body = json.load(response)
        except urllib.error.HTTPError as exc:
            raise PrometheusServerError(f"{url}: HTTP {exc.code}: {exc.read()[:500]!r}") from exc
        if body.get("status") != "success":
            raise PrometheusServerError(f"{url}: {body}")
        return body["data"]

    def query(self, promql: str, at: float | None = None) -> list[dict[str, Any]]:
        """Instant query at epoch second ``at`` (now if None): the result as a list of
        ``{"metric": {...}, "value": [ts, "v"]}`` (a scalar result becomes one entry with no labels)."""
        params = {"query": promql}
        if at is not None:
            params["time"] = repr(float(at))
        data = self.api("query", params)
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    def value(self, promql: str, at: float | None = None) -> float | None:
        """The single value of an instant query, None when empty; fails on more than one series."""
        result = self.query(promql, at)
        if not result:
            return None
        if len(result) > 1:
            raise PrometheusServerError(f"{promql!r} returned {len(result)} series: {result[:3]}")
        return float(result[0]["value"][1])

    def wait_for_targets(self, timeout: float = 15.0) -> None:
        """Block until every scrape target has been scraped successfully once (``up == 1``)."""
        deadline = time.monotonic() + timeout
        while True:
            up = self.query("up")
            healthy = sum(1 for r in up if r["value"][1] == "1")
            if healthy >= len(self.targets):
                return
            if time.monotonic() > deadline:
                raise PrometheusServerError(
                    f"only {healthy} of {len(self.targets)} targets up after {timeout} s: {up}"
                )
            time.sleep(0.2)


class PrometheusApi:
    """Queries to any Prometheus (the lab's own, or a cluster's for ``songbird lab --kubeconfig``), each
    bounded by ``timeout`` seconds."""

    def __init__(self, url: str, *, timeout: float = _HTTP_TIMEOUT) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def api(self, path: str, params: Mapping[str, str]) -> Any:
        """GET ``/api/v1/<path>`` and return its ``data``; PrometheusServerError on any failure."""
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as response:
                body = json.load(response)
        except urllib.error.HTTPError as exc:
            raise PrometheusServerError(f"{url}: HTTP {exc.code}: {exc.read()[:500]!r}") from exc
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise PrometheusServerError(f"{url}: {exc}") from exc
        if body.get("status") != "success":
            raise PrometheusServerError(f"{url}: {body}")
        return body["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        data = self.api("query", {"query": promql})
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])
