"""LaTeX math -> a small, safe Python expression language, and its numeric evaluation.

:func:`to_expr` accepts only a whitelist of LaTeX (numbers, one-letter
variables, ``+ - * / ^``, ``\\frac``, ``\\sqrt``, ``\\pi``, ``\\binom``, the
usual functions) and emits an expression over those names only, so the
result is safe to hand to sympy; :mod:`hieramas.tasks.mathvalue` computes its
value.
"""

from __future__ import annotations

import ast
import re

__all__ = ["ExprError", "free_symbols", "to_expr"]


class ExprError(ValueError):
    """The LaTeX is outside the supported subset, or the evaluation failed."""


_COMMAND_FUNCS = {
    "sin": "sin",
    "cos": "cos",
    "tan": "tan",
    "cot": "cot",
    "sec": "sec",
    "csc": "csc",
    "arcsin": "asin",
    "arccos": "acos",
    "arctan": "atan",
    "ln": "log",
    "log": "log",
    "exp": "exp",
}
_CONSTANTS = {"pi": "pi", "infty": "oo"}
_MIXED = re.compile(r"(?<![\w.}^])(\d+)\\frac\{(\d+)\}\{(\d+)\}")
_VALUE_ATOMS = ("num", "var", "const", "close")


def _group(s: str, i: int) -> tuple[str, int]:
    """The argument at ``s[i]``: a ``{...}`` group or a single character."""
    if i >= len(s):
        raise ExprError("missing argument")
    if s[i] == "{":
        depth = 0
        for j in range(i, len(s)):
            if s[j] == "{":
                depth += 1
            elif s[j] == "}":
                depth -= 1
                if depth == 0:
                    return s[i + 1 : j], j + 1
        raise ExprError("unbalanced braces")
    return s[i], i + 1


def _paren(s: str, i: int) -> tuple[str, int]:
    """The contents of the ``(...)`` group starting at ``s[i]``."""
    depth = 0
    for j in range(i, len(s)):
        if s[j] == "(":
            depth += 1
        elif s[j] == ")":
            depth -= 1
            if depth == 0:
                return s[i + 1 : j], j + 1
    raise ExprError("unbalanced parentheses")


def _tokens(s: str) -> list[tuple[str, str]]:
    """(kind, text) tokens of the expression language."""
    out: list[tuple[str, str]] = []
    i = 0
    while i < len(s):
        ch = s[i]
        if ch.isspace():
            i += 1
        elif ch.isdigit() or (ch == "." and i + 1 < len(s) and s[i + 1].isdigit()):
            m = re.match(r"\d*\.?\d+|\d+\.?", s[i:])
            assert m is not None
            out.append(("num", m.group(0)))
            i += m.end()
        elif ch.isalpha():
            out.append(("const", "I") if ch == "i" else ("var", ch))
            i += 1
        elif ch in "+-*/":
            out.append(("op", ch))
            i += 1
        elif ch == "^":
            arg, i = _group(s, i + 1)
            out.append(("op", "**"))
            out.append(("open", "("))
            out.extend(_tokens(arg))
            out.append(("close", ")"))
        elif ch in "({[":
            out.append(("open", "("))
            i += 1
        elif ch in ")}]":
            out.append(("close", ")"))
            i += 1
        elif ch == "\\":
            m = re.match(r"\\([a-zA-Z]+)", s[i:])
            if not m:
                raise ExprError(f"unsupported LaTeX at {s[i : i + 8]!r}")
            name = m.group(1)
            i += m.end()
            if name in ("frac", "binom"):
                num, i = _group(s, i)
                den, i = _group(s, i)
                if name == "frac":
                    out += [("open", "("), ("open", "("), *_tokens(num), ("close", ")")]
                    out += [
                        ("op", "/"),
                        ("open", "("),
                        *_tokens(den),
                        ("close", ")"),
                        ("close", ")"),
                    ]
                else:
                    out += [("func", "binomial"), ("open", "("), *_tokens(num), ("op", ",")]
                    out += [*_tokens(den), ("close", ")")]
            elif name == "sqrt":
                if i < len(s) and s[i] == "[":
                    end = s.find("]", i)
                    if end == -1:
                        raise ExprError("unbalanced \\sqrt[")
                    index, i = s[i + 1 : end], end + 1
                    arg, i = _group(s, i)
                    out += [("open", "("), ("open", "("), *_tokens(arg), ("close", ")")]
                    out += [("op", "**"), ("open", "("), ("num", "1"), ("op", "/"), ("open", "(")]
                    out += [*_tokens(index), ("close", ")"), ("close", ")"), ("close", ")")]
                else:
                    arg, i = _group(s, i)
                    out += [("func", "sqrt"), ("open", "("), *_tokens(arg), ("close", ")")]
            elif name in _CONSTANTS:
                out.append(("const", _CONSTANTS[name]))
            elif name in _COMMAND_FUNCS:
                power: str | None = None
                if i < len(s) and s[i] == "^":  # "\sin^2 x" = (sin x)^2
                    power, i = _group(s, i + 1)
                while i < len(s) and s[i] == " ":
                    i += 1
                if i < len(s) and s[i] in "({":
                    arg, i = _group(s, i) if s[i] == "{" else _paren(s, i)
                else:  # "\cot x": the next atom is the argument
                    m2 = re.match(r"\d+|[a-zA-Z]|\\pi", s[i:])
                    if not m2:
                        raise ExprError(f"unsupported argument of \\{name}")
                    arg = m2.group(0)
                    i += m2.end()
                call = [
                    ("func", _COMMAND_FUNCS[name]),
                    ("open", "("),
                    *_tokens(arg),
                    ("close", ")"),
                ]
                if power is None:
                    out += call
                else:
                    out += [("open", "("), *call, ("close", ")"), ("op", "**"), ("open", "(")]
                    out += [*_tokens(power), ("close", ")")]
            else:
                raise ExprError(f"unsupported LaTeX command \\{name}")
        else:
            raise ExprError(f"unsupported character {ch!r}")
    return out


def to_expr(latex: str) -> str:
    """A Python/sympy expression for normalised LaTeX (``=`` becomes ``(lhs)-(rhs)``)."""
    if latex.count("=") == 1:
        lhs, rhs = latex.split("=")
        if not lhs.strip() or not rhs.strip():
            raise ExprError("empty side of an equation")
        return f"({to_expr(lhs)})-({to_expr(rhs)})"
    if "=" in latex or len(latex) > 500:
        raise ExprError("unsupported expression")
    # "2\\frac{1}{2}" is the mixed number 5/2, as parse_number reads it, not 2 * 1/2
    latex = _MIXED.sub(r"(\1+\\frac{\2}{\3})", latex)
    parts: list[str] = []
    previous = ""
    for kind, text in _tokens(latex):
        if previous in _VALUE_ATOMS and kind in ("num", "var", "const", "open", "func"):
            parts.append("*")
        parts.append(text)
        previous = kind
    expr = "".join(parts)
    if not expr:
        raise ExprError("empty expression")
    try:
        ast.parse(expr, mode="eval")
    except SyntaxError as exc:
        raise ExprError(f"malformed expression {expr!r}") from exc
    return expr


def free_symbols(expr: str) -> list[str]:
    """One-letter variables of an expression from :func:`to_expr`, sorted."""
    tree = ast.parse(expr, mode="eval")
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    return sorted(n for n in names if len(n) == 1 and n != "I")
