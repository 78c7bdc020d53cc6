"""Properties of answer extraction (hypothesis): a stated final answer followed, or preceded,
by any discussion of other options or numbers still grades as the stated answer; numbers in
any of the accepted spellings read back as their value.

Filler text is drawn from a fixed vocabulary, not arbitrary strings: arbitrary text can state
an answer of its own ("answer: c"), which would make the property false for a good reason.
Each statement ends its sentence (see _sentence_end).  Not covered, on purpose:
counterfactual statements ("if it were X, the answer would be C"), which are read as
statements.
"""

from __future__ import annotations

from fractions import Fraction
from functools import cache

from hypothesis import given, settings
from hypothesis import strategies as st

from hieramas.tasks import datasets as ds
from hieramas.tasks.answers import canonical_number, extract_choice, extract_number
from hieramas.tasks.graders import grade_gsm8k, grade_mcq
from hieramas.tasks.graders.gsm8k import numbers_equal

CHOICES = ("London", "Paris", "Rome", "Berlin")
LETTERS = "ABCD"
WORDS = (
    "the", "a", "an", "of", "friction", "energy", "premise", "because", "it", "ignores", "and",
    "so", "this", "that", "is", "was", "not", "a lot", "at first", "sight", "which", "means",
    "question", "reason", "case", "value", "step", "as", "A few", "in", "we", "see",
)  # fmt: skip
SETTINGS = settings(max_examples=300, deadline=None)

letters = st.sampled_from(LETTERS)
filler = st.lists(st.sampled_from(WORDS), min_size=1, max_size=8).map(" ".join)
separators = st.sampled_from([" ", "\n", "\n\n", "  "])
# a sentence of filler; one word alone could be "A." -- a line stating choice A
sentence = st.lists(st.sampled_from(WORDS), min_size=2, max_size=8).map(
    lambda words: " ".join(words).capitalize() + "."
)


@st.composite
def mcq_statement(draw: st.DrawFn, letter: str) -> str:
    """One explicit answer statement of ``letter``."""
    low = letter.lower()
    forms = [
        f"The answer is {letter}.", f"The answer is ({letter}).", f"Answer: {letter}",
        f"**Answer:** ({letter})", f"The correct answer is: **{letter}**",
        f"{letter} is correct.", f"{letter} is the answer.", f"({letter}) is the correct option.",
        f"Option {letter} is correct.", f"The best choice is therefore {letter}.",
        f"So the answer is $\\boxed{{{letter}}}$.", f"the answer is ({low})", f"answer: {low}.",
        f"Final answer: {letter}", f"\n**{letter}**\n", f"\n({letter})\n",
        f"The answer is {CHOICES[LETTERS.index(letter)]}.",
    ]  # fmt: skip
    return _sentence_end(draw(st.sampled_from(forms)))


@st.composite
def mcq_mention(draw: st.DrawFn) -> str:
    """A sentence that names options but states no answer."""
    x, y = draw(letters), draw(letters)
    text, words = CHOICES[LETTERS.index(x)], draw(filler)
    forms = [
        f"Option {x} is wrong because {words}.", f"{x} is incorrect.", f"({x}) is a distractor.",
        f"Option {x} mentions {words}.", f"Looking at option {x}, {words}.",
        f"Choice {x} says {words}.", f"**{x}**: Incorrect, {words}.", f"{x}: wrong.",
        f"Options {x} and {y} are both wrong.", f"Between {x} and {y}, {words}.",
        f"The answer is not {x}.", f"{x} is not the answer.", f"The answer isn't {x}.",
        f"A common mistake is to pick {x}.", f"Many students choose option {x}.",
        f"A tempting wrong answer is {x}.", f"Vitamin {x} is relevant here.",
        f"Type {x} questions are hard.", f"Compare ({x}) with ({y}).",
        f"{text} is wrong.", f"Not {text}: {words}.", f"Option {x} can be eliminated.",
        f"I first considered {x}, but {words}.", f"{words} a {words}.".capitalize(),
        f"Option {x} would mean {words}.", f"{x} and {y} are similar.",
        f"({x}) {text} is wrong.", f"**{x}** is wrong.", f"Answer choice {x} is incorrect.",
        "The options are A, B, C and D.", "Which option is correct?", f"Option {x}: {text}.",
        f"The first option is {text}.", f"The third choice is ({x}) {text}.",
        f"One possible answer is {x}.",
    ]  # fmt: skip
    return draw(st.sampled_from(forms))


def _sentence_end(statement: str) -> str:
    """The statement as a sentence of its own: "Answer: A" then "Is not." would read as
    "A is not", and "#### 72" then "100% of them" as 72 100."""
    return statement if statement.endswith((".", "\n")) else statement + "."


def _discussion(draw: st.DrawFn) -> str:
    parts = draw(st.lists(st.one_of(mcq_mention(), sentence), max_size=5))
    return "".join(draw(separators) + p for p in parts)


@SETTINGS
@given(st.data())
def test_mcq_stated_answer_survives_any_discussion(data: st.DataObject) -> None:
    letter = data.draw(letters)
    text = (
        _discussion(data.draw)
        + data.draw(separators)
        + data.draw(mcq_statement(letter))
        + _discussion(data.draw)
    )
    assert extract_choice(text, CHOICES) == letter, text


@SETTINGS
@given(st.data())
def test_mcq_the_last_statement_wins(data: st.DataObject) -> None:
    first, last = data.draw(letters), data.draw(letters)
    text = (
        data.draw(mcq_statement(first)) + _discussion(data.draw) + "\nWait, let me reconsider."
        + data.draw(separators) + data.draw(mcq_statement(last)) + _discussion(data.draw)
    )  # fmt: skip
    assert extract_choice(text, CHOICES) == last, text


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_mcq_grade_is_the_stated_answer(data: st.DataObject) -> None:
    item = data.draw(st.sampled_from(_items("mmlu")))
    letter = data.draw(letters)
    text = "Let me think." + data.draw(separators) + f"The answer is ({letter})."
    text += _discussion(data.draw)
    grade = grade_mcq(item, text)
    assert grade.predicted == letter and grade.correct == (letter == item.answer), text


@cache
def _items(name: str) -> list[ds.Item]:
    return ds.load(name)[:200]


# --- numbers -------------------------------------------------------------------------------

SEPARATORS = (",", " ", "\u00a0", "\u2009", "\u202f", "_")
MINUS = ("-", "\u2212", "\u2013")


def _grouped(n: int, sep: str) -> str:
    digits = str(n)
    head = len(digits) % 3 or 3
    return sep.join([digits[:head]] + [digits[i : i + 3] for i in range(head, len(digits), 3)])


@st.composite
def spelled_number(draw: st.DrawFn) -> tuple[Fraction, str]:
    """A value and one accepted spelling of it."""
    kind = draw(st.sampled_from(["int", "decimal", "fraction", "mixed"]))
    whole = draw(st.integers(0, 10**9))
    sep = draw(st.sampled_from(("", *SEPARATORS)))
    head = _grouped(whole, sep) if sep else str(whole)
    if kind == "int":
        value, body = Fraction(whole), head
    elif kind == "decimal":
        places = draw(st.integers(1, 4))
        digits = draw(st.integers(0, 10**places - 1))
        value = whole + Fraction(digits, 10**places)
        body = f"{head}.{digits:0{places}d}" + "0" * draw(st.integers(0, 2))
    elif kind == "fraction":
        den = draw(st.integers(1, 99))
        num = draw(st.integers(0, 999))
        value, body = Fraction(num, den), f"{num}/{den}"
    else:
        den = draw(st.integers(2, 12))
        num = draw(st.integers(1, den - 1))
        whole = draw(st.integers(1, 99))
        space = draw(st.sampled_from(" \u00a0"))
        value, body = whole + Fraction(num, den), f"{whole}{space}{num}/{den}"
    dollar = kind in ("int", "decimal") and draw(st.booleans())
    body = "$" + body if dollar else body
    if value and draw(st.booleans()):
        value, body = -value, draw(st.sampled_from(MINUS)) + body
    return value, body


def _key(value: Fraction) -> str:
    key = canonical_number(f"{value.numerator}/{value.denominator}")
    assert key is not None
    return key


@SETTINGS
@given(spelled_number())
def test_numbers_round_trip(spelled: tuple[Fraction, str]) -> None:
    value, text = spelled
    key = canonical_number(text)
    assert key == _key(value), text
    assert canonical_number(key) == key  # canonical keys are fixed points
    assert numbers_equal(key, f"{value.numerator}/{value.denominator}")
    assert extract_number(f"The answer is {text}.") == key, text
    assert extract_number(f"So she has {text} left") == key, text  # the last number
    assert extract_number(f"\\boxed{{{text}}}") == key, text


@st.composite
def number_mention(draw: st.DrawFn) -> str:
    """A sentence with numbers that states no answer."""
    a, b = draw(spelled_number())[1], draw(spelled_number())[1]
    k, words = draw(st.integers(1, 9)), draw(filler)
    forms = [
        f"Check: {a} + {b} = {a}.", f"Step {k} used {a} items.", f"It is not {a}.",
        f"The answer is not {a}.", f"A common wrong answer is {a}.", f"In total {b} people came.",
        f"Option {k} is wrong.", f"{a}% of them left.", f"That is {k}/{k + 1} of the total.",
        f"Between {a} and {b}, {words}.", f"Pages {k}\u2013{k + 4} explain {words}.",
        f"We had {a} before step {k}.", f"{words} {a} {words}.",
        f"The answer must be at least {a}.", f"The answer should be larger than {a}.",
        f"The answer to step {k} is not {a}.", f"Answer check: {a} is too small.",
        f"The first answer was {a}.", f"Its answer is {a}.", f"One possible answer is {b}.",
    ]  # fmt: skip
    return draw(st.sampled_from(forms))


@st.composite
def number_statement(draw: st.DrawFn, text: str) -> str:
    forms = [
        f"The answer is {text}.", f"#### {text}", f"Answer: {text}", f"\\boxed{{{text}}}",
        f"So {text} is the final answer.", f"The final answer is **{text}**.",
        f"Therefore, the answer is $\\boxed{{{text}}}$.",
    ]  # fmt: skip
    return _sentence_end(draw(st.sampled_from(forms)))


def _number_discussion(draw: st.DrawFn) -> str:
    parts = draw(st.lists(number_mention(), max_size=4))
    return "".join(draw(separators) + p for p in parts)


@SETTINGS
@given(st.data())
def test_gsm8k_stated_answer_survives_any_discussion(data: st.DataObject) -> None:
    value, spelled = data.draw(spelled_number())
    text = (
        _number_discussion(data.draw) + data.draw(separators)
        + data.draw(number_statement(spelled)) + _number_discussion(data.draw)
    )  # fmt: skip
    assert extract_number(text) == _key(value), text


@SETTINGS
@given(st.data())
def test_gsm8k_the_last_statement_wins(data: st.DataObject) -> None:
    _, first = data.draw(spelled_number())
    value, last = data.draw(spelled_number())
    text = (
        data.draw(number_statement(first)) + _number_discussion(data.draw)
        + "\nWait, correction:" + data.draw(separators) + data.draw(number_statement(last))
        + _number_discussion(data.draw)
    )  # fmt: skip
    assert extract_number(text) == _key(value), text


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_gsm8k_grade_is_the_stated_answer(data: st.DataObject) -> None:
    item = data.draw(st.sampled_from(_items("gsm8k")))
    value = Fraction(item.answer) + data.draw(st.sampled_from([0, 0, 1, -1, 10]))
    text = data.draw(number_statement(str(value))) + _number_discussion(data.draw)
    grade = grade_gsm8k(item, text)
    assert grade.correct == (value == Fraction(item.answer)), text
