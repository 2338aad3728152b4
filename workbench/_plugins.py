"""Implementations found by entry point, the way papermill finds its engines: a package the
code that needs an implementation must not import (the hub, above it in the layers; a plugin
installed in the environment) declares it in its distribution's metadata under a group and a
name, and the caller loads it by name. Reaches every process of the environment (workers,
the zygote's forks, tenants' servers) without an import anywhere.

Groups: ``workbench.vault_backends`` (``service``: the vault of a tenant's server in the hub,
which forwards to the workbench service), ``workbench.channel_admins`` (``service``: who
changes notification channels there).
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

from workbench.errors import WorkbenchError


def load(group: str, name: str) -> Any:
    """The object registered as ``name`` in entry-point ``group``, or a ``WorkbenchError``
    naming what is installed there."""
    found = entry_points(group=group, name=name)
    if not found:
        installed = sorted(point.name for point in entry_points(group=group))
        raise WorkbenchError(
            f"no {group} entry point named {name!r} is installed (installed: "
            f"{', '.join(installed) or 'none'}); reinstall the workbench package"
        )
    return next(iter(found)).load()
