"""The project's own promises: layout, the two quick-start commands, dependencies, import cost."""

from __future__ import annotations

import ast
import importlib
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from workbench.errors import WorkbenchError

ROOT = Path(__file__).resolve().parents[1]
LAYOUT = {
    "notebooks",
    "workbench",
    "hub_config",
    "templates",
    "environment.yml",
    "pyproject.toml",
    "tests",
    "README.md",
    "DEVELOPMENT_GUIDE.md",
    "docs",
    "benchmarks",
    ".ci",
    "dev.py",
    ".gitignore",
    ".dockerignore",
}


def _requirement(spec: str) -> tuple[str, str]:
    """('name', 'specifier') with extras dropped and the name normalised (PEP 503)."""
    match = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)(\[[^\]]*\])?\s*(.*)", spec)
    return re.sub(r"[-_.]+", "-", match.group(1)).lower(), match.group(3).replace(" ", "")


def test_top_level_is_the_product_layout():
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    top = {line.split("/")[0] for line in tracked.splitlines()}
    assert top <= LAYOUT, f"unexpected top-level entries: {sorted(top - LAYOUT)}"
    assert {"notebooks", "workbench", "hub_config", "templates", "tests", "README.md"} <= top


def test_environment_yml_names_the_same_dependencies_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pip_side = {_requirement(s) for s in project["dependencies"] + project["optional-dependencies"]["dev"]}
    conda = yaml.safe_load((ROOT / "environment.yml").read_text())["dependencies"]
    conda_side = set()
    for entry in conda:
        items = entry["pip"] if isinstance(entry, dict) else [entry]
        conda_side |= {
            _requirement(s) for s in items if not s.startswith("-e") and _requirement(s)[0] not in ("python", "pip")
        }
    assert pip_side == conda_side, (sorted(pip_side - conda_side), sorted(conda_side - pip_side))


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"^\s*(python3 dev\.py \w+)\s*$", readme, flags=re.M)
    assert commands[:2] == ["python3 dev.py run", "python3 dev.py test"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^exec python3 dev\.py test$", ci, flags=re.M)


def test_import_is_light_heavy_libraries_load_on_first_use():
    code = (
        "import sys, workbench; heavy = {'vectorbt', 'numba', 'ccxt', 'bokeh', 'ipywidgets', 'sqlalchemy'};"
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_every_template_spec_ships_inside_the_package():
    from importlib import resources

    shipped = {p.name for p in (resources.files("workbench") / "templates").iterdir()}
    assert {p.name for p in (ROOT / "templates").glob("*.json")} <= shipped


def test_packages_are_layered_one_way():
    """The layers contract of pyproject.toml (import-linter): no package imports one above it.
    In a process of its own: the command configures logging, which would silence the loggers
    of this process (the other tests read ccxt's)."""
    lint = subprocess.run(
        [str(Path(sys.executable).with_name("lint-imports")), "--no-cache"], cwd=ROOT, capture_output=True, text=True
    )
    assert lint.returncode == 0, lint.stdout[-3000:] + lint.stderr[-2000:]


def test_code_passes_ruff_lint_and_format():
    """ruff's rules and format as pyproject.toml sets them, over the whole tree (fix with
    ``ruff check --fix . && ruff format .``)."""
    ruff = str(Path(sys.executable).with_name("ruff"))
    for args in (["check", "--no-cache", "."], ["format", "--check", "--no-cache", "."]):
        run = subprocess.run([ruff, *args], cwd=ROOT, capture_output=True, text=True)
        assert run.returncode == 0, f"ruff {' '.join(args)}:\n" + run.stdout[-3000:] + run.stderr[-2000:]


# Imports of another package's own ("_") modules that remain; this list may only shrink: a
# package needs another's public names (its __init__), or the name belongs in that package.
PRIVATE_IMPORTS = {
    ("workbench.exchange._ccxt", "workbench.vault._exchange"),
    ("workbench.hub._launcher", "workbench.vault._keyring"),
    ("workbench.live._plan", "workbench.backtest._kernel"),
    ("workbench.market._clone", "workbench.strategies._saved"),
    ("workbench.market._listing", "workbench.backtest._result"),
    ("workbench.market._snapshot", "workbench.backtest._chart"),
    ("workbench.market._snapshot", "workbench.backtest._funding"),
    ("workbench.research._cross_validate", "workbench.backtest._run"),
    ("workbench.research._cross_validate", "workbench.backtest._venues"),
    ("workbench.scheduler._dashboard", "workbench.backtest._chart"),
    ("workbench.scheduler._keys", "workbench.vault._exchange"),
    ("workbench.scheduler._zygote", "workbench.exchange._paper"),  # the zygote's warm-up imports
    ("workbench.scheduler._zygote", "workbench.exchange._paper_pg"),
    ("workbench.scheduler._zygote", "workbench.live._plan"),
    ("workbench.scheduler._zygote", "workbench.live._tick"),
    ("workbench.scheduler._zygote", "workbench.store._tenants"),
    ("workbench.ui._form", "workbench.backtest._chart"),
    ("workbench.ui._rules_builder", "workbench.strategies.rules._model"),
    ("workbench.ui._rules_builder", "workbench.strategies.rules._text"),
}


def test_no_new_import_of_another_packages_own_modules():
    import grimp

    graph = grimp.build_graph("workbench")
    found = set()
    for importer in graph.modules:
        package = importer.split(".")[1] if importer.count(".") else None
        for imported in graph.find_modules_directly_imported_by(importer):
            parts = imported.split(".")
            own = any(part.startswith("_") and not part.startswith("__") for part in parts[2:])
            if package and len(parts) > 2 and parts[1] != package and own:
                found.add((importer, imported))
    assert found <= PRIVATE_IMPORTS, f"new imports of another package's own modules: {sorted(found - PRIVATE_IMPORTS)}"


def _plugin(folder: Path, name: str, entry_points: str, code: str) -> None:
    """An installed distribution ``name`` (its dist-info on ``folder``) declaring ``entry_points``."""
    (folder / f"{name}.py").write_text(code)
    info = folder / f"{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(entry_points)


def test_exchanges_and_transports_of_other_packages_are_found_by_entry_point(tmp_path, monkeypatch):
    from workbench.exchange import _registry, open_exchange
    from workbench.notify import _transport
    from workbench.notify._transport import get, transports

    _plugin(
        tmp_path,
        "wb_plugin",
        "[workbench.exchanges]\ntoy = wb_plugin:open_toy\n\n[workbench.notify_transports]\npager = wb_plugin:Pager\n",
        "from workbench.notify import Transport\n"
        "def open_toy(**options):\n    return ('toy', options)\n"
        "class Pager(Transport):\n    name = 'pager'\n    settings = ()\n"
        "    def target(self, config):\n        return 'the pager'\n"
        "    def send(self, message, config, secrets, timeout):\n        pass\n",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(_registry, "_FACTORIES", dict(_registry._FACTORIES))  # what the test adds goes with it
    monkeypatch.setattr(_transport, "_registry", dict(_transport._registry))
    assert open_exchange("toy", market_type="spot") == ("toy", {"market_type": "spot"})
    assert "pager" in transports() and get("pager").name == "pager"
    with pytest.raises(WorkbenchError, match="no exchange named 'nope'; available: binance, gate, paper, toy"):
        open_exchange("nope")


def test_a_missing_registration_is_a_clear_error():
    from workbench import _plugins

    with pytest.raises(
        WorkbenchError,
        match="no workbench.vault_backends entry point named 'nope' is installed "
        r"\(installed: service\)",
    ):
        _plugins.load("workbench.vault_backends", "nope")


def _lazy_exporters() -> dict[str, tuple[ast.Module, ast.Call]]:
    """The modules of the package that export names lazily: {module name: (its syntax tree,
    its ``lazy_exports(...)`` call)}."""
    found = {}
    for path in sorted((ROOT / "workbench").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        calls = [
            node
            for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "lazy_exports"
        ]
        if calls:
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = (tree, calls[0])
    return found


def _type_checking_names(tree: ast.Module) -> set[str]:
    """The names the module's ``if TYPE_CHECKING:`` blocks import from the workbench package
    (what type checkers and IDEs see of the lazy names; third-party imports there only serve
    annotations)."""
    names = set()
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            for statement in node.body:
                if isinstance(statement, ast.ImportFrom) and (statement.module or "").split(".")[0] == "workbench":
                    names.update(alias.asname or alias.name for alias in statement.names)
                elif isinstance(statement, ast.Import):
                    names.update(
                        alias.asname or alias.name.split(".")[0]
                        for alias in statement.names
                        if alias.name.split(".")[0] == "workbench"
                    )
    return names


def test_lazy_exports_are_listed_for_type_checkers_and_all_resolve():
    """Every lazily exported name (workbench._lazy) is imported in its module's
    ``if TYPE_CHECKING:`` block, so IDEs and mypy know it, and no other name of the package is;
    the eager names are defined at import; every target exists."""
    exporters = _lazy_exporters()
    assert "workbench" in exporters and "workbench.exchange" in exporters
    for name, (tree, call) in exporters.items():
        module = importlib.import_module(name)
        namespace = dict(vars(module))  # the call's arguments, evaluated as the module did
        targets = eval(compile(ast.Expression(call.args[1]), name, "eval"), namespace)
        eager_arg = next((k.value for k in call.keywords if k.arg == "eager"), None)
        eager = set(eval(compile(ast.Expression(eager_arg), name, "eval"), namespace)) if eager_arg else set()
        listed = _type_checking_names(tree)
        assert listed == set(targets), (
            f"{name}: TYPE_CHECKING imports lack {sorted(set(targets) - listed)}, "
            f"have extra {sorted(listed - set(targets))}"
        )
        assert set(module.__all__) == {*targets, *eager}
        assert not eager & set(targets) and eager <= set(vars(module)), f"{name}: eager names not defined"
        for public, target in targets.items():
            where, _, attribute = target.partition(":")
            value = importlib.import_module(where)
            assert not attribute or hasattr(value, attribute), f"{name}.{public}: {target} does not exist"


@pytest.mark.integration  # a cold mypy run takes about a minute of CPU: not for the fast unit tier
def test_types_check_with_mypy():
    """mypy over the package as pyproject.toml configures it ([tool.mypy]). Its incremental
    cache lives outside the checkout, so a fresh checkout on the same machine starts warm
    (mypy checks each cached module against its source's hash)."""
    mypy = str(Path(sys.executable).with_name("mypy"))
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "workbench-mypy"
    run = subprocess.run(
        [mypy, "--config-file", "pyproject.toml", "--cache-dir", str(cache)], cwd=ROOT, capture_output=True, text=True
    )
    assert run.returncode == 0, "mypy:\n" + run.stdout[-4000:] + run.stderr[-2000:]
