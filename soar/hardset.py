"""The fail@k hard set: real problems the base model never solves in k samples, split 50/50.

SOAR's teacher is rewarded on problems the student cannot solve at all, so the hard set keeps only
problems with 0 correct out of k samples. Its train half feeds the reward questions, its test half
the pass@k evaluation.
"""

import gzip
import json
import os
import random
import tempfile
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from soar.grading import sampled_correct
from soar.prompts import Domain
from soar.verify import AnswerChecker

if TYPE_CHECKING:
    from soar.sampler import Sampler  # imports torch; only needed for the annotation


def build_hard_set(
    sampler: "Sampler",
    domain: Domain,
    problems: list[dict],
    *,
    k: int,
    max_new_tokens: int,
    temperature: float,
    seed: int,
    checker: AnswerChecker,
    chunk_size: int = 64,
    on_progress: Callable[[int], None] | None = None,
) -> tuple[list[dict], list[dict]]:
    """The problems with 0 of k sampled solutions correct, shuffled by seed, as (train, test).

    Problems are sampled chunk_size at a time, so that only one chunk's k * chunk_size samples
    are held in memory; on_progress gets the number of problems done after each chunk.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    hard = []
    for start in range(0, len(problems), chunk_size):
        chunk = problems[start : start + chunk_size]
        correct = sampled_correct(  # [chunk, k]
            sampler,
            chunk,
            domain=domain,
            n=k,
            temperature=temperature,
            max_new_tokens=max_new_tokens,
            seed=seed + start,
            check=checker,
        )
        hard += [problem for problem, row in zip(chunk, correct, strict=True) if not any(row)]
        if on_progress is not None:
            on_progress(start + len(chunk))
    return split_in_half(hard, seed)


def split_in_half(rows: list[dict], seed: int) -> tuple[list[dict], list[dict]]:
    """A seeded shuffle, then halves; with an odd count the train half gets the extra row."""
    shuffled = list(rows)
    random.Random(seed).shuffle(shuffled)
    half = (len(shuffled) + 1) // 2
    return shuffled[:half], shuffled[half:]


class DataError(ValueError):
    """A data file that cannot be used; the message names the file (and line) and what is wrong."""


def read_problems(
    path: str | Path,
    question_field: str = "question",
    answer_field: str = "answer",
    id_field: str = "id",
    *,
    max_question_chars: int = 8192,
    max_answer_chars: int = 1024,
    on_invalid_row: Callable[[str], None] | None = None,
) -> list[dict]:
    """Problems from a JSONL file (gzipped if it ends in .gz) as {"id", "question", "answer"}.

    A row without an id gets "<file name>:<line>". A missing, truncated, non-gzip or non-UTF-8
    file, a malformed row, or a question or answer over its cap raises DataError naming the file
    and line; with `on_invalid_row`, a malformed row is passed to it as that message and skipped
    instead. A line is read at most up to what the caps allow, so one huge line costs no more.
    """
    fields = ((question_field, max_question_chars), (answer_field, max_answer_chars), id_field)
    max_line = 4 * (max_question_chars + max_answer_chars) + 65536  # UTF-8 bytes, other fields
    problems: list[dict] = []
    first_line_of: dict[str, int] = {}
    number = 0
    try:
        with _open_binary(path) as f:
            while raw := f.readline(max_line + 1):
                number += 1
                where = f"{path}:{number}"
                if len(raw) > max_line:
                    raise DataError(f"{where}: line longer than {max_line} bytes")
                try:
                    problem = _problem_from_row(raw, where, f"{Path(path).name}:{number}", fields)
                    if problem and problem["id"] in first_line_of:
                        first = first_line_of[problem["id"]]
                        duplicate = f"duplicate id {problem['id']!r} (first on line {first})"
                        raise DataError(f"{where}: {duplicate}")
                except DataError as err:
                    if on_invalid_row is None:
                        raise
                    on_invalid_row(str(err))
                    continue
                if problem:
                    first_line_of[problem["id"]] = number
                    problems.append(problem)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, not a JSONL file") from None
    except PermissionError:
        raise DataError(f"{path}: permission denied") from None
    except (gzip.BadGzipFile, EOFError, zlib.error) as err:
        raise DataError(f"{path}: not a complete gzip file ({err or 'truncated'})") from None
    return problems


def _open_binary(path: str | Path) -> BinaryIO:
    if str(path).endswith(".gz"):
        return gzip.open(path, "rb")
    return open(path, "rb")


def _problem_from_row(
    raw: bytes, where: str, default_id: str, fields: tuple[tuple[str, int], tuple[str, int], str]
) -> dict | None:
    """One row as {"id", "question", "answer"}; None for a blank line. `fields`: the question
    and answer field names with their length caps, and the id field name."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{where}: not UTF-8 text ({err.reason})") from None
    if not line.strip():
        return None
    try:
        row = json.loads(line)
    except json.JSONDecodeError as e:
        raise DataError(f"{where}: invalid JSON: {e.msg} (column {e.colno})") from None
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
    (question_field, max_question), (answer_field, max_answer), id_field = fields
    question = _text_field(row, question_field, where, max_question)
    answer = _text_field(row, answer_field, where, max_answer)
    return {"id": str(row.get(id_field, default_id)), "question": question, "answer": answer}


def _text_field(row: dict, name: str, where: str, limit: int) -> str:
    """A non-empty string of at most `limit` characters; numbers (such as integer answers) are
    written as text."""
    if name not in row:
        raise DataError(f"{where}: missing field {name!r} (fields: {', '.join(row) or 'none'})")
    value = row[name]
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{where}: field {name!r} must be a non-empty string, got {value!r:.80}")
    if len(value) > limit:
        raise DataError(f"{where}: field {name!r} has {len(value)} characters, more than {limit}")
    return value


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> None:
    """One JSON object per line, written to a temporary file and renamed: never half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
