"""Exchanges by name, papermill-style: ``open_exchange("binance", ...)``, ``open_exchange("paper", ...)``.

The built-ins register here; another package adds one by declaring a factory (a callable
taking ``open_exchange``'s options and returning an ``Exchange``) under the
``workbench.exchanges`` entry-point group, which reaches every process of the environment.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

from workbench.errors import ExchangeError
from workbench.exchange._types import Exchange

_FACTORIES: dict[str, Callable[..., Exchange]] = {}


def register(name: str, factory: Callable[..., Exchange]) -> None:
    """Make ``open_exchange(name, **options)`` call ``factory(**options)``."""
    _FACTORIES[name] = factory


def open_exchange(name: str, **options: Any) -> Exchange:
    """An exchange client by name.

    ``"binance"``, ``"gate"``: ``api_key=``, ``secret=`` (strings or objects with ``.reveal()``,
    e.g. from ``workbench.vault.keys_for``), ``market_type="spot"|"swap"``, ``urls=`` (ccxt's
    ``urls["api"]``, e.g. a test server), ``config=`` (ccxt settings such as ``timeout``).
    ``"paper"``: ``candles``, ``clock=``, ``market_type=``, ``account=``, ``store=``,
    ``balance=``, ``fees=``, ``slippage=`` (see ``PaperExchange``).
    """
    if name not in _FACTORIES:  # one another package of the environment declares
        for point in entry_points(group="workbench.exchanges", name=name):
            register(name, point.load())
    try:
        factory = _FACTORIES[name]
    except KeyError:
        declared = {point.name for point in entry_points(group="workbench.exchanges")}
        raise ExchangeError(
            f"no exchange named {name!r}; available: {', '.join(sorted(set(_FACTORIES) | declared))}"
        ) from None
    return factory(**options)


def _ccxt(name: str) -> Callable[..., Exchange]:
    def factory(**options: Any) -> Exchange:
        from workbench.exchange._ccxt import CcxtExchange

        return CcxtExchange(name, **options)

    return factory


def _paper(**options: Any) -> Exchange:
    from workbench.exchange._paper import PaperExchange

    return PaperExchange(**options)


for _name in ("binance", "gate"):
    register(_name, _ccxt(_name))
register("paper", _paper)
