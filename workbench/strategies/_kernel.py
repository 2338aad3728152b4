"""How a template's numba kernel plugs into backtest and sweep (registered by name).

A kernel class names the indicators its parameters need, packs the parameters into a
float vector, and points at one ``simulate`` function compiled by numba::

    simulate(open, high, low, close, day, funding, indicators, rows, params, cfg,
             fills, equity_out, position_out, metrics_out, intent)

``funding[t]`` is the funding rate bar ``t`` settles at its open (``engine.pay_funding``).
``indicators[rows[k]]`` is the k-th indicator the kernel asked for. ``fills``,
``equity_out`` and ``position_out`` are empty in a sweep, sized to record in a backtest.
``intent`` is empty except in a live tick, where the kernel writes the orders of its last
(forming) bar into it (see ``workbench.engine.core.intend``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from workbench.engine.indicators import IndicatorKey

KERNELS: dict[str, type[Kernel]] = {}


def register(cls: type[Kernel]) -> type[Kernel]:
    """Class decorator: make ``cls`` the kernel of the template ``cls.name``."""
    KERNELS[cls.name] = cls
    return cls


class Kernel:
    name: ClassVar[str]
    #: upper bound of fills one bar can produce, to size the fill record of a backtest
    fills_per_bar: ClassVar[int] = 2
    #: live intent leg codes -> names (used in client order ids), and the codes that only reduce
    legs: ClassVar[dict[int, str]] = {}
    reducing: ClassVar[set[int]] = set()

    @staticmethod
    def indicator_keys(params: Mapping[str, Any]) -> list[IndicatorKey]:
        raise NotImplementedError

    @staticmethod
    def param_vector(params: Mapping[str, Any]) -> np.ndarray:
        raise NotImplementedError

    @classmethod
    def leverage(cls, params: Mapping[str, Any]) -> float:
        """The leverage a run trades at: the strategy's own, else 1."""
        own = cls.strategy_leverage(params)
        return 1.0 if own is None else own

    @staticmethod
    def strategy_leverage(params: Mapping[str, Any]) -> float | None:
        """The leverage the strategy's parameters set, or None (a live session may not differ from it)."""
        value = params.get("leverage")
        return None if value is None else float(value)

    @staticmethod
    def can_short(params: Mapping[str, Any]) -> bool:
        """Whether the strategy can hold a short position (its live session then needs a swap market)."""
        return False

    simulate: ClassVar[Any]
