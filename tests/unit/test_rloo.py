"""RLOO advantages, log-probs and loss: hand-computed numbers and one real gradient step."""

import math

import pytest
import torch

from soar.rloo import completion_logprobs, rloo_advantages, rloo_loss, sequence_kl
from soar.sampler import TransformersSampler
from tests.support.models import tiny_llama


def test_advantages_are_reward_minus_mean_of_the_others():
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0], [120.0, 20.0, 10.0, 0.0]])
    expected = torch.tensor(
        [
            [1 - 1 / 3, 0 - 2 / 3, 0 - 2 / 3, 1 - 1 / 3],
            [120 - 30 / 3, 20 - 130 / 3, 10 - 140 / 3, 0 - 150 / 3],
        ]
    )
    torch.testing.assert_close(rloo_advantages(rewards), expected)
    torch.testing.assert_close(rloo_advantages(torch.tensor([3.0, 3.0])), torch.zeros(2))


def test_advantages_need_a_group():
    with pytest.raises(ValueError, match="at least 2"):
        rloo_advantages(torch.tensor([[1.0]]))


# Two sequences of 3 and 2 real tokens; advantages +1 and -1.
LOGPROBS = [[-1.0, -2.0, -3.0], [-0.5, -1.5, 0.0]]
MASK = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
ADVANTAGES = torch.tensor([1.0, -1.0])


def loss_and_grad(normalisation, ref=None, kl_coef=0.0):
    logprobs = torch.tensor(LOGPROBS, requires_grad=True)
    loss, stats = rloo_loss(logprobs, ref, ADVANTAGES, MASK, kl_coef, normalisation)
    loss.backward()
    return loss.item(), logprobs.grad, stats


def test_token_normalisation_averages_over_all_tokens():
    loss, grad, stats = loss_and_grad("token")
    # -(1 * 3 tokens - 1 * 2 tokens) / 5 tokens; each token's gradient is -A / 5.
    assert loss == pytest.approx(-0.2)
    torch.testing.assert_close(grad, torch.tensor([[-0.2, -0.2, -0.2], [0.2, 0.2, 0.0]]))
    assert stats == {"pg_loss": pytest.approx(-0.2), "loss": pytest.approx(-0.2)}


def test_sequence_normalisation_averages_over_sequences():
    loss, grad, _ = loss_and_grad("sequence")
    # TRL's -mean(ratio * A) with ratio 1; each token's gradient is -A / 2 sequences.
    assert loss == pytest.approx(0.0)
    torch.testing.assert_close(grad, torch.tensor([[-0.5, -0.5, -0.5], [0.5, 0.5, 0.0]]))


def test_unknown_normalisation_is_rejected():
    with pytest.raises(ValueError, match="normalisation"):
        loss_and_grad("batch")


LN2 = math.log(2)
# ref - logprobs is +ln2 on the first token of sequence 0 and -ln2 on the first of sequence 1:
# k3 = e^d - d - 1 is 1 - ln2 and 1/2 + ln2 - 1, which sum to 0.5 (= 2 cosh(ln2) - 2).
REF = torch.tensor(LOGPROBS) + torch.tensor([[LN2, 0.0, 0.0], [-LN2, 0.0, 0.0]])


def test_k3_kl_term_token_normalisation():
    loss, grad, stats = loss_and_grad("token", REF, kl_coef=0.5)
    assert stats["kl"] == pytest.approx(0.5 / 5)
    assert loss == pytest.approx(-0.2 + 0.5 * 0.5 / 5)
    # d k3 / d logprob = 1 - e^d: -1 at d = ln2, +1/2 at d = -ln2.
    expected = torch.tensor([[-0.2 - 0.5 / 5, -0.2, -0.2], [0.2 + 0.25 / 5, 0.2, 0.0]])
    torch.testing.assert_close(grad, expected)


def test_k3_kl_term_sequence_normalisation():
    loss, grad, stats = loss_and_grad("sequence", REF, kl_coef=0.5)
    assert stats["kl"] == pytest.approx(0.1)  # reported per token whatever the normalisation
    assert loss == pytest.approx(0.5 * 0.5 / 2)
    expected = torch.tensor([[-0.5 - 0.5 / 2, -0.5, -0.5], [0.5 + 0.25 / 2, 0.5, 0.0]])
    torch.testing.assert_close(grad, expected)


def test_kl_coef_without_reference_is_an_error():
    with pytest.raises(ValueError, match="reference"):
        loss_and_grad("token", None, kl_coef=0.1)


def test_sequence_kl_is_trls_summed_first_order_estimate():
    kl = sequence_kl(torch.tensor(LOGPROBS), REF, MASK)
    torch.testing.assert_close(kl, torch.tensor([-LN2, LN2]))


PROMPTS = ["User: 7+5 Assistant:", "User: 12*3+4 Assistant:", "Q: 1?"]


def test_completion_logprobs_equal_the_samplers():
    """Left-padded prompts of different lengths: the same positions as in generation."""
    model, tokenizer = tiny_llama()
    groups = TransformersSampler(model, tokenizer).generate(PROMPTS, n=2, max_new_tokens=12)
    samples = [s for g in groups for s in g]
    prompt_ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in PROMPTS]
    prompt_ids = [ids for ids in prompt_ids for _ in range(2)]
    logprobs, mask = completion_logprobs(model, prompt_ids, [s.token_ids for s in samples], 0)
    assert mask.shape == logprobs.shape == (6, max(len(s.token_ids) for s in samples))
    for row, s in enumerate(samples):
        n = len(s.token_ids)
        assert mask[row].sum() == n
        torch.testing.assert_close(logprobs[row, :n], torch.tensor(s.logprobs), atol=1e-4, rtol=0)
        assert (logprobs[row, n:] == 0).all()


def test_completion_logprobs_apply_temperature():
    model, _ = tiny_llama()
    prompt, completion = [[5, 6, 7]], [[8, 9]]
    cold, _ = completion_logprobs(model, prompt, completion, 0, temperature=0.5)
    logits = model(torch.tensor([[5, 6, 7, 8, 9]])).logits[0, 2:4] / 0.5
    expected = logits.log_softmax(-1)[[0, 1], [8, 9]]
    torch.testing.assert_close(cold[0], expected.detach())


def test_kl_is_zero_when_policy_is_the_reference():
    model, _ = tiny_llama()
    prompts, completions = [[5, 6, 7], [9]], [[10, 11, 1], [12, 1]]
    logprobs, mask = completion_logprobs(model, prompts, completions, 0)
    with torch.no_grad():
        ref, _ = completion_logprobs(model, prompts, completions, 0)
    _, stats = rloo_loss(logprobs, ref, torch.tensor([0.5, -0.5]), mask, 1.0)
    assert stats["kl"] == 0.0
    torch.testing.assert_close(sequence_kl(logprobs, ref, mask), torch.zeros(2))


def test_positive_advantage_raises_that_completions_probability():
    model, _ = tiny_llama()
    model.train()
    prompts, completions = [[5, 6, 7], [5, 6, 7]], [[20, 21, 22, 1], [30, 31, 1]]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    before, mask = completion_logprobs(model, prompts, completions, 0)
    loss, _ = rloo_loss(before, None, torch.tensor([1.0, -1.0]), mask, 0.0)
    loss.backward()
    optimizer.step()
    with torch.no_grad():
        after, _ = completion_logprobs(model, prompts, completions, 0)
    gain = (after - before.detach()).sum(-1)
    assert gain[0] > 0 > gain[1]
