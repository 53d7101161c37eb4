"""The derived-feature expression language: one evaluator for training, evaluation and serving.

A derived feature is an expression over a record's columns, such as
``log1p(length_of_stay)`` or ``(hba1c > 8) * 1.0``, with pandas.eval's meaning. It is
evaluated per row, so a batch's features never depend on other batches. The model
pipeline's first step calls ``derive``, so the registered model computes its derived
features itself, identically wherever it scores.

Why the platform has its own evaluator: spec authors are not trusted, and neither
Python's ``eval`` (even without builtins) nor ``pandas.eval`` can be contained; attribute
access on any value (``age.__class__.__mro__``) reaches every class of the process. So an
expression is parsed once with :mod:`ast`, every node is checked against a small
allow-list, and the checked tree is turned into a chain of closures over operator
functions and listed numpy functions. No spec text reaches ``eval``, ``exec``, an import
or ``getattr``; a column name is only ever a key of the frame.

The language: column names; numeric literals (``True``/``False`` too); string literals
only as an operand of ``==``/``!=`` (a categorical column against one of its values);
``+ - * / ** % //`` and unary ``-``/``+``; ``< <= > >= == !=`` (chains allowed);
``& | and or`` (looser than comparisons, as in pandas.eval), ``~ not`` (elementwise
invert, as in pandas.eval); parentheses; and the functions in ``FUNCTIONS``.
"""

from __future__ import annotations

import ast
import functools
import io
import operator
import tokenize
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

MAX_LENGTH = 1_000  # characters: a feature formula, not a program; bounds parsing work and recursion


def _coalesce(value, fallback):
    """``value`` where it is present, else ``fallback`` (missing values filled per row)."""
    return np.where(pd.isna(value), fallback, value)


# The functions pandas.eval offers in expressions, by the numpy functions it maps them to.
EVAL_FUNCTIONS = {
    name: getattr(np, name)
    for name in (
        "sin", "cos", "tan", "exp", "expm1", "log", "log10", "log1p", "sqrt", "sinh", "cosh", "tanh",
        "arcsin", "arccos", "arctan", "arccosh", "arcsinh", "arctanh", "abs", "floor", "ceil", "arctan2",
    )
}  # fmt: skip
# Every function an expression may call, with its number of arguments: pandas.eval's, plus a
# few vectorised helpers that clinical features need (caps, conditions, missing values).
FUNCTIONS: dict[str, tuple[Callable, int]] = {
    **{name: (function, 2 if name == "arctan2" else 1) for name, function in EVAL_FUNCTIONS.items()},
    "where": (np.where, 3),
    "clip": (np.clip, 3),
    "minimum": (np.minimum, 2),
    "maximum": (np.maximum, 2),
    "isnan": (pd.isna, 1),
    "coalesce": (_coalesce, 2),
}

_BINARY = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.Mod: operator.mod, ast.FloorDiv: operator.floordiv,
}  # fmt: skip
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Invert: operator.invert, ast.Not: operator.invert}
_COMPARE = {
    ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
    ast.Eq: operator.eq, ast.NotEq: operator.ne,
}  # fmt: skip
_BOOLEAN = {ast.And: operator.and_, ast.Or: operator.or_}

# What a reader calls the constructs the language leaves out, for error messages.
_CONSTRUCTS = {
    ast.Attribute: "attribute access", ast.Subscript: "subscript", ast.Lambda: "lambda",
    ast.ListComp: "comprehension", ast.SetComp: "comprehension", ast.DictComp: "comprehension",
    ast.GeneratorExp: "comprehension", ast.JoinedStr: "f-string", ast.FormattedValue: "f-string",
    ast.Starred: "starred argument", ast.keyword: "keyword argument", ast.IfExp: "conditional expression",
    ast.NamedExpr: "assignment expression", ast.arg: "lambda parameter", ast.List: "list", ast.Tuple: "tuple", ast.Dict: "dict",
    ast.Set: "set", ast.Slice: "slice", ast.Await: "await", ast.Yield: "yield", ast.YieldFrom: "yield",
    ast.BitXor: "operator ^", ast.LShift: "operator <<", ast.RShift: "operator >>", ast.MatMult: "operator @",
    ast.In: "operator in", ast.NotIn: "operator not in", ast.Is: "operator is", ast.IsNot: "operator is not",
}  # fmt: skip

Evaluator = Callable[[Mapping[str, Any]], Any]


@dataclass(frozen=True)
class Expression:
    """A checked expression: the columns and functions it names, and its compiled evaluator."""

    text: str
    columns: frozenset[str]
    functions: frozenset[str]
    evaluate: Evaluator


# --------------------------------------------------------------------------- #
# Parsing
# --------------------------------------------------------------------------- #
def _pandas_precedence(expression: str) -> tuple[str, list[int]]:
    """``&``/``|`` rewritten to ``and``/``or``, as pandas.eval does, so they bind looser than
    comparisons; with, per character of the result, its position in the original text."""
    out: list[str] = []
    origin: list[int] = []
    position = 0
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(expression).readline))
    except (tokenize.TokenError, SyntaxError) as exc:
        raise ValueError(f"not a complete expression ({exc.args[0]})") from None
    for token in tokens:
        start, end = token.start[1], token.end[1]
        if not token.string or token.start[0] != 1:
            continue
        out.append(expression[position:start])
        origin.extend(range(position, start))
        text = (
            {"&": " and ", "|": " or "}.get(token.string, token.string) if token.type == tokenize.OP else token.string
        )
        out.append(text)
        origin.extend([start] * len(text) if text != token.string else range(start, end))
        position = end
    return "".join(out), origin


def _where(node: ast.AST, source: str, origin: list[int]) -> str:
    """'at character N' of the original expression (1-based), for a node of the rewritten one."""
    column = len(source.encode()[: getattr(node, "col_offset", 0)].decode("utf-8", errors="ignore"))
    return f"at character {origin[min(column, len(origin) - 1)] + 1}" if origin else "at character 1"


def _anchor(node: ast.AST) -> int:
    """Where a construct starts for a reader: an attribute at its dot, a subscript at its
    bracket, a call of an expression at its parenthesis, anything else at its first character."""
    inner = getattr(node, "value", None) if isinstance(node, ast.Attribute | ast.Subscript) else None
    if isinstance(node, ast.Call) and not isinstance(node.func, ast.Name):
        inner = node.func
    return inner.end_col_offset if inner is not None else node.col_offset


def _construct(node: ast.AST) -> str:
    return _CONSTRUCTS.get(type(node), type(node).__name__)


class _Compiler:
    """Checks each node against the allow-list and builds its evaluator: a closure over
    operator functions and listed numpy functions, never over the spec's text."""

    def __init__(self, source: str, origin: list[int]):
        self.source, self.origin = source, origin
        self.columns: set[str] = set()
        self.functions: set[str] = set()

    def refuse(self, node: ast.AST, construct: str | None = None, hint: str = "") -> ValueError:
        construct = construct or _construct(node)
        return ValueError(
            f"{construct} {_where(node, self.source, self.origin)} is not allowed in a derived feature{hint}"
        )

    def first_refused(self, tree: ast.Expression) -> None:
        """Refuse the construct the reader meets first, so ``age.__class__.__mro__[-1]`` is
        reported as the attribute access after ``age``, not as the subscript around it all."""
        allowed = self.nodes
        found = [
            (_anchor(node), node)
            for node in ast.walk(tree.body)
            if (isinstance(node, ast.expr | ast.keyword | ast.arg) and type(node) not in allowed)
            or (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id not in FUNCTIONS)
        ]
        if found:
            at, node = min(found, key=lambda item: item[0])
            if isinstance(node, ast.Call):
                self.compile(node)  # says which function was called
            hint = "; use where(condition, a, b)" if isinstance(node, ast.IfExp) else ""
            raise self.refuse(ast.Name(col_offset=at), _construct(node), hint)

    @property
    def nodes(self) -> dict[type, Callable[[Any], Evaluator]]:
        """The allowed syntax: each node type with the method that compiles it."""
        return {
            ast.Name: self._name, ast.Constant: self._constant, ast.BinOp: self._binary,
            ast.UnaryOp: self._unary, ast.BoolOp: self._boolean, ast.Compare: self._compare, ast.Call: self._call,
        }  # fmt: skip

    def compile(self, node: ast.AST) -> Evaluator:
        method = self.nodes.get(type(node))
        if method is None:
            raise self.refuse(node)
        return method(node)

    def _name(self, node: ast.Name) -> Evaluator:
        name = node.id
        self.columns.add(name)
        return lambda columns: columns[name]

    def _constant(self, node: ast.Constant, text_allowed: bool = False) -> Evaluator:
        value = node.value
        if isinstance(value, str) and not text_allowed:
            raise self.refuse(node, "a string literal", "; strings are only compared with == or != to a column")
        if not isinstance(value, bool | int | float | str):
            raise self.refuse(node, f"the literal {value!r}")
        return lambda columns: value

    def _binary(self, node: ast.BinOp) -> Evaluator:
        if isinstance(node.op, ast.Pow):
            function = _power
        elif type(node.op) in _BINARY:
            function = _BINARY[type(node.op)]
        elif type(node.op) in (ast.BitAnd, ast.BitOr):
            raise self.refuse(node, "operator & or | here")  # cannot happen after the rewrite
        else:
            raise self.refuse(node, _construct(node.op))
        left, right = self.compile(node.left), self.compile(node.right)
        return lambda columns: function(left(columns), right(columns))

    def _unary(self, node: ast.UnaryOp) -> Evaluator:
        function, operand = _UNARY[type(node.op)], self.compile(node.operand)
        return lambda columns: function(operand(columns))

    def _boolean(self, node: ast.BoolOp) -> Evaluator:
        function, operands = _BOOLEAN[type(node.op)], [self.compile(v) for v in node.values]
        return lambda columns: functools.reduce(function, (operand(columns) for operand in operands))

    def _compare(self, node: ast.Compare) -> Evaluator:
        """``a < b < c`` is ``(a < b) & (b < c)``, as in pandas.eval."""
        pairs = []
        left = node.left
        for op, right in zip(node.ops, node.comparators, strict=True):
            if type(op) not in _COMPARE:
                raise self.refuse(node, _construct(op))
            text_allowed = isinstance(op, ast.Eq | ast.NotEq)
            pairs.append((_COMPARE[type(op)], self._operand(left, text_allowed), self._operand(right, text_allowed)))
            left = right
        return lambda columns: functools.reduce(operator.and_, (f(a(columns), b(columns)) for f, a, b in pairs))

    def _operand(self, node: ast.AST, text_allowed: bool) -> Evaluator:
        if isinstance(node, ast.Constant):
            return self._constant(node, text_allowed)
        return self.compile(node)

    def _call(self, node: ast.Call) -> Evaluator:
        if not isinstance(node.func, ast.Name):
            raise self.refuse(node, "a call of something that is not a function name")
        if node.func.id not in FUNCTIONS:
            raise self.refuse(
                node, f"a call of '{node.func.id}'", f"; the functions are {', '.join(sorted(FUNCTIONS))}"
            )
        for argument in [*node.args, *node.keywords]:
            if isinstance(argument, ast.Starred | ast.keyword):
                raise self.refuse(argument if isinstance(argument, ast.Starred) else node, _construct(argument))
        name = node.func.id
        function, arity = FUNCTIONS[name]
        if len(node.args) != arity:
            raise self.refuse(node, f"{name}() with {len(node.args)} argument(s)", f"; it takes {arity}")
        self.functions.add(name)
        arguments = [self.compile(a) for a in node.args]
        return lambda columns: function(*(argument(columns) for argument in arguments))


def _power(base, exponent):
    """``**``, except that integers whose power would exceed 4,096 bits are raised as floats:
    ``9 ** 9 ** 9`` in a spec must not compute a number of millions of digits at load time."""
    if isinstance(base, int) and isinstance(exponent, int) and base.bit_length() * abs(exponent) > 4096:
        return float(base) ** exponent
    return base**exponent


@functools.lru_cache(maxsize=512)
def parse(expression: str) -> Expression:
    """Parse and check an expression once; ``ValueError`` names the construct and where it is."""
    if not isinstance(expression, str) or not expression.strip():
        raise ValueError("an expression is required, e.g. log1p(length_of_stay)")
    if len(expression) > MAX_LENGTH:
        raise ValueError(f"the expression is {len(expression)} characters long; at most {MAX_LENGTH}")
    flat = expression.replace("\r", " ").replace("\n", " ").replace("\t", " ")
    lead = len(flat) - len(flat.lstrip())
    source, origin = _pandas_precedence(flat.strip())
    origin = [lead + i for i in origin]
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as exc:
        at = origin[min(max((exc.offset or 1) - 1, 0), len(origin) - 1)] + 1 if origin else 1
        raise ValueError(f"not a valid expression: {exc.msg} at character {at}") from None
    compiler = _Compiler(source, origin)
    try:
        compiler.first_refused(tree)
        evaluate = compiler.compile(tree.body)
    except RecursionError:
        raise ValueError("the expression is nested too deeply") from None
    return Expression(expression, frozenset(compiler.columns), frozenset(compiler.functions), evaluate)


def referenced_names(expression: str) -> set[str]:
    """The names an expression uses (columns and functions), without evaluating it.

    The spec intersects them with its contract columns to know which raw columns the model
    pipeline must receive. An expression the language refuses names nothing.
    """
    try:
        parsed = parse(expression)
    except ValueError:
        return set()
    return set(parsed.columns | parsed.functions)


# --------------------------------------------------------------------------- #
# Evaluation
# --------------------------------------------------------------------------- #
def evaluate(df: pd.DataFrame, expression: str):
    """The expression over the frame's columns: pandas.eval's result, computed without it."""
    parsed = parse(expression)
    missing = sorted(parsed.columns - set(df.columns))
    if missing:
        raise ValueError(f"name '{missing[0]}' is not defined: it is not a column")
    values = parsed.evaluate(df)
    if isinstance(values, np.ndarray) and values.shape == (len(df),):
        values = pd.Series(values, index=df.index)
    return values


def derive(df: pd.DataFrame, derived: dict[str, str]) -> pd.DataFrame:
    """Add each derived column, evaluating its expression over the row's columns.

    Later derived features may use earlier ones, as they are columns of the frame by then.
    """
    out = df.copy()
    for name, expression in derived.items():
        try:
            values = evaluate(out, expression)
        except Exception as exc:  # noqa: BLE001 - name the failing expression, whatever numpy raised
            raise ValueError(f"derived feature '{name}' = {expression!r} cannot be computed: {exc}") from None
        out[name] = pd.to_numeric(values, errors="coerce").replace([np.inf, -np.inf], np.nan)
    return out
