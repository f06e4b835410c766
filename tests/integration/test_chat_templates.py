"""Instruct models get their chat template, with the ids the tokenizer itself gives it, and the
log-probs recomputed for training are those of exactly the ids that were sampled
(SmolLM2-135M-Instruct's real tokenizer and weights); the tiny model keeps its plain format."""

import pytest
import torch

from soar import models
from soar.arith import ARITH
from soar.prompts import MATH, encode_prompts
from soar.rloo import completion_logprobs
from soar.sampler import TransformersSampler

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2():
    return models.load_model("smollm2-135m")


def test_prompts_are_the_chat_template_with_its_own_ids(smollm2):
    _, tokenizer = smollm2
    prompt = MATH.student_prompt("What is $2+2$?", tokenizer)
    assert prompt.startswith("<|im_start|>") and prompt.endswith("<|im_start|>assistant\n")
    assert "Reason step by step" in prompt and "What is $2+2$?" in prompt
    messages = [{"role": "user", "content": MATH.student_preamble + "What is $2+2$?"}]
    expected = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
    expected = expected["input_ids"] if hasattr(expected, "keys") else expected
    assert encode_prompts(tokenizer, [prompt])[0] == list(expected)
    start = tokenizer.convert_tokens_to_ids("<|im_start|>")
    assert encode_prompts(tokenizer, [prompt])[0][0] == start  # a special token, not its text
    teacher = MATH.teacher_input(tokenizer)
    assert teacher.endswith("<|im_start|>assistant\n") and "<question>" in teacher


def test_training_recomputes_the_sampled_log_probs(smollm2):
    model, tokenizer = smollm2
    prompts = [MATH.student_prompt(q, tokenizer) for q in ("What is $3 \\cdot 4$?", "Solve x+1=2.")]
    groups = TransformersSampler(model, tokenizer).generate(
        prompts, n=2, temperature=1.0, max_new_tokens=12, seed=5
    )
    samples = [s for group in groups for s in group]
    prompt_ids = [ids for ids in encode_prompts(tokenizer, prompts) for _ in range(2)]
    with torch.no_grad():
        logprobs, mask = completion_logprobs(
            model, prompt_ids, [s.token_ids for s in samples], tokenizer.pad_token_id
        )
    for row, sample in enumerate(samples):
        recomputed = logprobs[row, : len(sample.token_ids)]
        torch.testing.assert_close(recomputed, torch.tensor(sample.logprobs), atol=2e-4, rtol=0)


def test_the_tiny_model_keeps_its_plain_format(tiny):
    _, tokenizer = tiny
    assert ARITH.student_prompt("47+85", tokenizer) == "User: 47+85 Assistant:"
    assert ARITH.teacher_input(tokenizer) == ARITH.teacher_prompt
