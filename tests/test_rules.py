"""The rules template: the language (text <-> JSON, errors, a fuzzed parser), its indicators
against references, its semantics on hand-made candles, and rules strategies backtesting,
sweeping, saving and trading live through the same paths as the built-in templates."""

from __future__ import annotations

import builtins
import json
import random
import string
import time

import numpy as np
import pandas as pd
import pytest
from _bars import FREE, bars
from sqlalchemy import select

import workbench as wb
from workbench import store, vault
from workbench.engine import indicators as _indicators
from workbench.errors import RuleError, SessionError
from workbench.strategies.rules import (
    MAX_TEXT,
    _evaluate,  # noqa: F401 - the "rule" signal rows (as the kernel loads it)
    parse_rules,
    resolve,
    rule_indicators,
    rules_text,
    tree,
)

CANONICAL = [
    "buy 100% when close > 100\n",
    "vars fast = 12, slow = 26\n"
    "leverage 3\n"
    "buy 10% when (EMA($fast) > EMA($slow) and RSI(14) < 30) or not close crosses_above BB(20, 2.5).upper\n"
    "    stop_loss 0.5% take_profit 1%, 2.5%, 4% trailing_stop 1.5%\n"
    "exit long when MACD(12, 26, 9).hist < -0.5 or close crosses_below SMA($slow)\n"
    "sell 0.25 units when close < DONCHIAN(20).low and volume >= 1000000.0 and ATR(14) > 50\n"
    "    stop_loss 3%\n"
    "exit short when close > DONCHIAN(10).high\n",
    "vars lev = 2, size = 50.5\nleverage $lev\nsell $size% when not (open <= low or high < 1e+20)\n",
    "buy 1% when (close > 1 or (close > 2 and close > 3)) and not not close > 4\n",
]
BREAKOUT = "vars n = 48, m = 24\nbuy 100% when close > DONCHIAN($n).high\nexit long when close < DONCHIAN($m).low\n"
BOTH = BREAKOUT + "sell 100% when close < DONCHIAN($n).low\nexit short when close > DONCHIAN($m).high\n"
RICH = (
    "vars fast = 12, stop = 2\n"
    "buy 60% when EMA($fast) crosses_above SMA(30) and RSI(14) < 70\n"
    "    stop_loss $stop% take_profit 1%, 3% trailing_stop 2.5%\n"
    "exit long when MACD(12, 26, 9).hist < 0\n"
    "sell 40% when close < BB(20, 2).lower and ATR(14) > 20\n"
    "    stop_loss 3% take_profit 2%\n"
    "exit short when close > BB(20, 2).middle\n"
)


@pytest.fixture(scope="module")
def candles() -> pd.DataFrame:
    return wb.load_candles().iloc[-3000:]


def _fills(result) -> list[tuple]:
    return [
        (result.candles.index.get_loc(f.time), round(f.size, 9), round(f.price, 9), f.kind)
        for f in result.fills.itertuples()
    ]


def _close(a: float, b: float, rel: float = 1e-9) -> bool:
    return (np.isnan(a) and np.isnan(b)) or abs(a - b) <= rel * max(1.0, abs(a), abs(b))


# -- text <-> JSON ------------------------------------------------------------------------------


@pytest.mark.parametrize("text", CANONICAL)
def test_canonical_text_and_json_convert_both_ways_without_loss(text):
    rules = parse_rules(text)
    assert rules_text(rules) == text
    assert parse_rules(rules_text(rules)) == rules
    stored = json.loads(json.dumps(rules))  # what PostgreSQL's JSON gives back
    assert parse_rules(stored) == rules and rules_text(stored) == text


def test_any_spelling_reads_as_the_canonical_form():
    loose = (
        "exit long when rsi > 70   sell 1 units when close < sma(5)\n\n"
        "buy 10% of balance when ema(12) > ema(26) and rsi() < 30 take_profit 2%, 3%   stop_loss 1%\n"
        "vars unused = 1.5"
    )
    assert rules_text(loose) == (
        "vars unused = 1.5\n"
        "buy 10% when EMA(12) > EMA(26) and RSI(14) < 30\n"
        "    stop_loss 1% take_profit 2%, 3%\n"
        "exit long when RSI(14) > 70\n"
        "sell 1 units when close < SMA(5)\n"
    )
    # JSON with defaults left out, numbers as floats where whole numbers are meant
    assert parse_rules(
        {
            "long": {
                "entry": {
                    "left": {"indicator": "macd", "output": "signal"},
                    "op": "<",
                    "right": {"indicator": "EMA", "params": [12.0]},
                }
            }
        }
    ) == {
        "vars": {},
        "leverage": 1,
        "short": None,
        "long": {
            "entry": {
                "left": {"indicator": "MACD", "params": [12, 26, 9], "output": "signal"},
                "op": "<",
                "right": {"indicator": "EMA", "params": [12]},
            },
            "exit": None,
            "size": {"percent": 100},
            "stop_loss": None,
            "take_profit": [],
            "trailing_stop": None,
        },
    }


def test_the_catalogue_describes_every_indicator_for_a_builder():
    catalogue = rule_indicators()
    assert set(catalogue) == {
        "open",
        "high",
        "low",
        "close",
        "volume",
        "EMA",
        "SMA",
        "RSI",
        "MACD",
        "BB",
        "ATR",
        "DONCHIAN",
    }
    assert catalogue["MACD"]["outputs"] == ["line", "signal", "hist"] and catalogue["MACD"]["default_output"] == "line"
    assert [p["default"] for p in catalogue["BB"]["params"]] == [20, 2]
    assert catalogue["DONCHIAN"]["signature"] == "DONCHIAN(window).high|low"


@pytest.mark.parametrize(
    "text, line, column, message",
    [
        ("buy 10% when EMA(12) >", 1, 23, "unexpected end of the text; expected '-', a $variable, a name"),
        ("buy 10% when EMA(12) > EMA(26)\n   and RSI(14) << 30", 2, 17, "unexpected '<'; expected '-', a $variable"),
        ("buy 10 when close > 1", 1, 8, "unexpected 'when'; expected '%', 'units'"),
        ("buy 10% when close > 1 ; import os", 1, 24, "unexpected character ';'; expected 'and', 'buy', 'exit'"),
        ("buy 10% when (close > 1", 1, 24, "unexpected end of the text; expected ')'"),
        ("buy 10% when close > 1\n  stop_loss 2", 2, 14, "unexpected end of the text; expected '%'"),
        ("buy 10% when close é 1", 1, 20, "unexpected character 'é'; expected '(', '.', a comparison (>, <"),
        (
            "buy 10% when EMAA(12) > 1",
            1,
            14,
            "unknown indicator 'EMAA'; the indicators are open, high, low, close, "
            "volume, EMA, SMA, RSI, MACD, BB, ATR, DONCHIAN",
        ),
        ("buy 10% when EMA(0) > 1", 1, 18, "EMA window: 0 is not allowed; expected a whole number from 1 to 100000"),
        ("buy 10% when EMA(2.5) > 1", 1, 18, "EMA window: 2.5 is not allowed; expected a whole number"),
        ("buy 10% when BB(20, 0) > 1", 1, 21, "BB width: 0 is not allowed; expected a number from 0.01 to 100"),
        ("buy 10% when RSI(14, 3) > 1", 1, 14, "RSI takes 1 parameter(s): RSI(window)"),
        ("buy 10% when EMA > 1", 1, 14, "EMA needs its window (EMA(window))"),
        ("buy 10% when close(3) > 1", 1, 14, "close takes 0 parameter(s): close"),
        ("buy 10% when DONCHIAN(20) > 1", 1, 14, "DONCHIAN has the outputs high, low; choose one"),
        ("buy 10% when MACD.top > 1", 1, 14, "MACD has the outputs line, signal, hist, not 'top'"),
        ("buy 10% when EMA($fast) > 1", 1, 18, "unknown variable 'fast'; declare it in \"vars\""),
        (
            "buy 120% when close > 1",
            1,
            5,
            "size (percent of the balance): 120 is not allowed; expected a number above 0 and at most 100",
        ),
        ("buy 10% when close > 1\n  stop_loss 100%", 2, 13, "long.stop_loss: 100 is not allowed"),
        ("buy 10% when close > 1 take_profit 1%\n  take_profit 2%", 2, 3, "take_profit is given twice"),
        ("buy 10% when close > 1\nbuy 20% when close > 2", 2, 1, "a second buy rule (the first is at line 1)"),
        ("exit short when close > 1\nbuy 10% when close > 1", 1, 1, "'exit short' needs a sell rule to exit from"),
        ("vars a = 1, a = 2\nbuy 10% when close > $a", 1, 13, "variable 'a' is declared twice"),
        ("leverage 0\nbuy 10% when close > 1", 1, 10, "leverage: 0 is not allowed; expected a whole number from 1"),
        ("buy 10% when close > 1" + "0" * 400 + ".5", 1, 22, "is too large"),
        ("buy 10% when close > 1" + "0" * 5000, 1, 22, "has too many digits"),
        ("buy 10% when " + "not " * 40 + "close > 1", 1, 114, "conditions nest deeper than 24 levels"),
    ],
)
def test_a_malformed_rule_says_where_and_what_was_expected(text, line, column, message):
    with pytest.raises(RuleError) as info:
        parse_rules(text)
    assert (info.value.line, info.value.column) == (line, column), str(info.value)
    assert str(info.value).startswith(f"line {line}, column {column}: ")
    assert message in str(info.value)
    assert isinstance(info.value, wb.ParameterError) and info.value.param == "rules"


@pytest.mark.parametrize(
    "rules, message",
    [
        ({}, "a rule strategy needs a long (buy) or a short (sell) rule"),
        (
            {"long": {"entry": {"left": "close", "op": ">", "right": 1}}},
            'long.entry.left: expected a number, {"var": name} or {"indicator": name, ...}, not \'close\'',
        ),
        (
            {"long": {"entry": {"and": [{"left": 1, "op": ">", "right": 2}]}}},
            "long.entry.and: expected a list of at least 2 conditions",
        ),
        ({"long": {"entry": {"left": 1, "op": "=", "right": 2}}}, "long.entry.op: '=' is not a comparison"),
        (
            {"long": {"entry": {"left": {"indicator": "VWAP"}, "op": ">", "right": 1}}},
            "long.entry.left.indicator: unknown indicator 'VWAP'",
        ),
        (
            {"long": {"entry": {"left": 1, "op": ">", "right": 2}, "size": {"percent": True}}},
            "long.size.percent: size (percent of the balance): True is not a number",
        ),
        (
            {"long": {"entry": {"left": 1, "op": ">", "right": 2}, "take_profit": [2, 1]}},
            "long take_profit: [2, 1] is not strictly ascending",
        ),
        (
            {
                "vars": {"w": 2.5},
                "short": {"entry": {"left": {"indicator": "SMA", "params": [{"var": "w"}]}, "op": ">", "right": 1}},
            },
            "SMA window: $w = 2.5 is not allowed; expected a whole number from 1 to 100000",
        ),
        (
            {"vars": {"1x": 2}, "long": {"entry": {"left": 1, "op": ">", "right": 2}}},
            "vars: '1x' is not a variable name",
        ),
        ({"long": {"entry": {"left": 1, "op": ">", "right": 2}, "stop": 1}}, "long: unknown key 'stop'"),
        ("", "a rule strategy needs a long (buy) or a short (sell) rule"),
        (["buy"], "a rule strategy is a JSON object (or rule text), not a list"),
        ("x" * (MAX_TEXT + 1), f"the rule text is {MAX_TEXT + 1} characters long; the limit is {MAX_TEXT}"),
    ],
)
def test_bad_json_is_named_by_its_path(rules, message):
    with pytest.raises(RuleError) as info:
        parse_rules(rules)
    assert message in str(info.value)


# -- fuzzing: an error or a valid rule, never a crash, a hang or anything executed ---------------

_TOKENS = [
    "buy",
    "sell",
    "exit",
    "long",
    "short",
    "when",
    "vars",
    "leverage",
    "and",
    "or",
    "not",
    "(",
    ")",
    ",",
    ".",
    "%",
    "$x",
    "$",
    "=",
    "x",
    "units",
    "of",
    "balance",
    "stop_loss",
    "take_profit",
    "trailing_stop",
    ">",
    "<",
    ">=",
    "<=",
    "crosses_above",
    "crosses_below",
    "EMA(12)",
    "RSI",
    "MACD",
    ".hist",
    "BB(20, 2)",
    "DONCHIAN(5).high",
    "close",
    "volume",
    "12",
    "-3",
    "0.5",
    "1e308",
    "9" * 400,
    "10%",
    "\n",
    " ",
    "__import__('os')",
    "eval(",
    "exec",
    "lambda",
    ";",
    "'",
    '"',
    "\\",
    "\x00",
    "é",
    "𝔼MA",
    "\u202e",
    "{{7*7}}",
    "${x}",
    "`",
    "#",
]


def _assert_error_or_valid(value) -> None:
    try:
        rules = parse_rules(value)
    except RuleError as exc:
        assert str(exc)
        return
    assert parse_rules(rules_text(rules)) == rules  # a valid rule round-trips


def test_the_parser_survives_random_and_hostile_text(monkeypatch, tmp_path):
    def forbidden(*args, **kwargs):
        raise AssertionError("the rule parser executed code")

    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(builtins, "exec", forbidden)
    monkeypatch.setattr(builtins, "__import__", forbidden)  # imports nothing either: all is loaded
    rng = random.Random(20240601)
    hostile = [
        "(" * 6000 + "close > 1" + ")" * 6000,
        "buy 1% when " + "(" * 6000 + "close > 1" + ")" * 6000,
        "buy 1% when " + "not " * 4000 + "close > 1",
        "buy 1% when " + " and ".join(["close > 1"] * 1500),
        "buy 1% when " + "(close > 1 or " * 1000 + "close > 1" + ")" * 1000,
        "buy 1% when close > " + "9" * 19000,
        "buy 1% when close > 1e99999",
        "buy 1% when EMA(99999999999999999999999999) > 1",
        "buy 1% when close > 1\n  take_profit " + ", ".join(["1%"] * 3000),
        f"buy 1% when close > 1; __import__('os').system('touch {tmp_path}/pwned')",
        "buy 1% when __import__('os').system('id') > 0",
        "buy 1% when eval('1') > 0",
        "buy 1% when {}.x > 0",
        "vars " + ", ".join(f"v{i} = {i}" for i in range(200)) + "\nbuy 1% when close > $v1",
        "buy 1% when ЕМА(12) > 1",
        "buy 1% when close > ١٢",
        "buy\u00a01% when close > 1",
        "\ufeffbuy 1% when close > 1",
        "x" * MAX_TEXT,
        "buy 1% when close > 1\n" * 2000,
    ]
    started = time.perf_counter()
    for text in hostile:
        _assert_error_or_valid(text)
    for _ in range(1500):
        _assert_error_or_valid(" ".join(rng.choice(_TOKENS) for _ in range(rng.randint(0, 40))))
    valid = [parse_rules(text) for text in CANONICAL]
    for _ in range(1500):  # mutate valid rules: drop, duplicate, swap or insert one character or token
        text = list(rules_text(rng.choice(valid)))
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(text))
            action = rng.randrange(4)
            if action == 0:
                del text[at]
            elif action == 1:
                text.insert(at, text[at])
            elif action == 2:
                other = rng.randrange(len(text))
                text[at], text[other] = text[other], text[at]
            else:
                text.insert(at, rng.choice(_TOKENS + list(string.printable)))
        _assert_error_or_valid("".join(text))
    assert time.perf_counter() - started < 60
    assert not (tmp_path / "pwned").exists()


def _random_json(rng: random.Random, depth: int = 0):
    choice = rng.randrange(9 if depth < 6 else 5)
    leaves = [
        None,
        True,
        0,
        -1.5,
        1e308,
        float("nan"),
        float("inf"),
        10**400,
        "close",
        "EMA",
        ">",
        "and",
        [],
        {},
        {"var": "x"},
        "__import__('os')",
    ]
    if choice < 5:
        return rng.choice(leaves)
    keys = [
        "left",
        "op",
        "right",
        "and",
        "or",
        "not",
        "indicator",
        "params",
        "output",
        "var",
        "entry",
        "exit",
        "size",
        "percent",
        "units",
        "stop_loss",
        "take_profit",
        "trailing_stop",
        "vars",
        "long",
        "short",
        "leverage",
        "x",
    ]
    if choice < 7:
        return {rng.choice(keys): _random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))}
    return [_random_json(rng, depth + 1) for _ in range(rng.randint(0, 3))]


def test_random_and_hostile_json_gets_an_error_or_a_valid_rule():
    rng = random.Random(7)
    deep: dict = {"left": 1, "op": ">", "right": 2}
    for _ in range(50_000):
        deep = {"not": deep}
    nested: list = []
    for _ in range(50_000):
        nested = [nested]
    for value in [{"long": {"entry": deep}}, {"long": {"entry": nested}}, {"long": nested}, nested, deep]:
        _assert_error_or_valid(value)
    valid = parse_rules(CANONICAL[1])
    for _ in range(3000):
        _assert_error_or_valid(_random_json(rng))
        mutated = json.loads(json.dumps(valid))  # replace one value somewhere in a valid rule
        node, path = mutated, []
        while isinstance(node, (dict, list)) and node:
            key = rng.choice(list(node)) if isinstance(node, dict) else rng.randrange(len(node))
            path.append((node, key))
            node = node[key]
            if rng.random() < 0.3:
                break
        parent, key = path[-1]
        parent[key] = _random_json(rng)
        _assert_error_or_valid(mutated)


def _random_rule(rng: random.Random) -> dict:
    """A random valid rule strategy in JSON: random trees of every node kind, indicator and number."""
    catalogue = rule_indicators()
    names = ["a", "b_2", "Speed"]

    def number(low: float, high: float, whole: bool = False):
        if rng.random() < 0.2:
            return {"var": rng.choice(names)}
        value = rng.randint(int(max(low, 1)), int(min(high, 400))) if whole else rng.uniform(low, high)
        return value if whole or rng.random() < 0.5 else float(f"{value:.3g}")

    def operand():
        if rng.random() < 0.25:
            return rng.choice([rng.randint(-5, 10**6), rng.uniform(-1e3, 1e3), rng.choice([1e-7, 1e20, -0.0])])
        name = rng.choice(list(catalogue))
        spec = catalogue[name]
        node = {
            "indicator": name,
            "params": [
                number(a["min"], a["max"], a["whole"]) if not a["whole"] or rng.random() < 0.8 else rng.randint(1, 50)
                for a in spec["params"]
            ],
        }
        if spec["outputs"]:
            node["output"] = rng.choice(spec["outputs"])
        return node

    def condition(depth: int = 0):
        kind = rng.random()
        if depth < 5 and kind < 0.15:
            return {"not": condition(depth + 1)}
        if depth < 5 and kind < 0.4:
            return {rng.choice(["and", "or"]): [condition(depth + 1) for _ in range(rng.randint(2, 4))]}
        return {
            "left": operand(),
            "op": rng.choice([">", "<", ">=", "<=", "crosses_above", "crosses_below"]),
            "right": operand(),
        }

    def side(name: str):
        stops = 99.0 if name == "long" else 1000.0
        ladder = sorted(rng.sample(range(1, 99), rng.randint(0, 4)))
        return {
            "entry": condition(),
            "exit": condition() if rng.random() < 0.6 else None,
            "size": rng.choice([{"percent": rng.uniform(0.1, 100)}, {"units": rng.randint(1, 9)}]),
            "stop_loss": rng.uniform(0.1, 50) if rng.random() < 0.5 else None,
            "take_profit": [float(x) if name == "long" else x for x in ladder],
            "trailing_stop": rng.uniform(0.1, min(stops, 50)) if rng.random() < 0.5 else None,
        }

    sides = rng.choice([("long",), ("short",), ("long", "short")])
    return {
        "vars": {name: rng.randint(1, 50) for name in names},
        "leverage": rng.randint(1, 20),
        "long": side("long") if "long" in sides else None,
        "short": side("short") if "short" in sides else None,
    }


def test_random_valid_rules_convert_both_ways_without_loss(candles):
    rng = random.Random(11)
    for i in range(400):
        rules = _random_rule(rng)
        assert parse_rules(rules) == rules  # already canonical
        text = rules_text(rules)
        assert parse_rules(text) == rules and rules_text(parse_rules(text)) == text, text
        if i < 10:  # and every kind of node evaluates and simulates
            wb.backtest("rules", candles.iloc[:300], {"rules": text})


# -- indicators against references -------------------------------------------------------------


def _key(text: str):
    """The indicator key of an operand written in rule text."""
    return tree(resolve(parse_rules(f"buy 1% when {text} > 0"))["long"]["entry"])[1]


def _value(text: str, candles: pd.DataFrame) -> np.ndarray:
    arrays = {c: candles[c].to_numpy(np.float64) for c in ("open", "high", "low", "close", "volume")}
    return _indicators.compute(_key(text), arrays)


def _same(ours: np.ndarray, reference: pd.Series | np.ndarray, rel: float = 1e-9) -> None:
    reference = np.asarray(reference, dtype=np.float64)
    assert np.array_equal(np.isnan(ours), np.isnan(reference))
    known = ~np.isnan(ours)
    assert known.any()
    assert np.allclose(ours[known], reference[known], rtol=rel, atol=0)


def test_moving_averages_bands_and_channels_match_pandas(candles):
    close, high, low = candles["close"], candles["high"], candles["low"]
    for n in (1, 5, 26, 200):
        warm = np.arange(len(close)) >= n - 1
        _same(_value(f"EMA({n})", candles), close.ewm(span=n, adjust=False).mean().where(warm))
        _same(_value(f"SMA({n})", candles), close.rolling(n).mean())
        _same(_value(f"DONCHIAN({n}).high", candles), high.rolling(n).max().shift(1))
        _same(_value(f"DONCHIAN({n}).low", candles), low.rolling(n).min().shift(1))
    mean, std = close.rolling(20).mean(), close.rolling(20).std(ddof=0)
    _same(_value("BB(20, 2.5).upper", candles), mean + 2.5 * std)
    _same(_value("BB(20, 2.5).middle", candles), mean)
    _same(_value("BB(20, 2.5).lower", candles), mean - 2.5 * std)
    for field in ("open", "high", "low", "close", "volume"):
        _same(_value(field, candles), candles[field])


def test_macd_matches_pandas_ewm(candles):
    close = candles["close"]
    line = close.ewm(span=12, adjust=False).mean() - close.ewm(span=26, adjust=False).mean()
    line[:25] = np.nan
    signal = line.copy()
    signal[25:] = line[25:].ewm(span=9, adjust=False).mean()
    signal[:33] = np.nan
    _same(_value("MACD(12, 26, 9).line", candles), line)
    _same(_value("MACD.signal", candles), signal)
    _same(_value("MACD.hist", candles), line - signal)


def _wilder(values: pd.Series, n: int) -> pd.Series:
    """Wilder's smoothing by pandas: the mean of values 1..n, then ewm(alpha=1/n)."""
    seeded = pd.concat([pd.Series([values.iloc[1 : n + 1].mean()]), values.iloc[n + 1 :]], ignore_index=True)
    out = pd.Series(np.nan, index=values.index)
    out.iloc[n:] = seeded.ewm(alpha=1 / n, adjust=False).mean().to_numpy()
    return out


def test_rsi_matches_wilders_definition_and_the_textbook_example(candles):
    # StockCharts' RSI(14) worked example: its last values (the rounding of its spreadsheet has
    # washed out by then) and the first one worked out by hand
    closes = [
        44.34,
        44.09,
        44.15,
        43.61,
        44.33,
        44.83,
        45.10,
        45.42,
        45.84,
        46.08,
        45.89,
        46.03,
        45.61,
        46.28,
        46.28,
        46.00,
        46.03,
        46.41,
        46.22,
        45.64,
        46.21,
        46.25,
        45.71,
        46.45,
        45.78,
        45.35,
        44.03,
        44.18,
        44.22,
        44.57,
        43.42,
        42.66,
        43.13,
    ]
    frame = bars([(c, c, c, c) for c in closes])
    rsi = _value("RSI(14)", frame)
    assert np.isnan(rsi[:14]).all()
    changes = np.diff(closes[:15])
    gain, loss = changes[changes > 0].sum() / 14, -changes[changes < 0].sum() / 14
    assert rsi[14] == pytest.approx(100 - 100 / (1 + gain / loss), rel=1e-12)
    assert np.round(rsi[-2:], 2).tolist() == [33.09, 37.79]
    change = candles["close"].diff()
    gains, losses = _wilder(change.clip(lower=0), 14), _wilder((-change).clip(lower=0), 14)
    _same(_value("RSI", candles), 100 * gains / (gains + losses))
    flat = bars([(100, 100, 100, 100)] * 20)
    assert _value("RSI(5)", flat)[5:].tolist() == [50.0] * 15  # no move: neither overbought nor oversold


def test_atr_matches_wilders_true_range_by_hand_and_pandas(candles):
    frame = bars([(10, 11, 9, 10), (10, 12, 10, 11), (11, 11, 8, 9), (9, 13, 9, 12), (12, 12, 11, 11.5)])
    # true ranges from bar 1: max(h-l, |h-prev close|, |l-prev close|) = 2, 3, 4, 1
    atr = _value("ATR(3)", frame)
    assert np.isnan(atr[:3]).all()
    assert atr[3] == pytest.approx((2 + 3 + 4) / 3) and atr[4] == pytest.approx((3 * 2 + 1) / 3)
    high, low, prev = candles["high"], candles["low"], candles["close"].shift(1)
    true_range = pd.concat([high - low, (high - prev).abs(), (low - prev).abs()], axis=1).max(axis=1, skipna=False)
    _same(_value("ATR(14)", candles), _wilder(true_range, 14))


def _signal(text: str, frame: pd.DataFrame) -> list[float]:
    rules = resolve(parse_rules(f"buy 1% when {text}"))
    arrays = {c: frame[c].to_numpy(np.float64) for c in ("open", "high", "low", "close", "volume")}
    return _indicators.stack([("rule", tree(rules["long"]["entry"]))], arrays)[0].tolist()


def test_conditions_cross_and_use_three_valued_logic():
    frame = bars([(c, c, c, c) for c in (99, 101, 102, 99, 101)])
    assert _signal("close crosses_above 100", frame) == [0, 1, 0, 0, 1]
    assert _signal("close crosses_below 100", frame) == [0, 0, 0, 1, 0]
    assert _signal("close >= 101 and not close > 101", frame) == [0, 1, 0, 0, 1]
    assert _signal("(close < 100 or close > 101.5) and close <= 102", frame) == [1, 0, 1, 1, 0]
    ramp = bars([(c, c, c, c) for c in (1, 2, 3, 1, 5)])
    # SMA(3) is unknown on bars 0 and 1: a condition on it never fires there, negated or not
    assert _signal("close > SMA(3)", ramp) == [0, 0, 1, 0, 1]
    assert _signal("not close > SMA(3)", ramp) == [0, 0, 0, 1, 0]
    assert _signal("close > 0 or close > SMA(3)", ramp) == [1, 1, 1, 1, 1]  # true or unknown: true
    assert _signal("close > 0 and close > SMA(3)", ramp) == [0, 0, 1, 0, 1]
    assert _signal("close crosses_above SMA(3)", ramp) == [0, 0, 0, 0, 1]  # bar 2: no known bar before
    volume = ramp.assign(volume=[1.0, 5.0, 1.0, 7.0, 1.0])
    assert _signal("volume > 2", volume) == [0, 1, 0, 1, 0]


# -- semantics on hand-made candles ------------------------------------------------------------


def test_signals_at_the_close_fill_at_the_next_open():
    candles = bars(
        [(100, 100, 100, 100), (100, 102, 99, 101), (101, 103, 100, 102), (102, 102, 98, 99), (99, 99, 97, 98)]
    )
    result = wb.backtest("rules", candles, {"rules": "buy 100% when close > 100\nexit long when close < 100"}, **FREE)
    units = 1000 / 101
    assert _fills(result) == [(2, round(units, 9), 101, "entry"), (4, round(-units, 9), 99, "exit")]
    assert result.equity.iloc[-1] == pytest.approx(units * 99)


def test_stop_loss_fills_at_the_stop_or_at_a_gapping_open():
    start = [(100, 100, 100, 100), (100, 101, 99, 101), (100, 100, 100, 100)]
    rule = {"rules": "buy 100% when close crosses_above 100.5 stop_loss 5%"}
    inside = wb.backtest("rules", bars(start + [(100, 100, 94, 96)]), rule, **FREE)
    assert _fills(inside) == [(2, 10, 100, "entry"), (3, -10, 95, "stop_loss")]
    gap = wb.backtest("rules", bars(start + [(93, 94, 90, 92)]), rule, **FREE)
    assert _fills(gap) == [(2, 10, 100, "entry"), (3, -10, 93, "stop_loss")]
    entry_bar = wb.backtest("rules", bars(start[:2] + [(100, 100, 94, 99)]), rule, **FREE)
    assert _fills(entry_bar) == [(2, 10, 100, "entry"), (2, -10, 95, "stop_loss")]  # from its entry bar on


def test_a_take_profit_ladder_closes_equal_parts_at_maker_prices():
    candles = bars(
        [(100, 100, 100, 100), (100, 101, 99, 101), (100, 103, 100, 101), (101, 105, 101, 104), (104, 104, 104, 104)]
    )
    fees = {"maker": 0.001, "taker": 0.002}
    result = wb.backtest(
        "rules",
        candles,
        {"rules": "buy 100% when close crosses_above 100.5 take_profit 2%, 4%"},
        fees=fees,
        slippage=0.0,
        init_cash=1000,
    )
    units = 1000 / (100 * 1.002)
    assert _fills(result) == [
        (2, round(units, 9), 100, "entry"),
        (2, round(-units / 2, 9), 102, "take_profit"),
        (3, round(-units / 2, 9), 104, "take_profit"),
    ]
    assert result.fills["fee"].tolist() == pytest.approx(
        [units * 100 * 0.002, units / 2 * 102 * 0.001, units / 2 * 104 * 0.001]
    )


def test_the_trailing_stop_follows_the_best_price_of_the_bars_before():
    start = [(100, 100, 100, 100), (100, 101, 99, 101)]
    rule = {"rules": "buy 100% when close crosses_above 100.5 trailing_stop 10%"}
    # entry at 100: the stop is 90 on the entry bar (high 120), then 108
    result = wb.backtest("rules", bars(start + [(100, 120, 95, 118), (118, 119, 107, 110)]), rule, **FREE)
    assert _fills(result) == [(2, 10, 100, "entry"), (3, -10, 108, "stop_loss")]
    tighter = {"rules": "buy 100% when close crosses_above 100.5 stop_loss 4% trailing_stop 10%"}
    result = wb.backtest("rules", bars(start + [(100, 101, 95, 99)]), tighter, **FREE)
    assert _fills(result) == [(2, 10, 100, "entry"), (2, -10, 96, "stop_loss")]  # max(96, 90)
    short = {"rules": "sell 100% when close crosses_below 99.5 trailing_stop 10%"}
    result = wb.backtest(
        "rules", bars([(100, 100, 100, 100), (100, 100, 98, 99), (100, 104, 80, 82), (82, 89, 81, 85)]), short, **FREE
    )
    assert _fills(result) == [(2, -10, 100, "entry"), (3, 10, 88, "stop_loss")]  # 80 * 1.1


def test_shorts_fixed_units_and_reversals():
    candles = bars(
        [(100, 100, 100, 100), (100, 100, 98, 99), (99, 99, 97, 98), (98, 104, 98, 103), (103, 103, 103, 103)]
    )
    result = wb.backtest(
        "rules", candles, {"rules": "sell 2 units when close < 100\nexit short when close > 102"}, **FREE
    )
    assert _fills(result) == [(2, -2, 99, "entry"), (4, 2, 103, "exit")]
    assert result.equity.iloc[-1] == pytest.approx(1000 - 8)
    capped = wb.backtest("rules", candles, {"rules": "buy 100 units when close < 100"}, **FREE)
    assert _fills(capped)[0] == (2, round(1000 / 99, 9), 99, "entry")  # what the cash pays for
    flip = bars([(100, 100, 100, 100), (100, 102, 100, 102), (102, 102, 98, 98), (97, 97, 97, 97)])
    result = wb.backtest("rules", flip, {"rules": "buy 100% when close > 101\nsell 100% when close < 99"}, **FREE)
    long_units = 1000 / 102
    short_units = long_units * 97 / 97  # the equity after the long, all in again
    assert _fills(result) == [
        (2, round(long_units, 9), 102, "entry"),
        (3, round(-long_units, 9), 97, "exit"),
        (3, round(-short_units, 9), 97, "entry"),
    ]


def test_leverage_liquidates_at_the_maintenance_margin():
    candles = bars([(100, 100, 100, 100), (100, 101, 99, 101), (100, 100, 99, 99.5), (99, 99, 90, 92)])
    result = wb.backtest("rules", candles, {"rules": "leverage 10\nbuy 50% when close crosses_above 100.5"}, **FREE)
    units = 500 * 10 / 100
    assert _fills(result) == [(2, units, 100, "entry"), (3, -units, 90.5, "liquidation")]
    assert result.metrics["liquidations"] == 1 and result.equity.iloc[-1] == pytest.approx(500)


def test_unleveraged_rule_runs_replay_in_vectorbt(candles):
    result = wb.backtest("rules", candles, {"rules": RICH}, funding=None)  # vectorbt has no funding
    assert {"stop_loss", "take_profit", "exit", "entry"} <= set(result.fills["kind"])
    value = result.portfolio.value().to_numpy()
    assert np.max(np.abs(value / result.equity.to_numpy() - 1)) < 1e-9


# -- the same code paths as the built-in templates ---------------------------------------------


@pytest.mark.parametrize(
    "rules, channel",
    [
        (BREAKOUT, {"entry_window": 48, "exit_window": 24}),
        (
            BOTH.replace("n = 48, m = 24", "n = 30, m = 60"),
            {"entry_window": 30, "exit_window": 60, "direction": "both"},
        ),
        (
            "vars n = 20, m = 10\nbuy 50% when close < DONCHIAN($n).low\nexit long when close > DONCHIAN($m).high\n",
            {"entry_window": 20, "exit_window": 10, "mode": "reversion", "position_size": 0.5},
        ),
    ],
)
def test_a_rule_written_as_the_channel_trades_exactly_as_the_channel_template(rules, channel):
    candles = wb.load_candles()
    ours, theirs = wb.backtest("rules", candles, {"rules": rules}), wb.backtest("channel", candles, channel)
    assert len(ours.fills) > 100
    pd.testing.assert_frame_equal(ours.fills, theirs.fills, check_exact=True)
    assert ours.metrics == theirs.metrics


def test_every_number_can_be_swept_by_name_and_each_row_equals_its_backtest(candles):
    grid = {"rules": RICH, "fast": [8, 12, 20], "stop": [1.0, 2.5]}
    table = wb.sweep("rules", candles, grid, progress=False)
    assert len(table) == 6 and table.attrs["completed"] == 6
    assert sorted(zip(table["fast"], table["stop"])) == [(f, s) for f in (8, 12, 20) for s in (1.0, 2.5)]
    for row in table.itertuples():
        metrics = wb.backtest("rules", candles, {"rules": RICH, "fast": row.fast, "stop": row.stop}).metrics
        for name, value in metrics.items():
            assert _close(value, float(getattr(row, name))), (row.fast, row.stop, name)
        assert row.rules["vars"] == {"fast": row.fast, "stop": row.stop}  # a row is a complete strategy
    several = wb.sweep("rules", candles, {"rules": [BREAKOUT, parse_rules(BOTH)], "n": [20, 40]}, progress=False)
    assert len(several) == 4  # a list of rules is an axis too; a JSON rule is one value
    channel = wb.sweep("channel", candles, {"entry_window": [20, 40], "exit_window": 24}, progress=False)
    longs = several[[r["short"] is None for r in several["rules"]]].sort_values("n")
    assert longs["sharpe"].tolist() == channel.sort_values("entry_window")["sharpe"].tolist()


def test_rule_errors_reach_backtest_and_sweep_with_their_position(candles):
    with pytest.raises(RuleError, match=r"^line 2, column 23: unexpected end of the text"):
        wb.backtest("rules", candles, {"rules": "buy 10% when close > 1\nexit long when close >"})
    with pytest.raises(RuleError, match="the rules have no variable 'fats'; their variables are fast, stop"):
        wb.sweep("rules", candles, {"rules": RICH, "fats": [1, 2]}, progress=False)
    with pytest.raises(RuleError, match=r"EMA window: \$fast = 0 is not allowed"):
        wb.sweep("rules", candles, {"rules": RICH, "fast": [5, 0]}, progress=False)
    with pytest.raises(RuleError, match=r"long stop_loss \(percent\): \$stop = 150 is not allowed"):
        wb.backtest("rules", candles, {"rules": RICH, "stop": 150})


def test_rule_errors_carry_where_and_why_as_attributes():
    """A form places an error itself: it reads where (path, or line and column) and why
    (reason) from the error, never from its wording."""
    with pytest.raises(RuleError) as text_error:
        wb.parse_rules("buy 10% when close > 1\nexit long when close >")
    assert (text_error.value.line, text_error.value.column) == (2, 23)
    assert text_error.value.reason.startswith("unexpected end of the text; expected")
    assert str(text_error.value) == f"line 2, column 23: {text_error.value.reason}"
    with pytest.raises(RuleError) as json_error:
        wb.parse_rules({"long": {"entry": {"left": {"indicator": "RSI", "params": [0]}, "op": "<", "right": 30}}})
    assert json_error.value.path == "long.entry.left.params[0]" and json_error.value.line is None
    assert str(json_error.value) == f"long.entry.left.params[0]: {json_error.value.reason}"
    assert "RSI window" in json_error.value.reason
    with pytest.raises(RuleError) as bad_leverage:
        wb.parse_rules({"leverage": 500, "long": {"entry": {"left": "close", "op": ">", "right": 1}}})
    assert bad_leverage.value.path == "leverage" and bad_leverage.value.reason.startswith("500 is not allowed")


def test_the_rules_template_is_declared_like_the_others():
    template = wb.get_template("rules")
    assert {"signal", "fill", "exits", "sweep", "language"} <= set(template.semantics)
    strategy = template.strategy()
    assert strategy["type"] == "rules" and strategy["params"]["rules"]["vars"] == {"fast": 12, "slow": 26}
    assert template.validate({"rules": BREAKOUT, "n": 10})["rules"]["vars"] == {"n": 10, "m": 24}


def test_the_parameter_editor_edits_a_rule_as_its_text(candles):
    editor = wb.editor("rules", candles.iloc[:500], {"rules": BREAKOUT, "n": 20}, on_save=None)
    assert editor.controls["rules"].value == BREAKOUT.replace("n = 48", "n = 20") and editor.error is None
    editor.controls["rules"].value = "buy 10% when RSI < 30\nexit long when"
    assert editor.error.startswith("line 2, column 15: unexpected end of the text; expected ")
    editor.controls["rules"].value = "buy 10% when RSI < 30\nexit long when RSI > 60"
    assert editor.error is None and editor.result.params["rules"]["long"]["exit"]["right"] == 60


# -- saved strategies and live trading ----------------------------------------------------------


@pytest.fixture
def db(database):
    vault.use(None)
    yield database
    vault.use(None)


def test_a_rule_strategy_saves_loads_and_backtests_as_saved(db, candles):
    saved = wb.save_strategy("my rules", "rules", {"rules": RICH, "fast": 9}, {"max_daily_loss": 300})
    loaded = wb.load_strategy("my rules")
    assert loaded.template == "rules" and loaded.params == saved.params
    assert loaded.params["rules"] == parse_rules(RICH.replace("fast = 12", "fast = 9"))
    assert rules_text(loaded.params["rules"]).startswith("vars fast = 9, stop = 2\n")
    direct = wb.backtest("rules", candles, {"rules": RICH, "fast": 9}, risk={"max_daily_loss": 300})
    assert loaded.backtest(candles).metrics == direct.metrics
    again = wb.save_strategy("my rules", loaded.strategy)  # the strategy's JSON form saves as it is
    assert again.version == 2 and again.params == loaded.params
    with pytest.raises(RuleError, match="line 1, column 1: unexpected 'purchase'"):
        wb.save_strategy("broken", "rules", {"rules": "purchase 10% when close > 1"})


def test_a_paper_session_ticks_a_rule_strategy_as_its_backtest(db):
    if db.server.backend != "embedded":
        pytest.skip("replay parity runs on the embedded server only (it does not depend on the server)")
    rules = (
        "buy 50% when EMA(5) crosses_above EMA(15)\n    stop_loss 1% trailing_stop 1.5%\n"
        "exit long when EMA(5) crosses_below EMA(15)\n"
        "sell 0.05 units when close < DONCHIAN(12).low\nexit short when close > DONCHIAN(6).high\n"
    )
    candles = wb.load_candles().iloc[:140]
    result = wb.backtest("rules", candles, {"rules": rules}, funding=None)  # a paper exchange charges none
    assert {"entry", "exit", "stop_loss"} <= set(result.fills["kind"]) and (result.fills["size"] < 0).any()
    wb.save_strategy("live rules", "rules", {"rules": rules})
    sid = wb.live.create_session(
        "live rules",
        exchange="paper",
        replay_from=str(candles.index[1]),
        replay_end=str(candles.index[-1] + pd.Timedelta(hours=1)),
    )
    assert wb.live.status(sid).market_type == "swap"  # it sells short
    wb.live.start(sid)
    for _ in range(len(candles) + 5):
        report = wb.live.tick(sid)
        if report.skipped:
            break
    assert report.skipped == "the replay reached the end of its candles"
    with store.session() as scope:
        rows = scope.execute(
            select(store.Fill.ts, store.Order.side, store.Fill.amount, store.Fill.price)
            .join(store.Order, store.Order.id == store.Fill.order_id)
            .where(store.Order.session_id == sid)
            .order_by(store.Fill.ts, store.Fill.id)
        ).all()
    live = [(pd.Timestamp(r.ts), float(r.amount) * (1 if r.side == "buy" else -1), float(r.price)) for r in rows]
    expected = [(f.time, f.size, f.price) for f in result.fills.itertuples()]
    assert live == expected
    assert float(wb.live.status(sid).position) == result.position.iloc[-1]


def test_a_session_trades_at_the_rule_strategys_own_leverage(db):
    wb.save_strategy("levered rules", "rules", {"rules": "leverage 3\nbuy 50% when close > EMA(10)\n"})
    assert wb.live.status(wb.live.create_session("levered rules", exchange="paper")).leverage == 3
    with pytest.raises(SessionError, match="leverage 2 differs from strategy .* own leverage 3"):
        wb.live.create_session("levered rules", exchange="paper", leverage=2)


# -- the simple moving average on flat bars ------------------------------------------------------


@pytest.mark.parametrize("price", [0.1, 0.7, 3.3, 1e8 + 0.3])
def test_sma_and_bands_of_a_flat_window_are_exact(price):
    """Twenty 0.1s sum to 2.0000000000000004: a flat window must still average to exactly 0.1,
    with a band width of exactly 0, after a trend too (the running sums carry its past)."""
    close = np.concatenate([np.linspace(price * 0.5, price * 1.5, 97), np.full(300, price)])
    for window in (1, 3, 20, 50):
        mean, std = _indicators._rolling_mean_std(close, window)
        flat = np.arange(len(close)) >= 97 + window - 1
        assert (mean[flat] == price).all() and (std[flat] == 0.0).all()


def test_sma_matches_pandas_to_1e_12_on_random_walks():
    rng = np.random.default_rng(11)
    for level, step in ((100.0, 1.0), (0.5, 1e-4), (1e8, 0.01), (30_000.0, 50.0)):
        close = level + np.cumsum(rng.normal(0.0, step, 20_000))
        for window in (2, 7, 20, 200, 1_000):
            mean, std = _indicators._rolling_mean_std(close, window)
            reference = pd.Series(close).rolling(window)
            _same(mean, reference.mean(), rel=1e-12)
            exact = np.array([np.std(close[t - window + 1 : t + 1]) for t in range(window - 1, len(close), 97)])
            assert np.allclose(std[window - 1 :: 97], exact, rtol=1e-9, atol=1e-12 * level)


def test_a_rule_against_the_sma_of_flat_bars_never_fires():
    """close > SMA(20) and close < SMA(20) are both false on flat bars: no float noise trades."""
    rules = "buy 50% when close > SMA(20)\nsell 50% when close < SMA(20)\n"
    for price in (0.1, 3.3):  # summed twenty times: 2.0000000000000004 and 65.99999999999997
        result = wb.backtest("rules", bars([(price, price, price, price)] * 200), {"rules": rules}, **FREE)
        assert result.fills.empty
