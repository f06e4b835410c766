"""The student inner loop: a few RLOO steps on a dataset of (question, answer) pairs, and grading.

Each step samples from the current policy, scores the completions against the dataset's answers
(the teacher's answers are the reference, right or wrong), and takes one AdamW step. Per step the
model runs batched generation, one forward pass with gradient for the policy's log-probs and, only
when kl_coef > 0, one forward pass without gradient for the reference's.
"""

import copy
import time
from collections.abc import Callable
from typing import Literal

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import get_cosine_schedule_with_warmup

from soar.decode import make_sampler
from soar.prompts import Domain, encode_prompts
from soar.rloo import (
    Normalisation,
    accumulate_gradients,
    autocast,
    completion_logprobs,
    k3,
    reference_logprobs,
    rloo_advantages,
    sequence_kl,
)
from soar.spec import SamplerKind

KLPenalty = Literal["loss", "reward"]
RewardFn = Callable[[list[str], list[str]], list[float]]


def make_student(model, lora: dict | None, *, seed: int = 0):
    """The model to train: itself for full fine-tuning, else wrapped with a fresh LoRA adapter.

    A model that already carries an adapter (a promoted LoRA student) is merged first, so that
    disabling the new adapter gives back the weights the inner loop starts from: its KL reference.
    lora keys: rank, alpha, and optionally dropout (0) and target_modules ("all-linear").
    """
    if lora is None:
        return model
    if isinstance(model, PeftModel):
        model = model.merge_and_unload()
    config = LoraConfig(
        r=lora["rank"],
        lora_alpha=lora["alpha"],
        lora_dropout=lora.get("dropout", 0.0),
        target_modules=lora.get("target_modules", "all-linear"),
        task_type="CAUSAL_LM",
    )
    torch.manual_seed(seed)  # the adapter's A matrices are drawn from the global generator
    return get_peft_model(model, config)


def enable_gradient_checkpointing(model) -> None:
    """Recompute activations in the backward pass instead of keeping them: less memory for one
    more forward; the gradients are the same."""
    base = model.get_base_model() if isinstance(model, PeftModel) else model
    base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def frozen_copy(model):
    """The KL reference for full fine-tuning: the starting weights, without gradients."""
    ref = copy.deepcopy(model).eval()
    ref.requires_grad_(False)
    return ref


def question_order(n: int, seed: int) -> list[int]:
    """A seeded permutation of the dataset; steps walk through it and wrap around."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()


def step_batch(questions: list[dict], order: list[int], step: int, size: int) -> list[dict]:
    return [questions[order[(step * size + k) % len(order)]] for k in range(size)]


@torch.no_grad()
def kl_penalised_rewards(
    policy,
    ref,
    prompt_ids: list[list[int]],
    completion_ids: list[list[int]],
    rewards: torch.Tensor,
    *,
    pad_id: int,
    temperature: float,
    kl_coef: float,
    micro_batch: int,
    compute_dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, float]:
    """TRL's convention: rewards [Q, G] minus kl_coef * the summed k1 KL of each rollout,
    computed without gradient, micro_batch rollouts at a time; and the per-token k3 KL (the
    statistic the loss convention reports)."""
    kls, k3_sum = [], 0.0
    for start in range(0, len(completion_ids), micro_batch):
        chunk = (
            prompt_ids[start : start + micro_batch],
            completion_ids[start : start + micro_batch],
            pad_id,
            temperature,
        )
        with autocast(policy, compute_dtype):
            logprobs, mask = completion_logprobs(policy, *chunk)
            ref_logprobs = reference_logprobs(policy, ref, *chunk)
        ref_logprobs = ref_logprobs.to(logprobs.device)
        kls.append(sequence_kl(logprobs, ref_logprobs, mask).cpu())
        k3_sum += k3(logprobs, ref_logprobs, mask).sum().item()
    tokens = max(1, sum(len(c) for c in completion_ids))
    return rewards - kl_coef * torch.cat(kls).view_as(rewards), k3_sum / tokens


def rloo_backward(
    policy,
    ref,
    prompt_ids: list[list[int]],
    completion_ids: list[list[int]],
    rewards: torch.Tensor,
    *,
    pad_id: int,
    temperature: float,
    kl_coef: float,
    kl_penalty: KLPenalty = "loss",
    normalisation: Normalisation = "token",
    micro_batch: int = 32,
    compute_dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, dict]:
    """Gradients of one sampled batch's RLOO loss (rewards [questions, group], row-major over the
    rollouts), accumulated micro-batch by micro-batch; returns the advantages [B] and stats.

    kl_penalty="loss" adds kl_coef * k3 to the loss; "reward" subtracts TRL's summed k1 from the
    rewards before the leave-one-out baseline (see soar.rloo)."""
    if kl_penalty not in ("loss", "reward"):
        raise ValueError(f"kl_penalty must be 'loss' or 'reward', got {kl_penalty!r}")
    common = {
        "pad_id": pad_id,
        "temperature": temperature,
        "micro_batch": micro_batch,
        "compute_dtype": compute_dtype,
    }
    kl_in_reward = None
    if kl_coef > 0 and kl_penalty == "reward":
        rewards, kl_in_reward = kl_penalised_rewards(
            policy, ref, prompt_ids, completion_ids, rewards, kl_coef=kl_coef, **common
        )
        kl_coef = 0.0
    advantages = rloo_advantages(rewards.float()).flatten()  # [Q*G]
    stats = accumulate_gradients(
        policy,
        ref,
        prompt_ids,
        completion_ids,
        advantages,
        kl_coef=kl_coef,
        normalisation=normalisation,
        **common,
    )
    if kl_in_reward is not None:
        stats["kl"] = kl_in_reward
    lengths = [len(c) for c in completion_ids]
    return advantages, stats | {"completion_tokens": sum(lengths) / max(1, len(lengths))}


def train_rloo(
    policy,
    tokenizer,
    questions: list[dict],
    *,
    domain: Domain,
    reward_fn: RewardFn,
    steps: int,
    batch_questions: int,
    group_size: int,
    max_new_tokens: int,
    temperature: float,
    lr: float,
    warmup_steps: int = 0,
    kl_coef: float,
    max_grad_norm: float = 1.0,
    normalisation: Normalisation = "token",
    kl_penalty: KLPenalty = "loss",
    seed: int,
    sampler_batch_size: int = 256,
    sampler_kind: SamplerKind = "transformers",
    micro_batch: int = 32,
    compute_dtype: torch.dtype | None = None,
    ref=None,
    start_step: int = 0,
    optimizer: torch.optim.Optimizer | None = None,
    schedule: torch.optim.lr_scheduler.LRScheduler | None = None,
) -> list[dict]:
    """Train policy in place with RLOO on questions ({"question", "answer"}); stats per step.

    An inner loop runs steps 0..steps-1 with a fresh AdamW and cosine schedule over `steps`. A
    longer run split into stages (a fresh student) passes its own optimizer and schedule, carried
    from stage to stage, and the global index of its first step: batches and sampling seeds
    depend on the global step, so the stages train exactly as one uninterrupted run would.

    The KL reference is ref if given, else the starting weights (a frozen copy, or the LoRA base
    with the adapter disabled). kl_penalty="loss" adds k3 to the loss; "reward" subtracts TRL's
    summed k1 from the rewards before the leave-one-out baseline (see soar.rloo). The loss runs
    `micro_batch` rollouts at a time; with compute_dtype bf16, forward passes run in bf16 over the
    policy's own (fp32 master) weights, so no update is lost to bf16 rounding. sampler_kind is
    spec.training.sampler (soar.decode.make_sampler).
    """
    if temperature <= 0:
        raise ValueError("RLOO samples from the policy: temperature must be > 0")
    torch.manual_seed(seed)
    if kl_coef > 0 and ref is None and not isinstance(policy, PeftModel):
        ref = frozen_copy(policy)
    sampler = make_sampler(sampler_kind, policy, tokenizer, batch_size=sampler_batch_size)
    params = [p for p in policy.parameters() if p.requires_grad]
    if (optimizer is None) != (schedule is None):
        raise ValueError("pass an optimizer and its schedule together, or neither")
    if optimizer is None:
        optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
        schedule = get_cosine_schedule_with_warmup(optimizer, warmup_steps, steps)
    order = question_order(len(questions), seed)
    policy.train()

    history = []
    for step in range(start_step, start_step + steps):
        start = time.perf_counter()
        batch = step_batch(questions, order, step, batch_questions)
        prompts = [domain.student_prompt(q["question"], tokenizer) for q in batch]
        with autocast(policy, compute_dtype):
            groups = sampler.generate(
                prompts,
                n=group_size,
                temperature=temperature,
                max_new_tokens=max_new_tokens,
                seed=seed * 10_007 + step,
            )
        samples = [s for group in groups for s in group]
        references = [q["answer"] for q in batch for _ in range(group_size)]
        rewards = torch.tensor(
            reward_fn([s.text for s in samples], references), dtype=torch.float32
        )

        prompt_ids = encode_prompts(tokenizer, prompts)
        optimizer.zero_grad(set_to_none=True)
        _, loss_stats = rloo_backward(
            policy,
            ref,
            [ids for ids in prompt_ids for _ in range(group_size)],
            [s.token_ids for s in samples],
            rewards.view(batch_questions, group_size),
            pad_id=tokenizer.pad_token_id,
            temperature=temperature,
            kl_coef=kl_coef,
            kl_penalty=kl_penalty,
            normalisation=normalisation,
            micro_batch=micro_batch,
            compute_dtype=compute_dtype,
        )
        grad_norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
        lr_now = schedule.get_last_lr()[0]
        optimizer.step()
        schedule.step()
        history.append(
            {
                "step": step,
                "reward": rewards.mean().item(),
                "kl": loss_stats["kl"],
                "loss": loss_stats["loss"],
                "grad_norm": grad_norm.item(),
                "lr": lr_now,
                "completion_tokens": loss_stats["completion_tokens"],
                "seconds": time.perf_counter() - start,
            }
        )
    policy.eval()  # ready for grading
    return history
