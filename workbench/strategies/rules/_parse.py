"""The rule text parser: a lark LALR grammar whose callbacks build the rule JSON as they reduce.

Nothing is evaluated: the text becomes JSON, which ``_model.normalise`` checks. The LALR parser
and its callbacks use no recursion, the input length and the nesting depth are bounded, so
hostile input (deep nesting, huge numbers, unicode, code) ends in a RuleError, quickly.
"""

from __future__ import annotations

import math
from functools import cache
from typing import Any, cast

from lark import Lark, Token, Transformer
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from workbench.errors import RuleError
from workbench.strategies.rules import _model as m

MAX_TEXT = 20_000  # characters

_GRAMMAR = r"""
start: _statement*

_statement: vars | leverage | buy | sell | exit

vars: VARS var_decl ("," var_decl)*
var_decl: NAME "=" signed
leverage: LEVERAGE number
buy: BUY size WHEN condition _protection*
sell: SELL size WHEN condition _protection*
exit: EXIT SIDE WHEN condition

size: number "%" ("of" "balance")?     -> percent
    | number "units"                    -> units

_protection: stop_loss | take_profit | trailing_stop
stop_loss: STOP_LOSS number "%"
take_profit: TAKE_PROFIT number "%" ("," number "%")*
trailing_stop: TRAILING_STOP number "%"

?condition: or_group
?or_group: and_group ("or" and_group)*
?and_group: not_group ("and" not_group)*
?not_group: NOT not_group                 -> negation
          | comparison
          | "(" condition ")"
comparison: operand COMPARATOR operand

?operand: signed | variable | indicator
indicator: NAME arguments? output?
arguments: "(" [number ("," number)*] ")"
output: "." NAME

?number: signed | variable
signed: MINUS? NUMBER
variable: VAR

VARS: "vars"
LEVERAGE: "leverage"
BUY: "buy"
SELL: "sell"
EXIT: "exit"
WHEN: "when"
NOT: "not"
STOP_LOSS: "stop_loss"
TAKE_PROFIT: "take_profit"
TRAILING_STOP: "trailing_stop"
SIDE: "long" | "short"
COMPARATOR: ">=" | "<=" | ">" | "<" | "crosses_above" | "crosses_below"
MINUS: "-"
NUMBER: /[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?/
VAR: /\$[A-Za-z_][A-Za-z0-9_]*/
NAME: /[A-Za-z_][A-Za-z0-9_]*/

%ignore /[ \t\r\n]+/
"""

# how the parser's terminals read in an error message
_READABLE = {
    "NUMBER": "a number",
    "VAR": "a $variable",
    "NAME": "a name (an indicator, or a variable in vars)",
    "SIDE": "long or short",
    "COMPARATOR": "a comparison (>, <, >=, <=, crosses_above, crosses_below)",
    "$END": "the end of the text",
}


class _Int(int):
    """A number from the text that remembers where it was (errors about it point there)."""

    line: int
    column: int


class _Float(float):
    """A number from the text, with a fraction or an exponent."""

    line: int
    column: int


class _Node(dict):
    """A JSON object from the text that remembers where it started."""

    line: int
    column: int


def _at(value: Any, where: Token | Any) -> Any:
    value.line, value.column = where.line, where.column
    return value


class _Build(Transformer):
    """Callbacks the LALR parser runs on each reduction: they build the rule JSON directly (no
    tree, no recursion), with positions on its objects and numbers for the checks after."""

    def signed(self, children: list[Token]) -> _Int | _Float:
        token = children[-1]
        text = ("-" if len(children) == 2 else "") + token
        try:
            value = _Float(text) if any(c in text for c in ".eE") else _Int(text)
        except ValueError:
            raise _fail(token, f"the number {token[:12]}... has too many digits") from None
        if not math.isfinite(value):
            raise _fail(token, f"the number {token[:12]}{'...' if len(token) > 12 else ''} is too large")
        return _at(value, children[0])

    def variable(self, children: list[Token]) -> _Node:
        return _at(_Node(var=str(children[0])[1:]), children[0])

    def arguments(self, children: list[Any]) -> tuple[str, list]:
        return "params", [c for c in children if c is not None]

    def output(self, children: list[Token]) -> tuple[str, str]:
        return "output", str(children[0])

    def indicator(self, children: list[Any]) -> _Node:
        name, parts = children[0], dict(children[1:])
        if "params" in parts and not parts["params"]:
            del parts["params"]  # RSI() reads as RSI: the defaults
        return _at(_Node(indicator=str(name), **parts), name)

    def comparison(self, children: list[Any]) -> _Node:
        left, op, right = children
        return _at(_Node(left=left, op=str(op), right=right), left)

    def negation(self, children: list[Any]) -> _Node:
        return _at(_Node({"not": children[1]}), children[0])

    def and_group(self, children: list[Any]) -> _Node:
        return _at(_Node({"and": children}), children[0])

    def or_group(self, children: list[Any]) -> _Node:
        return _at(_Node({"or": children}), children[0])

    def percent(self, children: list[Any]) -> _Node:
        return _at(_Node(percent=children[0]), children[0])

    def units(self, children: list[Any]) -> _Node:
        return _at(_Node(units=children[0]), children[0])

    def stop_loss(self, children: list[Any]) -> tuple[str, Token, Any]:
        return "stop_loss", children[0], children[1]

    def trailing_stop(self, children: list[Any]) -> tuple[str, Token, Any]:
        return "trailing_stop", children[0], children[1]

    def take_profit(self, children: list[Any]) -> tuple[str, Token, Any]:
        return "take_profit", children[0], children[1:]

    def buy(self, children: list[Any]) -> tuple[str, Token, _Node]:
        return self._entry("long", children)

    def sell(self, children: list[Any]) -> tuple[str, Token, _Node]:
        return self._entry("short", children)

    @staticmethod
    def _entry(side: str, children: list[Any]) -> tuple[str, Token, _Node]:
        keyword, size, _, condition, *protections = children
        node = _at(_Node(entry=condition, size=size), keyword)
        for what, token, value in protections:
            if what in node:
                raise _fail(token, f"{what} is given twice in this {keyword} rule")
            node[what] = value
        return side, keyword, node

    def exit(self, children: list[Any]) -> tuple[str, Token, Any]:
        return f"exit {children[1]}", children[0], children[3]

    def var_decl(self, children: list[Any]) -> tuple[Token, Any]:
        return children[0], children[1]

    def vars(self, children: list[Any]) -> tuple[str, Token, list]:
        return "vars", children[0], children[1:]

    def leverage(self, children: list[Any]) -> tuple[str, Token, Any]:
        return "leverage", children[0], children[1]

    def start(self, statements: list[tuple[str, Token, Any]]) -> dict[str, Any]:
        rules: dict[str, Any] = {"vars": {}}
        seen: dict[str, Token] = {}
        for what, keyword, value in statements:
            if what in seen:
                again = {"long": "buy", "short": "sell"}.get(what, what)
                raise _fail(
                    keyword,
                    f"a second {again} rule (the first is at line {seen[what].line}); combine the conditions with or",
                )
            seen[what] = keyword
            if what == "vars":
                for name, number in value:
                    if str(name) in rules["vars"]:
                        raise _fail(name, f"variable {str(name)!r} is declared twice")
                    rules["vars"][str(name)] = number
            elif not what.startswith("exit "):
                rules[what] = value
        for what, keyword, value in statements:
            if what.startswith("exit "):
                side = what[5:]
                if side not in rules:
                    raise _fail(keyword, f"'{what}' needs a {'buy' if side == 'long' else 'sell'} rule to exit from")
                rules[side]["exit"] = value
        return rules


def _fail(where: Any, message: str) -> RuleError:
    return RuleError(message, line=where.line, column=where.column)


@cache
def _parser() -> Lark:
    return Lark(_GRAMMAR, parser="lalr", lexer="contextual", maybe_placeholders=True, transformer=_Build())


def _expected(parser: Lark, names: set[str]) -> str:
    patterns = {t.name: t.pattern for t in parser.terminals}
    words = set()
    for name in names:
        if name in _READABLE:
            words.add(_READABLE[name])
        elif name in patterns and patterns[name].type == "str":
            words.add(repr(patterns[name].value))
        else:
            words.add(name.lower())
    return ", ".join(sorted(words))


def _end(text: str) -> tuple[int, int]:
    lines = text.split("\n")
    return len(lines), len(lines[-1]) + 1


def parse(text: Any) -> dict[str, Any]:
    """Rule text -> canonical rule JSON; RuleError with the line and column otherwise."""
    if not isinstance(text, str):
        raise RuleError(f"rule text must be a string, not {type(text).__name__}")
    if len(text) > MAX_TEXT:
        raise RuleError(f"the rule text is {len(text)} characters long; the limit is {MAX_TEXT}")
    parser = _parser()
    try:
        return m.normalise(parser.parse(text))
    except UnexpectedCharacters as exc:
        # lark declares pos_in_stream on the base class as None; UnexpectedCharacters sets the int
        position = cast(int, exc.pos_in_stream)
        char = text[position] if position < len(text) else ""
        expected = _expected(parser, _accepted(parser, text[:position]) or set(exc.allowed or ()))
        raise RuleError(
            f"unexpected character {char!r}; expected {expected}", line=exc.line, column=exc.column
        ) from None
    except UnexpectedToken as exc:
        token = exc.token
        if token.type == "$END":
            line, column = _end(text)
            got = "end of the text"
        else:
            line, column = token.line, token.column
            got = repr(str(token)[:40])
        expected = _expected(parser, set(exc.accepts or exc.expected))
        raise RuleError(f"unexpected {got}; expected {expected}", line=line, column=column) from None


def _accepted(parser: Lark, prefix: str) -> set[str]:
    """The tokens the grammar accepts after ``prefix`` (empty when the prefix has errors itself)."""
    try:
        interactive = parser.parse_interactive(prefix)
        interactive.exhaust_lexer()
        return set(interactive.accepts())
    except (UnexpectedInput, RuleError):
        return set()
