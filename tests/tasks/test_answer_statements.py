"""Which answer a reply states: letters (MMLU-Redux) and numbers (GSM8K), one test per class
of reading error (a later mention overriding the stated answer, lost signs, split numbers...)."""

from __future__ import annotations

import re

import pytest

from hieramas.tasks import datasets as ds
from hieramas.tasks.answers import canonical_number, extract_answer, extract_choice, extract_number
from hieramas.tasks.graders import grade_gsm8k, grade_mcq

CHOICES = ("London", "Paris", "Rome", "Berlin")
MORAL = ("Wrong, Wrong", "Wrong, Not wrong", "Not wrong, Wrong", "Not wrong, Not wrong")

# --- multiple choice ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mention",
    [
        "Option C is wrong because it ignores friction.",
        "Option A is a distractor.",
        "(C) is incorrect.",
        "C is not the answer.",
        "The answer is not C.",
        "The answer isn't D.",
        "A common wrong answer is C.",
        "**C**: Incorrect, the premise is false.",
        "D: wrong.",
        "Options A, C and D can be ruled out.",
        "Choice D would only fit another question.",
        "One might pick option C at first sight.",
        "The first option is London, the third option is (C) Rome.",
        "One possible answer is D.",
    ],
)
@pytest.mark.parametrize(
    "statement",
    [
        "The answer is B.",
        "The answer is (B).",
        "Answer: B",
        "**Answer:** (B)",
        "B is correct.",
        "B is the answer.",
        "(B) is the correct option.",
        "Option B is correct.",
        "The correct choice is therefore B.",
        "So the answer is $\\boxed{B}$.",
        "the answer is (b)",
        "answer: b.",  # a bare lowercase letter must end its clause
        "The answer is Paris.",
    ],
)
def test_a_later_mention_never_overrides_the_stated_answer(statement: str, mention: str) -> None:
    text = f"Let me think.\n{statement} {mention}"
    assert extract_choice(text, CHOICES) == "B", text
    assert extract_choice(f"Let me think.\n{statement}\n\n{mention}", CHOICES) == "B"


@pytest.mark.parametrize(
    ("text", "letter"),
    [
        ("The answer is B... wait, actually the answer is C.", "C"),
        ("B is correct. Hmm, on reflection, C is the correct answer.", "C"),
        ("Answer: A\n\nLet me double-check.\n\nAnswer: D", "D"),
        ("\\boxed{A}. No: the answer is (c).", "C"),
        ("The answer is (B).\n\n**D**", "D"),  # a line that is only the letter states it
    ],
)
def test_the_last_answer_statement_wins(text: str, letter: str) -> None:
    assert extract_choice(text, CHOICES) == letter


@pytest.mark.parametrize(
    ("text", "letter"),
    [
        ("the answer is (b)", "B"),
        ("The answer is [c].", "C"),
        ("final answer: d", "D"),
        ("the answer is a.", "A"),
        ("B is the answer.", "B"),
        ("(d) is the correct answer", "D"),
        ("The answer is a bit unclear.", None),  # the article, not choice A
        ("The answer is A combination of both.", None),
        ("The answer is A because London is not the capital.", "A"),
        ("so the answer is a matter of taste", None),
        ("Vitamin D is the answer here.", None),  # a name, not choice D
        ("Hepatitis B is correct in most texts.", None),
    ],
)
def test_lowercase_letters_and_articles(text: str, letter: str | None) -> None:
    assert extract_choice(text) == letter


@pytest.mark.parametrize(
    "text", ["The answer is B or C.", "The answer is B/C.", "Answer: (A) and (D)", "answer: B, C"]
)
def test_a_final_statement_naming_two_options_is_unparseable(text: str) -> None:
    assert extract_choice("The answer is A.\n" + text, CHOICES) is None


def test_not_two_options() -> None:
    assert extract_choice("The answer is B, not C.") == "B"
    assert extract_choice("The answer is B, and C is wrong.") == "B"


def test_quoting_the_choice_text_is_not_a_negation() -> None:
    """MMLU's moral-scenario choices read like verdicts ("Wrong, Not wrong")."""
    assert extract_choice("The answer is (B) Wrong, Not wrong.", MORAL) == "B"
    assert extract_choice("A: Wrong, Wrong\nThat is my pick.", MORAL) == "A"
    assert extract_choice("A: incorrect.\nB. Not wrong, Wrong", MORAL) == "B"


@pytest.mark.parametrize(
    ("choices", "text", "letter"),
    [
        (("Impacts", "Erosion", "Volcanism", "A B and C"), "The answer is A B and C", "D"),
        (("B = 0", "B is normal.", "B is tangential.", "B is constant."), "The answer is B is tangential.", "C"),
        (("240 \u00f7 12", "240 \u2013 12", "240 + 12", "240 \u00d7 12"), "The answer is 240 \u00f7 12", "A"),
        (("ax = 0; ay < g", "ax = 0; ay = g", "ax < g; ay < g", "ax < g; ay = g"), "The answer is ax = 0; ay = g", "B"),
        (("Error", "a", "b", "c"), "The answer is c", "C"),  # one character: the letter
    ],
)  # fmt: skip
def test_a_choice_text_stated_verbatim_is_that_choice(
    choices: tuple[str, ...], text: str, letter: str
) -> None:
    assert extract_choice(text, choices) == letter


def test_past_tense_reports_no_answer() -> None:
    assert extract_choice("I thought the answer was B, but the answer is C.") == "C"
    assert extract_choice("At first my answer was D.\nC is correct.") == "C"


def test_grading_uses_the_stated_answer() -> None:
    item = next(i for i in ds.load("mmlu") if i.id == "abstract_algebra/2")
    assert item.answer == "B"
    assert grade_mcq(item, "The answer is B. Option C is wrong because p=3 fails.").correct
    assert grade_mcq(item, "B is correct; option A is a distractor.").correct
    assert grade_mcq(item, "the answer is (b)").correct
    assert grade_mcq(item, "B is the answer.").correct
    wrong = grade_mcq(item, "The answer is B... wait, actually the answer is C")
    assert wrong.outcome == "wrong" and wrong.predicted == "C"


# --- numbers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("The answer is \u221210", "-10"),  # unicode minus
        ("The answer is \u201310.", "-10"),  # en dash as a minus
        ("The temperature fell to \u22123.5 degrees", "-3.5"),
        ("\\boxed{\u22127}", "-7"),
        ("#### -12", "-12"),
        ("Pages 10\u201320 were read.", "20"),  # a range, not -20
        ("Pages 10-20 were read.", "20"),
        ("So 12 - 5", "5"),  # an operator, not a sign
        ("x-5", "5"),
    ],
)
def test_signs(text: str, key: str) -> None:
    assert extract_number(text) == key


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("The answer is 1 234", "1234"),
        ("The answer is 1\u00a0234\u00a0567", "1234567"),  # no-break space
        ("The answer is 1\u2009234.50", "1234.5"),  # thin space
        ("The answer is 1\u202f000", "1000"),  # narrow no-break space
        ("The answer is 1_000_000", "1000000"),
        ("The answer is 12,345", "12345"),
        ("\\boxed{1\\,234}", "1234"),
        ("He has 1 23 apples", "23"),  # not a valid grouping: two numbers
        ("It costs 1,2345", "2345"),
        ("The answer is 12 100-page books", "12"),  # "100-page" is not a group
    ],
)
def test_thousands_separators(text: str, key: str) -> None:
    assert extract_number(text) == key


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("The answer is 17... wait, correction: the answer is 19", "19"),
        ("#### 17\nOn second thought, the final answer is 19.", "19"),
        ("The answer is \\boxed{17}. Hmm, no: \\boxed{19}", "19"),
        ("The answer is 19. Check: 12 + 7 = 19, and 3 + 4 = 7.", "19"),
        ("The answer is 19. Step 2 used 45 of the 60 cards.", "19"),
        ("The answer is not 17; she has 19.", "19"),
        ("A common wrong answer is 12. She has 19.", "19"),
        ("So 19 is the final answer. It is not 21.", "19"),
        ("The third answer was 1800 - 400 = 1400.\nSo she has 3200 left.", "3200"),
        ("The answer is 19. The first answer was 12.", "19"),
        ("The second problem's answer was 600*2 = 1200.\nSo she has 3200 left.", "3200"),
        ("The answer is 48 + 24 = 72.", "72"),
        ("The answer is \\boxed{\\frac{3}{4}}", "0.75"),
        ("The answer is 4 1/2 hours.", "4.5"),
        ("#### 72 4/3 of them left.", "72"),  # "72 4/3" is not a mixed number
        ("So we get 3 7/4", "1.75"),
    ],
)
def test_the_last_answer_statement_wins_for_numbers(text: str, key: str) -> None:
    assert extract_number(text) == key
    assert extract_answer("gsm8k", text) == key


def test_canonical_number() -> None:
    assert canonical_number("$1,234.50") == "1234.5"
    assert canonical_number("\u22123/4") == "-0.75"
    assert canonical_number("1/3") == "1/3"
    assert canonical_number("4 2/3") == "14/3"
    assert canonical_number("$-5") == canonical_number("-$5") == "-5"
    assert canonical_number("1 234") == "1234"
    assert canonical_number("1,23") is None  # not a grouping
    assert canonical_number("4 2/3 apples") is None
    assert canonical_number("1/0") is None


def test_grading_numbers() -> None:
    item = ds.load("gsm8k")[0]
    assert item.answer == "72"
    assert grade_gsm8k(item, "The answer is 70... wait, correction: the answer is 72").correct
    negative = ds.Item(
        id="n", dataset="gsm8k", domain="gsm8k", question="q", answer="-10", subject=""
    )
    assert grade_gsm8k(negative, "The answer is \u221210").correct
    assert grade_gsm8k(negative, "The answer is 10").outcome == "wrong"
    big = ds.Item(id="b", dataset="gsm8k", domain="gsm8k", question="q", answer="1234", subject="")
    assert grade_gsm8k(big, "The answer is 1 234").correct


def test_every_gsm8k_solution_reads_as_its_answer() -> None:
    """All 7,473 reference solutions, with their final line in three styles."""
    misread = []
    for item in ds.load("gsm8k"):
        body, _, answer = re.sub(r"<<[^>]*>>", "", str(item.meta["solution"])).rpartition("####")
        for tail in (f"#### {answer.strip()}", f"The answer is {answer.strip()}.",
                     f"So the answer is $\\boxed{{{answer.strip()}}}$."):  # fmt: skip
            if not grade_gsm8k(item, f"{body.strip()}\n{tail}").correct:
                misread.append((item.id, tail))
    assert misread == []
