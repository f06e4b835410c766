"""How many of each question set's questions are stepping stones (sums holding the rare digit,
soar.arith.rare_columns): did SOAR's teacher learn to write more of them than the base teacher?

    .venv/bin/python benchmarks/soar_effect/stone_share.py [benchmarks/soar_effect/experiment]

Prints, per question file of the experiment (`questions/*.jsonl`), its size, its stones and
their share.
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from soar.arith import rare_columns  # noqa: E402


def main() -> None:
    output = Path(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/soar_effect/experiment")
    for path in sorted((output / "questions").glob("*.jsonl")):
        questions = [json.loads(line)["question"] for line in path.read_text().splitlines()]
        stones = sum(bool(rare_columns(q)) for q in questions)
        share = stones / len(questions)
        print(f"{path.stem:16} {len(questions):4} questions {stones:4} stones {share:.3f}")


if __name__ == "__main__":
    main()
