"""The visual rule builder, driven through its widgets: rows and groups added, removed and
reordered, operands switched, every kind of rule strategy opened and given back exactly,
errors shown in the form (never raised), backtests on demand, saving to and reopening from
the real database."""

from __future__ import annotations

import json

import ipywidgets as widgets
import pytest

import workbench as wb
from workbench import store
from workbench.strategies.rules import parse_rules, rules_text

RICH = (
    "vars fast = 12, slow = 26, stop = 2\n"
    "leverage 2\n"
    "buy 10% when EMA($fast) > EMA($slow) and (RSI(14) < 30 or not close > BB(20, 2.5).upper)\n"
    "    stop_loss $stop% take_profit 1%, 2.5%, 4% trailing_stop 1.5%\n"
    "exit long when EMA($fast) crosses_below EMA($slow)\n"
    "sell 0.25 units when close < DONCHIAN(20).low and MACD(12, 26, 9).hist < -0.5\n"
    "    stop_loss 3% take_profit 2%\n"
    "exit short when close > DONCHIAN(10).high\n"
)
ROUND_TRIP = [
    RICH,
    "buy 100% when close > 100\n",
    # a short side alone, variables for leverage and size, numbers as the text writes them
    "vars lev = 3, size = 50.5, level = -0.25\nleverage $lev\n"
    "sell $size% when not (open <= low or high < 1e+20) and ATR(14) >= $level\n"
    "    trailing_stop 0.75%\n",
    # one group of or-rows; a not of a comparison is a row with its "not" ticked
    "buy 5% when RSI(7) < 20 or not volume < 1000000.0 or SMA(50) crosses_above EMA(200)\nexit long when RSI(7) > 80\n",
    # deeper than groups of rows: kept as text rows, never rewritten
    "buy 1% when (close > 1 or (close > 2 and close > 3)) and not not close > 4\n",
    "buy 1% when not (close > 1 and open > 2) and (high > 3 or (low < 4 and (open > 5 or close < 6)))\n"
    "    take_profit 1%, 2%, 3%, 4%, 5%, 6%, 7%, 8%\n",
    "vars n = 48, m = 24\nbuy 100% when close > DONCHIAN($n).high\nexit long when close < DONCHIAN($m).low\n"
    "sell 100% when close < DONCHIAN($n).low\nexit short when close > DONCHIAN($m).high\n",
]


@pytest.fixture(scope="module")
def candles():
    return wb.load_candles().iloc[-1500:]


def _builder(rules=None, candles=None, **options):
    return wb.rule_builder(candles, rules, on_save=None, **options)


def _shape(condition) -> list:
    """What a condition editor shows: per group, its rows ("row" for a comparison, else the text)."""
    return [
        [
            ("not " if row.text is None and row.negate.value else "") + "row" if row.text is None else row.text.value
            for row in group.rows
        ]
        for group in condition.groups
    ]


@pytest.mark.parametrize("rule", ROUND_TRIP, ids=range(len(ROUND_TRIP)))
def test_every_rule_opens_and_comes_back_exactly(rule):
    canonical = parse_rules(rule)
    for source in (rule, canonical, {"type": "rules", "params": {"rules": rule}, "risk_limits": {}}):
        builder = _builder(source)
        assert builder.error is None
        assert builder.rules == canonical and builder.text == rules_text(rule) == rule
        assert json.dumps(builder.rules) == json.dumps(canonical)  # ints stay ints, floats floats
        assert parse_rules(builder.text) == builder.rules
        assert rule in builder.text_view.value.replace("&gt;", ">").replace("&lt;", "<")


def test_groups_rows_and_text_rows_show_the_structure():
    builder = _builder(RICH)
    assert (builder.long.entry.op.value, _shape(builder.long.entry)) == ("and", [["row"], ["row", "not row"]])
    assert builder.long.entry.groups[1].op.value == "or"
    first = builder.long.entry.groups[0].rows[0]
    assert (first.left.kind.value, [b.value for b in first.left.params], first.op.value) == ("EMA", ["$fast"], ">")
    bands = builder.long.entry.groups[1].rows[1].right
    assert (bands.kind.value, [b.value for b in bands.params], bands.output.value) == ("BB", ["20", "2.5"], "upper")
    assert bands.output in bands.children and builder.long.entry.groups[1].rows[0].right.kind.value == "number"
    assert [
        builder.long.size.value,
        builder.long.size_kind.value,
        builder.long.stop_loss.value,
        builder.long.take_profit.value,
        builder.long.trailing_stop.value,
    ] == ["10", "percent", "$stop", "1, 2.5, 4", "1.5"]
    assert (builder.short.size.value, builder.short.size_kind.value) == ("0.25", "units")
    assert [(v.name.value, v.value.value) for v in builder.variables.rows] == [
        ("fast", "12"),
        ("slow", "26"),
        ("stop", "2"),
    ]
    assert builder.leverage.value == "2"

    deep = _builder(ROUND_TRIP[5])
    assert _shape(deep.long.entry) == [["not (close > 1 and open > 2)"], ["row", "low < 4 and (open > 5 or close < 6)"]]
    assert deep.short.enabled.value is False and deep.short.body.layout.display == "none"


def test_rows_are_added_removed_and_reordered_with_their_buttons():
    builder = _builder("buy 10% when RSI(14) < 30\nexit long when RSI(14) > 70\n")
    group = builder.long.entry.groups[0]
    group.add_button.click()
    assert builder.text.startswith("buy 10% when RSI(14) < 30 and RSI(14) < 30\n")
    row = group.rows[1]
    row.left.kind.value = "close"
    row.op.value = "crosses_above"
    row.right.kind.value = "SMA"
    assert builder.error == "long entry, group 1, row 2: right SMA window: enter a number or a $variable"
    row.right.params[0].value = "50"
    assert builder.text.startswith("buy 10% when RSI(14) < 30 and close crosses_above SMA(50)\n")
    row.up_button.click()
    group.op.value = "or"
    assert builder.text.startswith("buy 10% when close crosses_above SMA(50) or RSI(14) < 30\n")
    group.rows[0].up_button.click()  # already first: nothing moves
    group.rows[1].down_button.click()  # already last
    assert builder.text.startswith("buy 10% when close crosses_above SMA(50) or RSI(14) < 30\n")

    builder.long.entry.add_button.click()  # a second group: the groups combine with and
    new = builder.long.entry.groups[1].rows[0]
    new.negate.value = True
    new.right.value.value = "45.5"
    assert builder.text.startswith(
        "buy 10% when (close crosses_above SMA(50) or RSI(14) < 30) and not RSI(14) < 45.5\n"
    )
    builder.long.entry.op.value = "or"
    builder.long.entry.groups[1].up_button.click()
    assert builder.text.startswith("buy 10% when not RSI(14) < 45.5 or (close crosses_above SMA(50) or RSI(14) < 30)\n")
    assert parse_rules(builder.text) == builder.rules

    builder.long.entry.groups[1].rows[0].remove_button.click()
    assert builder.text.startswith("buy 10% when not RSI(14) < 45.5 or RSI(14) < 30\n")
    builder.long.entry.groups[0].remove_button.click()
    assert builder.text.startswith("buy 10% when RSI(14) < 30\n") and len(builder.long.entry.groups) == 1
    builder.long.exit.groups[0].rows[0].remove_button.click()  # the last row takes its group along
    assert builder.long.exit.groups == [] and builder.text == "buy 10% when RSI(14) < 30\n"


def test_switching_an_operand_keeps_what_still_fits():
    builder = _builder("vars n = 21\nbuy 10% when RSI($n) < 30\n")
    left = builder.long.entry.groups[0].rows[0].left
    left.kind.value = "EMA"
    assert [b.value for b in left.params] == ["$n"] and builder.text == "vars n = 21\nbuy 10% when EMA($n) < 30\n"
    left.kind.value = "MACD"  # no parameter of that name: the defaults
    assert [b.value for b in left.params] == ["12", "26", "9"] and left.output.value == "line"
    left.output.value = "signal"
    left.params[2].value = "$n"
    assert builder.text == "vars n = 21\nbuy 10% when MACD(12, 26, $n).signal < 30\n"
    left.kind.value = "DONCHIAN"
    assert left.output.value == "high" and left.params[0].value == ""
    left.kind.value = "volume"
    assert left.children == (left.kind,) and builder.text == "vars n = 21\nbuy 10% when volume < 30\n"
    left.kind.value = "number"
    left.value.value = "$n"
    assert builder.text == "vars n = 21\nbuy 10% when $n < 30\n"


def test_sides_variables_and_protections_are_edited_in_place():
    builder = _builder("buy 10% when RSI(14) < 30\n")
    builder.short.enabled.value = True  # a starting sell rule appears
    assert builder.short.body.layout.display is None
    assert builder.text == "buy 10% when RSI(14) < 30\nsell 100% when RSI(14) > 70\n"
    builder.short.size_kind.value = "units"
    builder.short.size.value = "0.5"
    builder.short.stop_loss.value = "2%"
    builder.short.take_profit.value = "1, 3.5%"
    builder.short.trailing_stop.value = "0.5"
    builder.variables.add_button.click()
    builder.variables.rows[0].name.value = "lev"
    builder.variables.rows[0].value.value = "3"
    builder.leverage.value = "$lev"
    builder.long.enabled.value = False
    assert builder.text == (
        "vars lev = 3\nleverage $lev\nsell 0.5 units when RSI(14) > 70\n"
        "    stop_loss 2% take_profit 1%, 3.5% trailing_stop 0.5%\n"
    )
    builder.variables.add_button.click()
    assert builder.variables.rows[1].name.value == "v1" and builder.text.startswith("vars lev = 3, v1 = 1\n")
    builder.variables.rows[0].remove_button.click()
    assert builder.error == "leverage: unknown variable 'lev'; declare it in \"vars\" (declared: v1)"


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda b: setattr(b.long.entry.groups[0].rows[0].left.params[0], "value", "0"),
            "long entry, group 1, row 1: left: EMA window: 0 is not allowed; expected a whole number from 1 to 100000",
        ),
        (
            lambda b: setattr(b.long.entry.groups[0].rows[0].right.params[0], "value", "2.5"),
            "long entry, group 1, row 1: right: EMA window: 2.5 is not allowed; expected a whole number",
        ),
        (
            lambda b: setattr(b.long.entry.groups[0].rows[0].left.params[0], "value", "twelve"),
            "long entry, group 1, row 1: left EMA window: 'twelve' is not a number or a $variable",
        ),
        (
            lambda b: setattr(b.long.exit.groups[0].rows[0].right.params[0], "value", "$slowest"),
            "long exit, group 1, row 1: right: unknown variable 'slowest'; declare it in \"vars\" "
            "(declared: fast, slow, stop)",
        ),
        (
            lambda b: b.long.entry.groups[1].remove_button.click() or b.long.entry.groups[0].remove_button.click(),
            "long entry: the buy rule needs a condition; add a group",
        ),
        (
            lambda b: setattr(b.long.take_profit, "value", "2.5, 1"),
            "long take_profit: [2.5, 1] is not strictly ascending",
        ),
        (lambda b: setattr(b.long.stop_loss, "value", "-1"), "long.stop_loss: -1 is not allowed"),
        (lambda b: setattr(b.long.size, "value", ""), "long size: enter a number or a $variable"),
        (
            lambda b: setattr(b.variables.rows[2].value, "value", "150"),
            "long stop_loss (percent): $stop = 150 is not allowed; expected a number above 0 and at most 99.99",
        ),
        (lambda b: setattr(b.variables.rows[1].name, "value", "fast"), "variable 'fast' is declared twice"),
        (lambda b: setattr(b.variables.rows[1].name, "value", "2x"), "variable '2x': a name is letters, digits and _"),
        (
            lambda b: setattr(b.leverage, "value", "1.5"),
            "leverage: 1.5 is not allowed; expected a whole number from 1 to 125",
        ),
        (
            lambda b: setattr(b.short.enabled, "value", False) or setattr(b.long.enabled, "value", False),
            "a rule strategy needs a long (buy) or a short (sell) rule",
        ),
    ],
)
def test_errors_show_in_the_form_and_the_form_keeps_what_was_typed(change, message):
    builder = _builder(RICH)
    change(builder)  # never raises
    assert builder.error.startswith(message), builder.error
    assert builder.rules is None and builder.text is None
    assert message in builder.status.value
    assert "opacity" in builder.text_view.value  # the last good text, faded
    assert builder.backtest() is None and builder.save() is None


def test_an_error_marks_its_row_and_the_fix_clears_it():
    builder = _builder(RICH)
    row = builder.long.entry.groups[1].rows[1]
    row.right.params[1].value = "500"
    assert "BB width: 500 is not allowed" in row.message.value
    assert builder.long.entry.groups[0].rows[0].message.value == ""
    builder.long.entry.groups[0].rows[0].left.params[0].value = "x"
    assert builder.error.endswith("(and 1 more)")
    builder.long.entry.groups[0].rows[0].left.params[0].value = "$fast"
    row.right.params[1].value = "2.5"
    assert builder.error is None and row.message.value == "" and builder.text == RICH
    assert "rules valid" in builder.status.value


def test_a_text_row_takes_one_condition_and_points_at_the_column():
    builder = _builder(ROUND_TRIP[4])
    text_row = builder.long.entry.groups[0].rows[1]
    assert text_row.text.value == "close > 2 and close > 3"
    text_row.text.value = "close > 2 and EMA(0) > 3"
    assert builder.error == (
        "long entry, group 1, row 2: column 19: EMA window: 0 is not allowed; expected a whole number from 1 to 100000"
    )
    text_row.text.value = "close > 2 and"
    assert builder.error.startswith("long entry, group 1, row 2: column 14: unexpected end of the text; expected ")
    text_row.text.value = "close > 2\nsell 1% when close > 1"
    assert builder.error == "long entry, group 1, row 2: write the condition on one line"
    for smuggled in (
        "close > 2 stop_loss 1%",
        "close > 2 sell 1% when close > 1",
        "close > 2 leverage 1",
        "close > 2 vars x = 1",
        "close > 2 exit long when close > 1",
    ):
        text_row.text.value = smuggled
        assert builder.error == (
            "long entry, group 1, row 2: only a condition goes here (no buy, sell, exit, vars, leverage or protections)"
        )
        assert builder.rules is None
        assert "sell" not in (builder.text or "") and builder.short.enabled.value is False
    text_row.text.value = "__import__('os').system('true') > 1"
    assert builder.error.startswith("long entry, group 1, row 2: column 12: unexpected character")
    text_row.text.value = "close > 2 and (open > 3 or low < 1)"
    assert builder.text == "buy 1% when (close > 1 or (close > 2 and (open > 3 or low < 1))) and not not close > 4\n"


def test_opening_bad_input_raises_a_precise_error(candles):
    with pytest.raises(wb.RuleError, match=r"line 1, column 22: unexpected end of the text; expected a comparison"):
        _builder("buy 10% when nonsense")
    with pytest.raises(wb.StrategyError, match="the rule builder edits rules strategies; this one is a channel"):
        _builder({"type": "channel", "params": {}, "risk_limits": {}})
    builder = _builder()  # the template's starting rule
    assert builder.rules == parse_rules(wb.get_template("rules").params["rules"].default)


def test_backtests_run_on_demand_with_chart_and_metrics(candles):
    builder = wb.rule_builder(candles, RICH, on_save=None, risk={"max_daily_loss": 500}, fees=0.002)
    assert builder.result is None and "press Backtest" in builder.status.value
    builder.backtest_button.click()
    expected = wb.backtest("rules", candles, {"rules": RICH}, risk={"max_daily_loss": 500}, fees=0.002)
    assert builder.result.metrics == expected.metrics and builder.result.params["rules"] == parse_rules(RICH)
    assert "Sharpe ratio" in builder.metrics_view.value and "backtest up to date" in builder.status.value
    assert builder.chart.value.startswith("<iframe class='wb-backtest-chart'")  # BokehJS inline: works offline
    assert "Bokeh.embed" in builder.chart.value and builder.result.figure.children[0].title.text == "Custom rules"
    first = builder.result
    builder.variables.rows[0].value.value = "20"  # a change does not run the backtest
    assert builder.result is first and "press Backtest" in builder.status.value
    builder.variables.rows[0].value.value = "12"
    assert "backtest up to date" in builder.status.value  # back to what ran
    builder.risk_controls["max_daily_loss"].value = 0
    assert "press Backtest" in builder.status.value
    assert builder.backtest().risk == {"max_position_size": None, "max_daily_loss": None}
    assert _builder(RICH).backtest_button.disabled  # no candles, nothing to run


def test_save_hands_the_strategy_json_to_the_callback(candles):
    saved = []
    builder = wb.rule_builder(None, "buy 10% when RSI(14) < 30\n", on_save=lambda s, name: saved.append((s, name)) or 3)
    builder.name_box.value = "oversold"
    builder.save_button.click()
    assert saved == [
        (
            {
                "type": "rules",
                "params": {"rules": parse_rules("buy 10% when RSI(14) < 30")},
                "risk_limits": {"max_position_size": None, "max_daily_loss": None},
            },
            "oversold",
        )
    ]
    assert "saved: 3" in builder.status.value
    assert _builder().save_button.disabled and isinstance(builder, widgets.VBox)


@pytest.fixture
def db(empty_database):
    store.upgrade()
    yield empty_database
    store.dispose()


def test_save_to_the_database_and_reopen_for_editing(db, candles):
    builder = wb.rule_builder(candles, RICH, risk={"max_position_size": 5000})
    builder.name_box.value = "rich rules"
    builder.save_button.click()
    saved = wb.load_strategy("rich rules")
    assert "saved: rich rules v1" in builder.status.value
    assert saved.template == "rules" and saved.params == {"rules": parse_rules(RICH)}
    assert saved.risk_limits == {"max_position_size": 5000.0, "max_daily_loss": None}

    again = wb.rule_builder(candles, saved)  # a saved strategy opens with its risk limits and name
    assert again.text == RICH and again.rules == saved.params["rules"] and again.name_box.value == "rich rules"
    assert again.risk == saved.risk_limits
    again.long.entry.groups[1].op.value = "and"
    again.save()
    newer = wb.load_strategy("rich rules")
    assert newer.version == 2 and newer.params["rules"]["long"]["entry"]["and"][1] == {
        "and": saved.params["rules"]["long"]["entry"]["and"][1]["or"]
    }
    assert wb.rule_builder(None, newer).text == again.text != RICH
    assert again.backtest().metrics == newer.backtest(candles).metrics
    short = wb.load_strategy(wb.save_strategy("short side", "rules", {"rules": ROUND_TRIP[2], "lev": 5}).id)
    opened = wb.rule_builder(None, short)
    assert opened.rules == short.params["rules"] and opened.text == rules_text(short.params["rules"])
    assert opened.text.startswith("vars lev = 5, size = 50.5, level = -0.25\n")
