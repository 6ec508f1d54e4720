"""``python -m accessctl_local serve`` starts, prints where things are, and stops cleanly on Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from .conftest import LOCAL_SRC, write_project


def test_serve_prints_urls_and_stops_on_interrupt(tmp_path: Path) -> None:
    # Given a project and the serve command on free ports
    project = write_project(tmp_path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(LOCAL_SRC), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "accessctl_local", "serve", "--project-root", str(project)]
    process = subprocess.Popen(
        [*command, "--api-port", "0", "--emulator-port", "0", "--no-schedules"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    lines: list[str] = []
    try:
        # When it reports that it is serving
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if line.startswith("Serving"):
                break
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    # Then it printed the API and emulator URLs and resource names, and exited cleanly
    output = "".join(lines)
    assert "API:       http://127.0.0.1:" in output
    assert "export AWS_ENDPOINT_URL=http://127.0.0.1:" in output
    assert "ItemsTable" in output and "AWS::StepFunctions::StateMachine" in output
    assert process.returncode == 0, rest
