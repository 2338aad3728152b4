"""Where the workbench keeps its state: the embedded database, the master key, caches.

``WORKBENCH_HOME`` chooses the folder; without it, ``~/.workbench``. The folder is created
private to its owner (0700) because it holds the master key and the database files.
"""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """The workbench data directory, created with mode 0700 when missing."""
    path = Path(os.environ.get("WORKBENCH_HOME") or Path.home() / ".workbench").expanduser()
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path
