"""The final number of a reply (GSM8K), and numbers in canonical form.

Policy: the *last* explicit answer statement wins -- "the answer is N",
"Answer: N", "N is the final answer", ``#### N`` or ``\\boxed{N}`` -- so a
reply that corrects itself ("the answer is 17 ... wait, the answer is 19") is
read as 19; numbers merely mentioned after it (checks, other steps, "not 12")
cannot change it.  "The answer is not 17", "the answer is at least 17", "the
wrong answer is 17", "the third answer is 17" and the past "the answer was 17"
(a narrative) are not statements.  "The answer is 48 + 24 = 72" states 72.  With no statement, the
last number in the text counts.

A number is read whole: a sign (``-``, the unicode minus ``−``, or an en dash
``–`` where it cannot be a range or an operator, i.e. not right after a
digit, letter or bracket), an optional ``$``, thousands groups separated by a
comma, underscore, space, no-break space or thin space (only when every group
after the first has exactly three digits: "1 234" is 1234, "1 23" is two
numbers), a decimal part, and a fraction ``a/b`` or a mixed number
``4 2/3``.
"""

from __future__ import annotations

import re
from collections import deque
from fractions import Fraction

from hieramas.tasks.mathtext import match_brace

__all__ = ["canonical_number", "extract_number", "number_value"]

_MINUS = "-\u2212\u2013"
_SPACES = " \u00a0\u2009\u202f"
# one number; groups named for number_value().  A sign glued to the digits and not after a
# word character or bracket ("x-5", "10-20", "(3)-4" have no negative number).
_SIGN = rf"(?:(?<![\w)\]}}.])(?P<neg>[{_MINUS}]))?\$?(?<!\w)"
_MIXED = r"(?P<whole>\d+)[ \u00a0](?P<fn>\d+)/(?P<fd>\d+)(?![\d/])"  # 4 2/3
_PLAIN = (
    rf"(?P<int>\d{{1,3}}(?:,\d{{3}})+(?!\d)|\d{{1,3}}(?:_\d{{3}})+(?!\d)"
    rf"|\d{{1,3}}(?:[{_SPACES}]\d{{3}})+(?![\d\-\u2010\u2013])|\d+)"
    rf"(?P<dec>\.\d+)?(?:[ \t]*/[ \t]*(?P<den>\d+))?"
    rf"|(?<![\w.])(?P<dec0>\.\d+)"
)
_NUMBER_SRC = rf"{_SIGN}(?:{_MIXED}|{_PLAIN})"
_NUMBER = re.compile(_NUMBER_SRC)
# the same without mixed numbers ("3 7/4" is 3, then 7/4), with the same groups
_NOT_MIXED = re.compile(rf"{_SIGN}(?:(?!){_MIXED}|{_PLAIN})")
_GROUP_SEPARATORS = str.maketrans("", "", "," + "_" + _SPACES)

# after "answer": a copula or a colon, then (lazily) anything but digits and sentence ends
_LEAD = re.compile(
    r"[*_]*(?:\s+(?i:is|would\s+be|will\s+be|should\s+be|comes\s+to|equals)\b|\s*[:=])"
    r"[*_]*\s*(?P<gap>[^\d\n.;!?]{0,30}?)(?=[" + _MINUS + r"$]?\$?\.?\d)"
)
# a statement that is not one: "the answer is not 17", "... larger than 17", "at least 17"
_GAP_BAD = re.compile(r"(?i:\b(?:not|never|than|no|nor)\b|n't|n\u2019t|\bat\s+(?:least|most)\b)")
# a word right before "answer" that makes it some other answer ("the wrong answer is 12")
_OTHER_ANSWER = frozenset({
    "wrong", "incorrect", "false", "tempting", "mistaken", "worst", "bad", "first", "second",
    "third", "fourth", "fifth", "other", "another", "each", "every", "any", "its", "his", "her",
    "their", "possible", "an", "one", "common", "alternative", "partial", "plausible",
})  # fmt: skip
# "<number> is the (final) answer", matched at the end of the text before "answer"
_BACKWARD = re.compile(
    _NUMBER_SRC + r"[*_$%]*\s+(?i:is|would\s+be|will\s+be|must\s+be|should\s+be)\s+"
    r"(?i:the|my|our)\s+(?i:(?:correct|final|right|true)\s+)?\Z"
)
# how the text right before "answer" ends in "N is the (final) answer" (a test before the regex)
_BACK_ENDS = tuple(
    f"{verb} {det}{adj}"
    for verb in ("is", "be")
    for det in ("the", "my", "our")
    for adj in ("", " correct", " final", " right", " true")
)
# "48 + 24 = 72": an arithmetic chain on the same line, up to its last "="
_CHAIN = re.compile(
    r"(?:[ \t]*(?:[-+*/\u00d7\u00f7\u00b7^()\u2212]|\d+(?:[.,]\d+)*|\$))*[ \t]*=[ \t]*"
)
_HASHES = re.compile(r"####[ \t]*")
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_FRAC = re.compile(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}|\\[dt]?frac(\d)(\d)")


def number_value(m: re.Match[str]) -> Fraction | None:
    """Exact value of a match of the number pattern (None for a zero denominator)."""
    # built from integers: Fraction("1.5") parses its argument with a regex, ~10x slower
    whole, digits, den = m.group("int", "dec", "den")
    if whole is None:
        if m.group("dec0") is not None:
            whole, digits = "0", m.group("dec0")
        else:  # a mixed number
            num, den_ = int(m.group("fn")), int(m.group("fd"))
            if not num < den_:
                return None  # "3 7/4" is not a mixed number (see _number_at)
            value = int(m.group("whole")) + Fraction(num, den_)
            return -value if m.group("neg") else value
    numerator = int(whole.translate(_GROUP_SEPARATORS) + (digits[1:] if digits else ""))
    denominator = 10 ** (len(digits) - 1) if digits else 1
    if den is not None:
        if int(den) == 0:
            return None
        denominator *= int(den)
    return Fraction(-numerator if m.group("neg") else numerator, denominator)


def _format(value: Fraction) -> str:
    if value.denominator == 1:
        return str(value.numerator)
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


def canonical_number(raw: str) -> str | None:
    """``"$1,234.50"`` -> ``"1234.5"``; ``"−3/4"`` -> ``"-0.75"``; ``"1/3"`` -> ``"1/3"``.

    None unless ``raw`` is one number (see the module docstring for what that is).
    """
    s = raw.strip()
    if s[:1] == "+":
        s = s[1:]
    if s[:2] in ("$-", "$\u2212", "$\u2013"):
        s = s[1] + "$" + s[2:]
    m = _NUMBER.fullmatch(s)
    if m is None:
        return None
    value = number_value(m)
    return None if value is None else _format(value)


def _after(text: str, m: re.Match[str]) -> re.Match[str]:
    """The result of an arithmetic chain starting with the number ``m`` ("48 + 24 = 72")."""
    while True:
        chain = _CHAIN.match(text, m.end())
        nxt = _number_at(text, chain.end()) if chain else None
        if nxt is None:
            return m
        m = nxt


def _improper(m: re.Match[str]) -> bool:
    return m.group("whole") is not None and not int(m.group("fn")) < int(m.group("fd"))


def _number_at(text: str, pos: int) -> re.Match[str] | None:
    """The number starting at ``pos``: "3 7/4" is 3 (it is not a mixed number)."""
    m = _NUMBER.match(text, pos)
    return _NOT_MIXED.match(text, pos) if m is not None and _improper(m) else m


def _last_number(text: str) -> re.Match[str] | None:
    """The last number of ``text``, scanning only the line of its last digit (numbers do not
    span lines), so a long reply costs no more than a short one."""
    last_digit = max(map(text.rfind, "0123456789"))
    if last_digit == -1:
        return None
    found = deque(_NUMBER.finditer(text, text.rfind("\n", 0, last_digit) + 1), maxlen=1)
    if found and _improper(found[0]):
        return _NUMBER.match(text, found[0].start("fn"))  # "3 7/4": the last number is 7/4
    return found[0] if found else None


def _qualified(text: str, start: int) -> bool:
    """Whether "answer" at ``start`` is the reply's own: not "the wrong answer", "the third
    answer", "not the answer"."""
    before = text[max(0, start - 24) : start].rstrip(" \t*_")
    if not before or before[-1] in "\n.!?:;,([>#-":
        return True  # it opens a sentence, a line or a heading
    words = before.lower().split()
    if words[-1] == "the" and len(words) > 1 and words[-2] == "not":
        return False
    return words[-1] not in _OTHER_ANSWER


def _keyword_starts(text: str) -> list[int]:
    if text.isascii():  # str.find on the lowered text is far faster than a regex scan
        low = text.lower()
        out = []
        at = low.find("answer")
        while at != -1:
            out.append(at)
            at = low.find("answer", at + 1)
        return out
    return [m.start() for m in re.finditer("answer", text, re.IGNORECASE)]


def _boxed_number(text: str, brace: int) -> tuple[int, Fraction | None] | None:
    """(end, value) of the last number inside the ``\\boxed{`` whose brace is at ``brace``.

    Its position is the closing brace, so it outlasts a statement around it
    ("the answer is \\boxed{\\frac{3}{4}}" is 3/4, not 3).
    """
    end = match_brace(text, brace)
    if end == -1:
        return None
    inner = text[brace + 1 : end]
    inner = (
        inner.replace("\\!", "").replace("{,}", ",").replace("\\,", "\u2009")
        .replace("\\ ", " ").replace("\\$", "$").replace("\\%", "%")
    )  # fmt: skip
    inner = _FRAC.sub(lambda f: f"{f[1] or f[3]}/{f[2] or f[4]}", inner)
    found = _last_number(inner)
    return None if found is None else (end, number_value(found))


def _statements(text: str) -> list[tuple[int, Fraction | None]]:
    out: list[tuple[int, Fraction | None]] = []
    for start in _keyword_starts(text):
        if not _qualified(text, start):
            continue  # "a common wrong answer is 12", "the third answer was 1400"
        lead = _LEAD.match(text, start + 6)
        if lead is not None and not _GAP_BAD.search(lead.group("gap")):
            m = _number_at(text, lead.end())
            if m is not None:
                m = _after(text, m)
                out.append((m.start(), number_value(m)))
        lo = max(0, start - 64)
        before = " ".join(text[lo:start].lower().split()).rstrip("*_ ")
        if before.endswith(_BACK_ENDS):  # a cheap test before the regex search
            back = _BACKWARD.search(text, lo, start)
            if back is not None and (back.start() > lo or lo == 0):  # not cut by the window
                if _improper(back):  # "3 7/4 is the answer": 7/4
                    back = _NUMBER.match(text, back.start("fn")) or back
                out.append((back.start(), number_value(back)))
    if "####" in text:
        for h in _HASHES.finditer(text):
            m = _number_at(text, h.end())
            if m is not None:
                out.append((m.start(), number_value(m)))
    if "\\boxed" in text or "\\fbox" in text:
        for b in _BOXED.finditer(text):
            found = _boxed_number(text, b.end() - 1)
            if found is not None:
                out.append(found)
    return out


def extract_number(text: str) -> str | None:
    """Canonical final number of a reply (policy above), or None if there is none."""
    if not text:
        return None
    statements = _statements(text)
    if statements:
        value = max(statements, key=lambda s: s[0])[1]
        return None if value is None else _format(value)
    last = _last_number(text)
    if last is None:
        return None
    value = number_value(last)
    return None if value is None else _format(value)
