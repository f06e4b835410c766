import os
import random
import threading
import time

import pytest
import torch

from soar import models, tinymodel
from soar.arith import ARITH, build_arith_pool, make_problem
from soar.prompts import last_boxed, parse_teacher_output
from soar.sampler import TransformersSampler


@pytest.fixture(scope="session")
def tiny():
    """The builtin tiny model: trained once into $SOAR_CACHE, then loaded from there."""
    return models.load_model("tiny-arith")


@pytest.fixture(scope="session")
def sampler(tiny):
    return TransformersSampler(*tiny, batch_size=128)


def greedy_accuracy(sampler, problems: list[dict]) -> float:
    prompts = [ARITH.student_prompt(p["question"]) for p in problems]
    outputs = sampler.generate(prompts, temperature=0, max_new_tokens=96)
    return sum(
        last_boxed(out[0].text) == p["answer"] for out, p in zip(outputs, problems, strict=True)
    ) / len(problems)


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


def test_training_is_deterministic_for_a_seed():
    recipe = tinymodel.TinyRecipe(layers=1, width=32, steps=3, batch_size=8)
    first, _ = tinymodel.train(recipe)
    again, _ = tinymodel.train(recipe)
    for (name, a), (_, b) in zip(
        first.state_dict().items(), again.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name


def test_checkpoint_name_follows_the_recipe():
    assert tinymodel.checkpoint_name() == tinymodel.checkpoint_name(tinymodel.TinyRecipe())
    assert tinymodel.checkpoint_name() != tinymodel.checkpoint_name(tinymodel.TinyRecipe(seed=1))
    assert tinymodel.checkpoint_name().startswith("tiny-arith-")
    code = tinymodel.code_without_prose()
    assert "AdamW" in code and "Trains the tiny model" not in code


def test_tiny_model_writes_the_teacher_format(sampler):
    outputs = sampler.generate([ARITH.teacher_prompt], n=100, temperature=1.0, max_new_tokens=96)
    pairs = [parse_teacher_output(out.text) for out in outputs[0]]
    assert sum(pair is not None for pair in pairs) >= 90
    assert len({pair.question for pair in pairs if pair}) >= 50  # samples, not one memorised line


def test_tiny_model_solves_short_sums_and_some_longer_ones(sampler):
    rng = random.Random(11)
    assert greedy_accuracy(sampler, [make_problem(rng, 1) for _ in range(40)]) >= 0.9
    assert greedy_accuracy(sampler, [make_problem(rng, 2) for _ in range(40)]) >= 0.9
    assert 0.2 <= greedy_accuracy(sampler, [make_problem(rng, 5) for _ in range(40)]) <= 0.9


def test_hard_pool_leaves_a_fail_at_k_split(sampler):
    """6-digit sums always fail; some 5-digit ones fail 16 samples too, others do not."""
    pool = build_arith_pool(48, seed=5)
    prompts = [ARITH.student_prompt(p["question"]) for p in pool]
    outputs = sampler.generate(prompts, n=16, temperature=1.0, max_new_tokens=96, seed=2)
    failed = [
        p["difficulty"]
        for out, p in zip(outputs, pool, strict=True)
        if not any(last_boxed(o.text) == p["answer"] for o in out)
    ]
    assert failed.count(6) == 24
    assert 1 <= failed.count(5) <= 20
    assert greedy_accuracy(sampler, [p for p in pool if p["difficulty"] == 6]) == 0


def test_second_load_comes_from_the_cache(tiny, monkeypatch):
    def no_training(directory):
        raise AssertionError("the tiny model was trained again")

    monkeypatch.setattr(tinymodel, "train_to", no_training)
    model, tokenizer = models.load_model("tiny-arith")
    assert tokenizer.get_vocab() == tiny[1].get_vocab()
    for a, b in zip(model.parameters(), tiny[0].parameters(), strict=True):
        assert torch.equal(a, b)


def test_saved_model_loads_back_from_its_directory(tiny, tmp_path):
    model, tokenizer = tiny
    models.save_model(model, tokenizer, tmp_path)
    again, tokenizer_again = models.load_model(str(tmp_path), dtype="bfloat16")
    assert again.dtype == torch.bfloat16
    ids = tokenizer_again(ARITH.teacher_prompt, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        expected = model(ids).logits
        got = again.float()(ids).logits
    assert torch.allclose(expected, got, atol=0.1)


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


def test_smollm2_loads_offline_and_generates(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model, tokenizer = models.load_model("smollm2-135m")
    assert sum(p.numel() for p in model.parameters()) > 100_000_000
    assert os.path.isfile(models.resolve("smollm2-135m") / "model.safetensors")
    [[sample]] = TransformersSampler(model, tokenizer).generate(
        ["User: What is 2+3? Assistant:"], temperature=0, max_new_tokens=8
    )
    assert len(sample.token_ids) > 0 and sample.text.strip()


def test_build_killed_midway_is_cleaned_up_by_the_next_one(tmp_path, monkeypatch):
    monkeypatch.setenv("SOAR_CACHE", str(tmp_path))
    stale = tmp_path / "models" / ".m.k1ll3d"
    stale.mkdir(parents=True)
    models.cached_dir("m", lambda directory: (directory / "weights").write_text("w"))
    assert not stale.exists()
    assert (tmp_path / "models" / "m" / "weights").read_text() == "w"
