"""Canonical answer keys: read the final answer out of an agent's reply, per domain.

``extract_answer(domain, text)`` is what the runtime compares to decide that
all supernodes agree and what the emulator uses to read candidate answers.
Two replies with equal keys give the same answer; ``None`` means unparseable.
Letters and numbers are read by :mod:`.choicetext` and :mod:`.numbertext`,
whose docstrings state the policy (the last explicit answer statement wins).
"""

from __future__ import annotations

import ast
import re
import textwrap
from collections.abc import Sequence

from hieramas.tasks.choicetext import extract_choice
from hieramas.tasks.mathtext import extract_math_answer, normalize_math
from hieramas.tasks.numbertext import canonical_number, extract_number

__all__ = [
    "canonical_number",
    "extract_answer",
    "extract_choice",
    "extract_code",
    "extract_number",
    "normalize_code",
]

# --- code (HumanEval) ------------------------------------------------------------------------

_INDENTED = re.compile(r"(?:[ \t]*\n)*[ \t]+\S")  # first non-blank line is indented
_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL | re.IGNORECASE)


def extract_code(text: str) -> str | None:
    """Python source from a reply: the last fenced block that parses and defines a function
    (else the last that parses, possibly a function body); an unfenced reply is taken
    whole if it parses and defines a function, or if it is an indented function body (how
    HumanEval completions are written: they continue the prompt)."""
    blocks: list[str] = _FENCE.findall(text)
    if not blocks and (
        re.search(r"^\s*(?:async\s+)?def\s", text, re.MULTILINE) or _INDENTED.match(text)
    ):
        blocks = [text]
    parsed = [block for block in blocks if _parses(block)]
    with_def = [b for b in parsed if re.search(r"^\s*(?:async\s+)?def\s", b, re.MULTILINE)]
    chosen = with_def or parsed
    if not chosen or not chosen[-1].strip():
        return None
    return chosen[-1]


def _parses(code: str) -> bool:
    """Whether ``code`` is a module, or a function body (as HumanEval completions are: they
    continue the prompt, maybe with helpers after at column 0, or come dedented)."""
    body = "def _body():\n"
    for candidate in (code, body + code, body + textwrap.indent(textwrap.dedent(code), "    ")):
        try:
            ast.parse(candidate)
        except (SyntaxError, ValueError):
            continue
        return True
    return False


def _drop_docstrings(tree: ast.AST) -> None:
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            body = node.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                node.body = body[1:] or [ast.Pass()]


def normalize_code(code: str) -> str | None:
    """Source re-rendered by ``ast`` without comments, docstrings or layout; None if invalid."""
    try:
        tree = ast.parse(textwrap.dedent(code))
    except (SyntaxError, ValueError):
        return None
    _drop_docstrings(tree)
    return ast.unparse(tree)


# --- dispatch --------------------------------------------------------------------------------


def extract_answer(domain: str, text: str, *, choices: Sequence[str] = ()) -> str | None:
    """Canonical answer key of ``text`` for ``domain``, or None if unparseable.

    mmlu: ``"A"``-``"D"``; math: :func:`normalize_math` of the final answer;
    gsm8k: canonical decimal string; humaneval: ``ast``-normalised code;
    general: the last non-empty line, stripped.
    """
    if domain == "mmlu":
        return extract_choice(text, choices)
    if domain == "math":
        raw = extract_math_answer(text)
        if raw is None:
            return None
        key = normalize_math(raw)
        return key or None
    if domain == "gsm8k":
        return extract_number(text)
    if domain == "humaneval":
        code = extract_code(text)
        return normalize_code(code) if code is not None else None
    if domain == "general":
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        return lines[-1] if lines else None
    raise ValueError(f"unknown domain {domain!r}")
