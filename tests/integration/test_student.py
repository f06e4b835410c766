"""The student inner loop on a tiny random Llama: it trains, learns, keeps its reference."""

import copy

import pytest
import torch

from soar.prompts import Domain
from soar.sampler import TransformersSampler
from soar.student import train_rloo
from soar.trainable import make_student
from tests.support.models import tiny_llama

DOMAIN = Domain("tiny", teacher_prompt="", student_preamble="")
QUESTIONS = [{"question": f"{a}+{b}", "answer": str(a + b)} for a, b in [(1, 2), (3, 4), (5, 6)]]
STAT_KEYS = {"step", "reward", "kl", "loss", "grad_norm", "lr", "completion_tokens", "seconds"}
LORA = {"rank": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}


def sevens(completions: list[str], references: list[str]) -> list[float]:
    """Reward the share of '7' characters: a signal a random model can learn in a few steps."""
    return [c.count("7") / max(len(c), 1) for c in completions]


def train(model, tokenizer, **overrides) -> list[dict]:
    settings = dict(
        domain=DOMAIN,
        reward_fn=sevens,
        steps=2,
        batch_questions=2,
        group_size=4,
        max_new_tokens=8,
        temperature=1.0,
        lr=1e-2,
        kl_coef=0.0,
        seed=0,
    )
    return train_rloo(model, tokenizer, QUESTIONS, **(settings | overrides))


def weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("lora", [None, LORA], ids=["full", "lora"])
def test_student_trains_and_changes_weights(lora):
    model, tokenizer = tiny_llama()
    student = make_student(model, lora)
    before = weights(student)
    stats = train(student, tokenizer, kl_coef=0.01)
    assert [s["step"] for s in stats] == [0, 1]
    for s in stats:
        assert set(s) == STAT_KEYS
        assert all(torch.isfinite(torch.tensor(v)) for v in s.values())
    after = weights(student)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    if lora is None:
        assert "model.layers.0.self_attn.q_proj.weight" in changed
    else:
        assert changed and all("lora_" in k for k in changed)


def test_full_finetuning_keeps_the_starting_weights_as_reference():
    model, tokenizer = tiny_llama()
    stats = train(model, tokenizer, steps=3, kl_coef=0.1)
    assert stats[0]["kl"] == 0.0  # the policy is still the reference
    assert stats[2]["kl"] > 0.0  # the policy moved, the reference did not


def test_lora_reference_is_the_base_model():
    model, tokenizer = tiny_llama()
    original = copy.deepcopy(model)
    student = make_student(model, LORA)
    stats = train(student, tokenizer, steps=3, kl_coef=0.1)
    assert stats[0]["kl"] == 0.0 and stats[2]["kl"] > 0.0
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad(), student.disable_adapter():
        torch.testing.assert_close(student(ids).logits, original(ids).logits)


def test_explicit_reference_is_left_untouched():
    model, tokenizer = tiny_llama()
    ref, _ = tiny_llama(seed=1)
    ref_before = weights(ref)
    stats = train(model, tokenizer, kl_coef=0.1, ref=ref)
    assert stats[0]["kl"] > 0.0  # a different model from the start
    assert all(torch.equal(v, weights(ref)[k]) for k, v in ref_before.items())


def test_kl_penalty_in_the_reward_trains_too():
    model, tokenizer = tiny_llama()
    stats = train(model, tokenizer, steps=3, kl_coef=0.1, kl_penalty="reward")
    assert stats[2]["kl"] > 0.0


def test_unknown_kl_penalty_is_rejected():
    model, tokenizer = tiny_llama()
    with pytest.raises(ValueError, match="kl_penalty"):
        train(model, tokenizer, steps=1, kl_penalty="both")


def seven_share(model, tokenizer) -> float:
    prompts = [DOMAIN.student_prompt(q["question"]) for q in QUESTIONS]
    groups = TransformersSampler(model, tokenizer).generate(
        prompts, n=16, max_new_tokens=8, seed=99
    )
    return sum(sevens([s.text for g in groups for s in g], [])) / (16 * len(QUESTIONS))


def test_rewarding_a_token_makes_it_more_frequent():
    model, tokenizer = tiny_llama()
    before = seven_share(model, tokenizer)
    train(model, tokenizer, steps=8, batch_questions=3, group_size=8, lr=3e-2)
    after = seven_share(model, tokenizer)
    assert after > before + 0.1, (before, after)


def test_same_seed_same_run():
    runs = []
    for seed in (0, 0, 1):
        model, tokenizer = tiny_llama()
        student = make_student(model, LORA | {"dropout": 0.1}, seed=seed)
        stats = train(student, tokenizer, seed=seed, kl_coef=0.05)
        runs.append(([{k: v for k, v in s.items() if k != "seconds"} for s in stats], student))
    assert runs[0][0] == runs[1][0]
    assert runs[0][0] != runs[2][0]
    first, second = weights(runs[0][1]), weights(runs[1][1])
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_make_student_merges_a_promoted_adapter():
    model, tokenizer = tiny_llama()
    promoted = make_student(model, LORA)
    train(promoted, tokenizer)
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        expected = promoted(ids).logits
    student = make_student(promoted, LORA, seed=1)
    with torch.no_grad(), student.disable_adapter():
        torch.testing.assert_close(student(ids).logits, expected)
