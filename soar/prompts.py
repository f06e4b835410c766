"""Prompts and output formats shared by every domain: the teacher's tags and boxed answers."""

import re
from dataclasses import dataclass

MATH_SUBJECTS = (
    "Prealgebra",
    "Algebra",
    "Number Theory",
    "Counting & Probability",
    "Geometry",
    "Intermediate Algebra",
    "Precalculus",
)

# The teacher's fixed request, in the five parts of the paper's prompt (arXiv:2601.18778): the
# role, the task, the subjects, the requirements, the output format. It names no problem, so
# nothing but the teacher's own weights shapes what it writes; the format is the one
# parse_teacher_output reads.
# The format line's placeholders: a teacher that copies them has written no problem (the
# verifier parses "the final answer" as an expression), so parse_teacher_output refuses them.
PLACEHOLDER_QUESTION = "the problem statement"
PLACEHOLDER_ANSWER = "the final answer"

MATH_TEACHER_PROMPT = (
    "You write practice problems that will be used to train a student model in mathematics.\n"
    "\n"
    "Task: write ONE new problem. It must be original, self-contained (everything needed to "
    "solve it is stated in it), and take several steps of reasoning to solve.\n"
    "\n"
    "Subject: choose one of " + ", ".join(MATH_SUBJECTS) + ".\n"
    "\n"
    "Requirements:\n"
    "- the problem has a single final answer that can be checked, such as a number or an "
    "expression;\n"
    "- do not copy or restate a problem from a textbook, a contest or any other known source;\n"
    "- make it about as difficult as a mathematics competition problem.\n"
    "\n"
    "Output format: you may reason first, outside the tags. Then write the problem and its "
    "final answer exactly as\n"
    f"<question>{PLACEHOLDER_QUESTION}</question><answer>\\boxed{{{PLACEHOLDER_ANSWER}}}</answer>\n"
)

MATH_STUDENT_PREAMBLE = (
    "Solve the following problem. Reason step by step, and put your final answer within "
    "\\boxed{}.\n"
)

QUESTION_RE = re.compile(r"<question>(.*?)</question>", re.DOTALL)
ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


@dataclass(frozen=True)
class Domain:
    """What changes between problem domains: the teacher's prompt and how a student is asked.

    Prompts are rendered for a tokenizer: an instruct model's chat template (a user turn, then
    the assistant's turn opened, with BOS and special tokens where the template puts them), or
    the plain `... User: <question> Assistant:` format for models without one (the tiny model).
    """

    name: str
    teacher_prompt: str  # the request, as text
    student_preamble: str

    def teacher_input(self, tokenizer) -> str:
        return chat_prompt(tokenizer, self.teacher_prompt) or self.teacher_prompt

    def student_prompt(self, question: str, tokenizer=None) -> str:
        """The prompt for `tokenizer`'s model; without one, the plain format (what the tiny
        model is trained on)."""
        chat = chat_prompt(tokenizer, self.student_preamble + question)
        return chat or f"{self.student_preamble}User: {question} Assistant:"


def chat_prompt(tokenizer, text: str) -> str | None:
    """`text` as a user turn in the tokenizer's chat template, ready for the assistant's reply;
    None when there is no tokenizer or it has no template."""
    if not getattr(tokenizer, "chat_template", None):
        return None
    messages = [{"role": "user", "content": text}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def encode_prompts(tokenizer, prompts: list[str]) -> list[list[int]]:
    """Token ids of rendered prompts: special tokens are already in the text (a chat template's
    BOS and turn markers), so none are added. Sampling and the losses both encode with this, so
    the log-probs are recomputed on exactly the ids that were sampled."""
    return tokenizer(prompts, add_special_tokens=False)["input_ids"] if prompts else []


MATH = Domain("math", MATH_TEACHER_PROMPT, MATH_STUDENT_PREAMBLE)


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} in text, braces balanced; None if none or unclosed."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    i = start + len("\\boxed{")
    depth = 1
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i:j]
    return None


@dataclass(frozen=True)
class TeacherPair:
    """One synthetic problem: the question and the teacher's boxed answer (right or wrong)."""

    question: str
    answer: str


def parse_teacher_output(text: str) -> TeacherPair | None:
    """Both tag pairs and a non-empty boxed answer, else None. Parsing is checked elsewhere."""
    q = QUESTION_RE.search(text)
    a = ANSWER_RE.search(text)
    if q is None or a is None:
        return None
    question = q.group(1).strip()
    answer = last_boxed(a.group(1))
    if not question or answer is None or not answer.strip():
        return None
    if question == PLACEHOLDER_QUESTION or answer.strip() == PLACEHOLDER_ANSWER:
        return None  # the prompt's format line, copied
    return TeacherPair(question, answer.strip())
