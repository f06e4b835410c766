"""The integration tier: stages and whole local runs on the tiny model, S3 on moto's server."""

from pathlib import Path

import pytest

from soar import models
from soar.sampler import TransformersSampler
from tests.infra.fixtures import s3_server  # noqa: F401  (moto's S3 server, started on first use)
from tests.support.runs import soar, tiny_manifest


@pytest.fixture(scope="session")
def tiny():
    """The builtin tiny model: trained once into $SOAR_CACHE, then loaded from there."""
    return models.load_model("tiny-arith")


@pytest.fixture(scope="session")
def tiny_sampler(tiny):
    return TransformersSampler(*tiny, batch_size=128)


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory) -> Path:
    """The tiny run, run once to the end without interruption: the reference for runs that
    were killed, faulted or driven differently."""
    folder = tmp_path_factory.mktemp("uninterrupted")
    result = soar("run", str(tiny_manifest(folder)), cwd=folder)
    assert result.returncode == 0, result.stderr + result.stdout
    assert "promotions:" in result.stdout and "pass@1=" in result.stdout
    return folder / "e2e"
