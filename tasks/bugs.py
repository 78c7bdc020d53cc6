"""Deterministic bug injection into Python source (one mutation, chosen by a seed).

Used by the HumanEval gate (every canonical solution with an injected bug
must fail its tests) and by the emulator to produce wrong code that fails
for real.  Mutations: a comparison flipped, an arithmetic or boolean
operator swapped, an integer constant or a ``range`` bound off by one, a
negation dropped, ``True``/``False`` swapped, a string constant altered, a
builtin replaced by its opposite (``max``/``min``, ``any``/``all``,
``sorted``/``list``...), a returned value changed (negated, or ``None``).  Only code inside function
bodies is touched (not signatures, annotations or docstrings).
"""

from __future__ import annotations

import ast
import copy
import random
from collections.abc import Callable, Iterator

__all__ = ["BugInjectionError", "inject_bug", "mutation_sites"]


class BugInjectionError(ValueError):
    """The code does not parse or contains no function to mutate."""


_COMPARE_FLIP: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Lt: ast.GtE,
    ast.GtE: ast.Lt,
    ast.Gt: ast.LtE,
    ast.LtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
}
_BINOP_SWAP: dict[type[ast.operator], type[ast.operator]] = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.Add,
    ast.Div: ast.Mult,
    ast.FloorDiv: ast.Mult,
    ast.Mod: ast.FloorDiv,
    ast.Pow: ast.Mult,
}

_NAME_SWAP = {
    "max": "min",
    "min": "max",
    "any": "all",
    "all": "any",
    "sorted": "list",
    "reversed": "iter",
    "floor": "ceil",
    "ceil": "floor",
    "abs": "int",
}

Mutation = Callable[[ast.AST], None]


def _sites_in(node: ast.AST) -> Iterator[tuple[str, ast.AST, Mutation]]:
    """(kind, node, mutate) for every mutable spot under ``node``, in source order."""
    if isinstance(node, ast.Compare):
        for i, op in enumerate(node.ops):
            if type(op) in _COMPARE_FLIP:

                def flip(n: ast.AST, i: int = i) -> None:
                    assert isinstance(n, ast.Compare)
                    n.ops[i] = _COMPARE_FLIP[type(n.ops[i])]()

                yield "compare", node, flip
    elif isinstance(node, ast.BinOp | ast.AugAssign) and type(node.op) in _BINOP_SWAP:

        def swap(n: ast.AST) -> None:
            assert isinstance(n, ast.BinOp | ast.AugAssign)
            n.op = _BINOP_SWAP[type(n.op)]()

        yield "arith", node, swap
    elif isinstance(node, ast.BoolOp):

        def and_or(n: ast.AST) -> None:
            assert isinstance(n, ast.BoolOp)
            n.op = ast.Or() if isinstance(n.op, ast.And) else ast.And()

        yield "boolean", node, and_or
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not | ast.USub):

        def drop(n: ast.AST) -> None:
            assert isinstance(n, ast.UnaryOp)
            if isinstance(n.op, ast.USub):  # "-x" -> "+x"
                n.op = ast.UAdd()
            else:  # "not x" -> "not not x": the negation is undone, the value stays a bool
                n.operand = ast.UnaryOp(op=ast.Not(), operand=n.operand)

        yield "negation", node, drop
    elif isinstance(node, ast.Constant) and isinstance(node.value, bool):

        def negate(n: ast.AST) -> None:
            assert isinstance(n, ast.Constant)
            n.value = not n.value

        yield "bool_constant", node, negate
    elif isinstance(node, ast.Constant) and type(node.value) is int:

        def off_by_one(n: ast.AST) -> None:
            assert isinstance(n, ast.Constant) and isinstance(n.value, int)
            n.value = n.value + 1

        yield "constant", node, off_by_one
    elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value:

        def garble(n: ast.AST) -> None:
            assert isinstance(n, ast.Constant) and isinstance(n.value, str)
            n.value = n.value[1:] if len(n.value) > 1 else n.value + n.value

        yield "string", node, garble
    elif isinstance(node, ast.Name) and node.id in _NAME_SWAP and isinstance(node.ctx, ast.Load):

        def rename(n: ast.AST) -> None:
            assert isinstance(n, ast.Name)
            n.id = _NAME_SWAP[n.id]

        yield "builtin", node, rename
    elif (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "range"
        and node.args
    ):

        def widen(n: ast.AST) -> None:
            assert isinstance(n, ast.Call)
            end = 0 if len(n.args) == 1 else 1
            n.args[end] = ast.BinOp(left=n.args[end], op=ast.Add(), right=ast.Constant(1))

        yield "range", node, widen
    elif isinstance(node, ast.Return) and node.value is not None:

        def change_return(n: ast.AST) -> None:
            assert isinstance(n, ast.Return) and n.value is not None
            if isinstance(n.value, ast.Compare | ast.BoolOp) or (
                isinstance(n.value, ast.UnaryOp) and isinstance(n.value.op, ast.Not)
            ):
                n.value = ast.UnaryOp(op=ast.Not(), operand=n.value)
            else:
                n.value = ast.Constant(None)

        yield "return", node, change_return
    for child in _children(node):
        yield from _sites_in(child)


def _children(node: ast.AST) -> Iterator[ast.AST]:
    for name, value in ast.iter_fields(node):
        if name in ("annotation", "returns", "type_comment", "decorator_list"):
            continue
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and name == "args":
            continue  # defaults and annotations of the signature stay as they are
        if isinstance(value, list):
            for i, item in enumerate(value):
                if i == 0 and name == "body" and _is_docstring(item):
                    continue
                if isinstance(item, ast.AST):
                    yield item
        elif isinstance(value, ast.AST):
            yield value


def _is_docstring(node: object) -> bool:
    return (
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    )


def _function_sites(tree: ast.Module) -> list[tuple[str, ast.AST, Mutation]]:
    sites: list[tuple[str, ast.AST, Mutation]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for stmt in node.body:
                if stmt is node.body[0] and _is_docstring(stmt):
                    continue
                if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
                    continue  # nested functions are visited on their own by ast.walk
                sites.extend(_sites_in(stmt))
    return sites


def _parse(code: str) -> ast.Module:
    try:
        return ast.parse(code)
    except (SyntaxError, ValueError) as exc:
        raise BugInjectionError(f"code does not parse: {exc}") from exc


def mutation_sites(code: str) -> list[str]:
    """The kinds of the mutable spots of ``code`` in order (for inspection and tests)."""
    return [kind for kind, _, _ in _function_sites(_parse(code))]


def inject_bug(code: str, seed: int) -> str:
    """``code`` with one bug: the mutation site is chosen by ``seed`` (deterministic).

    Returns source rendered by ``ast.unparse`` (comments are lost).  Code with
    no mutable spot gets its first function returning ``None`` immediately.
    Raises :class:`BugInjectionError` if the code does not parse or has no function.
    """
    tree = _parse(code)
    mutant = copy.deepcopy(tree)
    sites = _function_sites(mutant)
    if sites:
        _, node, mutate = sites[random.Random(f"inject_bug:{seed}").randrange(len(sites))]
        mutate(node)
    else:
        functions = [n for n in ast.walk(mutant) if isinstance(n, ast.FunctionDef)]
        if not functions:
            raise BugInjectionError("code defines no function")
        body = functions[0].body
        at = 1 if body and _is_docstring(body[0]) else 0
        body.insert(at, ast.Return(value=ast.Constant(None)))
    ast.fix_missing_locations(mutant)
    return ast.unparse(mutant)
