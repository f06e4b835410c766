"""Model names as cluster users write them: a Hugging Face hub id, read offline from a cache in
the hub's own layout that these tests build from the tiny random Llama (nothing is downloaded).
Builtins and directories: test_model_cache.py; s3:// prefixes: tests/integration."""

import hashlib
import os
import re
from pathlib import Path

import pytest
import torch

from soar import models
from tests.support.models import tiny_llama

REPO = "test-org/tiny-llama"
MAIN = "a" * 40  # commit hashes, as the hub names snapshots
OTHER = "b" * 40


def add_snapshot(cache: Path, repo: str, commit: str, refs: list[str], seed: int = 0) -> Path:
    """What huggingface_hub leaves after downloading `repo` at `commit`: files in blobs/ named by
    their hash, the snapshot's files linked to them, and refs/<name> holding the commit."""
    folder = cache / f"models--{repo.replace('/', '--')}"
    snapshot = folder / "snapshots" / commit
    models.save_model(*tiny_llama(seed), snapshot)
    (folder / "blobs").mkdir(parents=True, exist_ok=True)
    for path in sorted(p for p in snapshot.iterdir() if p.is_file()):
        blob = folder / "blobs" / hashlib.sha256(path.read_bytes()).hexdigest()
        path.replace(blob)
        path.symlink_to(os.path.relpath(blob, path.parent))
    for ref in refs:
        (folder / "refs" / ref).parent.mkdir(parents=True, exist_ok=True)
        (folder / "refs" / ref).write_text(commit)
    return snapshot


@pytest.fixture
def hub(tmp_path, monkeypatch) -> Path:
    """An offline hub cache under HF_HOME, the variable a cluster sets for its cache volume."""
    for name in ("HF_HUB_CACHE", "XDG_CACHE_HOME", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path / "hf" / "hub"


def logits(model: torch.nn.Module, tokenizer) -> torch.Tensor:
    ids = tokenizer("12+34=", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return model(ids).logits


def test_hub_id_loads_offline_from_the_hub_cache(hub):
    snapshot = add_snapshot(hub, REPO, MAIN, ["main"])
    model, tokenizer = models.load_model(REPO)
    assert models.resolve(REPO) == snapshot
    assert torch.equal(logits(model, tokenizer), logits(*tiny_llama(0)))


def test_revision_names_a_ref_or_a_commit(hub):
    main = add_snapshot(hub, REPO, MAIN, ["main"])
    other = add_snapshot(hub, REPO, OTHER, ["v2"], seed=1)
    assert models.resolve(f"{REPO}@v2") == other
    assert models.resolve(f"{REPO}@{MAIN}") == main
    model, tokenizer = models.load_model(f"{REPO}@v2")
    assert torch.equal(logits(model, tokenizer), logits(*tiny_llama(1)))


def test_hf_hub_cache_wins_over_hf_home(hub, tmp_path, monkeypatch):
    add_snapshot(hub, REPO, MAIN, ["main"])
    volume = tmp_path / "volume"
    monkeypatch.setenv("HF_HUB_CACHE", str(volume))
    with pytest.raises(ValueError, match=re.escape(str(volume))):
        models.resolve(REPO)
    snapshot = add_snapshot(volume, REPO, MAIN, ["main"])
    assert models.resolve(REPO) == snapshot


def test_hub_id_not_in_the_cache_offline_is_one_line_naming_id_and_cache(hub, monkeypatch, caplog):
    monkeypatch.setenv("HF_TOKEN", "hf_never_shown")
    add_snapshot(hub, REPO, MAIN, ["main"])
    for ref in ("test-org/other-model", f"{REPO}@no-such-ref"):
        with pytest.raises(ValueError) as err:
            models.load_model(ref)
        message = str(err.value)
        assert ref in message and str(hub) in message and "HF_HUB_OFFLINE" in message
        assert "\n" not in message and "hf_never_shown" not in message + caplog.text


def test_an_existing_directory_wins_over_a_hub_id(hub, tmp_path, monkeypatch):
    add_snapshot(hub, REPO, MAIN, ["main"])
    monkeypatch.chdir(tmp_path)
    models.save_model(*tiny_llama(1), tmp_path / REPO)
    assert models.resolve(REPO) == Path(REPO)


@pytest.mark.parametrize("ref", ["./org/name", "../org/name", "org/name/extra", "org/", "/org/x"])
def test_paths_are_never_taken_for_hub_ids(hub, ref):
    with pytest.raises(ValueError, match="neither a builtin"):
        models.resolve(ref)
