"""The integration tier: stages and whole local runs on the tiny model, S3 on moto's server."""

import pytest

from soar import models
from soar.sampler import TransformersSampler
from tests.infra.fixtures import s3_server  # noqa: F401  (moto's S3 server, started on first use)


@pytest.fixture(scope="session")
def tiny():
    """The builtin tiny model: trained once into $SOAR_CACHE, then loaded from there."""
    return models.load_model("tiny-arith")


@pytest.fixture(scope="session")
def tiny_sampler(tiny):
    return TransformersSampler(*tiny, batch_size=128)
