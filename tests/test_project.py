"""The project's own promises: layout, the two quick-start commands, dependencies, import cost."""
from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
LAYOUT = {"notebooks", "workbench", "hub_config", "templates", "environment.yml", "pyproject.toml", "tests",
          "README.md", "docs", "benchmarks", ".ci", "dev.py", ".gitignore"}


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
        conda_side |= {_requirement(s) for s in items if not s.startswith("-e") and _requirement(s)[0] not in
                       ("python", "pip")}
    assert pip_side == conda_side, (sorted(pip_side - conda_side), sorted(conda_side - pip_side))


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"^\s*(python3 dev\.py \w+)\s*$", readme, flags=re.M)
    assert commands[:2] == ["python3 dev.py run", "python3 dev.py test"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^exec python3 dev\.py test$", ci, flags=re.M)


def test_import_is_light_heavy_libraries_load_on_first_use():
    code = ("import sys, workbench; heavy = {'vectorbt', 'numba', 'ccxt', 'bokeh', 'ipywidgets', 'sqlalchemy'};"
            "print(sorted(heavy & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_every_template_spec_ships_inside_the_package():
    from importlib import resources

    shipped = {p.name for p in (resources.files("workbench") / "templates").iterdir()}
    assert {p.name for p in (ROOT / "templates").glob("*.json")} <= shipped
