"""Our RLOO equals TRL's RLOOTrainer on the same tiny model, batch, completions and rewards.

TRL scores the batch with its own code: generation is replaced by fixed completions, then
`_generate_and_score_completions` (log-probs, reference, rewards, KL penalty, advantages) and
`_compute_loss` run unchanged. We match with normalisation="sequence" and, when beta > 0, the KL
penalty in the reward (kl_penalty="reward" in the student loop).
"""

import copy

import pytest
import torch
from datasets import Dataset
from peft import LoraConfig
from transformers import LlamaForCausalLM
from trl import RLOOConfig, RLOOTrainer

from soar.rloo import rloo_advantages
from soar.student import rloo_backward
from soar.trainable import make_student
from tests.support.models import tiny_llama

GROUP = 4
LORA = {"rank": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}
PROMPTS = ["User: 7+5 Assistant:", "User: 12*3+4 Assistant:"]  # different lengths: left padding
COMPLETIONS = [" 12", " \\boxed{12}", "7", " 1+1+1+1+1", "40", " \\boxed{40}", "", " 3*4"]
REWARDS = [10.0, 120.0, 0.0, 20.0, 10.0, 120.0, 120.0, 0.0]
TEMPERATURE = 0.7


def saved_tiny_llama(path):
    """TRL builds its reference model from the policy's path, so the policy must come from disk."""
    model, tokenizer = tiny_llama()
    model.save_pretrained(path)
    return LlamaForCausalLM.from_pretrained(path), tokenizer


def batch_ids(tokenizer):
    prompt_ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in PROMPTS]
    prompt_ids = [ids for ids in prompt_ids for _ in range(GROUP)]
    eos = tokenizer.eos_token_id
    completion_ids = [
        tokenizer(c, add_special_tokens=False)["input_ids"] + [eos] for c in COMPLETIONS
    ]
    completion_ids[3] = completion_ids[3][:-1]  # one truncated completion, without EOS
    return prompt_ids, completion_ids


def trl_trainer(model, tokenizer, beta, tmp_path, peft_config=None) -> RLOOTrainer:
    args = RLOOConfig(
        output_dir=str(tmp_path / "trl"),
        per_device_train_batch_size=len(COMPLETIONS),
        num_generations=GROUP,
        temperature=TEMPERATURE,
        beta=beta,
        gradient_checkpointing=False,
        bf16=False,  # TRL's default autocasts to bfloat16, even on CPU
        use_cpu=True,
        report_to="none",
    )
    rewards = dict(zip(COMPLETIONS, REWARDS, strict=True))

    def reward(prompts, completions, **kwargs):
        return [rewards[c] for c in completions]

    dataset = Dataset.from_list([{"prompt": p} for p in PROMPTS])
    return RLOOTrainer(
        model,
        reward,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
    )


def trl_step(trainer, tokenizer):
    """TRL's advantages, loss and gradients for the fixed batch."""
    prompt_ids, completion_ids = batch_ids(tokenizer)
    trainer._generate = lambda prompts: (prompt_ids, completion_ids, COMPLETIONS)
    trainer.model.train()
    inputs = [{"prompt": p} for p in PROMPTS for _ in range(GROUP)]
    scored = trainer._generate_and_score_completions(inputs)
    loss = trainer._compute_loss(trainer.model, scored)
    loss.backward()
    return scored["advantages"], loss, trainer.model


def our_step(model, ref, tokenizer, beta, micro_batch=8):
    """The student loop's gradients for the batch, in TRL's convention; (advantages, loss value
    as a tensor, model with its gradients)."""
    prompt_ids, completion_ids = batch_ids(tokenizer)
    advantages, stats = rloo_backward(
        model,
        ref,
        prompt_ids,
        completion_ids,
        torch.tensor(REWARDS).view(-1, GROUP),
        pad_id=tokenizer.pad_token_id,
        temperature=TEMPERATURE,
        kl_coef=beta,
        kl_penalty="reward",
        normalisation="sequence",
        micro_batch=micro_batch,
    )
    return advantages, torch.tensor(stats["loss"]), model


def assert_same_gradients(ours, theirs):
    their_grads = dict(theirs.named_parameters())
    compared = 0
    for name, p in ours.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(p.grad, their_grads[name].grad, atol=1e-5, rtol=1e-4)
            compared += 1
    assert compared > 0


@pytest.mark.parametrize("beta", [0.0, 0.05])
def test_full_finetuning_matches_trl(beta, tmp_path):
    model, tokenizer = saved_tiny_llama(tmp_path / "model")
    model.train()
    ours, ref = copy.deepcopy(model), copy.deepcopy(model).eval()
    their_adv, their_loss, theirs = trl_step(
        trl_trainer(model, tokenizer, beta, tmp_path), tokenizer
    )
    our_adv, our_loss, ours = our_step(ours, ref, tokenizer, beta, micro_batch=3)
    torch.testing.assert_close(our_adv, their_adv, atol=1e-5, rtol=1e-5)
    if beta == 0.0:  # the raw rewards' leave-one-out advantages, by hand for the first group
        torch.testing.assert_close(our_adv[:4], torch.tensor([-36.6667, 110.0, -50.0, -23.3333]))
    torch.testing.assert_close(our_loss, their_loss, atol=1e-5, rtol=0)
    assert_same_gradients(ours, theirs)


def test_lora_matches_trl_with_the_adapter_disabled_reference(tmp_path):
    """TRL given a peft_config takes the base model (adapters disabled) as reference, as we do."""
    model, tokenizer = saved_tiny_llama(tmp_path / "model")
    ours = make_student(copy.deepcopy(model), LORA)
    config = LoraConfig(
        r=4, lora_alpha=8, target_modules=LORA["target_modules"], task_type="CAUSAL_LM"
    )
    trainer = trl_trainer(model, tokenizer, 0.05, tmp_path, peft_config=config)
    # A non-zero adapter, the same in both, so that each policy differs from its reference.
    with torch.no_grad():
        for name, p in trainer.model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1, generator=torch.Generator().manual_seed(len(name)))
    ours.load_state_dict(trainer.model.state_dict())
    ours.train()
    their_adv, their_loss, theirs = trl_step(trainer, tokenizer)
    our_adv, our_loss, ours = our_step(ours, None, tokenizer, 0.05)
    torch.testing.assert_close(our_adv, their_adv, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(
        our_adv, rloo_advantages(torch.tensor(REWARDS).view(-1, GROUP)).flatten()
    )
    torch.testing.assert_close(our_loss, their_loss, atol=1e-5, rtol=0)
    assert_same_gradients(ours, theirs)
