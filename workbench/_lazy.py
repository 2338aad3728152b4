"""Lazy public names: packages export what lives in heavy private modules without importing them.

``import workbench`` must stay cheap (no numba, vectorbt, ccxt, SQLAlchemy until used), so a
package lists its public names and where each lives, and this helper gives it the module-level
``__getattr__`` (PEP 562) that imports a name on first use and caches it in the package::

    __getattr__, __dir__, __all__ = lazy_exports(__name__, from_modules({
        "workbench.scheduler._promote": ["promote", "demote"],
    }))
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any


def from_modules(modules: Mapping[str, Iterable[str]]) -> dict[str, str]:
    """``{module: [names]}`` as ``{name: "module:name"}``."""
    return {name: f"{module}:{name}" for module, names in modules.items() for name in names}


def lazy_exports(
    package: str, targets: Mapping[str, str], eager: Iterable[str] = ()
) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """``__getattr__``, ``__dir__`` and ``__all__`` for ``package``.

    Args:
        targets: ``{name: "module:attribute"}``, or ``{name: "module"}`` to export a module.
        eager: names the package defines itself, listed in ``__all__`` too.
    """
    exported = sorted([*targets, *eager])

    def __getattr__(name: str) -> Any:
        try:
            module, _, attribute = targets[name].partition(":")
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        value = importlib.import_module(module)
        if attribute:
            value = getattr(value, attribute)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return exported

    return __getattr__, __dir__, exported
