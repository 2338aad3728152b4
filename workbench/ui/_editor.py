"""The parameter editor: an ipywidgets form generated from a template's schema.

Every parameter gets the control its kind calls for (a slider for a short numeric range, a
bounded box for a long one, a dropdown for a choice, a list input for a ladder). A change
re-runs the backtest and redraws the bokeh chart and the metrics table; bad input shows
its message in the form instead of raising.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import ipywidgets as widgets
import pandas as pd

from workbench.errors import WorkbenchError
from workbench.strategies import Param, Template, get_template, save_strategy

_SLIDER_STEPS = 500  # longer ranges get a number box: a slider that wide is unusable
_STYLE = {"description_width": "150px"}
_LAYOUT = widgets.Layout(width="420px")


def _control(param: Param, value: Any) -> widgets.Widget:
    common = dict(description=param.name, style=_STYLE, layout=_LAYOUT,
                  tooltip=param.help, description_tooltip=param.help)
    if param.kind == "choice":
        return widgets.Dropdown(options=list(param.choices), value=value, **common)
    if param.kind == "bool":
        return widgets.Checkbox(value=value, **common)
    if param.kind == "float_list":
        return widgets.FloatsInput(value=list(value), format=".2f", **{k: v for k, v in common.items()
                                                                        if k not in ("style",)})
    step = param.step or (1 if param.kind == "int" else 0.01)
    steps = (param.max - param.min) / step
    if param.kind == "int":
        cls = widgets.IntSlider if steps <= _SLIDER_STEPS else widgets.BoundedIntText
    else:
        cls = widgets.FloatSlider if steps <= _SLIDER_STEPS else widgets.BoundedFloatText
    extra = {"continuous_update": False} if cls in (widgets.IntSlider, widgets.FloatSlider) else {}
    return cls(value=value, min=param.min, max=param.max, step=step, **extra, **common)


class StrategyEditor(widgets.VBox):
    """The editor widget; ``.params`` and ``.result`` hold the last good run.

    ``on_save`` (optional) is called with the strategy JSON when "Save as strategy" is
    pressed, and its return value (e.g. the saved strategy) is shown in the status line.
    """

    def __init__(self, template: Template, candles: pd.DataFrame, params: Mapping[str, Any] | None,
                 on_save: Callable[[dict[str, Any], str], Any] | None, **backtest_options: Any):
        from workbench.backtest import backtest

        self._backtest = backtest
        self.template = template
        self.candles = candles
        self.options = backtest_options
        self.result = None
        self.error: str | None = None
        start = template.validate(params)
        self.controls = {name: _control(p, start[name]) for name, p in template.params.items()}
        risk = template.validate_risk(backtest_options.pop("risk", None))
        self.risk_controls = {
            name: widgets.BoundedFloatText(value=risk[name] or 0.0, min=0.0, max=1e12, description=name,
                                           style=_STYLE, layout=_LAYOUT,
                                           description_tooltip="quote currency; 0 = no limit")
            for name in risk}
        self.status = widgets.HTML()
        self.metrics_view = widgets.HTML()
        self.chart = widgets.Output()
        self.name_box = widgets.Text(placeholder="strategy name", layout=widgets.Layout(width="200px"))
        self.save_button = widgets.Button(description="Save as strategy", icon="save",
                                          disabled=on_save is None)
        self._on_save = on_save
        self.save_button.on_click(lambda _: self.save())
        for control in [*self.controls.values(), *self.risk_controls.values()]:
            control.observe(lambda change: self.run(), names="value")
        form = widgets.VBox([widgets.HTML(f"<b>{template.title}</b>: {template.description}"),
                             *self.controls.values(), widgets.HTML("<b>Risk limits</b>"),
                             *self.risk_controls.values(),
                             widgets.HBox([self.name_box, self.save_button]), self.status])
        super().__init__([widgets.HBox([form, self.metrics_view]), self.chart])
        self.run()

    @property
    def params(self) -> dict[str, Any]:
        return {name: (list(c.value) if isinstance(c.value, (list, tuple)) else c.value)
                for name, c in self.controls.items()}

    @property
    def risk(self) -> dict[str, float | None]:
        return {name: (c.value or None) for name, c in self.risk_controls.items()}

    def run(self) -> None:
        """Backtest the form's values; show the chart and metrics, or the error."""
        try:
            result = self._backtest(self.template, self.candles, self.params, risk=self.risk, **self.options)
        except WorkbenchError as exc:
            self.error = str(exc)
            self.status.value = f'<span style="color:#c0392b">&#9888; {_escape(self.error)}</span>'
            return
        self.error = None
        self.result = result
        self.status.value = '<span style="color:#27ae60">&#10003; backtest up to date</span>'
        self.metrics_view.value = result.stats().to_html(border=0, header=False)
        from bokeh.io import output_notebook, show

        self.chart.clear_output(wait=True)
        with self.chart:
            output_notebook(hide_banner=True)
            show(result.figure)

    def save(self) -> Any:
        """Hand the current strategy to ``on_save``; the outcome goes to the status line."""
        if self.error or self._on_save is None:
            return None
        name = self.name_box.value.strip() or f"{self.template.name} {pd.Timestamp.now('UTC'):%Y-%m-%d %H:%M}"
        try:
            saved = self._on_save(self.result.strategy, name)
        except WorkbenchError as exc:
            self.status.value = f'<span style="color:#c0392b">&#9888; {_escape(str(exc))}</span>'
            return None
        self.status.value = f'<span style="color:#27ae60">&#10003; saved: {_escape(str(saved))}</span>'
        return saved


def _save_to_store(strategy: dict[str, Any], name: str) -> Any:
    """The default "Save as strategy": a new strategy (or version) in your saved strategies."""
    return save_strategy(name, strategy)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def editor(template: str | Template, candles: pd.DataFrame, params: Mapping[str, Any] | None = None, *,
           on_save: Callable[[dict[str, Any], str], Any] | None = _save_to_store,
           **backtest_options: Any) -> StrategyEditor:
    """An ipywidgets editor of a template's parameters over a live backtest.

    Args:
        template: a template name or :class:`Template`.
        candles: the candles to backtest on.
        params: starting parameters (defaults for the missing ones).
        on_save: called as ``on_save(strategy_json, name)`` by the "Save as strategy" button;
            by default it saves to your strategies (:func:`workbench.save_strategy`), ``None``
            hides the saving.
        backtest_options: ``risk``, ``fees``, ``slippage``, ``init_cash`` as for :func:`backtest`.

    Example:
        >>> wb.editor("ema_reversal", wb.load_candles())  # doctest: +SKIP
    """
    tpl = template if isinstance(template, Template) else get_template(template)
    return StrategyEditor(tpl, candles, params, on_save, **backtest_options)


__all__ = ["StrategyEditor", "editor"]
