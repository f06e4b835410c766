"""Model references, the tiny model's tokenizer and recipe name, and the build-once model cache:
nothing here loads or trains a model."""

import threading
import time

import pytest

from soar import models, tinymodel


def test_tokenizer_is_character_level_with_one_token_per_format_word():
    tokenizer = tinymodel.build_tokenizer()
    text = "Write an addition problem.\n<question>47+85</question> 7+5+0=12 <answer>\\boxed{132}"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text
    assert len(ids) == len(text) - sum(len(w) - 1 for w in ["<question>", "</question>"]) - sum(
        len(w) - 1 for w in ["<answer>", "\\boxed{"]
    )
    assert tokenizer.eos_token == "<eos>" and tokenizer.pad_token == "<pad>"
    assert tokenizer.decode(ids + [tokenizer.eos_token_id], skip_special_tokens=True) == text


def test_checkpoint_name_follows_the_recipe():
    assert tinymodel.checkpoint_name() == tinymodel.checkpoint_name(tinymodel.TinyRecipe())
    assert tinymodel.checkpoint_name() != tinymodel.checkpoint_name(tinymodel.TinyRecipe(seed=1))
    assert tinymodel.checkpoint_name().startswith("tiny-arith-")
    code = tinymodel.code_without_prose()
    assert "AdamW" in code and "Trains the tiny model" not in code


@pytest.mark.parametrize("ref", ["no-such-model", "/nonexistent/checkpoint"])
def test_unknown_model_is_a_clear_error(ref):
    with pytest.raises(ValueError, match="neither a builtin"):
        models.load_model(ref)


def test_directory_without_a_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="config.json"):
        models.load_model(str(tmp_path))


def test_unknown_dtype_is_a_clear_error():
    with pytest.raises(ValueError, match="dtype"):
        models.load_model("tiny-arith", dtype="float8")


def test_cache_builds_once_even_when_processes_race(tmp_path, monkeypatch):
    monkeypatch.setenv("SOAR_CACHE", str(tmp_path))
    builds = []

    def build(directory):
        builds.append(directory)
        time.sleep(0.3)
        (directory / "weights").write_text("w")

    threads = [threading.Thread(target=models.cached_dir, args=("m", build)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(builds) == 1
    assert (tmp_path / "models" / "m" / "weights").read_text() == "w"
    assert models.cached_dir("m", build) == tmp_path / "models" / "m"
    assert len(builds) == 1


def test_failed_build_leaves_nothing_behind(tmp_path, monkeypatch):
    monkeypatch.setenv("SOAR_CACHE", str(tmp_path))

    def broken(directory):
        (directory / "half").write_text("x")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        models.cached_dir("m", broken)
    assert [p.name for p in (tmp_path / "models").iterdir()] == [".m.lock"]


def test_build_killed_midway_is_cleaned_up_by_the_next_one(tmp_path, monkeypatch):
    monkeypatch.setenv("SOAR_CACHE", str(tmp_path))
    stale = tmp_path / "models" / ".m.k1ll3d"
    stale.mkdir(parents=True)
    models.cached_dir("m", lambda directory: (directory / "weights").write_text("w"))
    assert not stale.exists()
    assert (tmp_path / "models" / "m" / "weights").read_text() == "w"
