"""The example notebooks are product: each one in notebooks/ runs top to bottom without error.

Every notebook runs under nbval (lax: errors fail, outputs are not compared) in its own
pytest process, so the suite's own ``pytest`` never collects notebooks and a new notebook is
picked up without touching this file. The kernel is the interpreter running the tests, and
the notebooks write only into a temporary WORKBENCH_HOME.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration  # papermill kernels, and the worker and database of 04

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
TIMEOUT = 600  # seconds per notebook; each takes well under a minute
CELL_TIMEOUT = 300  # a hung cell is named by nbval before the whole run is killed
_STATE_VARIABLES = {
    "WORKBENCH_DATABASE_URL",
    "DATABASE_URL",
    "WORKBENCH_TENANT_DATABASE_URL",
    "WORKBENCH_MASTER_KEY",
    "WORKBENCH_MASTER_KEY_FILE",
    "WORKBENCH_DB_ROLE_SECRET",
    "WORKBENCH_ROLE_PREFIX",
}
# notebooks show the public API only: nothing private (a leading underscore) of workbench
_PRIVATE_USE = re.compile(
    r"\b(?:workbench|wb)(?:\.\w+)*\._\w*"
    r"|from\s+workbench[\w.]*\s+import\s+[^\n]*(?<![\w.])_\w*"
)


def _code_cells(notebook: Path) -> list[dict]:
    return [cell for cell in json.loads(notebook.read_text())["cells"] if cell["cell_type"] == "code"]


def _text(output: str | bytes | None) -> str:
    """TimeoutExpired carries bytes even from a text-mode run."""
    return output.decode(errors="replace") if isinstance(output, bytes) else output or ""


def test_the_example_notebooks_are_found() -> None:
    assert {"01_quickstart.ipynb", "02_parameter_sweep.ipynb"} <= {nb.name for nb in NOTEBOOKS}


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda nb: nb.name)
def test_notebook_is_saved_clean_and_uses_the_public_api(notebook: Path) -> None:
    for number, cell in enumerate(_code_cells(notebook), 1):
        source = "".join(cell["source"])
        errors = [out for out in cell.get("outputs", []) if out["output_type"] == "error"]
        assert not errors, f"{notebook.name} code cell {number} is saved with an error output: {errors[0]['ename']}"
        private = _PRIVATE_USE.search(source)
        assert not private, f"{notebook.name} code cell {number} reaches past the public API: {private.group(0)!r}"


def _run(notebook: Path, folder: Path) -> tuple[int | None, str]:
    """Run ``notebook`` under nbval in a pytest process of its own; (exit status, output), the
    status None when it did not finish within TIMEOUT."""
    # a notebook is a fresh user's: its own home, embedded database and master key, never the
    # database or keys another test's fixtures put into this process's environment
    inherited = {k: v for k, v in os.environ.items() if k not in _STATE_VARIABLES}
    env = {
        **inherited,
        "WORKBENCH_HOME": str(folder / "workbench_home"),
        "JUPYTER_RUNTIME_DIR": str(folder / "jupyter_runtime"),  # kernel connection files
        "IPYTHONDIR": str(folder / "ipython"),
    }
    command = [
        sys.executable,
        "-m",
        "pytest",
        "--nbval-lax",
        "--nbval-current-env",
        f"--nbval-cell-timeout={CELL_TIMEOUT}",
        "-p",
        "no:cacheprovider",
        "--color=no",
        "-q",
        str(notebook),
    ]
    try:
        run = subprocess.run(command, cwd=NOTEBOOK_DIR.parent, env=env, capture_output=True, text=True, timeout=TIMEOUT)
        return run.returncode, f"{run.stdout}\n{run.stderr}"
    except subprocess.TimeoutExpired as exc:
        return None, f"{_text(exc.stdout)}\n{_text(exc.stderr)}"
    finally:  # a notebook that used the database started an embedded server that outlives it
        if (folder / "workbench_home" / "postgres").exists():
            subprocess.run(
                [sys.executable, "-m", "workbench.cli", "db", "stop"], env=env, capture_output=True, timeout=120
            )


@pytest.fixture(scope="module")
def nbval_runs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """The nbval runs of the notebooks this session tests, two at a time: a run mostly waits
    on its kernel and on its own embedded database, so two share the machine's cores well."""
    chosen = [
        item.callspec.params["notebook"]
        for item in request.session.items
        if getattr(item, "originalname", None) == "test_notebook_runs_under_nbval"
    ]
    with ThreadPoolExecutor(max_workers=2) as pool:
        yield {notebook: pool.submit(_run, notebook, tmp_path_factory.mktemp(notebook.stem)) for notebook in chosen}


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda nb: nb.name)
def test_notebook_runs_under_nbval(notebook: Path, nbval_runs: dict) -> None:
    status, output = nbval_runs[notebook].result()
    if status is None:
        pytest.fail(f"{notebook.name} did not finish within {TIMEOUT} s:\n{output}")
    assert status == 0, f"{notebook.name} failed under nbval:\n{output}"
