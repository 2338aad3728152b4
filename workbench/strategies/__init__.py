"""Strategy templates: the built-in families and their parameter schemas.

``templates()`` lists them, ``get_template(name)`` returns one; a template validates
parameters (errors name the parameter, the value and the allowed range) and turns them
into the brief's strategy JSON. The specs live in the top-level ``templates/`` folder; the
compiled kernels that simulate them are registered by name in this package.
"""
from __future__ import annotations

import importlib
from functools import cache

from workbench.errors import TemplateError
from workbench.strategies._spec import Param, Template, load_specs

__all__ = ["Param", "Template", "get_template", "templates", "kernel_for"]

_KERNEL_MODULES = {
    "channel": "workbench.strategies.channel",
    "ema_reversal": "workbench.strategies.ema_reversal",
    "market_making": "workbench.strategies.market_making",
}


@cache
def _specs() -> dict[str, Template]:
    return load_specs()


def templates() -> dict[str, Template]:
    """Every built-in template by name."""
    return dict(_specs())


def get_template(name: str) -> Template:
    """The template called ``name``; TemplateError listing the known ones otherwise."""
    try:
        return _specs()[name]
    except (KeyError, TypeError):
        raise TemplateError(f"unknown template {name!r}; the templates are {', '.join(_specs())}") from None


def kernel_for(name: str):
    """The compiled kernel class of a template (imports numba on first use)."""
    from workbench.strategies._kernel import KERNELS

    get_template(name)
    if name not in KERNELS:
        importlib.import_module(_KERNEL_MODULES[name])
    return KERNELS[name]
