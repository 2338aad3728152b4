"""Strategy templates: the built-in families and their parameter schemas.

``templates()`` lists them, ``get_template(name)`` returns one; a template validates
parameters (errors name the parameter, the value and the allowed range) and turns them
into the strategy JSON. The specs live in the top-level ``templates/`` folder; the
compiled kernels that simulate them are registered by name in this package.

Saved strategies (``save_strategy``, ``list_strategies``, ``load_strategy``,
``clone_strategy``, ``delete_strategy``) keep a template + parameters + risk limits per
tenant in PostgreSQL; saving an existing name adds a version.
"""

from __future__ import annotations

import importlib
from functools import cache

from workbench.errors import TemplateError
from workbench.strategies._spec import Param, Template, load_specs

__all__ = [
    "Param",
    "SavedStrategy",
    "Template",
    "clone_strategy",
    "delete_strategy",
    "get_template",
    "kernel_for",
    "list_strategies",
    "load_strategy",
    "save_strategy",
    "templates",
]


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
    """The compiled kernel class of a template (imports numba on first use): the module its
    spec names as ``kernel`` registers it on import."""
    from workbench.strategies._kernel import KERNELS

    template = get_template(name)
    if name not in KERNELS:
        importlib.import_module(template.kernel)
    if name not in KERNELS:
        raise TemplateError(
            f"templates/{name}.json: its kernel module {template.kernel!r} registers no kernel named {name!r}"
        )
    return KERNELS[name]


# saved strategies (PostgreSQL); defined after the template helpers they use
from workbench.strategies._saved import (  # noqa: E402
    SavedStrategy,
    clone_strategy,
    delete_strategy,
    list_strategies,
    load_strategy,
    save_strategy,
)
