"""Running the `soar` command in tests, on the tiny run."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from soar import layout
from tests.support.manifests import TINY, soarrun, write_manifest


def tiny_manifest(folder: Path, **fields) -> Path:
    """The tiny run ("e2e") with these top-level spec fields replaced."""
    return write_manifest(folder, soarrun("e2e", TINY, **fields))


def soar(*args: str, cwd: Path, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "soar", *args], cwd=cwd, capture_output=True, text=True, **kw
    )


def start_run(manifest: Path, cwd: Path, **popen) -> subprocess.Popen:
    """`soar run manifest` in the background; its output is discarded unless `popen` says."""
    options = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL} | popen
    return subprocess.Popen(
        [sys.executable, "-m", "soar", "run", str(manifest)], cwd=cwd, **options
    )


def wait_for(path: Path, proc: subprocess.Popen, timeout: float) -> bool:
    """Whether `path` appeared before `proc` ended and within `timeout` seconds."""
    deadline = time.time() + timeout
    while not path.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    return path.exists()


def checkpoint_files(store: Path, prefix: str) -> dict[str, dict]:
    """The files a committed checkpoint in a file:// store holds, by name, as its manifest says."""
    return json.loads((store / layout.checkpoint_manifest(prefix)).read_text())["files"]
