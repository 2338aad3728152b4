"""The rule model: the JSON form of a rule strategy, its indicator catalogue and its checks.

A rule strategy (canonical JSON, what ``normalise`` returns and a saved strategy stores)::

    {"vars": {"fast": 12},                      # named numbers: defaults, and sweep axes
     "leverage": 1,                              # a number or {"var": name}
     "long":  {"entry": COND, "exit": COND or null,
               "size": {"percent": 10} or {"units": 0.5},
               "stop_loss": 0.5 or null,         # percent from the average entry
               "take_profit": [1, 2],            # percents, ascending; [] for none
               "trailing_stop": 1 or null},      # percent from the best price since entry
     "short": SIDE or null}

    COND    := {"and": [COND, COND, ...]} | {"or": [COND, COND, ...]} | {"not": COND}
             | {"left": OPERAND, "op": ">" | "<" | ">=" | "<=" | "crosses_above" | "crosses_below",
                "right": OPERAND}
    OPERAND := NUMBER | {"indicator": "EMA", "params": [NUMBER, ...], "output": "line"}
    NUMBER  := a JSON number | {"var": "fast"}

``output`` appears only on indicators that have several (MACD, BB, DONCHIAN). Every number of
a rule may be a variable; ``resolve`` substitutes the values and checks each against the
range of the place it is used in.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from workbench.errors import RuleError

MAX_DEPTH = 24  # nested and/or/not groups in one condition
MAX_LADDER = 8  # take-profit levels
MAX_VARS = 64
COMPARATORS = (">", "<", ">=", "<=", "crosses_above", "crosses_below")
SIDES = ("long", "short")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}\Z")


@dataclass(frozen=True)
class Arg:
    """One parameter of an indicator: a whole number (a window) or any number in a range."""

    name: str
    whole: bool
    low: float
    high: float
    default: float | None = None

    def describe(self) -> str:
        kind = "a whole number" if self.whole else "a number"
        return f"{kind} from {_fmt(self.low)} to {_fmt(self.high)}"


@dataclass(frozen=True)
class Indicator:
    """An indicator rules can use: its parameters, outputs and the cache key of a value."""

    name: str
    args: tuple[Arg, ...]
    key: Callable[..., tuple]  # (args..., output) -> workbench.engine.indicators key
    help: str
    outputs: tuple[str, ...] = ()
    default_output: str | None = None

    def signature(self) -> str:
        args = f"({', '.join(a.name for a in self.args)})" if self.args else ""
        return self.name + args + (f".{'|'.join(self.outputs)}" if self.outputs else "")


def _window(default: int | None = None) -> Arg:
    return Arg("window", True, 1, 100_000, default)


def _price(field: str, help: str) -> Indicator:
    return Indicator(field, (), lambda output: ("price", field), help)


INDICATORS: dict[str, Indicator] = {
    ind.name: ind
    for ind in (
        _price("open", "the bar's open"),
        _price("high", "the bar's high"),
        _price("low", "the bar's low"),
        _price("close", "the bar's close"),
        _price("volume", "the bar's volume"),
        Indicator(
            "EMA",
            (_window(),),
            lambda n, output: ("ema", n),
            "exponential moving average of the close, alpha 2/(window+1), seeded with the first close",
        ),
        Indicator("SMA", (_window(),), lambda n, output: ("sma", n), "simple moving average of the last window closes"),
        Indicator("RSI", (_window(14),), lambda n, output: ("rsi", n), "Wilder's relative strength index, 0 to 100"),
        Indicator(
            "MACD",
            (Arg("fast", True, 1, 100_000, 12), Arg("slow", True, 1, 100_000, 26), Arg("signal", True, 1, 100_000, 9)),
            lambda fast, slow, signal, output: ("macd", fast, slow, signal, output),
            "EMA(fast) - EMA(slow) of the close (line), its EMA(signal) (signal) and line - signal (hist)",
            ("line", "signal", "hist"),
            "line",
        ),
        Indicator(
            "BB",
            (_window(20), Arg("width", False, 0.01, 100, 2)),
            lambda n, width, output: ("bb", n, width, output),
            "Bollinger bands: SMA(window) of the close -/+ width population standard deviations",
            ("upper", "middle", "lower"),
            "middle",
        ),
        Indicator("ATR", (_window(14),), lambda n, output: ("atr", n), "Wilder's average true range"),
        Indicator(
            "DONCHIAN",
            (_window(),),
            lambda n, output: ("high_max" if output == "high" else "low_min", n),
            "highest high (high) / lowest low (low) of the window bars before this one (this bar excluded)",
            ("high", "low"),
        ),
    )
}
_BY_LOWER = {name.lower(): ind for name, ind in INDICATORS.items()}


def find_indicator(name: str) -> Indicator:
    """The indicator called ``name`` (any case); RuleError naming it and the known ones."""
    found = _BY_LOWER.get(name.lower()) if isinstance(name, str) else None
    if found is None:
        raise RuleError(f"unknown indicator {_short(name)}; the indicators are {', '.join(INDICATORS)}")
    return found


# -- numbers ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Range:
    """Where a number may go: whole or not, and its bounds (open or closed)."""

    what: str
    low: float
    high: float
    whole: bool = False
    low_open: bool = False

    def check(self, value: Any, var: str | None = None) -> int | float:
        number = _finite(value, self.what if var is None else f"${var} in {self.what}")
        too_low = number <= self.low if self.low_open else number < self.low
        if too_low or number > self.high or (self.whole and number != int(number)):
            given = f"${var} = {_fmt(number)}" if var is not None else _fmt(number)
            kind = "a whole number" if self.whole else "a number"
            bounds = (
                f"above {_fmt(self.low)} and at most {_fmt(self.high)}"
                if self.low_open
                else f"from {_fmt(self.low)} to {_fmt(self.high)}"
            )
            raise RuleError(f"{given} is not allowed; expected {kind} {bounds}", path=self.what)
        return int(number) if self.whole else number


ANY = Range("a comparison", -math.inf, math.inf)
PERCENT = Range("size (percent of the balance)", 0, 100, low_open=True)
UNITS = Range("size (units)", 0, 1e15, low_open=True)
LEVERAGE = Range("leverage", 1, 125, whole=True)


def _protection(what: str, side: str) -> Range:
    return _PROTECTIONS[what, side]


# a long's stop (and a short's take-profit) below 100% keeps the price positive
_PROTECTIONS = {
    (what, side): Range(
        f"{side} {what} (percent)", 0, 1000.0 if (side == "long") == (what == "take_profit") else 99.99, low_open=True
    )
    for what in ("stop_loss", "take_profit", "trailing_stop")
    for side in SIDES
}


def _finite(value: Any, what: str) -> int | float:
    """``value`` as a plain Python int or float (numpy numbers too); RuleError if not finite."""
    if type(value) is float and math.isfinite(value) or type(value) is int and -1e300 < value < 1e300:
        return value  # the common case, without the slower checks below
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise RuleError(f"{_short(value)} is not a number", path=what)
    try:
        ok = math.isfinite(float(value))
    except OverflowError:
        ok = False
    if not ok:
        raise RuleError(f"{_short(value)} is not a finite number", path=what)
    return int(value) if isinstance(value, numbers.Integral) else float(value)


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else repr(float(value))


def _short(value: Any) -> str:
    """A value for a message: scalars shortened, containers by type (never a deep repr)."""
    if isinstance(value, (list, tuple, dict, set)) or not isinstance(value, (str, int, float, type(None))):
        return f"a {type(value).__name__}"
    text = repr(value)
    return text if len(text) <= 40 else text[:20] + "..." + text[-10:]


def _located(check: Callable[..., Any]) -> Callable[..., Any]:
    """Point a RuleError raised while checking ``node`` at the node's text position, when the
    node came from rule text (the parser's objects and numbers carry ``line`` and ``column``)
    and nothing inside it was pointed at already."""

    def run(self: _Normaliser, node: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return check(self, node, *args, **kwargs)
        except RuleError as exc:
            line = getattr(node, "line", None)
            if exc.line is not None or line is None:
                raise
            raise RuleError(exc.reason, path=exc.path, line=line, column=node.column) from None

    return run


# -- normalise: any accepted JSON -> the canonical JSON -------------------------------------
class _Normaliser:
    """Checks a rule strategy's structure and literal numbers; names the path of what is wrong."""

    def __init__(self, declared: set[str]):
        self.declared = declared

    @_located
    def number(self, value: Any, where: Range, path: str) -> Any:
        if isinstance(value, Mapping):
            _keys(value, {"var"}, {"var"}, path)
            name = value["var"]
            if name not in self.declared:
                raise RuleError(
                    f'unknown variable {name!r}; declare it in "vars"'
                    + (f" (declared: {', '.join(sorted(self.declared))})" if self.declared else ""),
                    path=path,
                )
            return {"var": name}
        try:
            return where.check(value)
        except RuleError as exc:
            # the range's label only repeats the path: the reason alone
            repeats = exc.path == where.what and where.what.split(" (")[0].replace(" ", ".") == path
            raise RuleError(exc.reason if repeats else str(exc), path=path) from None

    @_located
    def condition(self, node: Any, path: str, depth: int = 0) -> dict[str, Any]:
        if depth > MAX_DEPTH:
            raise RuleError(f"conditions nest deeper than {MAX_DEPTH} levels", path=path)
        if not isinstance(node, Mapping):
            raise RuleError(f"expected a condition object, not {_short(node)}", path=path)
        for group in ("and", "or"):
            if group in node:
                _keys(node, {group}, {group}, path)
                items = node[group]
                if not isinstance(items, list) or len(items) < 2:
                    raise RuleError("expected a list of at least 2 conditions", path=f"{path}.{group}")
                return {group: [self.condition(c, f"{path}.{group}[{i}]", depth + 1) for i, c in enumerate(items)]}
        if "not" in node:
            _keys(node, {"not"}, {"not"}, path)
            return {"not": self.condition(node["not"], f"{path}.not", depth + 1)}
        _keys(
            node,
            {"left", "op", "right"},
            {"left", "op", "right"},
            path,
            hint="a comparison {left, op, right}, or {and: [...]}, {or: [...]}, {not: ...}",
        )
        if node["op"] not in COMPARATORS:
            raise RuleError(
                f"{_short(node['op'])} is not a comparison; expected one of {', '.join(COMPARATORS)}", path=f"{path}.op"
            )
        return {
            "left": self.operand(node["left"], f"{path}.left"),
            "op": node["op"],
            "right": self.operand(node["right"], f"{path}.right"),
        }

    @_located
    def operand(self, node: Any, path: str) -> Any:
        if isinstance(node, Mapping) and "var" in node or isinstance(node, numbers.Real):
            return self.number(node, ANY, path)
        if not isinstance(node, Mapping):
            raise RuleError(
                f'expected a number, {{"var": name}} or {{"indicator": name, ...}}, not {_short(node)}', path=path
            )
        _keys(node, {"indicator"}, {"indicator", "params", "output"}, path)
        try:
            ind = find_indicator(node["indicator"])
        except RuleError as exc:
            raise RuleError(exc.reason, path=f"{path}.indicator") from None
        params = node.get("params", [])
        if not isinstance(params, list) or len(params) > len(ind.args):
            raise RuleError(f"{ind.name} takes {len(ind.args)} parameter(s): {ind.signature()}", path=f"{path}.params")
        values = []
        for i, arg in enumerate(ind.args):
            if i < len(params):
                values.append(self.number(params[i], _arg_range(ind, arg), f"{path}.params[{i}]"))
            elif arg.default is None:
                raise RuleError(f"{ind.name} needs its {arg.name} ({ind.signature()})", path=f"{path}.params")
            else:
                values.append(arg.default)
        out = {"indicator": ind.name, "params": values}
        output = node.get("output", ind.default_output)
        if ind.outputs:
            if output not in ind.outputs:
                raise RuleError(
                    f"{ind.name} has the outputs {', '.join(ind.outputs)}"
                    + (f", not {_short(output)}" if output is not None else "; choose one"),
                    path=f"{path}.output",
                )
            out["output"] = output
        elif output is not None:
            raise RuleError(f"{ind.name} has a single output; remove {_short(output)}", path=f"{path}.output")
        return out

    @_located
    def side(self, node: Any, side: str) -> dict[str, Any] | None:
        if node is None:
            return None
        if not isinstance(node, Mapping):
            raise RuleError("expected an object with an entry condition, or null", path=side)
        _keys(node, {"entry"}, {"entry", "exit", "size", "stop_loss", "take_profit", "trailing_stop"}, side)
        size = node.get("size", {"percent": 100})
        if not isinstance(size, Mapping) or len(size) != 1 or next(iter(size)) not in ("percent", "units"):
            raise RuleError(
                f'expected {{"percent": number}} or {{"units": number}}, not {_short(size)}', path=f"{side}.size"
            )
        kind = next(iter(size))
        ladder = node.get("take_profit")
        ladder = [] if ladder is None else ladder
        if not isinstance(ladder, list) or len(ladder) > MAX_LADDER:
            raise RuleError(f"expected a list of at most {MAX_LADDER} percents", path=f"{side}.take_profit")
        exit_ = node.get("exit")
        return {
            "entry": self.condition(node["entry"], f"{side}.entry"),
            "exit": None if exit_ is None else self.condition(exit_, f"{side}.exit"),
            "size": {kind: self.number(size[kind], PERCENT if kind == "percent" else UNITS, f"{side}.size.{kind}")},
            "stop_loss": self._optional(node, "stop_loss", side),
            "take_profit": [
                self.number(v, _protection("take_profit", side), f"{side}.take_profit[{i}]")
                for i, v in enumerate(ladder)
            ],
            "trailing_stop": self._optional(node, "trailing_stop", side),
        }

    def _optional(self, node: Mapping, what: str, side: str) -> Any:
        value = node.get(what)
        return None if value is None else self.number(value, _protection(what, side), f"{side}.{what}")


def _arg_range(ind: Indicator, arg: Arg) -> Range:
    return _ARG_RANGES[ind.name, arg.name]


_ARG_RANGES = {
    (ind.name, arg.name): Range(f"{ind.name} {arg.name}", arg.low, arg.high, whole=arg.whole)
    for ind in INDICATORS.values()
    for arg in ind.args
}


def _keys(node: Mapping, required: set[str], allowed: set[str], path: str, hint: str | None = None) -> None:
    if not all(isinstance(k, str) for k in node):
        raise RuleError("keys must be strings", path=path)
    missing, extra = sorted(required - set(node)), sorted(set(node) - allowed)
    if missing or extra:
        what = f"missing {missing[0]!r}" if missing else f"unknown key {_short(extra[0])}"
        raise RuleError(f"{what}; expected {hint or 'the keys ' + ', '.join(sorted(allowed))}", path=path)


def normalise(rules: Any) -> dict[str, Any]:
    """The canonical JSON of a rule strategy (defaults filled in, names in their canonical case).

    Raises RuleError naming the path of the first problem (``long.entry.and[1].left: ...``).
    Values given to variables are checked where they are used (``resolve``).
    """
    if not isinstance(rules, Mapping):
        raise RuleError(f"a rule strategy is a JSON object (or rule text), not {_short(rules)}")
    _keys(rules, set(), {"vars", "leverage", *SIDES}, "rules")
    declared = rules.get("vars")
    declared = {} if declared is None else declared
    if not isinstance(declared, Mapping) or len(declared) > MAX_VARS:
        raise RuleError(f"expected an object of at most {MAX_VARS} {{name: number}}", path="vars")
    for name in declared:
        if not isinstance(name, str) or not _NAME.match(name):
            raise RuleError(
                f"{_short(name)} is not a variable name (letters, digits and _, not starting with a digit)",
                path="vars",
            )
    declared = {name: _finite(value, f"vars.{name}") for name, value in declared.items()}
    check = _Normaliser(set(declared))
    out = {"vars": declared, "leverage": check.number(rules.get("leverage", 1), LEVERAGE, "leverage")}
    for side in SIDES:
        out[side] = check.side(rules.get(side), side)
    if out["long"] is None and out["short"] is None:
        raise RuleError("a rule strategy needs a long (buy) or a short (sell) rule")
    resolve(out)  # the declared values must fit wherever they are used
    return out


# -- resolve: substitute the variables, check each value where it is used --------------------
def resolve(rules: Mapping[str, Any], values: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Canonical rules with every variable replaced by its value (``values`` override the
    declared defaults); RuleError naming the variable when a value does not fit its place."""
    table = {**rules["vars"], **(values or {})}

    def num(value: Any, where: Range) -> Any:  # canonical JSON: objects are dicts
        if isinstance(value, dict):
            return where.check(table[value["var"]], value["var"])
        return value

    def operand(node: Any) -> Any:
        if not isinstance(node, dict) or "var" in node:
            return num(node, ANY)
        ind = INDICATORS[node["indicator"]]
        return {**node, "params": [num(v, _arg_range(ind, a)) for v, a in zip(node["params"], ind.args)]}

    def condition(node: Mapping) -> dict[str, Any]:
        for group in ("and", "or"):
            if group in node:
                return {group: [condition(c) for c in node[group]]}
        if "not" in node:
            return {"not": condition(node["not"])}
        return {"left": operand(node["left"]), "op": node["op"], "right": operand(node["right"])}

    out: dict[str, Any] = {"vars": {}, "leverage": num(rules["leverage"], LEVERAGE)}
    for side in SIDES:
        node = rules[side]
        if node is None:
            out[side] = None
            continue
        kind, amount = next(iter(node["size"].items()))
        out[side] = {
            "entry": condition(node["entry"]),
            "exit": None if node["exit"] is None else condition(node["exit"]),
            "size": {kind: num(amount, PERCENT if kind == "percent" else UNITS)},
            "stop_loss": None if node["stop_loss"] is None else num(node["stop_loss"], _protection("stop_loss", side)),
            "take_profit": [num(v, _protection("take_profit", side)) for v in node["take_profit"]],
            "trailing_stop": None
            if node["trailing_stop"] is None
            else num(node["trailing_stop"], _protection("trailing_stop", side)),
        }
        if any(b <= a for a, b in zip(out[side]["take_profit"], out[side]["take_profit"][1:])):
            raise RuleError(f"{out[side]['take_profit']} is not strictly ascending", path=f"{side} take_profit")
    return out


def with_values(rules: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """Canonical rules whose variables take ``values`` (checked where each is used)."""
    unknown = sorted(set(values) - set(rules["vars"]))
    if unknown:
        known = ", ".join(rules["vars"]) or "none"
        raise RuleError(f"the rules have no variable {unknown[0]!r}; their variables are {known}")
    values = {name: _finite(value, f"variable {name!r}") for name, value in values.items()}
    resolve(rules, values)
    return {**rules, "vars": {**rules["vars"], **values}}


# -- the evaluation tree: hashable, numbers resolved ----------------------------------------
def tree(condition: Mapping[str, Any]) -> tuple:
    """A resolved condition as nested tuples (a cache key): ``("and", c, ...)``,
    ``("not", c)``, ``(op, left, right)`` with operands a float or an indicator key."""
    for group in ("and", "or"):
        if group in condition:
            return (group, *(tree(c) for c in condition[group]))
    if "not" in condition:
        return ("not", tree(condition["not"]))
    return (condition["op"], _operand_key(condition["left"]), _operand_key(condition["right"]))


def _operand_key(node: Any) -> float | tuple:
    if not isinstance(node, dict):
        return float(node)
    return INDICATORS[node["indicator"]].key(*node["params"], node.get("output"))


def catalogue() -> dict[str, dict[str, Any]]:
    """The indicators as plain data (for a rule builder): parameters, defaults, ranges, outputs."""
    return {
        name: {
            "help": ind.help,
            "signature": ind.signature(),
            "outputs": list(ind.outputs),
            "default_output": ind.default_output,
            "params": [
                {"name": a.name, "whole": a.whole, "min": a.low, "max": a.high, "default": a.default} for a in ind.args
            ],
        }
        for name, ind in INDICATORS.items()
    }
