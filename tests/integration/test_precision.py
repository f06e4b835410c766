"""Training keeps every update: bf16 forward passes over fp32 master weights change the weights
as an fp32 step does (pure bf16 weights lose most of an lr-1e-5 step), and micro-batched losses
give the one-batch gradients exactly."""

import copy

import pytest
import torch

from soar.student import rloo_backward
from soar.teacher import teacher_step
from soar.trainable import enable_gradient_checkpointing, make_student
from tests.support.models import tiny_llama

PROMPTS = ["User: 7+5 Assistant:", "User: 12*3+4 Assistant:"]
COMPLETIONS = [" 12", " \\boxed{12}", "7", " 1+1+1", "40", " \\boxed{40}", "", " 3*4"]
REWARDS = torch.tensor([[10.0, 120.0, 0.0, 20.0], [10.0, 120.0, 120.0, 0.0]])  # [Q, G]


def batch(tokenizer):
    prompts = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in PROMPTS]
    prompt_ids = [ids for ids in prompts for _ in range(4)]
    eos = tokenizer.eos_token_id
    completion_ids = [
        tokenizer(c, add_special_tokens=False)["input_ids"] + [eos] for c in COMPLETIONS
    ]
    return prompt_ids, completion_ids


def one_step(model, tokenizer, compute_dtype, lr=1e-5) -> dict[str, torch.Tensor]:
    """Weights after one AdamW step of the student loss, as float32."""
    before = {n: p.detach().float().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    prompt_ids, completion_ids = batch(tokenizer)
    rloo_backward(
        model, None, prompt_ids, completion_ids, REWARDS,
        pad_id=tokenizer.pad_token_id, temperature=1.0, kl_coef=0.0,
        micro_batch=8, compute_dtype=compute_dtype,
    )  # fmt: skip
    optimizer.step()
    return {n: p.detach().float() - before[n] for n, p in model.named_parameters()}


def summary(deltas: dict[str, torch.Tensor]) -> tuple[float, float]:
    """(share of weights that changed, mean |dw|) over the matrices of the model."""
    flat = torch.cat([d.flatten() for n, d in deltas.items() if d.dim() == 2])
    return (flat != 0).float().mean().item(), flat.abs().mean().item()


def test_bf16_compute_over_fp32_master_weights_keeps_the_update():
    model, tokenizer = tiny_llama(seed=0)  # N(0, 0.02) weights, float32
    reference = summary(one_step(copy.deepcopy(model), tokenizer, torch.float32))
    ours = summary(one_step(copy.deepcopy(model), tokenizer, torch.bfloat16))
    lost = summary(one_step(copy.deepcopy(model).to(torch.bfloat16), tokenizer, None))
    assert reference[0] > 0.95  # AdamW's first step moves nearly every weight by about lr
    assert ours[0] > 0.95 * reference[0]
    assert ours[1] == pytest.approx(reference[1], rel=0.05)
    # What the paper config did before: bf16 weights round most lr-sized steps away.
    assert lost[0] < 0.5 * reference[0]


@pytest.mark.parametrize("normalisation", ["token", "sequence"])
@pytest.mark.parametrize(("kl_coef", "kl_penalty"), [(0.0, "loss"), (0.1, "loss"), (0.1, "reward")])
def test_micro_batches_give_the_one_batch_gradients(normalisation, kl_coef, kl_penalty):
    model, tokenizer = tiny_llama(seed=1)
    ref, _ = tiny_llama(seed=2)
    prompt_ids, completion_ids = batch(tokenizer)
    grads, losses = [], []
    for micro_batch in (8, 3, 1):
        policy = copy.deepcopy(model)
        _, stats = rloo_backward(
            policy, ref, prompt_ids, completion_ids, REWARDS,
            pad_id=tokenizer.pad_token_id, temperature=0.7, kl_coef=kl_coef,
            kl_penalty=kl_penalty, normalisation=normalisation, micro_batch=micro_batch,
        )  # fmt: skip
        grads.append({n: p.grad.clone() for n, p in policy.named_parameters()})
        losses.append(stats["loss"])
    for other, loss in zip(grads[1:], losses[1:], strict=True):
        assert loss == pytest.approx(losses[0], rel=1e-5, abs=1e-5)  # rewards are ~100
        for name, grad in grads[0].items():
            assert_equal_up_to_rounding(other[name], grad, name)


def assert_equal_up_to_rounding(ours: torch.Tensor, theirs: torch.Tensor, name: str) -> None:
    """Equal but for float32 summation order: within 1e-6 of the tensor's largest entry."""
    scale = theirs.abs().max().item()
    torch.testing.assert_close(ours, theirs, atol=1e-6 * scale, rtol=1e-5, msg=name)


def test_teacher_step_is_the_same_whatever_the_micro_batch():
    model, tokenizer = tiny_llama(seed=3)
    prompt = tokenizer("Write a problem:", add_special_tokens=False)["input_ids"]
    _, completions = batch(tokenizer)
    advantages = [0.5, 0.5, -0.25, -0.25, 0.1, 0.1, -0.35, -0.35]
    steps = []
    for micro_batch in (8, 3):
        policy = copy.deepcopy(model)
        teacher_step(  # plain SGD: the step is -lr * gradient, large next to weight rounding
            policy, None, prompt, completions, advantages,
            optimizer=torch.optim.SGD(policy.parameters(), lr=1e4), lr=1e4, kl_coef=0.0,
            max_grad_norm=1e9, normalisation="token", pad_id=tokenizer.pad_token_id,
            temperature=1.0, micro_batch=micro_batch,
        )  # fmt: skip
        before = dict(model.named_parameters())
        steps.append({n: p.detach() - before[n].detach() for n, p in policy.named_parameters()})
    assert any(step.abs().max() > 0 for step in steps[0].values())
    for name, step in steps[0].items():
        assert_equal_up_to_rounding(steps[1][name], step, name)


@pytest.mark.parametrize("lora", [None, {"rank": 4, "alpha": 8}])
def test_gradient_checkpointing_gives_the_same_gradients(lora):
    model, tokenizer = tiny_llama(seed=4)
    prompt_ids, completion_ids = batch(tokenizer)
    grads = []
    for checkpointing in (False, True):
        policy = make_student(copy.deepcopy(model), lora)
        policy.train()
        if checkpointing:
            enable_gradient_checkpointing(policy)
        ref = None if lora else copy.deepcopy(model).eval()  # LoRA: the adapter disabled
        rloo_backward(
            policy, ref, prompt_ids, completion_ids, REWARDS,
            pad_id=tokenizer.pad_token_id, temperature=1.0, kl_coef=0.1, micro_batch=4,
        )  # fmt: skip
        grads.append({n: p.grad.clone() for n, p in policy.named_parameters() if p.requires_grad})
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for name, grad in grads[0].items():
        assert_equal_up_to_rounding(grads[1][name], grad, name)
