"""Canonical answer keys: read the final answer out of an agent's reply, per domain.

``extract_answer(domain, text)`` is what the runtime compares to decide that
all supernodes agree and what the emulator uses to read candidate answers.
Two replies with equal keys give the same answer; ``None`` means unparseable.
"""

from __future__ import annotations

import ast
import re
import textwrap
from collections.abc import Sequence
from fractions import Fraction

from hieramas.tasks.mathtext import extract_math_answer, normalize_math

__all__ = [
    "canonical_number",
    "extract_answer",
    "extract_choice",
    "extract_code",
    "extract_number",
    "normalize_code",
]

LETTERS = "ABCD"

# --- multiple choice -------------------------------------------------------------------------

# "answer"/"option"/"choice", then what may sit between it and the letter; matched in two
# steps (keyword search, then an anchored match) because one combined pattern is ~5x slower
_KEYWORD = re.compile(r"answer|option|choice", re.IGNORECASE)
_AFTER_KEYWORD = re.compile(
    r"(?:\s+(?i:would\s+be|should\s+be|is|must\s+be))?\s*[:=]?\s*(?i:option\s+|choice\s+)?"
    r"[\*_\(\[\{\s]*(?:\\text\{)?([A-D])(?![A-Za-z0-9'])"
)
_TAIL_PREFIX = re.compile(r"^(?:\s+(?i:would\s+be|should\s+be|is|must\s+be))?\s*[:=]?\s*")
_BOXED_LETTER = re.compile(r"\\boxed\{\s*(?:\\text\{)?\(?([A-D])\)?\}?\s*\}")
_BOLD_LETTER = re.compile(r"\*\*\s*\(?([A-D])\)?[\.\):]?\s*\*\*")
_LEADING_LETTER = re.compile(r"^\s*[\*\(\[]*([A-D])(?:[\)\]\*]*\s*$|[\)\]\*]*[\.\):,](?!\d))")


def _keyword_ends(text: str) -> list[int]:
    if text.isascii():  # str.find on the lowered text is far faster than a regex scan
        low = text.lower()
        ends = []
        for word in ("answer", "option", "choice"):
            at = low.find(word)
            while at != -1:
                ends.append(at + len(word))
                at = low.find(word, at + 1)
        return ends
    return [m.end() for m in _KEYWORD.finditer(text)]


def _last_statement(text: str) -> str | None:
    """The letter of the last "answer is X"-style statement."""
    for end in sorted(_keyword_ends(text), reverse=True):
        m = _AFTER_KEYWORD.match(text, end)
        if m:
            return m.group(1)
    return None


def _norm_text(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", s.lower()).strip()


def _choice_quoted(text: str, choices: Sequence[str]) -> str | None:
    """Letter of the one choice whose text the reply states as its answer."""
    normed = [_norm_text(c) for c in choices]
    if not any(normed):
        return None
    lines = [line for line in text.splitlines() if line.strip()]
    candidates = []
    ends = _keyword_ends(text)
    if ends:  # the rest of the line after the last "answer"/"option"/"choice"
        end = max(ends)
        line_end = text.find("\n", end)
        tail = text[end:] if line_end == -1 else text[end:line_end]
        candidates.append(_TAIL_PREFIX.sub("", tail))
    if lines:
        candidates.append(lines[-1])
    for candidate in candidates:
        target = _norm_text(candidate)
        exact = [i for i, c in enumerate(normed) if c and c == target]
        if len(exact) == 1:
            return LETTERS[exact[0]]
        padded = f" {target} "
        inside = [i for i, c in enumerate(normed) if c and f" {c} " in padded]
        # drop choices that are merely part of another matched choice ("True" in "True, True")
        inside = [i for i in inside if not any(i != j and normed[i] in normed[j] for j in inside)]
        if len(inside) == 1:
            return LETTERS[inside[0]]
    return None


def extract_choice(text: str, choices: Sequence[str] = ()) -> str | None:
    """The chosen letter ``A``-``D`` of an MCQ reply, or None if unparseable.

    Tried in order: the last explicit statement ("The answer is (B)", "Answer: B."),
    ``\\boxed{B}``, the last bold letter (``**B**``), a letter opening the first or
    closing the last line, then (with ``choices``) a choice's text quoted back.
    """
    if not text or not text.strip():
        return None
    stated = _last_statement(text)
    if stated is not None:
        return stated
    for pattern in (_BOXED_LETTER, _BOLD_LETTER):
        found = pattern.findall(text)
        if found:
            return str(found[-1])
    lines = [line for line in text.splitlines() if line.strip()]
    for line in (lines[0], lines[-1]):
        m = _LEADING_LETTER.match(line)
        if m:
            return m.group(1)
    if choices:
        return _choice_quoted(text, choices)
    return None


# --- numbers (GSM8K) -------------------------------------------------------------------------

_NUM = r"-?\$?\s?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s*/\s*\d+)?|-?\$?\.\d+"
_NUM_RE = re.compile(_NUM)
_HASHES = re.compile(r"####\s*(" + _NUM + ")")
_NUM_STATEMENT = re.compile(
    r"(?i:final\s+answer|the\s+answer|answer)\s*(?:is|:|=)?\s*:?[^\d\n-]{0,20}?(" + _NUM + ")"
)


def canonical_number(raw: str) -> str | None:
    """``"$1,234.50"`` -> ``"1234.5"``; ``"3/4"`` -> ``"0.75"``; ``"1/3"`` -> ``"1/3"``."""
    s = raw.replace("$", "").replace(",", "").replace(" ", "")
    try:
        if "/" in s:
            numerator, denominator = s.split("/", 1)
            value = Fraction(numerator) / Fraction(denominator)
        else:
            value = Fraction(s)
    except (ValueError, ZeroDivisionError):
        return None
    den = value.denominator
    while den % 2 == 0:
        den //= 2
    while den % 5 == 0:
        den //= 5
    if den != 1:
        return f"{value.numerator}/{value.denominator}"
    if value.denominator == 1:
        return str(value.numerator)
    digits = 0
    while (value * 10**digits).denominator != 1:
        digits += 1
    return f"{float(value):.{digits}f}" if digits < 15 else str(value)


def extract_number(text: str) -> str | None:
    """Final number: ``#### n``, ``\\boxed{n}``, "The answer is n", else the last number."""
    if not text:
        return None
    for pattern in (_HASHES, _NUM_STATEMENT):
        found = pattern.findall(text)
        if found:
            return canonical_number(found[-1])
    boxed = extract_math_answer(text) if "\\boxed" in text else None
    if boxed is not None:
        inner = _NUM_RE.findall(boxed.replace("\\!", "").replace("{,}", ","))
        if inner:
            return canonical_number(inner[-1])
    found = _NUM_RE.findall(text)
    return canonical_number(found[-1]) if found else None


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
