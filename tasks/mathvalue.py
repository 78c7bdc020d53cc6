"""Values of expressions from :func:`hieramas.tasks.mathexpr.to_expr`: exact where possible.

Rational arithmetic (``+ - * /``, integer powers, ``\\binom``, roots of perfect powers) is
done exactly on Gaussian rationals, so two distinct integers or fractions never compare
equal, however large.  Anything irrational (``\\pi``, a root of a non-power, trig, log,
exp) is approximated with mpmath at a working precision that grows with the size of the
exact numbers in the expression: a near miss built from a huge or tiny rational term
(``\\sqrt2 + 10^{-90}``, ``(10^{20}\\sqrt2)^2 + 1``) still differs at that precision.

Branches are the principal ones (``\\sqrt{-4} = 2i``, ``\\log(-1) = i\\pi``), except that a
rational power with an odd denominator of a negative real is the real root
(``(-8)^{1/3} = -2``), as in the MATH answers.  A non-real value is never equal to a real
one: complex values compare as complex numbers.
"""

from __future__ import annotations

import ast
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from mpmath.ctx_mp import MPContext

from hieramas.tasks.mathexpr import ExprError

__all__ = ["Exact", "Values", "evaluate"]

MAX_BITS = 1 << 14  # largest exact numerator/denominator (16,384 bits, ~4,900 digits)
BASE_DPS = 50  # decimal digits of the approximations, before growing with the exact sizes
MAX_DPS = 3000
MAX_ARGUMENT = 1e6  # |argument| of trig/exp beyond this costs precision: undecided instead
_LOG10_2 = math.log10(2)


@dataclass(frozen=True, slots=True)
class Exact:
    """A Gaussian rational ``re + im*i``."""

    re: Fraction
    im: Fraction = Fraction(0)

    @property
    def real(self) -> bool:
        return self.im == 0


Value = Exact | Any  # Exact, or an mpmath mpc at the working precision


_local = threading.local()


def _context() -> MPContext:
    ctx: MPContext | None = getattr(_local, "ctx", None)
    if ctx is None:
        ctx = MPContext()
        _local.ctx = ctx
    return ctx


def _bits(q: Fraction) -> int:
    return max(abs(q.numerator).bit_length(), q.denominator.bit_length())


def _iroot(n: int, k: int) -> int | None:
    """The integer ``r >= 0`` with ``r**k == n`` (``n >= 0``), or None."""
    if n < 2:
        return n
    if k > n.bit_length():  # 2**k > n: no integer root but 1 (and n >= 2)
        return None
    r = math.isqrt(n) if k == 2 else round(n ** (1.0 / k)) if n.bit_length() < 1000 else None
    if r is None:  # huge n: Newton's method on integers
        r = 1 << (n.bit_length() // k + 1)
        while True:
            s = ((k - 1) * r + n // r ** (k - 1)) // k
            if s >= r:
                break
            r = s
    for c in (r - 1, r, r + 1):
        if c >= 0 and c**k == n:
            return c
    return None


def _exact_root(q: Fraction, k: int) -> Fraction | None:
    """The non-negative exact ``k``-th root of ``q >= 0``, or None if irrational."""
    num, den = _iroot(q.numerator, k), _iroot(q.denominator, k)
    return None if num is None or den is None else Fraction(num, den)


class _Evaluator:
    def __init__(self, source: str, env: Mapping[str, Fraction], ctx: MPContext) -> None:
        self.source = source
        self.env = env
        self.ctx = ctx
        self.bits = 0  # size of the largest exact number met

    def exact(self, re: Fraction, im: Fraction = Fraction(0)) -> Exact:
        bits = max(_bits(re), _bits(im))
        if bits > MAX_BITS:
            raise ExprError("number too large")
        self.bits = max(self.bits, bits)
        return Exact(re, im)

    def approx(self, v: Value) -> Any:
        ctx = self.ctx
        if isinstance(v, Exact):
            re = ctx.mpf(v.re.numerator) / v.re.denominator
            im = ctx.mpf(v.im.numerator) / v.im.denominator
            return ctx.mpc(re, im)
        return v

    def run(self, expr: str) -> Value:
        try:
            return self.node(ast.parse(expr, mode="eval").body)
        except ExprError:
            raise
        except (ArithmeticError, ValueError, TypeError, RecursionError) as exc:
            raise ExprError(f"cannot evaluate: {exc}") from exc

    def node(self, node: ast.AST) -> Value:
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            text = ast.get_source_segment(self.source, node)
            return self.exact(Fraction(text if text is not None else node.value))
        if isinstance(node, ast.Name):
            if node.id == "I":
                return Exact(Fraction(0), Fraction(1))
            if node.id == "pi":
                return self.ctx.mpc(self.ctx.pi)
            if node.id in self.env:
                return self.exact(self.env[node.id])
            raise ExprError(f"unbound symbol {node.id}")
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            value = self.node(node.operand)
            if isinstance(node.op, ast.UAdd):
                return value
            return Exact(-value.re, -value.im) if isinstance(value, Exact) else -value
        if isinstance(node, ast.BinOp):
            return self.binop(node.op, self.node(node.left), self.node(node.right))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            args = [self.node(arg) for arg in node.args]
            return self.call(node.func.id, args)
        raise ExprError(f"unsupported node {type(node).__name__}")

    def binop(self, op: ast.operator, x: Value, y: Value) -> Value:
        if isinstance(op, ast.Pow):
            return self.power(x, y)
        if isinstance(x, Exact) and isinstance(y, Exact):
            a, b, c, d = x.re, x.im, y.re, y.im
            if isinstance(op, ast.Add):
                return self.exact(a + c, b + d)
            if isinstance(op, ast.Sub):
                return self.exact(a - c, b - d)
            if isinstance(op, ast.Mult):
                return self.exact(a * c - b * d, a * d + b * c)
            if isinstance(op, ast.Div):
                norm = c * c + d * d
                if norm == 0:
                    raise ExprError("division by zero")
                return self.exact((a * c + b * d) / norm, (b * c - a * d) / norm)
            raise ExprError(f"unsupported operator {type(op).__name__}")
        p, q = self.approx(x), self.approx(y)
        if isinstance(op, ast.Add):
            return p + q
        if isinstance(op, ast.Sub):
            return p - q
        if isinstance(op, ast.Mult):
            return p * q
        if isinstance(op, ast.Div):
            if q == 0:
                raise ExprError("division by zero")
            return p / q
        raise ExprError(f"unsupported operator {type(op).__name__}")

    def power(self, x: Value, y: Value) -> Value:
        if isinstance(x, Exact) and isinstance(y, Exact) and y.real:
            n = y.re
            if x.re == 0 and x.im == 0:
                if n > 0:
                    return Exact(Fraction(0))
                raise ExprError("zero to a non-positive power")
            if n.denominator == 1:
                if max(_bits(x.re), _bits(x.im), 1) * abs(n.numerator) > 2 * MAX_BITS:
                    raise ExprError("power too large")
                return self.int_power(x, int(n))
            if x.real:  # a rational power of a rational: exact when it is a perfect power
                k = n.denominator
                if x.re > 0 or k % 2 == 1:
                    root = _exact_root(abs(x.re), k)
                    sign = 1 if x.re > 0 else -1
                    if root is not None:
                        return self.int_power(Exact(sign * root), n.numerator)
                    if x.re < 0:  # odd root of a negative real: the real root
                        magnitude = self.ctx.power(self.approx(Exact(-x.re)), self.approx(y))
                        return self.ctx.mpc(-magnitude if n.numerator % 2 else magnitude)
                elif k == 2:  # a square root of a negative rational: i times a real root
                    root = _exact_root(-x.re, 2)
                    if root is not None:
                        return self.int_power(Exact(Fraction(0), root), n.numerator)
        p, q = self.approx(x), self.approx(y)
        if abs(q) > MAX_ARGUMENT:
            raise ExprError("exponent too large")
        if p == 0:
            if q.real > 0:
                return self.ctx.mpc(0)
            raise ExprError("zero to a non-positive power")
        return self.ctx.power(p, q)

    def int_power(self, x: Exact, n: int) -> Exact:
        if n < 0:
            norm = x.re * x.re + x.im * x.im
            x = self.exact(x.re / norm, -x.im / norm)
            n = -n
        result = Exact(Fraction(1))
        base = x
        while n:
            if n & 1:
                result = self.exact(
                    result.re * base.re - result.im * base.im,
                    result.re * base.im + result.im * base.re,
                )
            n >>= 1
            if n:
                base = self.exact(base.re * base.re - base.im * base.im, 2 * base.re * base.im)
        return result

    def call(self, name: str, args: Sequence[Value]) -> Value:
        if name == "binomial":
            if len(args) != 2 or not all(
                isinstance(a, Exact) and a.real and a.re.denominator == 1 for a in args
            ):
                raise ExprError("binomial of non-integers")
            n, k = (int(a.re) for a in args)
            if n > 5000:
                raise ExprError("binomial too large")
            return self.exact(Fraction(math.comb(n, k) if k >= 0 and n >= 0 else 0))
        if len(args) != 1:
            raise ExprError(f"{name} takes one argument")
        (arg,) = args
        if name == "sqrt":
            return self.power(arg, Exact(Fraction(1, 2)))
        func = _FUNCTIONS.get(name)
        if func is None:
            raise ExprError(f"unsupported function {name}")
        z = self.approx(arg)
        if name != "log" and abs(z) > MAX_ARGUMENT:
            raise ExprError("argument too large")
        if name == "log" and z == 0:
            raise ExprError("log of zero")
        return func(self.ctx, z)


_FUNCTIONS: Mapping[str, Callable[[MPContext, Any], Any]] = {
    "sin": lambda c, z: c.sin(z),
    "cos": lambda c, z: c.cos(z),
    "tan": lambda c, z: c.tan(z),
    "cot": lambda c, z: c.cot(z),
    "sec": lambda c, z: c.sec(z),
    "csc": lambda c, z: c.csc(z),
    "asin": lambda c, z: c.asin(z),
    "acos": lambda c, z: c.acos(z),
    "atan": lambda c, z: c.atan(z),
    "log": lambda c, z: c.log(z),
    "exp": lambda c, z: c.exp(z),
}


@dataclass(frozen=True, slots=True)
class Values:
    """Values of several expressions at one working precision, and how to compare them."""

    items: list[Value]
    dps: int

    def equal(self, x: Value, y: Value) -> bool:
        """Exact equality when both are exact, else agreement to the working precision."""
        if isinstance(x, Exact) and isinstance(y, Exact):
            return x == y
        ctx = _context()
        ctx.dps = self.dps
        ev = _Evaluator("", {}, ctx)
        p, q = ev.approx(x), ev.approx(y)
        scale = max(ctx.mpf(1), abs(p), abs(q))
        return bool(abs(p - q) <= scale * ctx.mpf(10) ** (10 - self.dps))

    def is_zero(self, x: Value) -> bool:
        return self.equal(x, Exact(Fraction(0)))

    def ratio(self, x: Value, y: Value) -> Value:
        """``x / y`` (``y`` not zero)."""
        ctx = _context()
        ctx.dps = self.dps
        return _Evaluator("", {}, ctx).binop(ast.Div(), x, y)


def evaluate(exprs: Sequence[str], env: Mapping[str, Fraction] | None = None) -> Values:
    """Values of ``exprs`` with ``env``'s symbols; ``ExprError`` if one is not computable.

    The working precision is ``BASE_DPS`` digits plus twice the digits of the largest exact
    number met, so that exact terms cannot hide below the tolerance of the comparison.
    """
    ctx = _context()
    dps = BASE_DPS
    while True:
        ctx.dps = dps
        evaluators = [_Evaluator(e, env or {}, ctx) for e in exprs]
        items = [ev.run(e) for ev, e in zip(evaluators, exprs, strict=True)]
        if all(isinstance(v, Exact) for v in items):
            return Values(items, dps)
        needed = BASE_DPS + math.ceil(2 * _LOG10_2 * max(ev.bits for ev in evaluators))
        if needed <= dps:
            for v in items:
                if not isinstance(v, Exact) and not ctx.isfinite(v):
                    raise ExprError("value not finite")
            return Values(items, dps)
        if needed > MAX_DPS:
            raise ExprError("needs too much precision")
        dps = needed
