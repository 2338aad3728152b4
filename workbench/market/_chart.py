"""The chart of a listing, drawn from its snapshot alone: equity and drawdown over the data set."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from bokeh.layouts import column
from bokeh.models import ColumnDataSource, HoverTool, NumeralTickFormatter
from bokeh.plotting import figure

if TYPE_CHECKING:
    from workbench.market._listing import Listing


def listing_figure(listing: Listing, *, width: int = 900):
    """Two linked panels; the drawdown is measured from the higher of the peak and the initial cash,
    as the backtest measures it."""
    curve = listing.equity_curve
    time = pd.to_datetime(np.asarray(curve["time"], dtype=np.int64), unit="s")  # naive UTC, as bokeh wants
    equity = np.asarray(curve["equity"], dtype=np.float64)
    peak = np.maximum.accumulate(np.maximum(equity, listing.settings["init_cash"]))
    source = ColumnDataSource({"time": time, "equity": equity, "drawdown": equity / peak - 1.0})
    title = f"{listing.name} by {listing.author}: {listing.template} on {listing.dataset}"
    eq = figure(
        height=260, width=width, x_axis_type="datetime", title=title, tools="xpan,xwheel_zoom,box_zoom,reset,save"
    )
    eq.line("time", "equity", source=source, color="#1f77b4")
    eq.yaxis.formatter = NumeralTickFormatter(format="0,0")
    eq.add_tools(
        HoverTool(
            formatters={"@time": "datetime"},
            tooltips=[("time", "@time{%F %H:%M}"), ("equity", "@equity{0,0.00}"), ("drawdown", "@drawdown{0.00%}")],
            mode="vline",
        )
    )
    dd = figure(
        height=140,
        width=width,
        x_axis_type="datetime",
        x_range=eq.x_range,
        title="Drawdown",
        tools="xpan,xwheel_zoom,reset",
    )
    dd.varea(x="time", y1="drawdown", y2=0.0, source=source, color="#d62728", alpha=0.4)
    dd.yaxis.formatter = NumeralTickFormatter(format="0%")
    return column(eq, dd)
