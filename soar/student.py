"""The student inner loop: a few RLOO steps on a dataset of (question, answer) pairs, and grading.

Each step samples from the current policy, scores the completions against the dataset's answers
(the teacher's answers are the reference, right or wrong), and takes one AdamW step. Per step the
model runs batched generation, one forward pass with gradient for the policy's log-probs and, only
when kl_coef > 0, one forward pass without gradient for the reference's. Several LoRA students
of one model (soar.trainable.add_adapters) train together in train_students.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from peft import PeftModel
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
from soar.spec import Training
from soar.trainable import adapter_parameters, frozen_copy

KLPenalty = Literal["loss", "reward"]
RewardFn = Callable[[list[str], list[str]], list[float]]


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


@dataclass
class Learner:
    """One student of train_students: its dataset, seed, LoRA adapter when several students
    share one PeftModel (None: the policy as it is), and optionally an optimizer and schedule
    carried over from an earlier stage (see train_rloo)."""

    questions: list[dict]
    seed: int
    adapter: str | None = None
    optimizer: torch.optim.Optimizer | None = None
    schedule: torch.optim.lr_scheduler.LRScheduler | None = None


def train_rloo(
    policy,
    tokenizer,
    questions: list[dict],
    *,
    seed: int,
    optimizer: torch.optim.Optimizer | None = None,
    schedule: torch.optim.lr_scheduler.LRScheduler | None = None,
    **settings,
) -> list[dict]:
    """Train policy in place with RLOO on questions ({"question", "answer"}); stats per step.
    settings: train_students's.

    An inner loop runs steps 0..steps-1 with a fresh AdamW and cosine schedule over `steps`. A
    longer run split into stages (a fresh student) passes its own optimizer and schedule, carried
    from stage to stage, and the global index of its first step (start_step): batches and
    sampling seeds depend on the global step, so the stages train exactly as one uninterrupted
    run would.
    """
    learner = Learner(questions, seed, optimizer=optimizer, schedule=schedule)
    return train_students(policy, tokenizer, [learner], **settings)[0]


def train_students(
    policy,
    tokenizer,
    learners: list[Learner],
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
    sampler_batch_size: int = 256,
    sampling: Training | None = None,
    micro_batch: int = 32,
    compute_dtype: torch.dtype | None = None,
    ref=None,
    start_step: int = 0,
) -> list[list[dict]]:
    """Train each learner in place with RLOO on its questions; stats per learner and step.

    Several learners are LoRA students sharing one base model (add_adapters): each step samples
    all of them in one batched generation (peft's mixed-adapter batch, one random stream per
    learner), scores all completions in one reward call, then backpropagates and steps each
    learner's own loss, clipping and AdamW. So each learner trains exactly as it would alone
    when a sampler batch holds whole learners (sampler_batch_size is rounded down to a multiple
    of one learner's rollouts; the test compares both).

    The KL reference is ref if given, else the starting weights (a frozen copy, or the LoRA base
    with the adapters disabled). kl_penalty="loss" adds k3 to the loss; "reward" subtracts TRL's
    summed k1 from the rewards before the leave-one-out baseline (see soar.rloo). The loss runs
    `micro_batch` rollouts at a time; with compute_dtype bf16, forward passes run in bf16 over the
    policy's own (fp32 master) weights, so no update is lost to bf16 rounding. sampling is
    spec.training, whose sampler generates (soar.decode.make_sampler; None: the default).
    """
    if temperature <= 0:
        raise ValueError("RLOO samples from the policy: temperature must be > 0")
    shared = len(learners) > 1
    if shared and any(learner.adapter is None for learner in learners):
        raise ValueError("several learners share one model only as LoRA adapters")
    torch.manual_seed(learners[0].seed)
    if kl_coef > 0 and ref is None and not isinstance(policy, PeftModel):
        ref = frozen_copy(policy)
    rollouts = batch_questions * group_size  # one learner's, per step
    if shared:
        sampler_batch_size = max(1, sampler_batch_size // rollouts) * rollouts
    sampler = make_sampler(sampling or Training(), policy, tokenizer, batch_size=sampler_batch_size)
    params, orders = [], []
    for learner in learners:
        params.append(adapter_parameters(policy, learner.adapter))
        if (learner.optimizer is None) != (learner.schedule is None):
            raise ValueError("pass an optimizer and its schedule together, or neither")
        if learner.optimizer is None:
            learner.optimizer = torch.optim.AdamW(params[-1], lr=lr, weight_decay=0.0)
            learner.schedule = get_cosine_schedule_with_warmup(
                learner.optimizer, warmup_steps, steps
            )
        orders.append(question_order(len(learner.questions), learner.seed))
    policy.train()

    histories: list[list[dict]] = [[] for _ in learners]
    for step in range(start_step, start_step + steps):
        start = time.perf_counter()
        # 1) every learner's batch of questions, and their prompts [S*Q]
        batches = [
            step_batch(learner.questions, order, step, batch_questions)
            for learner, order in zip(learners, orders, strict=True)
        ]
        prompts = [domain.student_prompt(q["question"], tokenizer) for b in batches for q in b]
        # 2) one batched generation: G samples per prompt, each learner's own seed and adapter
        per_prompt = [learner for learner in learners for _ in range(batch_questions)]
        with autocast(policy, compute_dtype):
            groups = sampler.generate(
                prompts,
                n=group_size,
                temperature=temperature,
                max_new_tokens=max_new_tokens,
                seed=[learner.seed * 10_007 + step for learner in per_prompt],
                adapters=[learner.adapter for learner in per_prompt] if shared else None,
            )
        samples = [s for group in groups for s in group]  # [S*Q*G]
        # 3) one reward call for every completion: [S, Q, G]
        references = [q["answer"] for b in batches for q in b for _ in range(group_size)]
        rewards = torch.tensor(
            reward_fn([s.text for s in samples], references), dtype=torch.float32
        ).view(len(learners), batch_questions, group_size)
        prompt_ids = encode_prompts(tokenizer, prompts)
        # 4) each learner's RLOO loss, clipping and optimizer step, on its own adapter
        for k, learner in enumerate(learners):
            if shared:
                policy.set_adapter(learner.adapter)
            rows = slice(k * rollouts, (k + 1) * rollouts)
            learner.optimizer.zero_grad(set_to_none=True)
            _, loss_stats = rloo_backward(
                policy,
                ref,
                [
                    ids
                    for ids in prompt_ids[k * batch_questions : (k + 1) * batch_questions]
                    for _ in range(group_size)
                ],
                [s.token_ids for s in samples[rows]],
                rewards[k],
                pad_id=tokenizer.pad_token_id,
                temperature=temperature,
                kl_coef=kl_coef,
                kl_penalty=kl_penalty,
                normalisation=normalisation,
                micro_batch=micro_batch,
                compute_dtype=compute_dtype,
            )
            grad_norm = torch.nn.utils.clip_grad_norm_(params[k], max_grad_norm)
            lr_now = learner.schedule.get_last_lr()[0]
            learner.optimizer.step()
            learner.schedule.step()
            histories[k].append(
                {
                    "step": step,
                    "reward": rewards[k].mean().item(),
                    "kl": loss_stats["kl"],
                    "loss": loss_stats["loss"],
                    "grad_norm": grad_norm.item(),
                    "lr": lr_now,
                    "completion_tokens": loss_stats["completion_tokens"],
                    "seconds": time.perf_counter() - start,
                }
            )
    policy.eval()  # ready for grading
    return histories
