"""The teacher's RLOO step against numbers built by hand: dataset advantages, the learning-rate
schedule, and the update of a tiny model compared with a loss summed token by token."""

import math

import pytest
import torch

from soar.teacher import cosine_lr, dataset_advantages, teacher_step
from tests.support.models import tiny_llama


def test_dataset_advantage_is_reward_minus_mean_of_the_others():
    # R = 1, 2, 3, 6: the others' means are 11/3, 10/3, 3 and 2.
    assert dataset_advantages([1.0, 2.0, 3.0, 6.0]) == pytest.approx([-8 / 3, -4 / 3, 0.0, 4.0])
    assert dataset_advantages([0.25, -0.25]) == pytest.approx([0.5, -0.5])


def test_cosine_lr_warms_up_linearly_then_decays_to_zero():
    # 4 warmup steps of 12: steps 1-4 climb by a quarter; the cosine covers steps 5-12.
    assert [cosine_lr(s, 4, 12, 2.0) for s in (1, 2, 4)] == pytest.approx([0.5, 1.0, 2.0])
    cos_pi_8 = math.sqrt(2 + math.sqrt(2)) / 2  # progress 1/8 of the decay
    assert cosine_lr(5, 4, 12, 2.0) == pytest.approx(1 + cos_pi_8)
    assert cosine_lr(8, 4, 12, 2.0) == pytest.approx(1.0)  # half way: half the rate
    assert cosine_lr(12, 4, 12, 2.0) == pytest.approx(0.0, abs=1e-12)
    assert cosine_lr(13, 4, 12, 2.0) == pytest.approx(0.0, abs=1e-12)  # stays at zero


def test_cosine_lr_without_warmup_starts_decaying_at_once():
    assert cosine_lr(1, 0, 4, 1.0) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert cosine_lr(2, 0, 4, 1.0) == pytest.approx(0.5)


def token_logprobs(model, prompt: list[int], completion: list[int], temperature: float):
    """log pi(c_t | prompt, c_<t) of each completion token: one unpadded forward pass."""
    ids = torch.tensor([prompt + completion])
    logits = model(input_ids=ids).logits[0, len(prompt) - 1 : -1] / temperature
    return logits.log_softmax(-1).gather(-1, torch.tensor(completion)[:, None])[:, 0]


def hand_built_loss(policy, ref, prompt, completions, advantages, kl_coef, temperature):
    """Token-normalised loss, summed token by token: -A_k log pi for the policy gradient (its
    value is -A_k: the ratio is 1) plus kl_coef * k3(pi, ref), over all completion tokens."""
    total, tokens = torch.zeros(()), sum(len(c) for c in completions)
    for completion, advantage in zip(completions, advantages, strict=True):
        logp = token_logprobs(policy, prompt, completion, temperature)
        with torch.no_grad():
            ref_logp = token_logprobs(ref, prompt, completion, temperature)
        for lp, rp in zip(logp, ref_logp, strict=True):
            ratio = torch.exp(lp - lp.detach())  # 1, with the gradient of log pi
            k3 = torch.exp(rp - lp) - (rp - lp) - 1
            total = total - advantage * ratio + kl_coef * k3
    return total / tokens


def test_teacher_step_moves_along_the_hand_built_gradient():
    policy, _ = tiny_llama(seed=0)
    ref, _ = tiny_llama(seed=1)
    prompt = [5, 6, 7]
    # Two datasets' rollouts of unequal length; each carries its dataset's advantage.
    completions = [[8, 9, 10], [11, 12], [13, 14, 15, 16], [17]]
    advantages = [0.5, 0.5, -0.5, -0.5]
    kl_coef, temperature, lr = 0.1, 0.7, 0.01

    expected = hand_built_loss(policy, ref, prompt, completions, advantages, kl_coef, temperature)
    expected.backward()
    params = list(policy.parameters())
    grads = [p.grad.clone() for p in params]
    before = [p.detach().clone() for p in params]
    policy.zero_grad(set_to_none=True)

    stats = teacher_step(
        policy,
        ref,
        prompt,
        completions,
        advantages,
        optimizer=torch.optim.SGD(params, lr=1.0),  # plain SGD: the step is -lr * gradient
        lr=lr,
        kl_coef=kl_coef,
        max_grad_norm=1e9,  # no clipping
        normalisation="token",
        pad_id=0,
        temperature=temperature,
        micro_batch=3,  # two micro-batches: the accumulation must give the one-batch gradient
    )

    assert stats["loss"] == pytest.approx(expected.item(), abs=1e-5)
    assert stats["lr"] == lr
    assert stats["grad_norm"] == pytest.approx(
        torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item(), rel=1e-4
    )
    for p, old, g in zip(params, before, grads, strict=True):
        torch.testing.assert_close(p.detach() - old, -lr * g, atol=1e-6, rtol=1e-4)


def test_a_zero_advantage_and_no_kl_leave_the_teacher_unchanged():
    policy, _ = tiny_llama(seed=0)
    before = [p.detach().clone() for p in policy.parameters()]
    stats = teacher_step(
        policy,
        None,
        [5, 6],
        [[7, 8], [9]],
        [0.0, 0.0],
        optimizer=torch.optim.SGD(policy.parameters(), lr=1.0),
        lr=0.1,
        kl_coef=0.0,
        max_grad_norm=1.0,
        normalisation="token",
        pad_id=0,
        temperature=1.0,
    )
    assert stats["loss"] == 0.0 and stats["grad_norm"] == 0.0
    for p, old in zip(policy.parameters(), before, strict=True):
        assert torch.equal(p.detach(), old)
