"""The generated ipywidgets editor: controls from the schema, live re-runs, errors in the form."""

from __future__ import annotations

import ipywidgets as widgets
import pytest

import workbench as wb


@pytest.fixture(scope="module")
def candles():
    return wb.load_candles().iloc[-2000:]


def test_controls_follow_the_schema(candles):
    editor = wb.editor("ema_reversal", candles)
    controls = editor.controls
    assert isinstance(controls["ema_window"], widgets.BoundedIntText)  # 2..2000: too wide for a slider
    assert isinstance(controls["leverage"], widgets.IntSlider)
    assert isinstance(controls["position_size"], widgets.FloatSlider)  # 0.01..1 by 0.01
    assert isinstance(controls["stop_loss"], widgets.BoundedFloatText)  # 0.05..90 by 0.05
    assert isinstance(controls["dip_levels"], widgets.FloatsInput)
    assert controls["dip_levels"].value == [5.0, 10.0, 15.0]
    assert isinstance(wb.editor("channel", candles).controls["mode"], widgets.Dropdown)
    assert editor.result is not None and editor.error is None


def test_a_change_reruns_the_backtest(candles):
    editor = wb.editor("channel", candles, {"entry_window": 20})
    before = editor.result
    editor.controls["entry_window"].value = 60
    assert editor.result is not before
    assert editor.result.params["entry_window"] == 60
    expected = wb.backtest("channel", candles, editor.params).metrics["sharpe"]
    assert editor.result.metrics["sharpe"] == expected
    assert "Sharpe ratio" in editor.metrics_view.value


def test_invalid_input_shows_in_the_form_and_keeps_the_last_good_result(candles):
    editor = wb.editor("ema_reversal", candles)
    good = editor.result
    editor.controls["dip_levels"].value = [0.8, 0.3]
    assert "'dip_levels': [0.8, 0.3] is not allowed (not strictly ascending)" in editor.error
    assert "not strictly ascending" in editor.status.value
    assert editor.result is good
    editor.controls["dip_levels"].value = [0.3, 0.8]
    assert editor.error is None and editor.result is not good


def test_risk_limits_are_editable_and_zero_means_none(candles):
    editor = wb.editor("channel", candles)
    editor.risk_controls["max_position_size"].value = 1000
    assert editor.result.risk == {"max_position_size": 1000.0, "max_daily_loss": None}
    entries = editor.result.fills[editor.result.fills["kind"] == "entry"]
    assert (entries["size"].abs() * entries["price"]).max() <= 1000 * (1 + 1e-9)


def test_save_hands_the_strategy_json_to_the_callback(candles):
    saved = []
    editor = wb.editor("market_making", candles, {"spread": 0.8}, on_save=lambda s, name: saved.append((s, name)) or 7)
    editor.name_box.value = "wide quotes"
    assert editor.save() == 7
    strategy, name = saved[0]
    assert name == "wide quotes" and strategy["type"] == "market_making" and strategy["params"]["spread"] == 0.8
    assert "saved: 7" in editor.status.value
    assert wb.editor("channel", candles, on_save=None).save_button.disabled  # nothing to save to
