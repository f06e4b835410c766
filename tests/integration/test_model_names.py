"""A model named by an s3:// prefix: a saved model directory in a bucket on moto's S3 server,
downloaded once into $SOAR_CACHE/models. Hub ids: tests/unit/test_model_names.py."""

import pytest
import torch

from soar import models
from soar.store import open_store
from tests.support.models import tiny_llama


@pytest.fixture
def bucket(s3_server, tmp_path, monkeypatch) -> str:
    monkeypatch.setenv("SOAR_CACHE", str(tmp_path / "cache"))
    name = f"models-{tmp_path.name.lower().replace('_', '-')[-40:]}"
    s3_server.client().create_bucket(Bucket=name)
    return name


def test_s3_prefix_is_downloaded_once_and_loads(bucket, tmp_path):
    model, tokenizer = tiny_llama(3)
    models.save_model(model, tokenizer, tmp_path / "saved")
    open_store(f"s3://{bucket}").upload_dir(tmp_path / "saved", "llama/v1")
    uri = f"s3://{bucket}/llama/v1"

    loaded, loaded_tokenizer = models.load_model(uri)
    ids = tokenizer("12+34=", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, model(ids).logits)
    folder = models.resolve(uri)
    assert folder.parent == tmp_path / "cache" / "models" and folder.name.startswith("s3-")

    open_store(f"s3://{bucket}").delete("llama")
    assert models.resolve(uri) == folder  # from the cache: S3 is not read again


def test_missing_s3_prefix_is_one_line_and_caches_nothing(bucket, tmp_path):
    uri = f"s3://{bucket}/no/such/model"
    with pytest.raises(ValueError) as err:
        models.resolve(uri)
    assert str(err.value) == f"model {uri!r}: no objects under this prefix"
    assert not list((tmp_path / "cache" / "models").glob("*s3-*/"))  # a lock file, no folder


def test_s3_prefix_without_a_checkpoint_is_one_line_and_caches_nothing(bucket, tmp_path):
    open_store(f"s3://{bucket}").write_bytes("notes/README", b"not a model")
    uri = f"s3://{bucket}/notes"
    with pytest.raises(ValueError) as err:
        models.resolve(uri)
    assert str(err.value) == f"model {uri!r} holds no checkpoint (no config.json)"
    assert not list((tmp_path / "cache" / "models").glob("*s3-*/"))  # a lock file, no folder
