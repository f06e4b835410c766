"""Running the `soar` command in tests, on the tiny run."""

from __future__ import annotations

import json
import subprocess
import sys
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


def checkpoint_files(store: Path, prefix: str) -> dict[str, dict]:
    """The files a committed checkpoint in a file:// store holds, by name, as its manifest says."""
    return json.loads((store / layout.checkpoint_manifest(prefix)).read_text())["files"]
