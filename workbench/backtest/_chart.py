"""The bokeh chart of a backtest: price with fills, equity, drawdown and (on perpetuals) the
funding paid, on one time axis."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from bokeh.layouts import column
from bokeh.models import ColumnDataSource, HoverTool, NumeralTickFormatter
from bokeh.models.annotations import Title  # bokeh.models re-exports it, but not to type checkers
from bokeh.plotting import figure

if TYPE_CHECKING:
    from workbench.backtest._result import BacktestResult

_MAX_POINTS = 5_000  # a browser stays smooth; fills are always drawn exactly


def _thin(series: pd.Series) -> pd.Series:
    """At most about _MAX_POINTS points: each block's first, highest and lowest value."""
    if len(series) <= _MAX_POINTS:
        return series
    values = series.to_numpy()
    step = int(np.ceil(len(values) / (_MAX_POINTS / 3)))
    n = len(values) // step * step
    blocks = values[:n].reshape(-1, step)
    starts = np.arange(0, n, step)
    keep = np.unique(
        np.concatenate(
            [starts, starts + blocks.argmax(axis=1), starts + blocks.argmin(axis=1), np.arange(n, len(values))]
        )
    )
    return series.iloc[keep]


def _x(index: pd.DatetimeIndex) -> pd.DatetimeIndex:
    """Bokeh's datetime axis wants naive timestamps; ours are UTC."""
    return index.tz_convert(None) if index.tz is not None else index


def result_figure(result: BacktestResult, *, width: int = 900):
    """Three linked panels; hover shows values, fills are marked by kind."""
    close = _thin(result.candles["close"])
    price = figure(
        height=300,
        width=width,
        x_axis_type="datetime",
        title=result.template.title,
        tools="xpan,xwheel_zoom,box_zoom,reset,save",
    )
    price.add_layout(
        Title(text=result.template.describe(result.params), text_font_size="8pt", text_font_style="normal"), "above"
    )
    price.line(_x(close.index), close.to_numpy(), color="#555555", legend_label="close")
    fills = result.fills
    styles = {"buy": ("triangle", "#2ca02c"), "sell": ("inverted_triangle", "#d62728")}
    for side, (marker, color) in styles.items():
        chosen = fills[fills["size"] > 0] if side == "buy" else fills[fills["size"] < 0]
        if len(chosen):
            source = ColumnDataSource(
                {
                    "time": _x(pd.DatetimeIndex(chosen["time"])),
                    "price": chosen["price"],
                    "size": chosen["size"].abs(),
                    "kind": chosen["kind"].astype(str),
                }
            )
            glyph = price.scatter("time", "price", source=source, marker=marker, size=9, color=color, legend_label=side)
            price.add_tools(
                HoverTool(
                    renderers=[glyph],
                    formatters={"@time": "datetime"},
                    tooltips=[
                        ("time", "@time{%F %H:%M}"),
                        ("price", "@price{0,0.00}"),
                        ("size", "@size{0.0000}"),
                        ("kind", "@kind"),
                    ],
                )
            )
    price.legend.location = "top_left"
    price.legend.click_policy = "hide"
    equity = _thin(result.equity)
    eq = figure(
        height=180,
        width=width,
        x_axis_type="datetime",
        x_range=price.x_range,
        title="Equity",
        tools="xpan,xwheel_zoom,reset",
    )
    eq.line(_x(equity.index), equity.to_numpy(), color="#1f77b4")
    eq.yaxis.formatter = NumeralTickFormatter(format="0,0")
    drawdown = _thin(result.drawdown)
    dd = figure(
        height=140,
        width=width,
        x_axis_type="datetime",
        x_range=price.x_range,
        title="Drawdown",
        tools="xpan,xwheel_zoom,reset",
    )
    dd.varea(x=_x(drawdown.index), y1=drawdown.to_numpy(), y2=0.0, color="#d62728", alpha=0.4)
    dd.yaxis.formatter = NumeralTickFormatter(format="0%")
    if not result.funding.any():
        return column(price, eq, dd)
    paid = _thin(result.funding.cumsum())
    fund = figure(
        height=140,
        width=width,
        x_axis_type="datetime",
        x_range=price.x_range,
        title="Funding paid, cumulative (+ paid, - received)",
        tools="xpan,xwheel_zoom,reset",
    )
    fund.line(_x(paid.index), paid.to_numpy(), color="#9467bd")
    fund.yaxis.formatter = NumeralTickFormatter(format="0,0.00")
    return column(price, eq, dd, fund)


def standalone_html(figure: Any, *, title: str, css_class: str, style: str | None = None) -> str:
    """A bokeh figure as a standalone page (BokehJS inline, so it works offline) in an iframe,
    which JupyterLab and Voila both show without a bokeh extension or a trusted notebook.
    ``style`` defaults to the figure's own size."""
    from bokeh.embed import file_html
    from bokeh.resources import INLINE

    if style is None:
        parts = getattr(figure, "children", None) or [figure]
        width = max(part.width or 600 for part in parts) + 40
        height = sum(part.height or 300 for part in parts) + 40
        style = f"width:{width}px;max-width:100%;height:{height}px;border:0"
    page = file_html(figure, INLINE, title=title)
    return f"<iframe class='{css_class}' title='{title}' srcdoc=\"{html.escape(page)}\" style='{style}'></iframe>"
