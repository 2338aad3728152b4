"""The visual rule builder: an ipywidgets form over a rule strategy's canonical JSON.

A side (long, short) has a size, protections and two conditions, entry and exit. A condition is
shown as *groups of rows*: the rows of a group combine with its and/or, the groups with the
condition's and/or. A row compares two operands (a number or $variable, or an indicator with its
parameters and output), optionally negated. Anything deeper than that (a group inside a group
inside a group, ``not (...)`` of a group) stays a row of its own text, so every valid rule opens
and comes back exactly as it was: the form maps to JSON and back without rewriting anything.

Every change rebuilds the JSON, checks it with the rule model and shows the text form; errors
show in the form (the status line and the row they concern), never raise. Backtest and save are
buttons.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Callable, Mapping
from typing import Any, cast

import ipywidgets as widgets
import pandas as pd

from workbench.errors import RuleError, StrategyError
from workbench.strategies import SavedStrategy, get_template
from workbench.strategies.rules import parse_rules, rule_indicators, rules_text
from workbench.strategies.rules._model import COMPARATORS
from workbench.strategies.rules._text import condition as _condition_text
from workbench.strategies.rules._text import number as _show_number
from workbench.ui._form import BacktestForm, OnSave, save_to_store

_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?")  # as the rule text writes numbers
_VARIABLE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER_KIND = "number"
_CATALOGUE = rule_indicators()
_NEW_ROW = {"long": "RSI(14) < 30", "short": "RSI(14) > 70"}  # what "+ row" adds, valid as it is
_HEAD = "buy 1% when "  # a text row is parsed as the condition of this statement
_ONLY_A_CONDITION = "only a condition goes here (no buy, sell, exit, vars, leverage or protections)"


def _layout(width: str) -> widgets.Layout:
    return widgets.Layout(width=width)


def _box(value: str, placeholder: str, tooltip: str | None = None, width: str = "64px") -> widgets.Text:
    return widgets.Text(value=value, placeholder=placeholder, tooltip=tooltip or placeholder, layout=_layout(width))


def _button(icon: str, tooltip: str, action: Callable[[], Any], description: str = "") -> widgets.Button:
    button = widgets.Button(
        icon=icon, tooltip=tooltip, description=description, layout=_layout("96px" if description else "32px")
    )
    button.on_click(lambda _: action())
    return button


def _and_or(value: str) -> widgets.ToggleButtons:
    return widgets.ToggleButtons(
        options=["and", "or"], value=value, style={"button_width": "52px"}, layout=_layout("auto")
    )


def _read_number(text: str, what: str, *, variable: bool = True, percent: bool = False) -> Any:
    """A number box's value as the rule text reads it: ``12`` (int), ``1.5`` (float), ``$name``."""
    text = text.strip()
    if percent:
        text = text.removesuffix("%").rstrip()
    if variable and (match := _VARIABLE.fullmatch(text)):
        return {"var": match.group(1)}
    kind = "a number or a $variable" if variable else "a number"
    if not text:
        raise RuleError(f"{what}: enter {kind}")
    if not _NUMBER.fullmatch(text):
        raise RuleError(f"{what}: {text[:20]!r} is not {kind}")
    try:
        value = float(text) if any(c in text for c in ".eE") else int(text)
    except ValueError:  # more digits than Python converts
        raise RuleError(f"{what}: the number {text[:12]}... has too many digits") from None
    if not math.isfinite(value):
        raise RuleError(f"{what}: {text[:20]} is too large")
    return value


def _row_reason(exc: RuleError) -> str:
    """The error of a row checked alone as the entry of a scratch strategy, without its place
    there (the row's label says where)."""
    if exc.path is None or exc.path.startswith("long.entry"):
        return exc.reason
    return f"{exc.path}: {exc.reason}"


def _is_group(node: Mapping[str, Any]) -> bool:
    return "and" in node or "or" in node


def _split(node: Mapping[str, Any]) -> tuple[str, list]:
    op = "and" if "and" in node else "or"
    return op, node[op]


def _is_comparison(node: Mapping[str, Any]) -> bool:
    inner = node.get("not", node)
    return "op" in inner


def _new_row(side: str) -> dict[str, Any]:
    return parse_rules(f"buy 1% when {_NEW_ROW[side]}")["long"]["entry"]


class _Check:
    """One pass over the form: the declared variables, and every error met, each labelled."""

    def __init__(self) -> None:
        self.vars: dict[str, Any] = {}
        self.errors: list[str] = []

    def number(self, text: str, what: str, *, optional: bool = False, **options: Any) -> Any:
        """A number box's value; None (with the error noted) when it is not one, or empty and optional."""
        if optional and not text.strip():
            return None
        try:
            return _read_number(text, what, **options)
        except RuleError as exc:
            self.errors.append(str(exc))
            return None

    def condition(self, node: Any) -> dict[str, Any]:
        """One row's comparison checked on its own (with the variables), in canonical form."""
        try:
            return parse_rules({"vars": self.vars, "long": {"entry": node}})["long"]["entry"]
        except RuleError as exc:
            path = exc.path or ""
            inside = path.removeprefix("long.entry") if path.startswith("long.entry") else ""
            side = next((s for s in ("left", "right") if f".{s}" in inside), None)
            raise RuleError(_row_reason(exc), path=side) from None

    def text_condition(self, text: str) -> dict[str, Any]:
        """A condition written as text (one line), in canonical form; errors point at its column."""
        if "\n" in text or "\r" in text:
            raise RuleError("write the condition on one line")
        declared = ", ".join(f"{name} = {_show_number(value)}" for name, value in self.vars.items())
        # line 1 declares the variables and a leverage, so text that sneaks in a statement of its
        # own (even "leverage 1", the default) either fails to parse or changes the rules
        try:
            rules = parse_rules(f"leverage 2{' vars ' + declared if declared else ''}\n{_HEAD}{text}")
        except RuleError as exc:
            if exc.line != 2:
                raise
            message = _row_reason(exc)
            if message.startswith("a second "):
                raise RuleError(_ONLY_A_CONDITION) from None
            raise RuleError(f"column {max(cast(int, exc.column) - len(_HEAD), 1)}: {message}") from None  # on line 2
        entry = rules["long"]["entry"]
        alone = {
            "vars": self.vars,
            "leverage": 2,
            "short": None,
            "long": {
                "entry": entry,
                "exit": None,
                "size": {"percent": 1},
                "stop_loss": None,
                "take_profit": [],
                "trailing_stop": None,
            },
        }
        if rules != alone:
            raise RuleError(_ONLY_A_CONDITION)
        return entry


# -- operands and rows ----------------------------------------------------------------------
class _Operand(widgets.HBox):
    """One side of a comparison: a number or $variable, or an indicator, its parameters and output."""

    def __init__(self, node: Any, changed: Callable[[], None]):
        self._changed = changed
        indicator = isinstance(node, Mapping) and "indicator" in node
        self.kind = widgets.Dropdown(
            options=[_NUMBER_KIND, *_CATALOGUE],
            value=node["indicator"] if indicator else _NUMBER_KIND,
            layout=_layout("104px"),
        )
        self.value = _box("0" if indicator else _show_number(node), "number or $var")
        self.value.observe(lambda _: changed(), names="value")
        self.output = widgets.Dropdown(layout=_layout("84px"))
        self.params: list[widgets.Text] = []
        super().__init__()
        self._arrange(node["params"] if indicator else [], node.get("output") if indicator else None)
        self.output.observe(lambda _: changed(), names="value")
        self.kind.observe(self._kind_changed, names="value")

    def _arrange(self, params: list, output: str | None, texts: Mapping[str, str] | None = None) -> None:
        """Lay out the controls of the chosen kind (``texts``: parameter boxes kept from before)."""
        kind = self.kind.value
        if kind == _NUMBER_KIND:
            self.params = []
            self.children = [self.kind, self.value]
            return
        info = _CATALOGUE[kind]
        self.params = []
        for i, arg in enumerate(info["params"]):
            if i < len(params):
                text = _show_number(params[i])
            elif texts and arg["name"] in texts:
                text = texts[arg["name"]]
            else:
                text = "" if arg["default"] is None else _show_number(arg["default"])
            kind_of = "whole number" if arg["whole"] else "number"
            box = _box(
                text,
                arg["name"],
                f"{kind} {arg['name']}: a {kind_of} from {_show_number(arg['min'])} "
                f"to {_show_number(arg['max'])}, or a $variable",
            )
            box.observe(lambda _: self._changed(), names="value")
            self.params.append(box)
        children = [self.kind, *self.params]
        if info["outputs"]:
            self.output.options = info["outputs"]
            self.output.value = output or info["default_output"] or info["outputs"][0]
            children.append(self.output)
        self.children = children

    def _kind_changed(self, change: Mapping[str, Any]) -> None:
        old = _CATALOGUE.get(change["old"], {"params": []})["params"]
        texts = {arg["name"]: box.value for arg, box in zip(old, self.params)}
        self._arrange([], None, texts)
        self._changed()

    def json(self, what: str) -> Any:
        """The operand's JSON; RuleError naming ``what`` when a box holds no number or $variable."""
        kind = self.kind.value
        if kind == _NUMBER_KIND:
            return _read_number(self.value.value, what)
        info = _CATALOGUE[kind]
        node: dict[str, Any] = {
            "indicator": kind,
            "params": [
                _read_number(box.value, f"{what} {kind} {arg['name']}") for arg, box in zip(info["params"], self.params)
            ],
        }
        if info["outputs"]:
            node["output"] = self.output.value
        return node


def _tools(item: widgets.Widget, owner: Any) -> list[widgets.Button]:
    """The move up, move down and remove buttons of a row or group in ``owner``."""
    item.up_button = _button("arrow-up", "move up", lambda: owner.move(item, -1))
    item.down_button = _button("arrow-down", "move down", lambda: owner.move(item, 1))
    item.remove_button = _button("trash", "remove", lambda: owner.remove(item))
    return [item.up_button, item.down_button, item.remove_button]


class _Row(widgets.HBox):
    """A row of a group: a comparison, or (when deeper than the form shows) a condition's text."""

    def __init__(self, node: Mapping[str, Any], group: _Group, changed: Callable[[], None]):
        self.message = widgets.HTML()
        if _is_comparison(node):
            negated = "not" in node
            inner = node["not"] if negated else node
            self.negate = widgets.Checkbox(value=negated, description="not", indent=False, layout=_layout("52px"))
            self.left = _Operand(inner["left"], changed)
            self.op = widgets.Dropdown(options=COMPARATORS, value=inner["op"], layout=_layout("124px"))
            self.right = _Operand(inner["right"], changed)
            self.text = None
            controls = [self.negate, self.left, self.op, self.right]
        else:
            self.text = widgets.Text(
                value=_condition_text(node),
                layout=_layout("520px"),
                tooltip="a condition deeper than groups of rows, as text",
            )
            controls = [self.text]
        for control in controls:
            if not isinstance(control, _Operand):
                control.observe(lambda _: changed(), names="value")
        super().__init__([*controls, *_tools(self, group), self.message])

    def json(self, check: _Check, what: str) -> dict[str, Any] | None:
        """This row's canonical condition; None (with the error noted) when it has one."""
        try:
            if self.text is not None:
                node = check.text_condition(self.text.value)
            else:
                node = {"left": self.left.json("left"), "op": self.op.value, "right": self.right.json("right")}
                node = check.condition({"not": node} if self.negate.value else node)
        except RuleError as exc:
            self.message.value = f'<span style="color:#c0392b">&#9888; {html.escape(str(exc), quote=False)}</span>'
            check.errors.append(f"{what}: {exc}")
            return None
        self.message.value = ""
        return node


class _Items:
    """An ordered list of widgets shown in ``self.body``; each moves and removes itself by its buttons."""

    items: list
    body: widgets.VBox
    _changed: Callable[[], None]

    def move(self, item: widgets.Widget, step: int) -> None:
        i = self.items.index(item)
        j = i + step
        if 0 <= j < len(self.items):
            self.items[i], self.items[j] = self.items[j], self.items[i]
            self._relist()

    def remove(self, item: widgets.Widget) -> None:
        self.items.remove(item)
        self._relist()

    def _relist(self) -> None:
        self.body.children = list(self.items)
        self._changed()


class _Group(_Items, widgets.VBox):
    """Rows combined with and/or."""

    def __init__(self, op: str, nodes: list, condition: _Condition, side: str, changed: Callable[[], None]):
        self._changed, self._condition, self._side = changed, condition, side
        self.op = _and_or(op)
        self.op.observe(lambda _: changed(), names="value")
        self.items = [_Row(node, self, changed) for node in nodes]
        self.body = widgets.VBox(list(self.items))
        self.add_button = _button("plus", "add a row to this group", self.add_row, "row")
        self._op_line = widgets.HBox([widgets.HTML("<i>rows combine with</i>"), self.op])
        super().__init__(
            [widgets.HBox([self._op_line, *_tools(self, condition)]), self.body, self.add_button],
            layout=widgets.Layout(border="1px solid #ccc", padding="2px", margin="2px 0"),
        )

    @property
    def rows(self) -> list[_Row]:
        return self.items

    def add_row(self) -> _Row:
        """A new row at the end: a simple RSI test to change."""
        row = _Row(_new_row(self._side), self, self._changed)
        self.items.append(row)
        self._relist()
        return row

    def remove(self, item: widgets.Widget) -> None:
        """Remove a row; a group left empty goes too."""
        if len(self.items) == 1:
            self._condition.remove(self)
        else:
            super().remove(item)

    def json(self, check: _Check, what: str) -> Any:
        """The group's condition (its row's alone, or an and/or of them); hides and/or for one row."""
        rows = [row.json(check, f"{what}, row {i}") for i, row in enumerate(self.items, 1)]
        self._op_line.layout.display = None if len(rows) > 1 else "none"  # one row: nothing to combine
        return rows[0] if len(rows) == 1 else {self.op.value: rows}


class _Condition(_Items, widgets.VBox):
    """An entry or exit condition: groups of rows combined with and/or; no groups is no condition."""

    def __init__(self, side: str, changed: Callable[[], None]):
        self._changed, self._side = changed, side
        self.op = _and_or("and")
        self.op.observe(lambda _: changed(), names="value")
        self.body = widgets.VBox()
        self.items: list[_Group] = []
        self.add_button = _button("plus", "add a group of rows", self.add_group, "group")
        self._op_line = widgets.HBox([widgets.HTML("<i>groups combine with</i>"), self.op])
        super().__init__([self._op_line, self.body, self.add_button])

    @property
    def groups(self) -> list[_Group]:
        return self.items

    def load(self, node: Mapping[str, Any] | None) -> None:
        """Show ``node`` (canonical) as groups of rows: an and/or of comparisons is one group; an
        and/or with groups in it is one group per part."""
        parts: list[tuple[str, list]] = []
        op = "and"
        if node is not None:
            if _is_group(node) and any(_is_group(child) for child in _split(node)[1]):
                op, children = _split(node)
                parts = [_split(child) if _is_group(child) else ("and", [child]) for child in children]
            else:
                parts = [_split(node) if _is_group(node) else ("and", [node])]
        self.op.value = op
        self.items = [_Group(group_op, nodes, self, self._side, self._changed) for group_op, nodes in parts]
        self.body.children = list(self.items)

    def add_group(self) -> _Group:
        """A new group of one row at the end."""
        group = _Group("and", [_new_row(self._side)], self, self._side, self._changed)
        self.items.append(group)
        self._relist()
        return group

    def json(self, check: _Check, what: str) -> Any:
        """The condition (its group's alone, or an and/or of them), None without groups."""
        parts = [group.json(check, f"{what}, group {i}") for i, group in enumerate(self.items, 1)]
        self._op_line.layout.display = None if len(parts) > 1 else "none"
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else {self.op.value: parts}


# -- sides, variables ------------------------------------------------------------------------
class _Side(widgets.VBox):
    """A buy (long) or sell (short) rule: on or off, size, protections, entry and exit conditions."""

    def __init__(self, side: str, changed: Callable[[], None]):
        self.side = side
        self.verb = "buy" if side == "long" else "sell"
        self.enabled = widgets.Checkbox(description=f"{side} ({self.verb})", indent=False, layout=_layout("120px"))
        self.size = _box("100", "size", "the size: a percent of the balance or a number of units", "72px")
        self.size_kind = widgets.Dropdown(
            options=[("% of balance", "percent"), ("units", "units")], layout=_layout("116px")
        )
        self.stop_loss = _box("", "none", "stop loss, percent from the average entry (empty: none)")
        self.take_profit = _box(
            "",
            "none",
            "take-profit ladder, percents from the average entry, ascending, e.g. 1, 2, 3 (empty: none)",
            "110px",
        )
        self.trailing_stop = _box("", "none", "trailing stop, percent from the best price since entry (empty: none)")
        self.entry = _Condition(side, changed)
        self.exit = _Condition(side, changed)
        for control in (self.enabled, self.size, self.size_kind, self.stop_loss, self.take_profit, self.trailing_stop):
            control.observe(lambda _: changed(), names="value")
        self.enabled.observe(lambda change: self._fold(), names="value")
        label = widgets.HTML
        self.body = widgets.VBox(
            [
                widgets.HBox(
                    [
                        label(self.verb),
                        self.size,
                        self.size_kind,
                        label("&nbsp;stop_loss"),
                        self.stop_loss,
                        label("%&nbsp;take_profit"),
                        self.take_profit,
                        label("%&nbsp;trailing_stop"),
                        self.trailing_stop,
                        label("%"),
                    ]
                ),
                label(f"<b>{self.verb} when</b>"),
                self.entry,
                label(f"<b>exit {side} when</b> <i>(no groups: only stops and reversals exit)</i>"),
                self.exit,
            ]
        )
        super().__init__(
            [self.enabled, self.body], layout=widgets.Layout(border="1px solid #999", padding="4px", margin="4px 0")
        )

    def _fold(self) -> None:
        self.body.layout.display = None if self.enabled.value else "none"

    def load(self, node: Mapping[str, Any] | None) -> None:
        """Show a canonical side; None switches the side off and shows a starting rule to switch on."""
        self.enabled.value = node is not None
        self._fold()
        if node is None:
            node = {
                "entry": _new_row(self.side),
                "exit": None,
                "size": {"percent": 100},
                "stop_loss": None,
                "take_profit": [],
                "trailing_stop": None,
            }
        kind, amount = next(iter(node["size"].items()))
        self.size_kind.value = kind
        self.size.value = _show_number(amount)
        self.stop_loss.value = "" if node["stop_loss"] is None else _show_number(node["stop_loss"])
        self.take_profit.value = ", ".join(_show_number(v) for v in node["take_profit"])
        self.trailing_stop.value = "" if node["trailing_stop"] is None else _show_number(node["trailing_stop"])
        self.entry.load(node["entry"])
        self.exit.load(node["exit"])

    def json(self, check: _Check) -> dict[str, Any] | None:
        """The side's JSON (None when switched off); its errors go to ``check``."""
        if not self.enabled.value:
            return None
        side = self.side
        ladder = [part for part in self.take_profit.value.split(",") if part.strip()]
        entry = self.entry.json(check, f"{side} entry")
        if entry is None and not self.entry.groups:
            check.errors.append(f"{side} entry: the {self.verb} rule needs a condition; add a group")
        kind = self.size_kind.value
        return {
            "entry": entry,
            "exit": self.exit.json(check, f"{side} exit"),
            "size": {kind: check.number(self.size.value, f"{side} size", percent=kind == "percent")},
            "stop_loss": check.number(self.stop_loss.value, f"{side} stop_loss", optional=True, percent=True),
            "take_profit": [
                check.number(part, f"{side} take_profit {i}", percent=True) for i, part in enumerate(ladder, 1)
            ],
            "trailing_stop": check.number(
                self.trailing_stop.value, f"{side} trailing_stop", optional=True, percent=True
            ),
        }


class _Variable(widgets.HBox):
    """One variable: its name and value boxes, and a remove button."""

    def __init__(self, name: str, value: str, owner: _Variables, changed: Callable[[], None]):
        self.name = _box(name, "name", "a name: letters, digits and _; write $name where the number goes", "96px")
        self.value = _box(value, "value", "its value, the default of a sweep axis", "80px")
        for control in (self.name, self.value):
            control.observe(lambda _: changed(), names="value")
        self.remove_button = _button("trash", "remove", lambda: owner.remove(self))
        super().__init__([self.name, widgets.HTML("&nbsp;=&nbsp;"), self.value, self.remove_button])


class _Variables(_Items, widgets.VBox):
    """Named numbers (``vars``): each is a parameter a backtest can set and a sweep can vary."""

    def __init__(self, changed: Callable[[], None]):
        self._changed = changed
        self.items: list[_Variable] = []
        self.body = widgets.VBox()
        self.add_button = _button("plus", "add a variable", self.add, "variable")
        super().__init__([self.body, self.add_button])

    @property
    def rows(self) -> list[_Variable]:
        return self.items

    def load(self, values: Mapping[str, Any]) -> None:
        self.items = [_Variable(name, _show_number(value), self, self._changed) for name, value in values.items()]
        self.body.children = list(self.items)

    def add(self) -> _Variable:
        """A new variable: the first free name of ``v1``, ``v2``..., with the value 1."""
        taken = {row.name.value.strip() for row in self.items}
        name = next(f"v{i}" for i in range(1, len(taken) + 2) if f"v{i}" not in taken)
        row = _Variable(name, "1", self, self._changed)
        self.items.append(row)
        self._relist()
        return row

    def json(self, check: _Check) -> dict[str, Any]:
        """The variables whose name and value are good (each bad one is an error)."""
        values: dict[str, Any] = {}
        for row in self.items:
            name = row.name.value.strip()
            if not _NAME.fullmatch(name):
                check.errors.append(f"variable {name!r}: a name is letters, digits and _, not starting with a digit")
            elif name in values:
                check.errors.append(f"variable {name!r} is declared twice")
            else:
                value = check.number(row.value.value, f"variable {name!r}", variable=False)
                if value is not None:
                    values[name] = value
        return values


# -- the builder -----------------------------------------------------------------------------
class RuleBuilder(BacktestForm):
    """The rule builder widget.

    ``.rules`` is the canonical JSON of the form (None while it has an error, which ``.error``
    and the status line say), ``.text`` its text form; ``.long`` and ``.short`` hold each side's
    controls (``.entry.groups[i].rows[j]``), ``.variables`` the ``vars``; ``.result`` is the last
    backtest. ``backtest()`` and ``save()`` do what their buttons do; ``load()`` shows another rule.
    """

    def __init__(
        self, candles: pd.DataFrame | None, rules: Any, name: str, on_save: OnSave | None, **backtest_options: Any
    ):
        super().__init__(get_template("rules"), candles, on_save, backtest_options)
        self._quiet = True
        self._rules: dict[str, Any] | None = None
        self._shown_text = ""
        self.name_box.value = name
        self.variables = _Variables(self._update)
        self.leverage = _box("1", "1", "leverage: a whole number from 1 to 125, or a $variable")
        self.leverage.observe(lambda _: self._update(), names="value")
        self.long = _Side("long", self._update)
        self.short = _Side("short", self._update)
        self.text_view = widgets.HTML()
        self.backtest_button = widgets.Button(
            description="Backtest",
            icon="play",
            disabled=candles is None,
            tooltip="backtest the rules on the candles"
            if candles is not None
            else "open the builder with candles to backtest",
        )
        self.backtest_button.on_click(lambda _: self.backtest())
        for control in self.risk_controls.values():
            control.observe(lambda _: self._update(), names="value")
        form = widgets.VBox(
            [
                widgets.HTML("<b>Variables</b> <i>(write $name where a number goes; each is a sweep axis)</i>"),
                self.variables,
                widgets.HBox([widgets.HTML("<b>Leverage</b>&nbsp;"), self.leverage]),
                self.long,
                self.short,
                widgets.HTML("<b>Risk limits</b>"),
                *self.risk_controls.values(),
                widgets.HTML("<b>Text form</b>"),
                self.text_view,
                widgets.HBox([self.backtest_button, self.name_box, self.save_button]),
                self.status,
            ]
        )
        self.children = [widgets.HBox([form, self.metrics_view]), self.chart]
        self.load(rules)

    def load(self, rules: str | Mapping[str, Any]) -> None:
        """Show a rule strategy (text or JSON) in the form; RuleError when it is not valid."""
        canonical = parse_rules(rules)
        self._quiet = True
        try:
            self.variables.load(canonical["vars"])
            self.leverage.value = _show_number(canonical["leverage"])
            self.long.load(canonical["long"])
            self.short.load(canonical["short"])
        finally:
            self._quiet = False
        self._update()

    @property
    def rules(self) -> dict[str, Any] | None:
        return self._rules

    @property
    def text(self) -> str | None:
        return None if self._rules is None else rules_text(self._rules)

    def _collect(self) -> tuple[dict[str, Any], list[str]]:
        check = _Check()
        check.vars = self.variables.json(check)
        raw = {
            "vars": check.vars,
            "leverage": check.number(self.leverage.value, "leverage"),
            "long": self.long.json(check),
            "short": self.short.json(check),
        }
        return raw, check.errors

    def _update(self) -> None:
        """Rebuild the JSON from the form: show its text, or the first error."""
        if self._quiet:
            return
        raw, errors = self._collect()
        if not errors:
            try:
                self._rules = parse_rules(raw)
            except RuleError as exc:
                errors = [str(exc)]
        if errors:
            self._rules = None
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            self._show_text(faded=True)
            self._fail(errors[0] + more)
            return
        self._shown_text = rules_text(cast(dict[str, Any], self._rules))  # parsed: no errors
        self._show_text(faded=False)
        ran = self.result is not None and self.result.params["rules"] == self._rules and self.result.risk == self.risk
        self._ok("backtest up to date" if ran else "rules valid; press Backtest to run them")

    def _show_text(self, faded: bool) -> None:
        """The text form; while the form has an error, the last good one, faded."""
        style = "margin:0;padding:4px;font-family:monospace;white-space:pre;background:#f7f7f7" + (
            ";opacity:0.4" if faded else ""
        )
        self.text_view.value = f'<pre style="{style}">{html.escape(self._shown_text, quote=False)}</pre>'

    def backtest(self) -> Any:
        """Backtest the form's rules on the candles (the Backtest button); the result, or None
        when the form has an error (the status line says which)."""
        if self._rules is None or self.candles is None:
            return None
        return self._run({"rules": self._rules})

    def save(self) -> Any:
        """Save the form's rules and risk limits as a strategy (the button); None on an error."""
        if self._rules is None:
            return None
        return self._save(self.template.strategy({"rules": self._rules}, self.risk))


def _opened(rules: Any) -> tuple[Any, Mapping[str, Any] | None, str]:
    """(rules, risk limits, name) of what the builder is asked to open: rule text or JSON, a
    strategy JSON ``{"type": "rules", "params": ...}`` or a saved strategy."""
    template = get_template("rules")
    if rules is None:
        return template.params["rules"].default, None, ""
    params: Mapping[str, Any] | None
    risk: Mapping[str, Any] | None
    if isinstance(rules, SavedStrategy):
        kind, params, risk, name = rules.template, rules.params, rules.risk_limits, rules.name
    elif isinstance(rules, Mapping) and "type" in rules:
        kind, params, risk, name = rules["type"], rules.get("params"), rules.get("risk_limits"), ""
    else:
        return rules, None, ""
    if kind != "rules":
        raise StrategyError(
            f"the rule builder edits rules strategies; this one is a {kind} strategy (open it with wb.editor)"
        )
    return template.validate(params)["rules"], risk, name


def rule_builder(
    candles: pd.DataFrame | None = None,
    rules: Any = None,
    *,
    on_save: OnSave | None = save_to_store,
    **backtest_options: Any,
) -> RuleBuilder:
    """The visual rule builder: edit a rule strategy as rows of conditions, see its text form
    live, backtest it on demand, save it.

    Args:
        candles: the candles the Backtest button runs on (None: no backtesting).
        rules: what to open: rule text, the rules JSON, a strategy JSON of the ``rules``
            template, or a saved strategy (``wb.load_strategy(...)``: its risk limits and name
            come with it, so saving adds a version). By default the template's starting rule.
        on_save: called as ``on_save(strategy_json, name)`` by "Save as strategy"; by default it
            saves to your strategies (:func:`workbench.save_strategy`), ``None`` hides saving.
        backtest_options: ``risk``, ``fees``, ``slippage``, ``init_cash`` as for :func:`backtest`.

    Raises:
        RuleError: ``rules`` is not a valid rule strategy (the message says where).
        StrategyError: the strategy is of another template.

    Example:
        >>> wb.rule_builder(candles, "buy 10% when RSI(14) < 30\\nexit long when RSI(14) > 60")  # doctest: +SKIP
    """
    source, risk, name = _opened(rules)
    options = {"risk": risk, **backtest_options} if risk is not None else backtest_options
    return RuleBuilder(candles, source, name, on_save, **options)


__all__ = ["RuleBuilder", "rule_builder"]
