"""Reading a SoarRun manifest, and saying in one line per problem what is wrong and where.

A manifest is bounded before it is parsed: its size, and the number of YAML nodes it would expand
to (aliases included), so neither a huge file nor an alias bomb costs more than a moment.
"""

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from soar.spec import SoarRun, SpecError

MAX_MANIFEST_BYTES = 256 * 1024  # a SoarRun is a few KB; Kubernetes objects stop at ~1.5 MB
MAX_MANIFEST_NODES = 20_000  # scalars, lists and mappings after expanding aliases
SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


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
        with open(path, "rb") as f:
            data = f.read(MAX_MANIFEST_BYTES + 1)
    except OSError as err:
        raise SpecError(f"{path}: cannot read: {err.strerror}") from None
    if len(data) > MAX_MANIFEST_BYTES:
        raise SpecError(f"{path}: larger than {MAX_MANIFEST_BYTES // 1024} KiB; not a SoarRun")
    try:
        text = data.decode("utf-8")
        nodes = list(yaml.compose_all(text, Loader=SafeLoader))
    except UnicodeDecodeError as err:
        raise SpecError(f"{path}: not UTF-8 text (byte {err.start})") from None
    except yaml.YAMLError as err:
        raise SpecError(f"{path}: not valid YAML: {str(err).splitlines()[0]}") from None
    except RecursionError:
        raise SpecError(f"{path}: nested too deeply to be a SoarRun") from None
    nodes = [n for n in nodes if n is not None]
    if len(nodes) != 1:
        raise SpecError(f"{path}: expected exactly one YAML document, found {len(nodes)}")
    expanded = expanded_size(nodes[0], MAX_MANIFEST_NODES)
    if expanded > MAX_MANIFEST_NODES:
        raise SpecError(
            f"{path}: expands to more than {MAX_MANIFEST_NODES} YAML nodes (aliases included)"
        )
    docs = [d for d in yaml.load_all(text, Loader=SafeLoader) if d is not None]
    return parse_run(docs[0], str(path))


def expanded_size(root: yaml.Node, limit: int) -> int:
    """Nodes the document has once every alias is expanded, counted without expanding: a node
    reached through n aliases counts n times. Stops early once past `limit`; a recursive alias
    counts as too many."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: yaml.Node) -> int:  # recursion depth <= the composer's, already survived
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            return limit + 1  # the node contains itself
        active.add(key)
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        total = 1
        for child in children:
            total += size(child)
            if total > limit:
                break
        active.discard(key)
        sizes[key] = total
        return total

    return size(root)
