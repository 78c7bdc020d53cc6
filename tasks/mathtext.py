"""LaTeX answer text: find the final answer in a reply and normalise it to a canonical string.

Pure string work, no sympy: ``normalize_math`` maps the common equivalent
spellings of one answer (``\\dfrac12``, ``0.5``, ``1/2``; ``90^\\circ`` and
``90``; ``10,\\!080`` and ``10080``; ``1 \\pm \\sqrt{19}`` and the two roots in
any order...) to the same string.  :mod:`.graders.math` builds full
equivalence on top of it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from fractions import Fraction

__all__ = [
    "extract_math_answer",
    "last_boxed",
    "match_brace",
    "normalize_math",
    "number_to_canonical",
    "parse_number",
    "split_top_level",
]

_BOXED = re.compile(r"\\(?:boxed|fbox)\b")


def match_brace(text: str, start: int) -> int:
    """Index of the brace closing the ``{`` at ``start`` (``\\{``/``\\}`` skipped), or -1."""
    depth = 0
    i = start
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (balanced braces) or ``\\boxed x``; None if absent."""
    for match in reversed(list(_BOXED.finditer(text))):
        i = match.end()
        while i < len(text) and text[i] == " ":
            i += 1
        if i < len(text) and text[i] == "{":
            end = match_brace(text, i)
            if end != -1:
                return text[i + 1 : end].strip()
            continue
        if i > match.end():  # "\boxed 5"
            token = re.match(r"[^\s$]+", text[i:])
            if token:
                return token.group(0).strip()
    return None


_ANSWER_IS = re.compile(
    r"(?:final\s+answer|the\s+answer|answer)\s*(?:is|:)\s*:?\s*(?P<ans>.+?)\s*$",
    re.IGNORECASE | re.MULTILINE,
)


def extract_math_answer(text: str) -> str | None:
    """Raw final answer of a math reply: last ``\\boxed{}``, else the last "The answer is ..."."""
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed or None
    matches = list(_ANSWER_IS.finditer(text))
    if not matches:
        return None
    ans = matches[-1].group("ans").strip()
    ans = re.sub(r"^\*+|\*+$", "", ans).strip()  # markdown bold
    ans = ans.rstrip(".").strip()
    ans = _strip_math_delimiters(ans)
    return ans or None


def _strip_math_delimiters(s: str) -> str:
    s = s.strip()
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if s.startswith(left) and s.endswith(right) and len(s) >= len(left) + len(right):
            s = s[len(left) : len(s) - len(right)].strip()
    return s


def split_top_level(s: str, sep: str = ",") -> list[str]:
    """Split ``s`` on ``sep`` outside any (), [], {} nesting."""
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    i = 0
    while i < len(s):
        ch = s[i]
        if ch == "\\" and i + 1 < len(s) and s[i + 1] in "{}":
            current.append(s[i : i + 2])
            depth += 1 if s[i + 1] == "{" else -1
            i += 2
            continue
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == sep and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    parts.append("".join(current))
    return parts


_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)")
_FRAC_INT = re.compile(r"([+-]?)\\frac\{([+-]?\d+)\}\{([+-]?\d+)\}")
_SLASH_INT = re.compile(r"([+-]?\d+)/(\d+)")
_MIXED = re.compile(r"([+-]?)(\d+)\\frac\{(\d+)\}\{(\d+)\}")


def parse_number(s: str) -> Fraction | None:
    """Exact value of a plain number, integer fraction or mixed number in normalised form."""
    try:
        if _NUMBER.fullmatch(s):
            return Fraction(s)
        m = _FRAC_INT.fullmatch(s)
        if m:
            value = Fraction(int(m.group(2)), int(m.group(3)))
            return -value if m.group(1) == "-" else value
        m = _SLASH_INT.fullmatch(s)
        if m:
            return Fraction(int(m.group(1)), int(m.group(2)))
        m = _MIXED.fullmatch(s)
        if m:
            value = int(m.group(2)) + Fraction(int(m.group(3)), int(m.group(4)))
            return -value if m.group(1) == "-" else value
    except (ValueError, ZeroDivisionError):
        return None
    return None


def number_to_canonical(value: Fraction) -> str:
    """``p`` or ``p/q`` in lowest terms."""
    if value.denominator == 1:
        return str(value.numerator)
    return f"{value.numerator}/{value.denominator}"


_UNWRAP = ("text", "textbf", "textit", "textrm", "mbox", "mathrm", "mathbf", "mathit", "rm")
_UNWRAP_RE = re.compile(r"\\(?:" + "|".join(_UNWRAP) + r"|operatorname)\s*\{")
_UNITS = (
    r"units?|sq(?:uare)?\.?|cubic|cm|mm|km|m|meters?|metres?|centimeters?|millimeters?|kilometers?|"
    r"inch(?:es)?|in|feet|foot|ft|yards?|yd|miles?|mi|mph|degrees?|deg|radians?|cents?|dollars?|"
    r"seconds?|sec|s|minutes?|min|hours?|hrs?|days?|weeks?|months?|years?|grams?|g|kg|"
    r"pounds?|lbs?|ounces?|oz|liters?|litres?|ml|gallons?|people|persons?|students?|ways?|"
    r"times|points?|apples?|coins?|marbles?|boxes|books?|pages?|items?|percent"
)
_UNIT_TAIL = re.compile(r"(?:\s|(?<=\d)|(?<=\}))(?:" + _UNITS + r")(?:\^\{?[23]\}?)?\.?\s*$")
_LEFT_RIGHT = re.compile(r"\\(?:left|right|big|Big|bigg|Bigg)(?![a-zA-Z])\s*(\\[{}]|[()\[\]|.])?")
_SPACES = re.compile(r"(?<!\\)\\[,;:! ]|\\quad|\\qquad|~")
_LHS = re.compile(r"^[a-zA-Z](?:_\{?\w\}?)?\s*(?:=|\\in)\s*(?!.*=)")
_THOUSANDS = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")


def _unwrap_commands(s: str) -> str:
    while True:
        m = _UNWRAP_RE.search(s)
        if not m:
            return s
        open_at = m.end() - 1
        end = match_brace(s, open_at)
        if end == -1:
            return s[: m.start()] + s[m.end() :]
        s = s[: m.start()] + s[open_at + 1 : end] + s[end + 1 :]


def _lr(m: re.Match[str]) -> str:
    delim = m.group(1)
    return "" if delim in (None, ".") else delim


def _clean(s: str) -> str:
    """Surface normalisation of one answer (no structure yet)."""
    s = _strip_math_delimiters(s.strip())
    s = s.replace("\\displaystyle", "").replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = s.replace("\\dbinom", "\\binom").replace("\\tbinom", "\\binom")
    s = re.sub(r",\\!\s*", ",", s)  # 10,\!080 (thousands) keeps its comma for the check below
    s = s.replace("{,}", ",")
    s = _LEFT_RIGHT.sub(_lr, s)
    s = _SPACES.sub(" ", s)
    s = _unwrap_commands(s)
    for token in ("^\\circ", "^{\\circ}", "\\circ", "°", "\\%", "%", "\\$", "$"):
        s = s.replace(token, "")
    s = re.sub(r"\^\s*\{\s*\}", "", s)
    s = s.strip().rstrip(".").strip()
    previous = None
    while previous != s:
        previous = s
        stripped = _UNIT_TAIL.sub("", s).strip()
        if stripped and not re.search(r"[a-zA-Z]", re.sub(r"\\[a-zA-Z]+", "", stripped)):
            s = stripped
    s = _LHS.sub("", s)
    s = s.replace("\\le ", "\\leq ").replace("\\ge ", "\\geq ")
    s = re.sub(r"\\(?:cdot|times)(?![a-zA-Z])", "*", s)
    s = re.sub(r"\\(?:infty|infinity)(?![a-zA-Z])|\binfinity\b|∞", "\\\\infty", s)
    # keep a separator between a command and a following letter, drop all other spaces
    s = re.sub(r"(\\[a-zA-Z]+)\s+(?=[a-zA-Z])", r"\1#", s)
    s = re.sub(r"\s+", "", s).replace("#", " ")
    if _THOUSANDS.fullmatch(s):
        s = s.replace(",", "")
    # one-token arguments: \frac12, \frac{270}7, \frac9{19}, \sqrt2, x^{2}, 52_{8}
    s = re.sub(r"\\frac(\d)(\d)", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\\frac(\{[^{}]*\})(\w)", r"\\frac\1{\2}", s)
    s = re.sub(r"\\frac(\w)(\{)", r"\\frac{\1}\2", s)
    s = re.sub(r"\\sqrt(\w)", r"\\sqrt{\1}", s)
    s = re.sub(r"([\^_])\{(\w)\}", r"\1\2", s)
    s = re.sub(r"^\+", "", s)
    if re.fullmatch(r"\(([A-E])\)", s):
        s = s[1]
    if re.fullmatch(r"[A-Za-z][A-Za-z ]+", s):
        s = s.lower()
    return s


def _scalar(s: str) -> str:
    value = parse_number(s)
    if value is not None:
        return number_to_canonical(value)
    return s


_MATRIX = re.compile(r"\\begin\{([pbvBV]?matrix|array)\}(?:\{[^{}]*\})?(.*)\\end\{\1\}", re.DOTALL)


def _structure(s: str) -> str:
    """Canonical form of a cleaned answer: tuples, intervals, sets, lists, matrices, numbers."""
    m = _MATRIX.fullmatch(s)
    if m:
        rows = [r for r in m.group(2).split("\\\\") if r.strip()]
        cells = [[_structure(_clean(c)) for c in row.split("&")] for row in rows]
        return "\\matrix{" + ";".join(",".join(row) for row in cells) + "}"
    if "\\cup" in s:
        return "\\cup".join(_structure(part) for part in s.split("\\cup"))
    if len(s) >= 2 and (s.startswith("\\{") and s.endswith("\\}")):
        inner = s[2:-2]
        elements = sorted(_expand_pm(_structure(e) for e in split_top_level(inner)))
        return "\\{" + ",".join(elements) + "\\}"
    if len(s) >= 2 and s[0] in "([" and s[-1] in ")]" and _encloses(s):
        parts = split_top_level(s[1:-1])
        if len(parts) > 1:
            return s[0] + ",".join(_structure(p) for p in parts) + s[-1]
        return _structure(s[1:-1]) if s[0] == "(" and s[-1] == ")" else s
    parts = split_top_level(s)
    if len(parts) > 1:
        return ",".join(sorted(_expand_pm(_structure(p) for p in parts if p)))
    expanded = _expand_pm([s])
    if len(expanded) > 1:
        return ",".join(sorted(expanded))
    return _scalar(s)


def _encloses(s: str) -> bool:
    """Whether the first bracket of ``s`` closes at its last character."""
    depth = 0
    for i, ch in enumerate(s):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth == 0 and i != len(s) - 1:
                return False
    return depth == 0


def _expand_pm(elements: Iterable[str]) -> list[str]:
    out: list[str] = []
    for text in elements:
        if text.count("\\pm") == 1:
            out.extend(_scalar(text.replace("\\pm", sign)) for sign in ("+", "-"))
        elif text.count("\\mp") == 1:
            out.extend(_scalar(text.replace("\\mp", sign)) for sign in ("-", "+"))
        else:
            out.append(text)
    return out


def normalize_math(answer: str) -> str:
    """Canonical string for a LaTeX answer; equal strings mean equivalent answers."""
    return _structure(_clean(answer))
