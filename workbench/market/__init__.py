"""The strategy marketplace: publish a strategy to a catalogue every tenant can browse, clone
listings into your own strategies, sell them through entitlements.

From a notebook (as the tenant)::

    import workbench as wb

    listing = wb.market.publish("dip buyer", description="buys 1-3% dips", price=25)  # snapshot + backtest
    wb.market.browse(template="channel", free=True, min_metrics={"sharpe": 1}, search="breakout")
    wb.market.listing(7).figure                  # the published equity curve; .stats(), .metrics
    wb.market.clone(7, name="my breakout")       # a new strategy of yours (paid: entitlement first)
    wb.market.grant(7, "bob")                    # the author lets bob clone a paid listing
    wb.market.update(7, strategy="dip buyer")    # measure again, new snapshot (version + 1)
    wb.market.withdraw(7)                        # off the catalogue; clones stay with their owners
    wb.market.listing(7).verify()                # re-run the backtest, compare with the published metrics
    wb.market.browser()                          # the same as ipywidgets

A listing is a snapshot: name, description, template, parameters and risk limits, the data
set and backtest settings, metrics and the equity curve; editing the strategy it came from
changes nothing. PostgreSQL row-level security (migration 0008) shows every tenant the
listed listings, lets only the author change one, shows a paid listing's parameters only to
tenants entitled to it, and never exposes anything else of the author's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from workbench._lazy import from_modules, lazy_exports
from workbench.errors import MarketError

_MODULES = {
    "workbench.market._catalogue": ["browse", "listing", "publish", "update", "withdraw"],
    "workbench.market._clone": ["clone"],
    "workbench.market._entitlements": ["Entitlement", "entitlements", "grant"],
    "workbench.market._listing": ["Listing"],
    "workbench.market._browser": ["browser"],
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, from_modules(_MODULES), eager=["MarketError"])

if TYPE_CHECKING:  # pragma: no cover
    from workbench.market._browser import browser
    from workbench.market._catalogue import browse, listing, publish, update, withdraw
    from workbench.market._clone import clone
    from workbench.market._entitlements import Entitlement, entitlements, grant
    from workbench.market._listing import Listing
