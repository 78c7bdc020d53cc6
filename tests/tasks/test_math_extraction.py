"""The final answer of a MATH reply: a stated answer followed by any discussion stays the answer.

Policy under test (``extract_math_answer``): the last ``\\boxed{}`` wins; without one, the
last statement ("the answer is X", "final answer: X", a line "Answer: X"), where X ends at
its math delimiters, its bold, or its sentence.  Talk after it, of other numbers or options,
is never read as the answer.  Property tests with derandomised hypothesis (reproducible).
"""

from __future__ import annotations

import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hieramas.tasks import datasets as ds
from hieramas.tasks.graders import grade_math
from hieramas.tasks.mathtext import extract_math_answer

SETTINGS = settings(
    max_examples=300,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@pytest.fixture(scope="module")
def golds() -> list[str]:
    return [item.answer for item in ds.load("math500")]


def item_for(answer: str) -> ds.Item:
    return ds.Item(
        id="p/0", dataset="math500", domain="math", question="q", answer=answer, subject="s"
    )


def no_statement(text: str) -> bool:
    low = text.lower()
    return "answer" not in low and "boxed" not in low and "fbox" not in low


numbers = st.one_of(
    st.integers(-(10**12), 10**12).map(str),
    st.tuples(st.integers(-999, 999), st.integers(1, 999)).map(lambda t: f"{t[0]}/{t[1]}"),
    st.decimals(-1000, 1000, places=3, allow_nan=False).map(str),
)
# free text: letters, digits, punctuation, newlines, a few unicode signs
free_text = st.text(
    alphabet=st.sampled_from([*string.printable, "\u2212", "\u03c0", "\u221a", "\u00b0"]),
    max_size=160,
).filter(no_statement)
# talk that names other numbers and options, as a reply might after its answer
templates = st.sampled_from(
    [
        "Option {l} is wrong because {a} is not {b}.",
        "We also tried {a}, which fails.",
        "Note that {a} + {b} = {c}.",
        "$x = {a}$ does not satisfy the equation.",
        "Some might say {a}, or ({l}).",
        "If the side were {a}, we would get $\\frac{{{a}}}{{{b}}}$ instead.",
        "Check: {a}, {b}, {c}.",
        "{a}",
        "**{a}**",
        "The value {a} is too large; {b} is too small.",
    ]
)
talk = st.lists(
    st.builds(
        lambda t, a, b, c, letter: t.format(a=a, b=b, c=c, l=letter),
        templates,
        numbers,
        numbers,
        numbers,
        st.sampled_from("ABCDE"),
    ),
    max_size=4,
).map(" ".join)
discussion = st.one_of(talk, free_text, st.tuples(talk, free_text).map("\n".join))
prefix = st.sampled_from(["", "Let us compute. 2 + 2 = 4, so x = 4.\n", "We have $y = 7$.\n"])


@SETTINGS
@given(data=st.data(), before=prefix, after=discussion)
def test_boxed_answer_survives_any_discussion(
    golds: list[str], data: st.DataObject, before: str, after: str
) -> None:
    gold = data.draw(st.sampled_from(golds))
    reply = f"{before}So the answer is $\\boxed{{{gold}}}$. {after}"
    assert extract_math_answer(reply) == gold.strip()
    assert grade_math(item_for(gold), reply).correct


@SETTINGS
@given(data=st.data(), before=prefix, after=discussion, style=st.sampled_from("$(["))
def test_delimited_statement_survives_any_discussion(
    golds: list[str], data: st.DataObject, before: str, after: str, style: str
) -> None:
    gold = data.draw(st.sampled_from([g for g in golds if "$" not in g]))
    left, right = {"$": ("$", "$"), "(": ("\\(", "\\)"), "[": ("\\[", "\\]")}[style]
    reply = f"{before}The final answer is {left}{gold}{right} {after}"
    assert extract_math_answer(reply) == gold.strip()
    assert grade_math(item_for(gold), reply).correct


@SETTINGS
@given(
    answer=numbers,
    before=prefix,
    after=discussion,
    opening=st.sampled_from(["The answer is ", "So the final answer is: ", "Answer: "]),
    end=st.sampled_from([". ", ".\n", "\n", ".  \n", "; "]),
    bold=st.booleans(),
)
def test_plain_statement_survives_any_discussion(
    answer: str, before: str, after: str, opening: str, end: str, bold: bool
) -> None:
    stated = f"**{answer}**" if bold else answer
    reply = f"{before}{opening}{stated}{end}{after}"
    assert extract_math_answer(reply) == answer
    assert grade_math(item_for(answer), reply).correct


@SETTINGS
@given(first=numbers, second=numbers, after=discussion)
def test_a_later_statement_is_the_answer(first: str, second: str, after: str) -> None:
    """A correction stated as an answer wins, as the last ``\\boxed{}`` does."""
    reply = f"The answer is {first}.\nWait, that is wrong: the answer is {second}. {after}"
    assert extract_math_answer(reply) == second
    boxed = f"$\\boxed{{{first}}}$, {after}\nCorrection: $\\boxed{{{second}}}$."
    assert extract_math_answer(boxed) == second


@pytest.mark.parametrize(
    ("reply", "answer"),
    [
        ("The answer is 5. A common wrong answer is 7.", "5"),
        ("The answer is 5.\nNote that the answer is not 7.", "5"),
        ("The answer is 5, because 2 + 3 = 5 and 7 is too big.", "5"),
        ("The answer is 12 inches, not 13.", "12 inches"),
        ("The answer is $\\frac{1}{2}$ and 3 is not.", "\\frac{1}{2}"),
        ("So the answer is x = 1 or x = -2. Then 5.", "x = 1 or x = -2"),
        ("The answer is (3, 4]. Option (C) is 7.", "(3, 4]"),
        ("**Answer:** 42\nThe other option, 41, fails.", "42"),
        ("The final answer is $5$. I hope it is correct.", "5"),
    ],
)
def test_statement_examples(reply: str, answer: str) -> None:
    assert extract_math_answer(reply) == answer
