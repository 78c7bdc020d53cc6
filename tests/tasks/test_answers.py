"""Answer keys: letters, math strings, numbers, code and free text."""

from __future__ import annotations

import pytest

from hieramas.tasks.answers import extract_answer, extract_choice, normalize_code

CHOICES = ("London", "Paris", "Rome", "Berlin")


@pytest.mark.parametrize(
    ("text", "letter"),
    [
        ("The answer is (B)", "B"),
        ("Let me think.\n**B**", "B"),
        ("Answer: B.", "B"),
        ("B. Because of the second law.", "B"),
        ("C\nThe reason is ...", "C"),
        ("The correct answer is: D", "D"),
        ("A good question. The answer is B", "B"),
        ("Thus, the answer is \\boxed{\\text{D}}.", "D"),
        ("Final answer: **(A)**", "A"),
        ("The answer is (A). On reflection, the answer is (C).", "C"),
        ("So the best option is (D).", "D"),
        ("Paris is the capital.\nThe answer is Paris.", "B"),
        ("I am not sure.", None),
        ("The answer is a bit unclear", None),
        ("", None),
    ],
)
def test_choice(text: str, letter: str | None) -> None:
    assert extract_choice(text, CHOICES) == letter
    assert extract_answer("mmlu", text, choices=CHOICES) == letter


def test_choice_text_prefers_the_longer_matching_option() -> None:
    choices = ["True, True", "False, False", "True, False", "False, True"]
    assert extract_choice("I would say True, False", choices) == "C"
    assert extract_choice("Berlin or Rome, hard to say", CHOICES) is None


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("so \\boxed{\\dfrac12}", "1/2"),
        ("The answer is $0.5$.", "1/2"),
        ("\\boxed{10,\\!080}", "10080"),
        ("\\boxed{90^\\circ}", "90"),
        ("\\boxed{1 \\pm \\sqrt{19}}", "1+\\sqrt{19},1-\\sqrt{19}"),
        ("no final answer here", None),
    ],
)
def test_math_keys(text: str, key: str | None) -> None:
    assert extract_answer("math", text) == key


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("#### 1,080", "1080"),
        ("The answer is $18.90.", "18.9"),
        ("She has 3 cats and 4 dogs, so 7 pets.", "7"),
        ("The final answer is: 1,234,567", "1234567"),
        ("\\boxed{-3.50}", "-3.5"),
        ("The answer is 3/4", "0.75"),
        ("no digits", None),
    ],
)
def test_number_keys(text: str, key: str | None) -> None:
    assert extract_answer("gsm8k", text) == key


def test_code_key_ignores_layout_comments_and_docstrings() -> None:
    a = "Here:\n```python\ndef f(x):\n    '''doc'''\n    # note\n    return  x+1\n```\nDone."
    b = "```\ndef f(x):\n    return x + 1\n```"
    assert (
        extract_answer("humaneval", a)
        == extract_answer("humaneval", b)
        == "def f(x):\n    return x + 1"
    )
    assert extract_answer(
        "humaneval", "```python\ndef f(x):\n    return x - 1\n```"
    ) != extract_answer("humaneval", b)
    assert extract_answer("humaneval", "```python\ndef f(:\n```") is None
    assert normalize_code("x = (") is None


def test_general_and_unknown_domain() -> None:
    assert extract_answer("general", "thinking\n\n  Paris  \n\n") == "Paris"
    assert extract_answer("general", "   \n") is None
    with pytest.raises(ValueError, match="unknown domain"):
        extract_answer("chess", "e4")


def test_code_key_of_bodies_and_prose() -> None:
    body = "```python\n    for x in xs:\n        return x\n    return 0\n```"
    assert extract_answer("humaneval", body) == "for x in xs:\n    return x\nreturn 0"
    assert extract_answer("humaneval", "Sorting") is None  # prose is not code
    assert extract_answer("humaneval", "def f():\n    return 1") == "def f():\n    return 1"
