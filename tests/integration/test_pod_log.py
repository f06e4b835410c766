"""A stage pod archives its own output to the run store (soar/pod_log.py): the operator deletes
the Jobs of old steps, and this copy is what is left of their pods' logs."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from soar import layout
from soar.contract import EXIT_TERMINATED, POD_NAME_ENV
from tests.support.runs import soar


def pod_env(pod: str) -> dict[str, str]:
    return {**os.environ, POD_NAME_ENV: pod}


def test_a_stage_pod_archives_its_output_and_still_prints_it(finished_run: Path, tmp_path):
    store = tmp_path / "store"
    shutil.copytree(finished_run, store)
    result = soar(
        "stage", "prepare", "--run", store.as_uri(), "--step", "0", cwd=tmp_path, env=pod_env("p1")
    )
    assert result.returncode == 0, result.stderr
    archived = (store / layout.pod_log("prepare", "p1")).read_text()
    assert archived == result.stdout + result.stderr  # both streams, in the container log too
    assert "stage prepare step 0 done" in archived


def test_a_failing_stage_archives_its_error_line(tmp_path):
    store = tmp_path / "empty"
    store.mkdir()
    args = ("stage", "baseline", "--run", store.as_uri(), "--step", "1")
    result = soar(*args, cwd=tmp_path, env=pod_env("r-1-baseline-2-x"))
    assert result.returncode != 0
    printed = (result.stdout + result.stderr).splitlines()  # the container log: both streams
    (error,) = [line for line in printed if line.startswith("error: ")]
    archived = (store / layout.pod_log("1/baseline", "r-1-baseline-2-x")).read_text()
    assert error in archived.splitlines()


def test_sigterm_archives_what_the_stage_and_its_children_wrote(tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    code = (
        "import os, sys, time\n"
        "from soar.pod_log import archived_output\n"
        f"with archived_output({store.as_uri()!r}, 'logs/x.log'):\n"
        "    print('started', flush=True)\n"
        "    os.system('echo from a child process')\n"
        "    print('ready', file=sys.stderr, flush=True)\n"
        "    time.sleep(60)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    # everything goes to fd 1 (the container log holds both streams): wait for the last line
    deadline = time.monotonic() + 30
    seen = ""
    while "ready" not in seen and time.monotonic() < deadline:
        seen += proc.stdout.readline()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == EXIT_TERMINATED
    assert (store / "logs/x.log").read_text() == "started\nfrom a child process\nready\n"
