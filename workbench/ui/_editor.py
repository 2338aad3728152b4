"""The parameter editor: an ipywidgets form generated from a template's schema.

Every parameter gets the control its kind calls for (a slider for a short numeric range, a
bounded box for a long one, a dropdown for a choice, a list input for a ladder). A change
re-runs the backtest and redraws the bokeh chart and the metrics table; bad input shows
its message in the form instead of raising.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

import ipywidgets as widgets
import pandas as pd

from workbench.strategies import Param, Template, get_template
from workbench.ui._form import LAYOUT as _LAYOUT
from workbench.ui._form import STYLE as _STYLE
from workbench.ui._form import BacktestForm, OnSave, save_to_store

if TYPE_CHECKING:  # pragma: no cover
    from workbench.backtest import BacktestResult

_SLIDER_STEPS = 500  # longer ranges get a number box: a slider that wide is unusable


def _control(param: Param, value: Any) -> widgets.Widget:
    common = dict(description=param.name, style=_STYLE, layout=_LAYOUT, tooltip=param.help)
    if param.kind == "rules":  # edited as its text form (workbench.strategies.rules)
        from workbench.strategies.rules import rules_text

        return widgets.Textarea(value=rules_text(value), continuous_update=False, rows=8, **common)
    if param.kind == "choice":
        return widgets.Dropdown(options=list(param.choices), value=value, **common)
    if param.kind == "bool":
        return widgets.Checkbox(value=value, **common)
    if param.kind == "float_list":
        return widgets.FloatsInput(
            value=list(value), format=".2f", **{k: v for k, v in common.items() if k not in ("style",)}
        )
    step = param.step or (1 if param.kind == "int" else 0.01)
    steps = (cast(float, param.max) - cast(float, param.min)) / step  # numbers have bounds
    if param.kind == "int":
        cls = widgets.IntSlider if steps <= _SLIDER_STEPS else widgets.BoundedIntText
    else:
        cls = widgets.FloatSlider if steps <= _SLIDER_STEPS else widgets.BoundedFloatText
    extra = {"continuous_update": False} if cls in (widgets.IntSlider, widgets.FloatSlider) else {}
    return cls(value=value, min=param.min, max=param.max, step=step, **extra, **common)


class StrategyEditor(BacktestForm):
    """The editor widget; ``.params`` and ``.result`` hold the last good run.

    ``on_save`` (optional) is called with the strategy JSON when "Save as strategy" is
    pressed, and its return value (e.g. the saved strategy) is shown in the status line.
    """

    def __init__(
        self,
        template: Template,
        candles: pd.DataFrame,
        params: Mapping[str, Any] | None,
        on_save: OnSave | None,
        **backtest_options: Any,
    ):
        super().__init__(template, candles, on_save, backtest_options)
        start = template.validate(params)
        self.controls = {name: _control(p, start[name]) for name, p in template.params.items()}
        for control in [*self.controls.values(), *self.risk_controls.values()]:
            control.observe(lambda change: self.run(), names="value")
        form = widgets.VBox(
            [
                widgets.HTML(f"<b>{template.title}</b>: {template.description}"),
                *self.controls.values(),
                widgets.HTML("<b>Risk limits</b>"),
                *self.risk_controls.values(),
                widgets.HBox([self.name_box, self.save_button]),
                self.status,
            ]
        )
        self.children = [widgets.HBox([form, self.metrics_view]), self.chart]
        self.run()

    @property
    def params(self) -> dict[str, Any]:
        return {
            name: (list(c.value) if isinstance(c.value, (list, tuple)) else c.value)
            for name, c in self.controls.items()
        }

    def run(self) -> None:
        """Backtest the form's values; show the chart and metrics, or the error."""
        self._run(self.params)

    def save(self) -> Any:
        """Hand the current strategy to ``on_save``; the outcome goes to the status line."""
        if self.error:
            return None
        return self._save(cast("BacktestResult", self.result).strategy)  # backtested on opening


def editor(
    template: str | Template,
    candles: pd.DataFrame,
    params: Mapping[str, Any] | None = None,
    *,
    on_save: OnSave | None = save_to_store,
    **backtest_options: Any,
) -> StrategyEditor:
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
