"""`songbird status NAME --watch` in a real terminal: a detached tmux session runs it against the API
emulator; the test reads the screen with capture-pane. Covers: the first view (phase, step, weight, each
metric's verdict), a change of the status in the cluster redrawn in place within seconds (new phase, weight,
the PAUSED flag, the last command), an API server that never answers and then one that is gone shown as an
"unreachable" line (with the cause) under the last view while the watch keeps running, and Ctrl-C ending
it with exit code 0. Skipped, with the reason shown, only when
tmux is not installed (`make system-deps` installs it).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from songbird.analysis.state import STATUS_ANNOTATION
from tests.support.kube_emulator import KubeEmulator
from tests.support.world import BASE_POLICY, policy_configmap

NAME, NS = "nginx-rollout", "default"
FIRST = {
    "phase": "Progressing",
    "step": 0,
    "weight": 10.0,
    "reason": "step 1/5 at 10%",
    "history": [
        {
            "at": 1_700_000_000.0,
            "step": 0,
            "weight": 10.0,
            "results": [{"name": "error-rate", "verdict": "INCONCLUSIVE", "reason": "12 of 100 requests"}],
        }
    ],
}


class Tmux:
    """A tmux server of our own (its own socket), so the test touches no other session."""

    def __init__(self, socket: Path) -> None:
        self.socket = socket

    def __call__(self, *args: str) -> str:
        result = subprocess.run(
            ["tmux", "-S", str(self.socket), *args], capture_output=True, text=True, timeout=10, check=True
        )
        return result.stdout

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "watch")

    def wait_for(self, seen: Callable[[str], bool], what: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if seen(screen):
                return screen
            time.sleep(0.2)
        raise AssertionError(f"{what} never showed within {timeout:g}s; the screen:\n{screen}")


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (make system-deps installs the Debian package tmux)")
    server = Tmux(tmp_path / "tmux.sock")
    try:
        yield server
    finally:
        subprocess.run(
            ["tmux", "-S", str(server.socket), "kill-server"], capture_output=True, timeout=10, check=False
        )


def test_watch_redraws_on_change_survives_a_dead_api_and_ends_on_ctrl_c(tmux: Tmux, tmp_path: Path) -> None:
    exit_file = tmp_path / "exit-code"
    with KubeEmulator() as kube:
        cm = policy_configmap(BASE_POLICY.replace("PROM_URL", "http://prometheus:9090"))
        cm["metadata"]["annotations"] = {STATUS_ANNOTATION: json.dumps(FIRST)}
        kube.put("ConfigMap", NS, cm)
        watch = shlex.join(
            [
                sys.executable,
                "-m",
                "songbird.controller.cli",
                "status",
                NAME,
                "--watch",
                "--kubeconfig",
                str(kube.kubeconfig_path),
            ]
        )
        shell = f"{watch}; echo $? > {shlex.quote(str(exit_file))}; sleep 60"
        env = {k: v for k, v in os.environ.items() if not k.startswith("TMUX")}
        subprocess.run(
            [
                "tmux",
                "-S",
                str(tmux.socket),
                "new-session",
                "-d",
                "-s",
                "watch",
                "-x",
                "150",
                "-y",
                "40",
                shell,
            ],
            check=True,
            timeout=10,
            env=env,
        )
        first = tmux.wait_for(
            lambda s: "default/nginx-rollout  Progressing  step 1/5  weight 10%" in s, "the first view"
        )
        assert "error-rate       INCONCLUSIVE" in first and "last command: none" in first

        second = dict(
            FIRST, phase="Paused", step=1, weight=20.0, paused=True, reason="paused by songbird-cli"
        )
        second["lastCommand"] = {
            "id": "c1",
            "command": "pause",
            "at": "2026-12-01T19:00:00Z",
            "result": "executed",
            "message": "holding at 20%",
            "by": "songbird-cli",
        }
        cm["metadata"]["annotations"] = {STATUS_ANNOTATION: json.dumps(second)}
        kube.put("ConfigMap", NS, cm)
        redrawn = tmux.wait_for(
            lambda s: "Paused  step 2/5  weight 20%  PAUSED" in s, "the changed status", timeout=10
        )
        assert "last command: pause: executed at 2026-12-01T19:00:00Z by songbird-cli (id c1)" in redrawn
        assert "Progressing" not in redrawn  # redrawn in place, not appended
        # An API server that accepts requests and never answers: each read times out, the watch says so.
        kube.hang("ConfigMap", seconds=120, times=1000)
        hung = tmux.wait_for(
            lambda s: "API server unreachable since" in s, "the unreachable line", timeout=15
        )
        assert "timed out" in hung, hung
        assert "Paused  step 2/5  weight 20%" in hung  # the last view stays on screen
    # The emulator is gone altogether: the watch still runs and says why.
    dead = tmux.wait_for(lambda s: "Connection refused" in s, "the refused connection", timeout=15)
    assert "API server unreachable since" in dead and "Paused  step 2/5  weight 20%" in dead
    assert not exit_file.exists()
    tmux("send-keys", "-t", "watch", "C-c")
    deadline = time.monotonic() + 15
    while not exit_file.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert exit_file.exists(), "Ctrl-C did not end the watch"
    assert exit_file.read_text().strip() == "0"
    assert "Traceback" not in tmux.screen()
