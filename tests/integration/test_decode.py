"""DeviceSampler against TransformersSampler: the same greedy tokens and log-probs, the same
sampling distribution, log-probs the training forward agrees with, seeded determinism, and its
selection by spec.training.sampler down to a stage and a whole tiny run."""

import math
from collections import Counter
from statistics import NormalDist

import pytest
import torch

from soar import layout
from soar.arith import ARITH
from soar.cli import drive
from soar.decode import CHECK_EVERY, DeviceSampler, make_sampler
from soar.planner import plan
from soar.prompts import encode_prompts
from soar.rloo import autocast, completion_logprobs
from soar.runstate import Run, completed
from soar.sampler import TransformersSampler
from soar.spec import Training
from soar.stages import students
from soar.store import FileStore
from tests.support.manifests import TINY, merge, parsed
from tests.support.models import tiny_llama
from tests.support.runs import tiny_manifest

# Prompts of 5, 5, 10 and 8 tokens (left padding). With 40 new tokens, "1+2" and "9+9" end
# before CHECK_EVERY steps (13 and 15; so rows 0-3, one batch of 4, run on as pad until the
# check), "9999+1" ends between two checks (25) and "345+6789" does not end.
QUESTIONS = ["1+2", "9+9", "345+6789", "9999+1"]
SAMPLES = 4000  # draws of the first token per sampler


def prompts(tokenizer) -> list[str]:
    return [ARITH.student_prompt(q, tokenizer) for q in QUESTIONS]


# float32: the two loops differ only in summation order. bf16 autocast over float32 weights (how
# train_rloo samples; RoPE makes float32 keys beside bfloat16 values, see StaticKVCache): bf16
# keeps 8 significant bits, so a logit near 10 rounds in steps of 0.04-0.06, and the loops'
# attention shapes round differently (0.02 seen); a wrong cache or mask moves whole nats.
@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-5), (torch.bfloat16, 0.1)])
def test_greedy_gives_the_same_tokens_and_logprobs(tiny, dtype, tolerance):
    model, tokenizer = tiny
    kwargs = {"n": 2, "temperature": 0.0, "max_new_tokens": 40, "seed": 0}
    with autocast(model, dtype):
        expected = TransformersSampler(model, tokenizer, batch_size=4).generate(
            prompts(tokenizer), **kwargs
        )
        got = DeviceSampler(model, tokenizer, batch_size=4).generate(prompts(tokenizer), **kwargs)

    lengths = [len(group[0].token_ids) for group in expected]
    assert all(len(s.token_ids) == lengths[i] for i, group in enumerate(expected) for s in group)
    # the cases the comment names
    assert max(lengths[:2]) < CHECK_EVERY < lengths[3] < lengths[2] == 40
    assert lengths[3] % CHECK_EVERY != 0 and expected[3][0].finished
    for want_group, got_group in zip(expected, got, strict=True):
        for want, sample in zip(want_group, got_group, strict=True):
            assert sample.token_ids == want.token_ids
            assert (sample.text, sample.finished) == (want.text, want.finished)
            gaps = [abs(a - b) for a, b in zip(sample.logprobs, want.logprobs, strict=True)]
            assert max(gaps) < tolerance


def chi_square_bound(df: int, alpha: float = 1e-6) -> float:
    """The chi-square statistic a correct sampler exceeds with probability alpha: the (1 - alpha)
    quantile of chi2(df), by the Wilson-Hilferty cube-root normal approximation."""
    z = NormalDist().inv_cdf(1 - alpha)
    return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


def chi_square(counts: Counter, probs: torch.Tensor, n: int) -> tuple[float, int]:
    """Pearson's statistic of `counts` (token -> draws of n) against `probs` [V], and its degrees
    of freedom. The least likely tokens share one bin, so that every bin expects at least 5
    draws, where the chi2 law holds."""
    expected = (probs * n).tolist()
    order = sorted(range(len(expected)), key=expected.__getitem__)  # least likely first
    pooled = 1
    while sum(expected[i] for i in order[:pooled]) < 5 or expected[order[pooled]] < 5:
        pooled += 1
    bins = [order[:pooled]] + [[i] for i in order[pooled:]]
    stat = 0.0
    for tokens in bins:
        e = sum(expected[i] for i in tokens)
        stat += (sum(counts[i] for i in tokens) - e) ** 2 / e
    return stat, len(bins) - 1


def test_sampling_draws_from_softmax_of_the_logits():
    """The first token's empirical distribution over 4000 draws from each sampler against the
    exact softmax: Pearson's chi-square must stay below its 1 - 1e-6 quantile (a correct sampler
    fails with probability 1e-6; the seeds make the outcome fixed)."""
    model, tokenizer = tiny_llama(seed=0)
    with torch.no_grad():  # logits x4: a spread distribution (p from 8e-4 to 0.56, entropy 2.5)
        model.model.norm.weight.mul_(4.0)
    prompt = "12+34="
    ids = torch.tensor(encode_prompts(tokenizer, [prompt]))
    with torch.no_grad():
        probs = model(input_ids=ids).logits[0, -1].float().softmax(-1)  # [V]
    for sampler in (TransformersSampler, DeviceSampler):
        [samples] = sampler(model, tokenizer, batch_size=SAMPLES).generate(
            [prompt], n=SAMPLES, temperature=1.0, max_new_tokens=1, seed=7
        )
        counts = Counter(s.token_ids[0] for s in samples)
        stat, df = chi_square(counts, probs, SAMPLES)
        assert df >= 50, df
        assert stat < chi_square_bound(df), (sampler.__name__, stat, df)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_sampled_logprobs_are_the_training_forwards(tiny, temperature):
    """What RLOO relies on: the log-probs reported with the samples are those the loss recomputes
    on the same ids (soar.rloo.completion_logprobs)."""
    model, tokenizer = tiny
    rendered = prompts(tokenizer)
    groups = DeviceSampler(model, tokenizer).generate(
        rendered, n=4, temperature=temperature, max_new_tokens=40, seed=3
    )
    prompt_ids = [ids for ids in encode_prompts(tokenizer, rendered) for _ in range(4)]
    samples = [s for group in groups for s in group]
    with torch.no_grad():
        logprobs, mask = completion_logprobs(
            model,
            prompt_ids,
            [s.token_ids for s in samples],
            tokenizer.pad_token_id,
            temperature=temperature,
        )
    reported = torch.zeros_like(logprobs)
    for row, sample in enumerate(samples):
        reported[row, : len(sample.logprobs)] = torch.tensor(sample.logprobs)
    assert mask.sum() > 100
    assert ((logprobs - reported).abs() * mask).max() < 1e-4


def test_same_seed_same_samples_other_seed_other_samples(tiny):
    model, tokenizer = tiny
    sampler = DeviceSampler(model, tokenizer)
    teacher = [ARITH.teacher_input(tokenizer)]  # writes a random problem: many likely outputs

    def draw(seed: int) -> list:
        [group] = sampler.generate(teacher, n=8, temperature=1.0, max_new_tokens=24, seed=seed)
        return [(s.token_ids, s.logprobs) for s in group]

    first = draw(1)
    assert draw(1) == first
    assert [ids for ids, _ in draw(2)] != [ids for ids, _ in first]


def test_spec_selects_the_sampler_down_to_a_stage(tmp_path, tiny, monkeypatch):
    """make_sampler follows spec.training.sampler, and the baseline stage's greedy grading with
    "device" (counted) equals its grading with "transformers"."""
    model, tokenizer = tiny
    assert type(make_sampler(Training(sampler="device"), model, tokenizer)) is DeviceSampler
    assert type(make_sampler(Training(), model, tokenizer)) is TransformersSampler

    calls = []
    generate = DeviceSampler.generate

    def counted(self, *args, **kwargs):
        calls.append(1)
        return generate(self, *args, **kwargs)

    monkeypatch.setattr(DeviceSampler, "generate", counted)
    questions = [
        {"id": f"q{i}", "question": q, "answer": str(sum(int(x) for x in q.split("+")))}
        for i, q in enumerate(QUESTIONS)
    ]
    correct = {}
    for kind in ("transformers", "device"):
        spec = parsed("r", merge(TINY, {"training": {"sampler": kind}})).spec
        run = Run(FileStore(tmp_path / kind), spec, uid="test")
        correct[kind], cached = students.baseline_correct(run, None, questions)
        assert cached == 0
    assert calls == [1]
    assert correct["device"] == correct["transformers"]
    assert any(correct["device"].values())  # the tiny model solves 1+2


def test_a_tiny_run_with_the_device_sampler_completes(tmp_path, monkeypatch):
    """Every stage (prepare's fail@k, teacher sampling, RLOO, grading, evaluation) samples with
    DeviceSampler, through the local executor; about 20 s."""
    monkeypatch.chdir(tmp_path)
    manifest = tiny_manifest(tmp_path, training={"sampler": "device"})
    store = drive(manifest, parallelism=None)
    spec = Run.open(store).spec
    assert spec.training.sampler == "device"
    assert plan(spec, completed(store)) == []
    assert store.exists(layout.PS)
