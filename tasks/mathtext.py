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
    "normalize_with_unit",
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


# "the answer is", "final answer:", or "Answer:" opening a line; not "a wrong answer is"
_ANSWER_IS = re.compile(
    r"(?:\bfinal\s+answer|\bthe\s+answer|^[ \t>#*_]*answer)[*_]*\s*(?:is\b|:)\s*:?",
    re.IGNORECASE | re.MULTILINE,
)
_DELIMITED = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))
_GLUE_WORDS = re.compile(r"(?:and|or|square|sq|cubic)\b", re.IGNORECASE)


def extract_math_answer(text: str) -> str | None:
    """Raw final answer of a math reply: the last ``\\boxed{}``, else the last statement.

    A statement is "the answer is X", "final answer: X" or a line "Answer: X"; X ends at its
    math delimiters, its bold, or the end of its sentence, so that talk after it (other
    numbers, other options) never becomes part of the answer.  "The answer is not X" is no
    statement.
    """
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed or None
    for match in reversed(list(_ANSWER_IS.finditer(text))):
        ans = _stated_value(text[match.end() :])
        if ans and not re.match(r"not\b", ans, re.IGNORECASE):
            return ans
    return None


def _stated_value(rest: str) -> str | None:
    """The answer at the start of ``rest`` (what follows "the answer is")."""
    rest = rest.lstrip(" \t")
    if rest.startswith("**"):
        end = rest.find("**", 2)
        line_end = rest.find("\n")
        if end != -1 and (line_end == -1 or end < line_end):
            return _stated_value(rest[2:end]) if rest[2:end].strip() else None
        rest = rest.lstrip("*").lstrip(" \t")  # the close of "**Answer:**"
    for left, right in _DELIMITED:
        if rest.startswith(left):
            end = rest.find(right, len(left))
            if end != -1:
                return rest[len(left) : end].strip() or None
    line = rest.split("\n", 1)[0]
    end = _sentence_end(line)
    ans = line[:end].strip().strip("*").strip().rstrip(".,:;").strip()
    return _strip_math_delimiters(ans) or None


def _sentence_end(line: str) -> int:
    """Where the answer written at the start of ``line`` ends (outside brackets and math).

    At a full stop (not a decimal point), a semicolon, or the first English word after the
    answer began, other than a unit or "and"/"or" ("5 cm", "1 or 2"; "5 because ...").
    """
    depth = 0
    in_math = False
    started = False
    i = 0
    while i < len(line):
        ch = line[i]
        if ch == "\\":
            i += 2
            started = True
            continue
        if ch == "$":
            in_math = not in_math
        elif ch in "({[":
            depth += 1
        elif ch in ")}]":
            depth -= 1
        elif depth <= 0 and not in_math:
            if ch == ";" or (ch == "." and (i + 1 == len(line) or line[i + 1].isspace())):
                return i
            if ch in " ,\t" and started:
                word = re.match(r"[ ,\t]+([A-Za-z]{3,})\b", line[i:])
                if word and not (
                    _GLUE_WORDS.fullmatch(word.group(1)) or _UNIT_TAIL.fullmatch(word.group(1))
                ):
                    return i
        if not ch.isspace():
            started = True
        i += 1
    return len(line)


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
# unit words: stripped only at the very end of an answer (see _strip_units)
_UNIT_WORDS = (
    r"units?|cm|mm|km|meters?|metres?|centimeters?|centimetres?|millimeters?|kilometers?|"
    r"inch(?:es)?|in|feet|foot|ft|yards?|yd|miles?|mph|degrees?|deg|radians?|rad|cents?|"
    r"dollars?|seconds?|sec|minutes?|min|hours?|hrs?|days?|weeks?|months?|years?|grams?|kg|"
    r"pounds?|lbs?|ounces?|oz|liters?|litres?|ml|gallons?|people|persons?|students?|ways?|"
    r"times|points?|apples?|coins?|marbles?|boxes|books?|pages?|items?|percent"
)
_UNIT_LETTERS = r"m|s|g|h|l|L"  # one-letter units: only when written as text (\text{ m})
_SQUARE = r"(?:(?:square|sq\.?|cubic)\s*)?"
_POWER = r"(?:\^\{?[23]\}?)?"
_UNIT_TAIL = re.compile(
    r"(?<![A-Za-z\\])" + _SQUARE + r"(?:" + _UNIT_WORDS + r")" + _POWER + r"\.?\s*$"
)
_TEXT_UNIT_TAIL = re.compile(
    r"\\(?:text|textrm|textnormal|textup|mbox|mathrm|rm)\s*\{\s*"
    + _SQUARE
    + r"(?:"
    + _UNIT_WORDS
    + r"|"
    + _UNIT_LETTERS
    + r")"
    + _POWER
    + r"\s*\}"
    + _POWER
    + r"\.?\s*$"
)
_ONE_TERM = re.compile(r"[+-]?[^+\-*/=,]+")
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


_UNICODE = {
    "\u2212": "-",  # minus sign
    "\u2013": "-",  # en dash, often typed for a minus
    "\u2012": "-",
    "\ufe63": "-",
    "\uff0d": "-",
    "\u03c0": "\\pi ",
    "\u00d7": "\\times ",
    "\u00b7": "\\cdot ",
    "\u22c5": "\\cdot ",
    "\u00f7": "/",
    "\u2264": "\\leq ",
    "\u2265": "\\geq ",
    "\u222a": "\\cup ",
    "\u2208": "\\in ",
    "\u00b2": "^2",
    "\u00b3": "^3",
    "\u00bd": "\\frac{1}{2}",
    "\u00bc": "\\frac{1}{4}",
    "\u00be": "\\frac{3}{4}",
    "\u221e": "\\infty ",
}
_UNICODE_RE = re.compile("|".join(map(re.escape, _UNICODE)))
_ROOT_SIGN = re.compile(r"([\u221a\u221b\u221c])\s*")


def _unicode(s: str) -> str:
    """LaTeX for the unicode math signs models write (\u2212, \u03c0, \u221a2, \u221a(x+1), x\u00b2)."""
    if s.isascii():
        return s
    s = _UNICODE_RE.sub(lambda m: _UNICODE[m.group(0)], s)
    out: list[str] = []
    i = 0
    while (m := _ROOT_SIGN.search(s, i)) is not None:
        out.append(s[i : m.start()])
        command = {"\u221a": "\\sqrt", "\u221b": "\\sqrt[3]", "\u221c": "\\sqrt[4]"}[m.group(1)]
        j = m.end()
        arg = re.match(r"\d+(?:\.\d+)?|[A-Za-z]|\\[A-Za-z]+", s[j:])
        if j < len(s) and s[j] in "({":
            close = _closing(s, j)
            if close == -1:
                out.append(command)
                i = j
                continue
            out.append(command + "{" + s[j + 1 : close] + "}")
            i = close + 1
        elif arg:
            out.append(command + "{" + arg.group(0) + "}")
            i = j + arg.end()
        else:
            out.append(command)
            i = j
    out.append(s[i:])
    return "".join(out)


def _closing(s: str, start: int) -> int:
    """Index of the bracket closing the one at ``start``, or -1."""
    depth = 0
    for j in range(start, len(s)):
        if s[j] in "({[":
            depth += 1
        elif s[j] in ")}]":
            depth -= 1
            if depth == 0:
                return j
    return -1


_MIXED_SPACED = re.compile(r"(?<![\w.}])(\d+)\s+(\d+)\s*/\s*(\d+)(?![\w.])")
_GROUPED = re.compile(r"(?<![\d.])\d{1,3}(?:\s\d{3})+(?![\d])")
_AMBIGUOUS_GAP = "\u2423"  # matches nothing in the expression language


def _digit_spaces(s: str) -> str:
    """Numbers separated only by spaces, before the spaces are dropped.

    ``4 2/3`` is a mixed number (4 and 2/3, written ``4\\frac{2}{3}``); ``10 080`` is digit
    grouping; any other ``2 3`` is ambiguous (23? 2*3? a list?) and is kept apart, so it
    equals nothing but itself.
    """
    if not re.search(r"\d\s+\d", s):
        return s
    s = _MIXED_SPACED.sub(r"\1\\frac{\2}{\3}", s)
    s = _GROUPED.sub(lambda m: re.sub(r"\s", "", m.group(0)), s)
    return re.sub(r"(?<=\d)\s+(?=\d)", _AMBIGUOUS_GAP, s)


def _strip_units(s: str) -> tuple[str, str | None]:
    """``s`` without a unit word at its end (``12 inches``, ``6 square units``, ``5cm``).

    Only known unit words, only at the end, only after a number-like remainder: a unit
    attached to the last term (``5cm``) needs that remainder to be one term, so ``3+2cm``
    keeps its letters (they may be variables); one-letter units count only as text.
    """
    unit = None
    while (m := _UNIT_TAIL.search(s)) is not None:
        rest = s[: m.start()].rstrip()
        if not rest or re.search(r"[a-zA-Z]", re.sub(r"\\[a-zA-Z]+", "", rest)):
            break
        if rest == s[: m.start()] and not _ONE_TERM.fullmatch(rest):
            break  # attached to an expression: "3+2cm" is not "5 cm"
        s = rest
        unit = unit or m.group(0)
    return s, unit


_UNIT_NAMES = {
    "in": "inch",
    "inches": "inch",
    "ft": "foot",
    "feet": "foot",
    "yd": "yard",
    "mi": "mile",
    "centimeter": "cm",
    "centimetre": "cm",
    "millimeter": "mm",
    "kilometer": "km",
    "meter": "m",
    "metre": "m",
    "deg": "degree",
    "rad": "radian",
    "s": "second",
    "sec": "second",
    "min": "minute",
    "h": "hour",
    "hr": "hour",
    "g": "gram",
    "lb": "pound",
    "oz": "ounce",
    "l": "liter",
    "litre": "liter",
    "people": "person",
    "boxes": "box",
    "times": "time",
}


def _canonical_unit(text: str | None) -> str | None:
    """``\\text{ square inches}`` -> ``inch^2``; None for no unit or a generic "units"."""
    if text is None:
        return None
    t = re.sub(r"\\[a-zA-Z]+|[{}\s.]", " ", text).lower()
    power = "^3" if "cubic" in t or "^3" in t else "^2" if "sq" in t or "^2" in t else ""
    words = [w for w in re.findall(r"[a-z]+", t) if w not in ("square", "sq", "cubic")]
    if not words:
        return None
    word = words[-1]
    if word in _UNIT_NAMES:
        word = _UNIT_NAMES[word]
    elif word.endswith("s") and word[:-1] and word not in ("mph",):
        word = _UNIT_NAMES.get(word[:-1], word[:-1])
    return None if word in ("unit", "percent") else word + power


def normalize_with_unit(answer: str) -> tuple[str, str | None]:
    """:func:`normalize_math` of ``answer``, and the unit it states (``inch^2``, ``degree``).

    The unit is None when the answer names none, or only generic "units".
    """
    cleaned, unit = _clean_parts(answer)
    return _structure(cleaned), _canonical_unit(unit)


def _lr(m: re.Match[str]) -> str:
    delim = m.group(1)
    return "" if delim in (None, ".") else delim


def _clean(s: str) -> str:
    """Surface normalisation of one answer (no structure yet)."""
    return _clean_parts(s)[0]


def _unbox(s: str) -> str:
    """``s`` without ``\\boxed{...}`` or ``\\fbox{...}`` around all of it."""
    while (m := _BOXED.match(s)) is not None:
        i = m.end()
        while i < len(s) and s[i] == " ":
            i += 1
        if i == len(s) or s[i] != "{" or match_brace(s, i) != len(s) - 1:
            break
        s = s[i + 1 : -1].strip()
    return s


def _clean_parts(s: str) -> tuple[str, str | None]:
    """Surface normalisation of one answer (no structure yet), and the unit it ended with."""
    unit: str | None = None
    s = _unbox(_strip_math_delimiters(_unicode(s).strip()))
    s = s.replace("\\displaystyle", "").replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = s.replace("\\dbinom", "\\binom").replace("\\tbinom", "\\binom")
    s = re.sub(r",\\!\s*", ",", s)  # 10,\!080 (thousands) keeps its comma for the check below
    s = s.replace("{,}", ",")
    s = _LEFT_RIGHT.sub(_lr, s)
    s = _SPACES.sub(" ", s)
    while (m := _TEXT_UNIT_TAIL.search(s)) and s[: m.start()].strip():
        s = s[: m.start()].strip()  # "5\text{ cm}^2": a unit written as text
        unit = unit or m.group(0)
    s = _unwrap_commands(s)
    s = re.sub(r"\s+(?:or|and)\s+", ",", s)  # "x=1 or x=-2": a list of solutions
    for token in ("^\\circ", "^{\\circ}", "\\circ", "°", "\\%", "%", "\\$", "$"):
        if token in s:
            s = s.replace(token, "")
            if token in ("\\$", "$"):
                unit = unit or "dollar"
            elif "%" not in token:
                unit = unit or "degree"
    s = re.sub(r"\^\s*\{\s*\}", "", s)
    s = s.strip().rstrip(".").strip()
    s, tail = _strip_units(s)
    unit = unit or tail
    s = _LHS.sub("", s)
    s = s.replace("\\le ", "\\leq ").replace("\\ge ", "\\geq ")
    s = re.sub(r"\\(?:cdot|times)(?![a-zA-Z])", "*", s)
    s = re.sub(r"\\(?:infty|infinity)(?![a-zA-Z])|\binfinity\b|∞", "\\\\infty", s)
    # keep a separator between a command and a following letter, drop all other spaces
    s = re.sub(r"(\\[a-zA-Z]+)\s+(?=[a-zA-Z])", r"\1#", s)
    s = _digit_spaces(s)
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
    return s, unit


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
        inner = _solution_values(split_top_level(s[2:-2]))
        elements = sorted(_expand_pm(_structure(e) for e in inner))
        return "\\{" + ",".join(elements) + "\\}"
    if len(s) >= 2 and s[0] in "([" and s[-1] in ")]" and _encloses(s):
        parts = split_top_level(s[1:-1])
        if len(parts) > 1:
            return s[0] + ",".join(_structure(p) for p in parts) + s[-1]
        return _structure(s[1:-1]) if s[0] == "(" and s[-1] == ")" else s
    parts = split_top_level(s)
    if len(parts) > 1:
        parts = _solution_values(parts)
        return ",".join(sorted(_expand_pm(_structure(p) for p in parts if p)))
    expanded = _expand_pm([s])
    if len(expanded) > 1:
        return ",".join(sorted(expanded))
    return _scalar(s)


_ASSIGNED = re.compile(r"([a-zA-Z](?:_\{?\w+\}?)?)=([^=]+)")


def _solution_values(parts: list[str]) -> list[str]:
    """``x=1, x=-2`` (one variable given several values) is the solution set ``1, -2``."""
    matches = [_ASSIGNED.fullmatch(p) for p in parts]
    names = {m.group(1) for m in matches if m}
    if len(names) == 1 and all(matches):
        return [m.group(2) for m in matches if m]
    return parts


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
