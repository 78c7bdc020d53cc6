"""MATH equivalence: one regression test per class of defect a reward-seeking learner could use.

Each class is tested by the mechanism, with several members, not only the reported example;
every pair is checked in both orders.
"""

from __future__ import annotations

from fractions import Fraction

import pytest

from hieramas.tasks.graders import math_equivalent
from hieramas.tasks.mathexpr import ExprError
from hieramas.tasks.mathvalue import Exact, evaluate


def same(a: str, b: str) -> bool:
    one, other = math_equivalent(a, b).equal, math_equivalent(b, a).equal
    assert one == other, (a, b)
    return one


@pytest.mark.parametrize(
    ("candidate", "gold"),
    [
        ("1073741825", "2^{30}"),  # the reported one: a float tolerance made them equal
        ("1073741823", "2^{30}"),
        ("2^{64}+1", "2^{64}"),
        ("10^{20}+1", "10^{20}"),
        ("\\frac{10^{18}+1}{10^{18}}", "1"),
        ("123456789012345678", "123456789012345679"),
        ("1.0000000000001", "1"),
        ("3^{40}", "3^{40}-1"),
        ("\\binom{60}{30}+1", "\\binom{60}{30}"),
    ],
)
def test_distinct_rationals_never_equal(candidate: str, gold: str) -> None:
    assert not same(candidate, gold)


@pytest.mark.parametrize(
    ("candidate", "gold"),
    [
        ("\\sqrt2+10^{-90}", "\\sqrt2"),  # a tiny exact term under any fixed tolerance
        ("(10^{20}\\sqrt2)^2+1", "(10^{20}\\sqrt2)^2"),  # a unit on a huge irrational value
        ("10^{30}\\pi+1", "10^{30}\\pi"),
        ("3.14159265358979", "\\pi"),  # a decimal approximation is not the number
        ("1.4142135623730951", "\\sqrt{2}"),
        ("\\frac{333}{1000}", "\\frac{1}{3}"),
        ("2^{1/1000000000}", "1"),  # a root of huge index: decided, not computed exactly
    ],
)
def test_near_misses_of_irrational_values(candidate: str, gold: str) -> None:
    assert not same(candidate, gold)


@pytest.mark.parametrize(
    ("candidate", "gold"),
    [
        ("1073741824", "2^{30}"),
        ("2\\sqrt2", "\\sqrt8"),
        ("\\sin(\\pi/6)", "\\frac12"),
        ("\\frac{\\sqrt{3}}{3}", "\\frac{1}{\\sqrt3}"),
        ("\\sqrt[3]{-8}", "-2"),  # odd root of a negative real: the real root
        ("(10^{20}\\sqrt2)^2", "2\\cdot10^{40}"),
        ("4^{1/2}", "2"),
        ("\\binom{60}{30}", "118264581564861424"),
    ],
)
def test_equal_values_by_exact_or_precise_arithmetic(candidate: str, gold: str) -> None:
    assert same(candidate, gold)


def test_non_real_values() -> None:
    """Principal branches; a non-real value never equals a real one."""
    assert same("\\sqrt{-4}", "2i")
    assert not same("\\sqrt{-4}", "-2i")  # the reported one (a signed-zero branch cut)
    for real in ("2", "-2", "4", "0"):
        assert not same("\\sqrt{-4}", real)
    assert same("(\\sqrt{-4})^2", "-4")  # real again: equal
    assert not same("\\sqrt{-2}", "\\sqrt{2}")
    assert same("i^2", "-1")
    assert not same("1+i", "\\sqrt2")  # same modulus, different number
    assert same("6-5i", "6 - 5i")
    assert evaluate(["sqrt(-9)"]).items == [Exact(Fraction(0), Fraction(3))]  # exact 3i


def test_unbounded_work_is_refused_not_hung() -> None:
    for expr in ("2**(10**9)", "sin(10**30)", "binomial(10**6, 5)"):
        with pytest.raises(ExprError):
            evaluate([expr])
    # the grader hands such values to the time-limited sympy worker and gets an answer
    assert not math_equivalent("2^{1000000000}", "2^{1000000000}+1").equal


@pytest.mark.parametrize(
    ("candidate", "gold", "equal"),
    [
        ("4 2/3", "14", False),  # the reported one: read as 42/3
        ("4 2/3", "\\frac{14}{3}", True),  # a plain-text mixed number
        ("4\\frac{2}{3}", "\\frac{14}{3}", True),  # MATH's own mixed numbers
        ("4\\ 2/3", "14", False),
        ("-1 1/2", "-\\frac32", True),
        ("2 3", "23", False),  # ambiguous: 23, 6 or a list: equals nothing else
        ("2 3", "6", False),
        ("2 3", "2,3", False),
        ("10\\,080", "10080", True),  # digit grouping
        ("1 234 567", "1234567", True),
        ("2\\frac{1}{2}", "\\sqrt{1}", False),  # mixed in expressions too, never 2 * 1/2
        ("2\\frac{1}{2}", "\\frac{\\sqrt{25}}{2}", True),
    ],
)
def test_numbers_separated_by_spaces(candidate: str, gold: str, equal: bool) -> None:
    assert same(candidate, gold) is equal


@pytest.mark.parametrize(
    ("candidate", "gold", "equal"),
    [
        ("3+2s", "5", False),  # the reported one: a variable stripped as "seconds"
        ("3+2m", "5", False),
        ("3+2cm", "5", False),  # a unit word glued to an expression: maybe variables
        ("2x+3in", "2x+3", False),
        ("5s", "5", False),
        ("5 s", "5", False),  # one-letter units only as text
        ("12 g", "12", False),
        ("5\\text{ s}", "5", True),
        ("5\\,\\text{m}", "5", True),
        ("5 cm", "5", True),
        ("5cm", "5", True),
        ("12 inches", "12", True),
        ("15\\mbox{ cm}^2", "15", True),
        ("6 square units", "6", True),
        ("3+2 cm", "5", True),  # (3+2) cm
        ("\\pi r^2 \\text{ cm}^2", "\\pi r^2", True),
    ],
)
def test_only_unit_words_at_the_end_are_units(candidate: str, gold: str, equal: bool) -> None:
    assert same(candidate, gold) is equal


@pytest.mark.parametrize(
    ("candidate", "gold"),
    [
        ("\u22123", "-3"),
        ("\u2212\\frac{1}{2}", "-0.5"),
        ("2\u03c0", "2\\pi"),
        ("\u03c0r^2", "\\pi r^2"),
        ("\u221a2", "\\sqrt{2}"),
        ("3\u221a12", "6\\sqrt{3}"),
        ("\u221a(x+1)", "\\sqrt{x+1}"),
        ("\u221b27", "3"),
        ("x\u00b2+1", "x^2+1"),
        ("\u00bd", "\\frac12"),
        ("2\u00d73", "6"),
        ("(\u2212\u221e, 0]", "(-\\infty, 0]"),
    ],
)
def test_unicode_math_signs(candidate: str, gold: str) -> None:
    assert same(candidate, gold)


@pytest.mark.parametrize(
    ("candidate", "gold", "equal"),
    [
        ("x=1, x=-2", "1,-2", True),  # the reported one
        ("x=1, x=-2", "-2,1", True),
        ("x = 1 \\text{ or } x = -2", "1, -2", True),
        ("x=-2 and x=1", "1,-2", True),
        ("\\{x=1, x=-2\\}", "\\{-2,1\\}", True),
        ("x=1, x=2", "1,-2", False),
        ("x=1, y=-2", "1,-2", False),  # two variables: a point, not a solution set
        ("x=1, x=-2, x=3", "1,-2", False),
    ],
)
def test_solution_sets(candidate: str, gold: str, equal: bool) -> None:
    assert same(candidate, gold) is equal


@pytest.mark.parametrize(
    ("candidate", "gold", "equal"),
    [
        ("90 \\text{ radians}", "90^\\circ", False),  # units may be left out, not changed
        ("864\\text{ feet}^2", "864 \\mbox{ inches}^2", False),
        ("15\\text{ m}^2", "15\\mbox{ cm}^2", False),
        ("15\\text{ cm}", "15\\mbox{ cm}^2", False),  # another dimension
        ("5.4 \\text{ dollars}", "5.4 \\text{ cents}", False),
        ("18.90 cents", "\\$18.90", False),
        ("864 square inches", "864 \\mbox{ inches}^2", True),
        ("864 \\text{ in}^2", "864 \\mbox{ inches}^2", True),
        ("18.90 dollars", "\\$18.90", True),
        ("90", "90^\\circ", True),
        ("6 cm^2", "6 square units", True),  # generic "units" fit any unit
    ],
)
def test_a_stated_unit_must_match(candidate: str, gold: str, equal: bool) -> None:
    assert same(candidate, gold) is equal


def test_boxed_inside_the_answer() -> None:
    assert same("\\boxed{\\frac12}", "0.5")
    assert same("\\fbox{3}", "3")
    assert not same("\\boxed{5} + \\boxed{3}", "8")  # not one box around the whole answer
