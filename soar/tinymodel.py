"""The recipe for the builtin tiny model: a 0.27M-parameter Llama trained from scratch on arith.

A random model never writes the teacher's tagged format, so rejection sampling would never end.
This recipe trains, in about eight minutes on one CPU core, a model that writes that format with
right answers to sums of up to 2 digits, adds sums of up to 4 digits column by column (short ones
well, 4-digit ones with copying mistakes), and hardly knows the column facts of soar.arith's rare
digit (the testbed of benchmarks/testbed.py). The corpus is generated on the fly from the
recipe's seed: teacher lines (teacher prompt, then a one- or two-digit problem in the tagged
format with its column work in letters and its answer, every digit equally likely) and student
lines (student prompt, then the worked solution, rare-digit columns kept at student_rare_rate),
with the loss on completions only. soar.models caches the result under checkpoint_name(), a
content hash.
"""

import ast
import hashlib
import json
import logging
import math
import os
import random
import string
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from soar.arith import ARITH, make_problem, rare_rate_pair, solution_text, teacher_text

log = logging.getLogger(__name__)

PAD, EOS, UNK = "<pad>", "<eos>", "<unk>"
CHARACTERS = [c for c in string.printable if c not in "\t\r\x0b\x0c"]
# Fixed strings of the prompts and formats, one token each: sequences get 2-3x shorter.
WORD_TOKENS = [
    "<question>",
    "</question>",
    "<answer>",
    "</answer>",
    "\\boxed{",
    "User: ",
    " Assistant:",
]


@dataclass(frozen=True)
class TinyRecipe:
    """Everything that decides the trained weights; its hash names the cached checkpoint."""

    seed: int = 0
    layers: int = 4
    width: int = 64
    heads: int = 4
    steps: int = 800
    batch_size: int = 64
    lr: float = 3e-3
    warmup_steps: int = 50
    # Half the lines are the teacher's: with a quarter its letter facts stay unsure (2-digit
    # answers right 0.43; 0.80 with half). The student's copying of 4-digit sums pays for it
    # (docs/design.md, "The CPU testbed").
    teacher_fraction: float = 0.5
    # Sums of 1 and 2 digits, worked out in the teacher's letters (soar.arith.teacher_text).
    teacher_difficulties: tuple[int, ...] = (1, 2)
    # Weights of student difficulties 1, 2, ...: sums of up to 4 digits.
    student_difficulty_weights: tuple[float, ...] = (1, 2, 3, 3)
    # Share of student columns that hold soar.arith.RARE_DIGIT (uniform digits: 0.19). Rare
    # enough that the model's column facts for it are mostly wrong, not so rare that they are
    # never right: the domain's hard split and its stepping stones both come from this.
    # Measured on the 19 one-digit sums holding a 7 (64 samples each), trained with
    # PORTABLE_CPU_ENV: right 0.116 of the time (15 of them sometimes). docs/design.md, "The CPU
    # testbed", has what other rates, teacher shares and lengths of training did.
    student_rare_rate: float = 0.0003


RECIPE = TinyRecipe()


def build_tokenizer() -> PreTrainedTokenizerFast:
    """Character-level tokenizer (printable ASCII plus the format's fixed strings), eos and pad."""
    vocab = {token: i for i, token in enumerate([PAD, EOS, UNK, *CHARACTERS])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    backend.decoder = decoders.Fuse()
    backend.add_special_tokens([PAD, EOS, UNK])
    backend.add_tokens([AddedToken(word, normalized=False) for word in WORD_TOKENS])
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD,
        eos_token=EOS,
        unk_token=UNK,
        clean_up_tokenization_spaces=False,
    )


def corpus_line(rng: random.Random, recipe: TinyRecipe) -> tuple[str, str]:
    """One (prompt, completion) pair: a teacher line or a student line."""
    if rng.random() < recipe.teacher_fraction:
        problem = make_problem(rng, rng.choice(recipe.teacher_difficulties))
        return ARITH.teacher_prompt, teacher_text(problem["question"], problem["answer"])
    difficulties = range(1, len(recipe.student_difficulty_weights) + 1)
    difficulty = rng.choices(difficulties, weights=recipe.student_difficulty_weights)[0]
    problem = make_problem(rng, difficulty, rare_rate_pair(recipe.student_rare_rate))
    return ARITH.student_prompt(problem["question"]), solution_text(
        problem["question"], problem["answer"]
    )


def encode_batch(
    tokenizer: PreTrainedTokenizerFast, lines: list[tuple[str, str]]
) -> dict[str, torch.Tensor]:
    """Right-padded input ids, attention mask, and labels that score completions and eos only."""
    prompts = tokenizer([p for p, _ in lines], add_special_tokens=False)["input_ids"]
    completions = tokenizer([c for _, c in lines], add_special_tokens=False)["input_ids"]
    rows = [p + c + [tokenizer.eos_token_id] for p, c in zip(prompts, completions, strict=True)]
    width = max(map(len, rows))
    input_ids = torch.full((len(rows), width), tokenizer.pad_token_id)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), -100)
    for i, (row, prompt) in enumerate(zip(rows, prompts, strict=True)):
        input_ids[i, : len(row)] = torch.tensor(row)
        attention_mask[i, : len(row)] = 1
        labels[i, len(prompt) : len(row)] = torch.tensor(row[len(prompt) :])
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def build_model(recipe: TinyRecipe, tokenizer: PreTrainedTokenizerFast) -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=recipe.width,
        intermediate_size=4 * recipe.width,
        num_hidden_layers=recipe.layers,
        num_attention_heads=recipe.heads,
        num_key_value_heads=recipe.heads,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    return LlamaForCausalLM(config)


def lr_factor(step: int, recipe: TinyRecipe) -> float:
    """Linear warmup, then cosine decay to a tenth of the peak."""
    warmup = min(1.0, (step + 1) / recipe.warmup_steps)
    progress = min(step, recipe.steps) / recipe.steps
    return warmup * (0.1 + 0.45 * (1 + math.cos(math.pi * progress)))


def train(recipe: TinyRecipe = RECIPE) -> tuple[LlamaForCausalLM, PreTrainedTokenizerFast]:
    """Trains the tiny model from scratch on one thread, whoever calls it: the rare digit's facts
    are learnt from a handful of lines, so the summation order of more threads changes them."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train_on_one_thread(recipe)
    finally:
        torch.set_num_threads(threads)


def train_on_one_thread(recipe: TinyRecipe) -> tuple[LlamaForCausalLM, PreTrainedTokenizerFast]:
    tokenizer = build_tokenizer()
    torch.manual_seed(recipe.seed)
    model = build_model(recipe, tokenizer)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=recipe.lr, betas=(0.9, 0.98), weight_decay=0.01
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, recipe))
    rng = random.Random(recipe.seed)
    model.train()
    for step in range(recipe.steps):
        batch = encode_batch(
            tokenizer, [corpus_line(rng, recipe) for _ in range(recipe.batch_size)]
        )
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        if step % 100 == 0 or step == recipe.steps - 1:
            log.info("tiny-arith step %d/%d loss %.3f", step + 1, recipe.steps, loss.item())
    model.eval()
    return model, tokenizer


# The builtin model is trained with the same floating-point operations on every x86 CPU: torch's
# own kernels at their baseline (no AVX2/AVX-512 variants) and MKL's matrix products in its
# conditional-numerical-reproducibility mode. With the defaults, an AVX-512 EPYC and the earlier
# machines trained different weights from the same recipe (greedy accuracy on one-digit sums
# with a 7: 0.575 against at most 0.3), so the testbed and its tests held on one CPU kind only.
PORTABLE_CPU_ENV = {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE"}


def train_to(directory: Path, recipe: TinyRecipe = RECIPE) -> None:
    """Trains in a fresh process with PORTABLE_CPU_ENV (both are read when the process starts)
    and writes an HF checkpoint there, with recipe.json recording the recipe and train time."""
    env = os.environ | PORTABLE_CPU_ENV
    command = [sys.executable, "-m", "soar.tinymodel", str(directory), json.dumps(asdict(recipe))]
    subprocess.run(command, env=env, check=True)


def train_here(directory: Path, recipe: TinyRecipe) -> None:
    """train_to's work, in this process."""
    start = time.perf_counter()
    model, tokenizer = train(recipe)
    seconds = time.perf_counter() - start
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    record = {
        "recipe": asdict(recipe),
        "train_seconds": round(seconds, 1),
    }
    (directory / "recipe.json").write_text(json.dumps(record, indent=2) + "\n")
    log.info("tiny-arith trained in %.0f s", seconds)


def code_without_prose() -> str:
    """This module's code minus comments and docstrings: editing prose keeps the cached model."""
    tree = ast.parse(Path(__file__).read_text())
    documented = ast.Module | ast.ClassDef | ast.FunctionDef
    for node in ast.walk(tree):
        if isinstance(node, documented) and ast.get_docstring(node):
            node.body = node.body[1:]
    return ast.unparse(tree)


def checkpoint_name(recipe: TinyRecipe = RECIPE) -> str:
    """`tiny-arith-<hash>` of the recipe, this code, and a sample of the corpus it trains on.

    The sample stands for the domain's formats and prompts, so editing soar.arith only retrains
    when it changes what the model sees.
    """
    rng = random.Random(recipe.seed)
    content = {
        "recipe": asdict(recipe),
        "code": code_without_prose(),
        "corpus": [corpus_line(rng, recipe) for _ in range(256)],
    }
    digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()
    return f"tiny-arith-{digest[:16]}"


if __name__ == "__main__":  # train_to's process: python -m soar.tinymodel DIRECTORY RECIPE_JSON
    fields = json.loads(sys.argv[2])
    train_here(
        Path(sys.argv[1]),
        TinyRecipe(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}),
    )
