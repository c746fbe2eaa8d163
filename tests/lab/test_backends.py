"""Local backend processes (`lab.backend` via `lab.replicas`), talked to over real HTTP.

Covers: version in the body and the X-Version header; the configured error share (binomial noise) and
latency median; the same seed gives the same sequence of answers; scaling up, down and to zero starts and
stops processes; a change of profile replaces every replica; stopping the supervisor leaves no process
behind, and replicas exit by themselves when the process that started them dies without cleaning up.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from songbird.lab.backend import BackendProfile
from songbird.lab.replicas import ReplicaSupervisor


def get(address: str, n: int = 1) -> list[tuple[int, str, str, float]]:
    host, port = address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    out = []
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            conn.request("GET", "/anything")
            r = conn.getresponse()
            body = r.read().decode()
            out.append((r.status, r.getheader("X-Version") or "", body, time.perf_counter() - t0))
    finally:
        conn.close()
    return out


def alive(pid: int) -> bool:
    return (
        Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split(")")[1][:3]
    )


def test_answers_carry_the_version_and_the_error_share() -> None:
    with ReplicaSupervisor() as sup:
        sup.scale("nginx-v2", 1, version="v2", profile=BackendProfile(error_rate=0.3, latency_median=0.0))
        answers = get(sup.addresses("nginx-v2")[0], 600)
    assert {(v, body) for _, v, body, _ in answers} == {("v2", "nginx-v2 v2 replica=0\n")}
    errors = sum(status == 500 for status, *_ in answers) / len(answers)
    assert abs(errors - 0.3) < 4 * math.sqrt(0.3 * 0.7 / len(answers))
    assert {status for status, *_ in answers} == {200, 500}


def test_latency_median_and_seeded_sequence() -> None:
    profile = BackendProfile(error_rate=0.5, latency_median=0.02, latency_sigma=0.3, seed=7)
    with ReplicaSupervisor() as sup:
        sup.scale("a", 1, version="v1", profile=profile)
        first = get(sup.addresses("a")[0], 40)
        sup.scale("a", 0, version="v1", profile=profile)
        sup.scale("a", 1, version="v1", profile=profile)
        second = get(sup.addresses("a")[0], 40)
    assert [s for s, *_ in first] == [s for s, *_ in second]
    assert 0.015 < statistics.median(t for *_, t in first) < 0.035


def test_scaling_starts_and_stops_processes() -> None:
    with ReplicaSupervisor() as sup:
        fast = BackendProfile(latency_median=0.0)
        sup.scale("web", 3, version="v1", profile=fast)
        three = sup.pids("web")
        assert len(set(sup.addresses("web"))) == 3 and all(alive(p) for p in three)
        sup.scale("web", 1, version="v1", profile=fast)
        assert sup.pids("web") == three[:1]
        assert not any(alive(p) for p in three[1:])
        sup.scale("web", 0, version="v1", profile=fast)
        assert sup.addresses("web") == () and not alive(three[0])
        sup.scale("web", 2, version="v1", profile=fast)
        before = sup.pids("web")
        sup.scale("web", 2, version="v1", profile=BackendProfile(error_rate=1.0, latency_median=0.0))
        after = sup.pids("web")
        assert not set(before) & set(after) and not any(alive(p) for p in before)
        assert {status for status, *_ in get(sup.addresses("web")[1], 5)} == {500}
    assert not any(alive(p) for p in after)


def test_replicas_exit_when_their_parent_dies_without_cleanup(tmp_path: Path) -> None:
    script = (
        "import json, os, sys\n"
        "from lab.replicas import ReplicaSupervisor\n"
        "from lab.backend import BackendProfile\n"
        "sup = ReplicaSupervisor()\n"
        "sup.scale('orphan', 2, version='v1', profile=BackendProfile())\n"
        "print(json.dumps(sup.pids('orphan')), flush=True)\n"
        "os._exit(0)\n"
    )
    root = str(Path(__file__).resolve().parents[2])
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        timeout=60,
        check=True,
        env={**os.environ, "PYTHONPATH": root, "TMPDIR": str(tmp_path)},  # its stderr files land here
    )
    pids = json.loads(done.stdout)
    assert len(pids) == 2
    deadline = time.monotonic() + 5
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(p) for p in pids)
