"""Checkpoints are committed by a manifest of sizes and SHA-256s and verified on every load: a
damaged or incomplete checkpoint is named with the stage to rerun, and never loaded."""

import json

import pytest
import torch

from soar import layout
from soar.checkpoints import LEGACY_MARKER, CheckpointError, load_checkpoint, save_checkpoint
from soar.spec import ModelRef
from soar.store import FileStore
from tests.support.models import tiny_llama

PREFIX = layout.student_model(3, 2)
BASE = ModelRef(name="tiny-arith")


@pytest.fixture
def saved(tmp_path):
    store = FileStore(tmp_path)
    model, tokenizer = tiny_llama(seed=1)
    save_checkpoint(store, PREFIX, model, tokenizer)
    return store, model


def manifest(store):
    return json.loads(store.read_bytes(layout.checkpoint_manifest(PREFIX)))


def weights_key(store) -> str:
    version = manifest(store)["version"]
    return f"{layout.checkpoint_files(PREFIX, version)}/model.safetensors"


def test_a_saved_checkpoint_loads_with_the_same_weights(saved):
    store, model = saved
    files = manifest(store)["files"]
    assert files["model.safetensors"]["size"] == len(store.read_bytes(weights_key(store)))
    loaded, _ = load_checkpoint(store, PREFIX, BASE)
    for (name, a), (_, b) in zip(
        model.state_dict().items(), loaded.state_dict().items(), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def broken(store) -> str:
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(store, PREFIX, BASE)
    message = str(err.value)
    assert "\n" not in message and f"checkpoint {store.uri}/{PREFIX}: " in message
    assert message.endswith("delete done/3/student-2.json to run stage 3/student-2 again")
    return message


def test_a_flipped_byte_is_caught_before_loading(saved):
    store, _ = saved
    data = bytearray(store.read_bytes(weights_key(store)))
    data[len(data) // 2] ^= 0x01  # same size, one bit off
    store.write_bytes(weights_key(store), bytes(data))
    assert "model.safetensors does not match its size and SHA-256" in broken(store)


def test_a_missing_file_is_named(saved):
    store, _ = saved
    store.delete(weights_key(store))
    assert "model.safetensors is missing" in broken(store)


def test_a_corrupt_manifest_is_named(saved):
    store, _ = saved
    store.write_bytes(layout.checkpoint_manifest(PREFIX), b'{"version": ')
    assert "its manifest is corrupt" in broken(store)


def test_no_manifest_means_no_checkpoint(tmp_path):
    store = FileStore(tmp_path)
    store.write_bytes(f"{PREFIX}/config.json", b"{}")  # an upload that never committed
    assert "missing (no manifest)" in broken(store)


def test_saving_again_commits_a_new_folder_and_drops_the_old_one(saved):
    store, _ = saved
    first = manifest(store)["version"]
    model, tokenizer = tiny_llama(seed=2)
    save_checkpoint(store, PREFIX, model, tokenizer)
    second = manifest(store)["version"]
    assert second != first
    inside = {key[len(PREFIX) + 1 :].split("/")[0] for key in store.list(PREFIX)}
    assert inside == {second, "MANIFEST.json"}
    loaded, _ = load_checkpoint(store, PREFIX, BASE)
    torch.testing.assert_close(loaded.lm_head.weight, model.lm_head.weight, rtol=0, atol=0)


def test_a_checkpoint_from_before_manifests_still_loads(tmp_path):
    store = FileStore(tmp_path)
    model, tokenizer = tiny_llama(seed=3)
    model.save_pretrained(tmp_path / "legacy")
    tokenizer.save_pretrained(tmp_path / "legacy")
    store.upload_dir(tmp_path / "legacy", PREFIX)
    store.write_bytes(f"{PREFIX}/{LEGACY_MARKER}", b"")
    loaded, _ = load_checkpoint(store, PREFIX, BASE)
    torch.testing.assert_close(loaded.lm_head.weight, model.lm_head.weight, rtol=0, atol=0)
