"""The settings reference: workbench/settings.py declares exactly the environment variables
the code reads, and docs/SETTINGS.md is generated from it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from workbench.settings import GROUPS, SETTINGS, SPAWNERS, TRAITLETS, reference

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "workbench"
OURS = re.compile(r"^(WORKBENCH|JUPYTERHUB)_[A-Z0-9_]+$")
# read from the environment under names without the product's prefixes (some through loops
# over a tuple of names, which the scan of reads below cannot follow)
OTHER_NAMES = {"DATABASE_URL", "NUMBA_CACHE_DIR", "POD_IP", "QUERY_STRING"}
# the product only passes these on or sets a default for them; they keep their library's meaning
LIBRARIES_OWN = {"PATH", "JUPYTER_RUNTIME_DIR", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT"}
CANDIDATE = "|".join([r"\bos\.environ\b", r"\bgetenv\b", "WORKBENCH_", "JUPYTERHUB_", *sorted(OTHER_NAMES)])


def _is_environ(node: ast.expr) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "environ" and ast.unparse(node.value) == "os"


def _read_keys(tree: ast.Module) -> set[str]:
    """The names ``os.environ[...]``, ``os.environ.get/setdefault(...)`` and ``os.getenv(...)``
    read, given as a string or a module-level string constant."""
    constants = {
        target.id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    keys: list[ast.expr] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load) and _is_environ(node.value):
            keys.append(node.slice)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.func, ast.Attribute):
            if (node.func.attr in ("get", "setdefault") and _is_environ(node.func.value)) or (
                node.func.attr == "getenv" and ast.unparse(node.func.value) == "os"
            ):
                keys.append(node.args[0])
    found = set()
    for key in keys:
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            found.add(key.value)
        elif isinstance(key, ast.Name) and key.id in constants:
            found.add(constants[key.id])
    return found


def _names_in_code() -> set[str]:
    names = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        if path == PACKAGE / "settings.py" or not re.search(CANDIDATE, text):
            continue  # parsing only the modules that may read a variable keeps this fast
        tree = ast.parse(text, filename=str(path))
        strings = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
        names |= {s for s in strings if OURS.match(s) or s in OTHER_NAMES}
        names |= _read_keys(tree) - LIBRARIES_OWN
    return names


def test_docs_settings_md_is_generated_from_the_table():
    page = (ROOT / "docs" / "SETTINGS.md").read_text(encoding="utf-8")
    assert page == reference(), (
        "docs/SETTINGS.md is not the table's rendering; regenerate it: "
        ".venv/bin/python -m workbench.settings > docs/SETTINGS.md"
    )


def test_the_table_declares_exactly_the_variables_the_code_reads():
    in_code, declared = _names_in_code(), {s.name for s in SETTINGS}
    assert not in_code - declared, f"read but not declared in workbench/settings.py: {sorted(in_code - declared)}"
    assert not declared - in_code, f"declared in workbench/settings.py but read nowhere: {sorted(declared - in_code)}"


def test_names_are_unique_and_every_entry_is_explained():
    names = [s.name for s in SETTINGS]
    assert len(names) == len(set(names)), f"declared twice: {sorted({n for n in names if names.count(n) > 1})}"
    assert SETTINGS == tuple(s for _, group in GROUPS for s in group)
    for s in SETTINGS:
        assert s.help.strip() and s.type.strip() and s.default.strip() and s.who.strip(), s.name
        assert "|" not in s.name and s.name == s.name.strip(), s.name


def test_the_settings_module_imports_nothing_from_the_package():
    tree = ast.parse((PACKAGE / "settings.py").read_text(encoding="utf-8"))
    imported = {alias.name for n in ast.walk(tree) if isinstance(n, ast.Import) for alias in n.names} | {
        "." * n.level + (n.module or "") for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
    }
    assert not {m for m in imported if m.split(".")[0] in ("workbench", "")}, imported


def test_the_hub_classes_configurable_traitlets_are_the_tables():
    from workbench.hub._auth import WorkbenchAuthenticator
    from workbench.hub._kube import KubeTenantSpawner
    from workbench.hub._spawner import LocalTenantSpawner, SimpleTenantSpawner, _TenantServer

    classes = {
        c.__name__: c for c in (WorkbenchAuthenticator, LocalTenantSpawner, SimpleTenantSpawner, KubeTenantSpawner)
    }
    own = {"WorkbenchAuthenticator": WorkbenchAuthenticator, **dict.fromkeys(SPAWNERS, _TenantServer)}
    declared = {name: {n: t.help for n, t in own[name].class_own_traits(config=True).items()} for name in classes}
    assert declared == {name: {t.name: t.help for t in TRAITLETS if name in t.classes} for name in classes}
    for trait in TRAITLETS:  # and the classes really take them from a hub's configuration
        for name in trait.classes:
            assert classes[name].class_traits(config=True)[trait.name].help == trait.help
