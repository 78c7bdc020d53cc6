"""The chosen letter of a multiple-choice reply.

Policy, in order (the first tier that finds something decides):

1. **Answer statements**; the *last* one wins, so a reply that corrects itself
   ("the answer is B ... wait, the answer is C") is read as C:
   "the answer is X", "Answer: X", "the best option is (X)", "X is the answer",
   "(X) is the correct option", "X is correct", ``\\boxed{X}``, a line that is
   only the letter (``**B**``, ``(B)``, ``Answer: B``), and "the answer is
   <choice text>" (with ``choices``).  If the last statement names two options
   ("B or C") the reply is unparseable.
2. The last bold letter (``**B**``) anywhere.
3. A letter opening the first line ("B. Because ...") or the last line.
4. A choice's text quoted back on the last line (with ``choices``).

A *mention* is never a statement: "option C is wrong", "(A) is a distractor",
"A: incorrect", "the answer is not C", "C is not the answer", "the wrong answer
is C", "the first option is A", "one possible answer is D", "the answer was B"
(a report of an earlier belief).  "Option"/"choice" state an answer only when
qualified ("the best option is D", "my choice: D") or opening a sentence.  A
mention of an option after the stated answer therefore cannot change the grade.
A choice's whole text, verbatim, is read as that choice before any letter in it
("the answer is A B and C" when that is choice D's text).  Lowercase letters count only where nothing else is meant: inside
brackets ("the answer is (b)") or ending the clause ("answer: b"); the article
"a" in prose is never choice A, nor is "A" in "the answer is A combination of".
A bare letter right after a capitalised word is a name, not a choice ("Vitamin
D is the answer").

Speed: this runs on every reply (runtime consensus checks).  Statements are
found from keywords located with ``str.find`` (in the last 160 characters first),
each followed by anchored matches; one regex scanning the whole text is several
times slower.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

__all__ = ["LETTERS", "extract_choice"]

LETTERS = "ABCD"

# (position, letter) of a statement; the letter is None when it names two options
_Found = tuple[int, str | None] | None

# --- forward statements: "the answer is X" -------------------------------------------------

# what "answer"/"option"/"choice" must be followed by to start a statement: a copula or a colon
_LEAD = (
    r"[*_]*(?:\s+(?i:is|would\s+be|should\s+be|must\s+be|will\s+be|has\s+to\s+be|"
    r"seems\s+to\s+be)\b[*_]*\s*:?|\s*[:=]|\s+[-\u2013\u2014](?=\s))[*_\s]*"
    r"(?i:(?:therefore|thus|clearly|definitely|probably|likely|most\s+likely|indeed|obviously|"
    r"certainly|actually|still)\s+)?"
)
_FORWARD_LEAD = re.compile(_LEAD)
# the lead, then the letter: optional "option", emphasis, brackets or \text{...}; the letter
# must not start a word ("Based", "A's", "B2", "A-type")
_FORWARD = re.compile(
    _LEAD + r"(?P<kw>(?i:option|choice|letter)\s+)?(?P<em>[*_]+)?"
    r"(?P<open>\$?\\(?:text|textbf|boxed)\{\s*\(?|\$|[(\[])?\s*(?P<l>[A-Da-d])"
    r"(?![A-Za-z0-9'\u2019]|-[A-Za-z])(?P<close>[)\]}$*_]*)"
)
# the cheap test before the regex: what may follow the keyword ("options", "answered" fail)
_AFTER_KEYWORD = " \t\n*_:=-\u2013\u2014"
# the most characters from a keyword's end to the letter it states
_REACH = 40
# the most characters from a keyword's start to the letter it states ("correct" is longest)
_KEYWORD_REACH = _REACH + 7
# the end of the text searched for keywords first (the rest only if it does not settle)
_CHUNK = 160
# the words that may follow a bare "A" when it is the letter, not the article ("A because ...")
_AFTER_A = frozenset({
    "because", "since", "as", "given", "due", "for", "which", "and", "or", "but", "while",
    "whereas", "though", "although", "here", "there", "in", "is", "was", "would", "should",
    "seems",
})  # fmt: skip
_NEXT_WORD = re.compile(r"\s+([a-z]+)")
_LOWER_END = re.compile(r"[.!;]?[*_]*[ \t]*(?:$|\n)|[.!;]\s", re.MULTILINE)
# a word right before "answer" that makes it some other answer ("the wrong answer is C")
_OTHER_ANSWER = frozenset({
    "wrong", "incorrect", "false", "tempting", "distractor", "worst", "bad", "first", "second",
    "third", "fourth", "fifth", "other", "another", "each", "every", "any", "its", "his", "her",
    "their", "possible", "an", "one", "common", "alternative", "partial", "plausible",
})  # fmt: skip
# the words that make "option"/"choice" the reply's own ("the best option is D", "my choice")
_CHOSEN = frozenset({
    "correct", "right", "best", "final", "my", "our", "appropriate", "accurate", "likely",
    "preferred", "only", "true", "valid", "chosen", "selected", "answer",
})  # fmt: skip

# --- what follows a stated letter: a negation, or a second option -------------------------

_NEG_WORDS = (
    r"(?:not\b|incorrect|wrong|false\b|a\s+distractor|a\s+trap|eliminated|ruled\s+out|"
    r"unlikely|implausible|invalid|irrelevant|excluded|out\b)"
)
_AFTER_LETTER = re.compile(
    r"[)\]}*_]*\s*(?:(?P<neg>"
    r"(?i:is|are|was|seems|looks|appears|'s|\u2019s|would\s+be|can\s+be|should\s+be|must\s+be)"
    r"\s+(?i:(?:also|clearly|definitely|obviously|therefore|thus|certainly)\s+)?(?i:"
    + _NEG_WORDS
    + r")|(?i:isn't|isn\u2019t|cannot|can't|can\u2019t|doesn't|doesn\u2019t)\b"
    r"|[:\-\u2013\u2014][*_]*\s*(?i:incorrect|wrong|false\b|not\s+correct|not\s+the|"
    r"a\s+distractor|eliminated|ruled\s+out))"
    # "B or C", "B/C", "(A) and (D)" -- not "B, and C is wrong"
    r"|(?P<second>(?:,\s*)?(?i:,|or|and|/|&)\s*(?i:option\s+|choice\s+)?[(\[*]*[A-D]"
    r"(?![A-Za-z0-9'])(?![)\]*]*\s+(?i:is|are|was|'s)\b)))"
)

# --- backward statements: "X is the answer", "X is correct" --------------------------------


def _reversed(*phrases: str) -> str:
    """An alternation matching ``phrases`` written backwards (words apart by any space)."""
    return "|".join(r"\s+".join(w[::-1] for w in p.split()[::-1]) for p in phrases)


# Matched anchored on the reversed text before the keyword: a search for a pattern that ends
# at the keyword tries every start position and made extraction several times slower.
_BACKWARD_REVERSED = re.compile(
    r"(?:\s*(?P<colon>[:\-\u2013\u2014])"  # "option B: correct"
    r"|\s+(?:(?i:"
    + _reversed("correct", "right", "best", "final", "appropriate", "accurate", "likely")
    + r")(?:\s+(?i:tsom))?\s+)?"
    r"(?:(?i:" + _reversed("the", "my", "our") + r")\s+)?"
    r"(?:(?i:"
    + _reversed("also", "clearly", "definitely", "therefore", "thus", "indeed", "certainly")
    + r")\s+)?"
    r"(?i:"
    + _reversed("is", "would be", "must be", "should be", "seems to be", "appears to be")
    + r"))"
    r"\s*(?P<close>[*_]*[)\]]?)(?P<l>[A-D]|[a-d](?=[(\[]))(?P<open>[(\[])?(?P<em>[*_]+)?"
    r"(?P<kw>\s+(?i:" + _reversed("option", "choice", "answer", "letter") + r"))?"
    r"(?![A-Za-z0-9])"
)
# the words that may come right before the keyword of a backward statement
_BACK_WORDS = frozenset({
    "is", "be", "the", "my", "our", "correct", "right", "best", "final", "appropriate",
    "accurate", "likely", "also", "clearly", "definitely", "therefore", "thus", "indeed",
    "certainly",
})  # fmt: skip
_COLONS = ":-\u2013\u2014"
# capitalised words that may precede a bare letter ("So B is correct"); any other capitalised
# word makes it a name ("Vitamin D is the answer", "Type A is correct")
_ADVERBS = frozenset({
    "so", "thus", "hence", "therefore", "then", "clearly", "overall", "finally", "yes", "now",
    "and", "i",
})  # fmt: skip

# --- statements without a keyword, and the lower tiers -------------------------------------

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{\s*(?:\\text(?:bf)?\{)?\s*\(?([A-Da-d])\)?\s*\}?\s*\}")
_LINE = re.compile(
    r"[>#*_\s]*(?:(?i:(?:final|correct|my)\s+)?(?i:answer|option|choice)[*_\s]*"
    r"[:\-\u2013\u2014]?[*_\s]*)?(?:\\boxed\{)?[(\[]?(?:\\text\{)?([A-D])\}?[)\]]?[.!]?"
    r"[*_\s}]*"
)
_LINE_OPENERS = ">#*_ \t([{"
_LINE_WORD_HEADS = "afocm"  # answer, final, option, choice, correct, my
_BOLD_LETTER = re.compile(r"\*\*\s*\(?([A-D])\)?[\.\):]?\s*\*\*")
_LEADING_LETTER = re.compile(r"^\s*[\*\(\[]*([A-D])(?:[\)\]\*]*\s*$|[\)\]\*]*[\.\):,](?!\d))")
_NON_WORD = re.compile(r"[^a-z0-9]+")
_CLAUSE_END = re.compile(r"[.;!?](?:\s|$)")
_KEYWORD_RE = re.compile(r"answer|option|choice|correct", re.IGNORECASE)
_KEYWORDS = ("answer", "option", "choice", "correct")


def _keywords_in(text: str, lo: int, hi: int) -> list[tuple[int, str]]:
    """(start, keyword) of the statement keywords starting in ``[lo, hi)``, last first."""
    stop = min(len(text), hi + 6)  # a keyword starting before hi may end after it
    if not text.isascii():  # lower() may change the length of non-ASCII text
        found = [(m.start(), m.group().lower()) for m in _KEYWORD_RE.finditer(text, lo, stop)]
    else:
        low = text[lo:stop].lower()  # str.find is far faster than a regex scan
        found = []
        for word in _KEYWORDS:
            at = low.find(word)
            while at != -1:
                found.append((lo + at, word))
                at = low.find(word, at + 1)
    found.sort(reverse=True)
    return [kw for kw in found if kw[0] < hi]


def _norm_text(s: str) -> str:
    return _NON_WORD.sub(" ", s.lower()).strip()


@lru_cache(maxsize=4096)
def _normed_choices(choices: tuple[str, ...]) -> list[str]:
    return [_norm_text(c) for c in choices]


def _quotes_choice(text: str, end: int, letter: str, choices: Sequence[str]) -> bool:
    """Whether the letter ending at ``end`` is followed by its own choice's text."""
    index = LETTERS.find(letter.upper())
    if index >= len(choices):
        return False
    own = _normed_choices(tuple(choices))[index]
    return bool(own) and _norm_text(text[end : end + 2 * len(own) + 8]).startswith(own)


def _negated(text: str, end: int, letter: str, choices: Sequence[str]) -> bool:
    """Whether the letter ending at ``end`` is called wrong ("C is wrong", "A: incorrect");
    "(B) Wrong, Not wrong" quoting choice B's own text is not."""
    m = _AFTER_LETTER.match(text, end)
    return (
        m is not None
        and m.group("neg") is not None
        and not _quotes_choice(text, end, letter, choices)
    )


def _letter(text: str, m: re.Match[str]) -> str | None:
    """The letter of a forward match if it really is one (not the article, not prose)."""
    letter = m.group("l")
    delimited = bool(m.group("close")) and bool(m.group("open") or m.group("em"))
    if letter.islower():
        if delimited or _LOWER_END.match(text, m.end()):
            return letter.upper()
        return None  # "the answer is a bit unclear"
    if letter == "A" and not m.group("close"):
        word = _NEXT_WORD.match(text, m.end("l"))
        if word and word.group(1) not in _AFTER_A:
            return None  # "the answer is A combination of ..."
    return letter


def _forward(text: str, end: int, choices: Sequence[str]) -> _Found:
    """The statement after the keyword ending at ``end`` ("... is (B)")."""
    m = _FORWARD.match(text, end)
    lead = None
    if choices and (m is None or not (m.group("close") or _LOWER_END.match(text, m.end()))):
        # not a letter ending its clause: maybe a choice's text, verbatim ("A B and C")
        lead = _FORWARD_LEAD.match(text, end)
        exact = None if lead is None else _choice_verbatim(text, lead.end(), choices)
        if lead is not None and exact is not None:
            return lead.end(), exact
    if m is not None and m.start("l") - end <= _REACH:
        letter = m.group("l")
        if letter not in "BCD":  # lowercase letters and "A" may be words
            letter = _letter(text, m)
        if letter is not None:
            after = _AFTER_LETTER.match(text, m.end())
            if after is None:
                return m.start("l"), letter
            if after.group("second") is not None:
                return m.start("l"), None
            if _quotes_choice(text, m.end(), letter, choices):
                return m.start("l"), letter
            return None  # "Answer: B is incorrect"
    if choices and lead is None:
        lead = _FORWARD_LEAD.match(text, end)
    if lead is not None:  # "the answer is <choice text>, ..."
        quoted = _choice_in(_clause(text, lead.end()), choices)
        if quoted is not None:
            return lead.end(), quoted
    return None


def _verbatim(s: str) -> str:
    return " ".join(s.casefold().split()).strip(" .!*_")


@lru_cache(maxsize=4096)
def _verbatim_choices(choices: tuple[str, ...]) -> list[str]:
    return [_verbatim(c) for c in choices]


def _choice_verbatim(text: str, start: int, choices: Sequence[str]) -> str | None:
    """Letter of the one choice whose whole text, symbols and all, follows ``start`` to the end
    of the line or sentence ("240 ÷ 12", "ax = 0; ay = g"); a single character is left to the
    letter reading ("the answer is c" is C even when choice D reads "c")."""
    line_end = text.find("\n", start)
    line = text[start:] if line_end == -1 else text[start:line_end]
    verbatim = _verbatim_choices(tuple(choices))
    for segment in (line, _clause(text, start)):
        target = _verbatim(segment)
        if len(target) > 1:
            found = [i for i, c in enumerate(verbatim) if c == target]
            if len(found) == 1 and found[0] < len(LETTERS):
                return LETTERS[found[0]]
    return None


def _clause(text: str, start: int) -> str:
    """The text from ``start`` to the end of its sentence or line."""
    line_end = text.find("\n", start)
    segment = text[start:] if line_end == -1 else text[start:line_end]
    stop = _CLAUSE_END.search(segment)
    return segment[: stop.start()] if stop else segment


def _qualified(text: str, start: int, keyword: str) -> bool:
    """Whether the keyword at ``start`` names the reply's own answer: "the answer", "the best
    option", "Answer:" -- not "the wrong answer", "the first option", "one possible answer"."""
    before = text[max(0, start - 24) : start].rstrip(" \t*_")
    if not before or before[-1] in "\n.!?:;,([>#-":
        return True  # it opens a sentence, a line or a heading
    words = before.lower().split()
    if keyword != "answer":
        return words[-1] in _CHOSEN  # "option" and "choice" alone name any option
    if words[-1] == "the" and len(words) > 1 and words[-2] == "not":
        return False  # "not the answer: C"
    return words[-1] not in _OTHER_ANSWER


def _backward(text: str, start: int, keyword: str) -> _Found:
    """The statement ending just before the keyword at ``start`` ("B is the ...answer")."""
    # a cheap test before the regex: the word before the keyword
    before = text[max(0, start - 16) : start].rstrip(" \t\n*_")
    if not before or (
        before[-1] not in _COLONS and before.rsplit(None, 1)[-1].lower() not in _BACK_WORDS
    ):
        return None
    lo = max(0, start - 64)
    m = _BACKWARD_REVERSED.match(text[start - 1 : lo - 1 if lo else None : -1])
    if m is None or (m.group("colon") and keyword != "correct"):
        return None
    letter_at = start - 1 - m.start("l")
    if not (m.group("kw") or m.group("em") or m.group("open")):
        before = text[lo:letter_at].rstrip(" \t")
        if before and before[-1] not in "\n.!?:;,([*>":
            word = before.rsplit(None, 1)[-1]
            if not word[:1].isalpha() or (word[0].isupper() and word.lower() not in _ADVERBS):
                return None  # "Vitamin D is the answer"
    return letter_at, m.group("l").upper()


def _keyword_statement(text: str, start: int, word: str, choices: Sequence[str]) -> _Found:
    """The statement made with the keyword at ``start``, if any."""
    end = start + len(word)
    nxt = text[end : end + 1]
    if nxt.isalpha():
        return None  # part of a longer word: "options", "answered", "correctly"
    if word != "correct" and nxt and nxt in _AFTER_KEYWORD:
        found = _forward(text, end, choices)
        if found is not None:
            return found if _qualified(text, start, word) else None
    return _backward(text, start, word)


def _line_statement(text: str, start: int, end: int) -> _Found:
    """The letter of the line ``text[start:end]`` if the line is only that ("**B**")."""
    if not 0 < end - start <= 40:
        return None
    head = text[start:end].lstrip(_LINE_OPENERS)[:1]
    if not head or (head not in "ABCD\\" and head.lower() not in _LINE_WORD_HEADS):
        return None  # a cheap test before the regex: most lines start with another word
    m = _LINE.fullmatch(text, start, end)
    return (m.start(1), m.group(1)) if m else None


def _later(a: _Found, b: _Found) -> _Found:
    return b if a is None or (b is not None and b[0] > a[0]) else a


def _last_statement(text: str, choices: Sequence[str]) -> _Found:
    """The last answer statement: (position, letter, or None when it names two options).

    Worked from the end of the text, chunk by chunk, and stopped as soon as nothing
    earlier can state anything later, so a long reply costs about as much as its end.
    """
    best: _Found = None
    if "\\" in text and ("\\boxed" in text or "\\fbox" in text):
        for m in _BOXED.finditer(text):
            best = (m.start(1), m.group(1).upper())
    end = len(text.rstrip())
    last_line = text.rfind("\n", 0, end) + 1
    best = _later(best, _line_statement(text, last_line, end))
    hi = len(text)
    while hi > 0 and (best is None or hi + _KEYWORD_REACH >= best[0]):
        lo = max(0, hi - _CHUNK) if hi == len(text) else 0  # the end, then all the rest
        for start, word in _keywords_in(text, lo, hi):
            if best is not None:
                if start + _KEYWORD_REACH < best[0]:
                    lo = 0  # neither this keyword nor any before it can state anything later
                    break
                if word == "correct" and start < best[0]:
                    continue  # "X is correct" lies before its keyword
            best = _later(best, _keyword_statement(text, start, word, choices))
        hi = lo
    # the other lines that are only the letter, while they end after the best so far
    end = last_line - 1
    while end > 0 and (best is None or end > best[0]):
        start = text.rfind("\n", 0, end) + 1
        found = _line_statement(text, start, end)
        if found is not None:
            return _later(best, found)
        end = start - 1
    return best


def _choice_in(segment: str, choices: Sequence[str]) -> str | None:
    """Letter of the one choice whose text ``segment`` states (exactly, else uniquely inside)."""
    normed = _normed_choices(tuple(choices))
    target = _norm_text(segment)
    if not target:
        return None
    exact = [i for i, c in enumerate(normed) if c and c == target]
    if len(exact) == 1:
        return LETTERS[exact[0]] if exact[0] < len(LETTERS) else None
    padded = f" {target} "
    # a short word ("in", "one", "a") inside prose is not a quote of the choice
    inside = [i for i, c in enumerate(normed) if len(c) >= 4 and f" {c} " in padded]
    # drop choices that are merely part of another matched choice ("True" in "True, True")
    inside = [i for i in inside if not any(i != j and normed[i] in normed[j] for j in inside)]
    inside = [i for i in inside if not _text_negated(padded, normed[i])]
    if len(inside) == 1 and inside[0] < len(LETTERS):
        return LETTERS[inside[0]]
    return None


def _text_negated(padded: str, choice: str) -> bool:
    """Whether normalised text calls ``choice`` wrong ("not paris", "paris is incorrect")."""
    c = re.escape(choice)
    return (
        re.search(
            rf" not {c} | {c} (?:is|are|was|seems) (?:also |clearly )?"
            rf"(?:not|incorrect|wrong|a distractor) | {c} isn t ",
            padded,
        )
        is not None
    )


def extract_choice(text: str, choices: Sequence[str] = ()) -> str | None:
    """The chosen letter ``A``-``D`` of an MCQ reply, or None if unparseable (policy above)."""
    if not text or text.isspace():
        return None
    stated = _last_statement(text, choices)
    if stated is not None:
        return stated[1]
    if "**" in text:
        for m in reversed(list(_BOLD_LETTER.finditer(text))):
            if not _negated(text, m.end(1), m.group(1), choices):
                return m.group(1)
    lines = [line for line in text.splitlines() if line.strip()]
    for line in (lines[0], lines[-1]):
        lead = _LEADING_LETTER.match(line)
        if lead and not _negated(line, lead.end(1), lead.group(1), choices):
            return lead.group(1)
    if choices:
        return _choice_in(lines[-1], choices)
    return None
