#!/usr/bin/env python3
"""Set up and run the workbench, or its tests, on a machine that only has Python 3.11+.

    python3 dev.py run     # the product on http://127.0.0.1:8000 (JupyterHub, one server per tenant)
    python3 dev.py test    # the whole test suite (extra arguments go to pytest)

Both create ``.venv`` and install the project into it on the first run, then only when
``pyproject.toml`` changes, so the second run starts at once. State (the embedded
PostgreSQL, the master key, caches) lives in ``var/`` unless ``WORKBENCH_HOME`` says
otherwise. Only the standard library is used here: this file runs before anything is
installed.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PYTHON = VENV / "bin" / "python"


def _say(message: str) -> None:
    print(f"[dev] {message}", flush=True)


def _setup(extras: str) -> None:
    """Create the virtualenv and (re)install the project when its definition changed."""
    if sys.version_info < (3, 11):
        sys.exit(f"[dev] Python 3.11 or newer is needed; this is {sys.version.split()[0]}")
    if not PYTHON.exists():
        _say(f"creating {VENV.relative_to(ROOT)}")
        venv.EnvBuilder(with_pip=True).create(VENV)
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + extras.encode()).hexdigest()
    stamp = VENV / f".installed-{extras or 'base'}"
    if stamp.exists() and stamp.read_text() == digest:
        return
    _say(f"installing the workbench{f' [{extras}]' if extras else ''} into .venv (first run: a few minutes)")
    pip = [str(PYTHON), "-m", "pip", "--disable-pip-version-check", "install", "-q"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "-e", f".[{extras}]" if extras else "."], check=True, cwd=ROOT)
    stamp.write_text(digest)


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def run(args: list[str]) -> int:
    _setup("")
    env = _environment()
    env.setdefault("WORKBENCH_HOME", str(ROOT / "var"))
    _say(f"state in {env['WORKBENCH_HOME']}; open the URL printed below (Ctrl-C stops)")
    # the hub, its proxy and service, and the worker (workbench/hub/_launcher.py)
    return subprocess.run([str(VENV / "bin" / "workbench"), "hub", *args], env=env).returncode


def _ensure_chromium() -> None:
    """The browser tests drive Debian's chromium (never a downloaded browser build): install it
    when running as root; otherwise those tests skip and say how to install it."""
    if Path("/usr/bin/chromium").exists() or not hasattr(os, "geteuid") or os.geteuid() != 0:
        return
    _say("installing chromium for the browser tests (apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium"], check=True, env=env)


def test(args: list[str]) -> int:
    _setup("dev")  # the tests keep their state in temporary folders, never in var/
    _ensure_chromium()
    result = subprocess.run([str(PYTHON), "-m", "pytest", *(args or ["tests"])], cwd=ROOT, env=_environment())
    return result.returncode


def main() -> int:
    commands = {"run": run, "test": test}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        print(__doc__)
        return 2
    try:
        return commands[sys.argv[1]](sys.argv[2:])
    except subprocess.CalledProcessError as exc:
        _say(f"failed: {' '.join(map(str, exc.cmd))} (exit {exc.returncode})")
        return exc.returncode or 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
