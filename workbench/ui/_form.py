"""The frame the parameter editor and the rule builder share: risk-limit boxes, a status line,
the metrics and bokeh chart of the last good backtest, and "Save as strategy".

Both forms show bad input in the status line and keep their last good result, so a typo in
a notebook never raises and never loses what was there.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets
import pandas as pd

from workbench.backtest._chart import standalone_html
from workbench.errors import WorkbenchError
from workbench.strategies import Template, save_strategy

if TYPE_CHECKING:  # pragma: no cover
    from workbench.backtest import BacktestResult

STYLE = {"description_width": "150px"}
LAYOUT = widgets.Layout(width="420px")

OnSave = Callable[[dict[str, Any], str], Any]


class BacktestForm(widgets.VBox):
    """Risk limits, status line, metrics, chart, name box and save button over one template.

    Subclasses lay out ``children``, define ``save()`` (the button calls it) and use
    :meth:`_run` (backtest and show) and :meth:`_save` (hand a strategy JSON to ``on_save``).
    ``.result`` is the last good backtest and ``.error`` the message the status line shows, or None.
    """

    def __init__(
        self,
        template: Template,
        candles: pd.DataFrame | None,
        on_save: OnSave | None,
        backtest_options: Mapping[str, Any],
    ):
        from workbench.backtest import backtest

        self._backtest = backtest
        self.template = template
        self.candles = candles
        options = dict(backtest_options)
        risk = template.validate_risk(options.pop("risk", None))
        self.options = options
        self.result: BacktestResult | None = None
        self.error: str | None = None
        self.risk_controls = {
            name: widgets.BoundedFloatText(
                value=risk[name] or 0.0,
                min=0.0,
                max=1e12,
                description=name,
                style=STYLE,
                layout=LAYOUT,
                tooltip="quote currency; 0 = no limit",
            )
            for name in risk
        }
        self.status = widgets.HTML()
        self.metrics_view = widgets.HTML()
        self.chart = widgets.HTML()
        self.name_box = widgets.Text(placeholder="strategy name", layout=widgets.Layout(width="200px"))
        self.save_button = widgets.Button(description="Save as strategy", icon="save", disabled=on_save is None)
        self._on_save = on_save
        self.save_button.on_click(lambda _: self.save())
        super().__init__()

    @property
    def risk(self) -> dict[str, float | None]:
        return {name: (c.value or None) for name, c in self.risk_controls.items()}

    def _fail(self, message: str) -> None:
        self.error = message
        self._say(message, ok=False)

    def _ok(self, message: str) -> None:
        self.error = None
        self._say(message)

    def _say(self, message: str, ok: bool = True) -> None:
        mark, colour = ("&#10003;", "#27ae60") if ok else ("&#9888;", "#c0392b")
        self.status.value = f'<span style="color:{colour}">{mark} {html.escape(message, quote=False)}</span>'

    def _run(self, params: Mapping[str, Any]) -> Any:
        """Backtest ``params``; show the chart and metrics, or the error (keeping the last result)."""
        try:
            result = self._backtest(self.template, self.candles, params, risk=self.risk, **self.options)
        except WorkbenchError as exc:
            self._fail(str(exc))
            return None
        self.result = result
        self._ok("backtest up to date")
        self.metrics_view.value = result.stats().to_html(border=0, header=False)
        self.chart.value = standalone_html(result.figure, title="backtest chart", css_class="wb-backtest-chart")
        return result

    def _save(self, strategy: dict[str, Any]) -> Any:
        """Hand ``strategy`` to ``on_save`` under the name box's name; the outcome goes to the status line."""
        if self._on_save is None:
            return None
        name = self.name_box.value.strip() or f"{self.template.name} {pd.Timestamp.now('UTC'):%Y-%m-%d %H:%M}"
        try:
            saved = self._on_save(strategy, name)
        except WorkbenchError as exc:  # the form's values stay good: only this save failed
            self._say(str(exc), ok=False)
            return None
        self._say(f"saved: {saved}")
        return saved


def save_to_store(strategy: dict[str, Any], name: str) -> Any:
    """The default "Save as strategy": a new strategy (or version) in your saved strategies."""
    return save_strategy(name, strategy)
