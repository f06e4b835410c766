"""Batched LoRA students (training.studentsPerStage): several students as adapters of one tiny
random Llama, trained together, give the losses and updates each would give trained alone."""

import pytest
import torch

from soar.checkpoints import load_checkpoint, save_checkpoint
from soar.prompts import Domain
from soar.sampler import TransformersSampler
from soar.spec import ModelRef
from soar.store import FileStore
from soar.student import Learner, train_rloo, train_students
from soar.trainable import add_adapters, make_student
from tests.support.models import tiny_llama

DOMAIN = Domain("tiny", teacher_prompt="", student_preamble="")
LORA = {"rank": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}
# Two students with their own datasets and seeds, as two (dataset, repeat) inner loops of a step.
DATASETS = [
    [{"question": f"{a}+{b}", "answer": str(a + b)} for a, b in [(1, 2), (3, 4), (5, 6)]],
    [{"question": f"{a}*{b}", "answer": str(a * b)} for a, b in [(2, 3), (4, 4), (7, 1)]],
]
SEEDS = [11, 12]
SETTINGS = dict(
    domain=DOMAIN,
    steps=3,
    batch_questions=2,
    group_size=4,
    max_new_tokens=8,
    temperature=1.0,
    lr=1e-2,
    kl_coef=0.05,
    micro_batch=3,  # 8 rollouts a student: micro-batches of 3, 3 and 2
)


def sevens(completions: list[str], references: list[str]) -> list[float]:
    """Reward the share of '7' characters: a signal a random model can learn in a few steps."""
    return [c.count("7") / max(len(c), 1) for c in completions]


def adapter_weights(model, adapter: str) -> dict[str, torch.Tensor]:
    """One adapter's LoRA matrices, keyed without the adapter's name."""
    return {
        name.replace(f".{adapter}.", "."): p.detach().clone()
        for name, p in model.named_parameters()
        if f".{adapter}." in name
    }


def alone(k: int) -> tuple[list[dict], dict[str, torch.Tensor]]:
    """Student k trained by itself, as a one-student stage trains it."""
    model, tokenizer = tiny_llama()
    student = make_student(model, LORA)
    stats = train_rloo(student, tokenizer, DATASETS[k], seed=SEEDS[k], reward_fn=sevens, **SETTINGS)
    return stats, adapter_weights(student, "default")


def test_batched_students_train_as_each_would_alone():
    model, tokenizer = tiny_llama()
    policy = make_student(model, LORA)
    names = add_adapters(policy, 2)
    start = [adapter_weights(policy, name) for name in names]
    learners = [Learner(DATASETS[k], SEEDS[k], names[k]) for k in range(2)]
    together = train_students(policy, tokenizer, learners, reward_fn=sevens, **SETTINGS)

    for k, name in enumerate(names):
        stats, weights = alone(k)
        for key in ("reward", "loss", "kl", "grad_norm", "completion_tokens", "lr"):
            got = [s[key] for s in together[k]]
            assert got == pytest.approx([s[key] for s in stats], rel=1e-4, abs=1e-6), (k, key)
        trained = adapter_weights(policy, name)
        assert trained.keys() == weights.keys() == start[k].keys()
        for key in weights:
            assert torch.allclose(trained[key], weights[key], atol=1e-6), (k, key)
        # The comparison is not between untrained adapters: every lora_B left zero.
        assert any(not torch.equal(trained[key], start[k][key]) for key in trained)
    # Both started from the same adapter weights, so any difference is their own data and draws.
    first, second = (adapter_weights(policy, name) for name in names)
    assert any(not torch.allclose(first[key], second[key]) for key in first)


def test_mixed_adapter_generation_routes_each_prompt_to_its_adapter():
    model, tokenizer = tiny_llama()
    policy = make_student(model, LORA)
    names = add_adapters(policy, 2)
    with torch.no_grad():  # make the second adapter a different function from the first
        for name, p in policy.named_parameters():
            if ".student-1." in name and "lora_B" in name:
                p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(3)))
    prompts = ["1+2", "3+4", "5*6"]
    sampler = TransformersSampler(policy, tokenizer, batch_size=4)
    mixed = sampler.generate(
        prompts * 2, temperature=0, max_new_tokens=8, adapters=[names[0]] * 3 + [names[1]] * 3
    )
    for k, name in enumerate(names):
        policy.set_adapter(name)
        single = sampler.generate(prompts, temperature=0, max_new_tokens=8)
        assert [g[0].token_ids for g in mixed[3 * k : 3 * k + 3]] == [
            g[0].token_ids for g in single
        ]
    assert [g[0].token_ids for g in mixed[:3]] != [g[0].token_ids for g in mixed[3:]]


def test_a_named_adapter_is_saved_as_its_own_checkpoint(tmp_path):
    model, tokenizer = tiny_llama()
    policy = make_student(model, LORA)
    names = add_adapters(policy, 3)
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if ".student-2." in name and "lora_B" in name:
                p.fill_(0.25)
    store = FileStore(tmp_path)
    save_checkpoint(store, "base", tiny_llama()[0], tokenizer)  # the same weights as `model`
    save_checkpoint(store, "students/2", policy, tokenizer, "base", adapter=names[2])
    loaded, _ = load_checkpoint(store, "students/2", ModelRef())
    saved = adapter_weights(policy, names[2])
    got = adapter_weights(loaded, "default")
    assert got.keys() == saved.keys()
    assert all(torch.equal(got[key], saved[key]) for key in saved)
    assert all(float(got[key].abs().max()) == 0.25 for key in got if "lora_B" in key)
