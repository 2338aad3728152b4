"""The catalogue as an ipywidgets browser: filters, a list of listings, the chosen listing's
metrics and chart, and a clone button. Errors show in the widget instead of raising."""

from __future__ import annotations

import html
import math

import ipywidgets as widgets

from workbench.errors import WorkbenchError
from workbench.market._catalogue import browse, listing
from workbench.market._clone import clone

_OK, _BAD = '<span style="color:#27ae60">&#10003; {}</span>', '<span style="color:#c0392b">&#9888; {}</span>'


class MarketBrowser(widgets.VBox):
    """``.table`` is the filtered catalogue, ``.selected`` the listing shown (or None)."""

    def __init__(self):
        from workbench.strategies import templates

        self.template = widgets.Dropdown(
            options=[("any template", None), *[(t, t) for t in templates()]], layout=widgets.Layout(width="180px")
        )
        self.price = widgets.ToggleButtons(
            options=[("any", None), ("free", True), ("paid", False)], style={"button_width": "60px"}
        )
        self.search = widgets.Text(placeholder="search name, description", continuous_update=False)
        self.min_sharpe = widgets.Text(
            placeholder="min Sharpe", continuous_update=False, layout=widgets.Layout(width="110px")
        )
        self.listings = widgets.Select(options=[], rows=8, layout=widgets.Layout(width="100%"))
        self.detail = widgets.HTML()
        self.chart = widgets.Output()
        self.name_box = widgets.Text(placeholder="name of your copy", layout=widgets.Layout(width="220px"))
        self.clone_button = widgets.Button(description="Clone", icon="copy", disabled=True)
        self.status = widgets.HTML()
        self.table = None
        self.selected = None
        for control in (self.template, self.price, self.search, self.min_sharpe):
            control.observe(lambda change: self.refresh(), names="value")
        self.listings.observe(lambda change: self.show(change["new"]), names="value")
        self.clone_button.on_click(lambda _: self.clone())
        filters = widgets.HBox([self.template, self.price, self.search, self.min_sharpe])
        super().__init__(
            [
                filters,
                self.listings,
                self.detail,
                self.chart,
                widgets.HBox([self.name_box, self.clone_button]),
                self.status,
            ]
        )
        self.refresh()

    def refresh(self) -> None:
        """Query the catalogue with the filters' values."""
        text = self.min_sharpe.value.strip()
        try:
            minimum = {"sharpe": float(text)} if text else None
            self.table = browse(
                self.template.value, free=self.price.value, search=self.search.value or None, min_metrics=minimum
            )
        except ValueError:
            self.status.value = _BAD.format(html.escape(f"min Sharpe: {text!r} is not a number"))
            return
        except WorkbenchError as exc:
            self.status.value = _BAD.format(html.escape(str(exc)))
            return
        self.listings.options = [(_label(row), int(listing_id)) for listing_id, row in self.table.iterrows()]
        self.status.value = _OK.format(f"{len(self.table)} listing{'s' * (len(self.table) != 1)}")
        if self.listings.value is None:
            self.show(None)

    def show(self, listing_id: int | None) -> None:
        """Show one listing's metrics and chart."""
        from bokeh.io import output_notebook, show

        self.chart.clear_output()
        self.selected = listing(listing_id) if listing_id is not None else None
        self.clone_button.disabled = self.selected is None or not self.selected.cloneable
        self.detail.value = self.selected._repr_html_() if self.selected else ""
        if self.selected is not None:
            with self.chart:
                output_notebook(hide_banner=True)
                show(self.selected.figure)

    def clone(self):
        """Clone the shown listing under the name in the box (default: the listing's)."""
        if self.selected is None:
            return None
        try:
            saved = clone(self.selected.id, self.name_box.value.strip() or None)
        except WorkbenchError as exc:
            self.status.value = _BAD.format(html.escape(str(exc)))
            return None
        self.status.value = _OK.format(f"cloned into your strategies: {html.escape(str(saved))}")
        return saved


def _label(row) -> str:
    price = "free" if row["price"] == 0 else f"{row['price']} {row['currency']}"
    sharpe = "n/a" if row["sharpe"] is None or math.isnan(row["sharpe"]) else f"{row['sharpe']:.2f}"
    return f"{row['name']}  ·  {row['author']}  ·  {row['template']}  ·  {price}  ·  Sharpe {sharpe}"


def browser() -> MarketBrowser:
    """Browse the catalogue in a notebook: filter, look at a listing's chart, clone it."""
    return MarketBrowser()
