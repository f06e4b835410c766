"""Reading a SoarRun manifest, and saying in one line per problem what is wrong and where."""

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from soar.spec import SoarRun, SpecError


def error_lines(err: ValidationError) -> list[str]:
    """One line per problem: 'spec.teacher.datasets: must be >= 2'."""
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"] if not str(p).startswith("function-after"))
        msg = _short_message(e)
        lines.append(f"{loc}: {msg}" if loc else msg)
    return lines


def _short_message(e: dict[str, Any]) -> str:
    ctx = e.get("ctx") or {}
    kind = e["type"]
    field = str(e["loc"][-1]) if e["loc"] else ""
    if kind == "greater_than_equal":
        why = " for RLOO" if field in ("datasets", "groupSize") else ""
        return f"must be >= {ctx['ge']}{why}"
    if kind == "greater_than":
        return f"must be > {ctx['gt']}"
    if kind == "less_than_equal":
        return f"must be <= {ctx['le']}"
    if kind == "less_than":
        return f"must be < {ctx['lt']}"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "required field is missing"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}, got {e.get('input')!r}"
    if kind == "value_error":
        return str(ctx.get("error", e["msg"]))
    return e["msg"]


def parse_run(doc: Any, source: str = "manifest") -> SoarRun:
    """Validate a loaded manifest; SpecError lists every problem with its field path."""
    if not isinstance(doc, dict):
        raise SpecError(f"{source}: not a SoarRun manifest (expected a YAML mapping)")
    try:
        return SoarRun.model_validate(doc)
    except ValidationError as err:
        raise SpecError("\n".join(f"{source}: {line}" for line in error_lines(err))) from None


def load_run(path: str | Path) -> SoarRun:
    """Read and validate a manifest file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise SpecError(f"{path}: cannot read: {err.strerror}") from None
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as err:
        raise SpecError(f"{path}: not valid YAML: {str(err).splitlines()[0]}") from None
    if len(docs) != 1:
        raise SpecError(f"{path}: expected exactly one YAML document, found {len(docs)}")
    return parse_run(docs[0], str(path))
