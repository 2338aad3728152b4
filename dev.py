#!/usr/bin/env python3
"""Set up and run the workbench, or its tests, on a machine that only has Python 3.11+.

    python3 dev.py run     # the product on http://127.0.0.1:8000 (JupyterHub, one server per tenant)
    python3 dev.py test    # the whole test suite, in parallel (extra arguments go to pytest)

Both create ``.venv`` and install the project into it on the first run, then only when
``pyproject.toml`` changes, so the second run starts at once. State (the embedded
PostgreSQL, the master key, caches) lives in ``var/`` unless ``WORKBENCH_HOME`` says
otherwise. Only the standard library is used here: this file runs before anything is
installed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PYTHON = VENV / "bin" / "python"


def _say(message: str) -> None:
    print(f"[dev] {message}", flush=True)


def _readable_by_all(path: Path) -> bool:
    """Whether any unix account can read ``path`` (every folder above it searchable)."""
    path = path.resolve()
    if not path.exists() or not path.stat().st_mode & stat.S_IROTH:
        return False
    return all(folder.stat().st_mode & stat.S_IXOTH for folder in path.parents)


def _stdlib_readable(prefix: str) -> bool:
    return _readable_by_all(Path(prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "os.py")


def _base_python() -> str:
    """The Python to make the virtualenv from. As root, tenants' kernels and servers run it
    under their own unix accounts, so its standard library must be readable by everyone: a
    Python in a private home (pyenv under /root, mode 700) gives way to the system's Python of
    the same version."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or _stdlib_readable(sys.base_prefix):
        return sys.executable
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    probe = "import ensurepip, sys, venv; print(sys.base_prefix)"
    for candidate in (f"/usr/bin/python{version}", f"/usr/local/bin/python{version}"):
        if Path(candidate).exists():
            found = subprocess.run([candidate, "-c", probe], capture_output=True, text=True)
            if found.returncode == 0 and _stdlib_readable(found.stdout.strip()):
                return candidate
    sys.exit(
        f"[dev] {sys.executable}'s standard library ({sys.base_prefix}) is not readable by other unix "
        f"accounts, and no python{version} with venv is under /usr: tenants' processes could not run it; "
        f"install python{version}-venv or run dev.py with a Python every account can read"
    )


def _venv_base_readable() -> bool:
    """Whether the existing virtualenv's base Python is one every account can read (as root)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return True
    config = dict(line.split(" = ", 1) for line in (VENV / "pyvenv.cfg").read_text().splitlines() if " = " in line)
    return _stdlib_readable(str(Path(config.get("home", "/")).parent))


def _setup(extras: str) -> None:
    """Create the virtualenv and (re)install the project when its definition changed."""
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py runs under whatever python3 the machine has
        sys.exit(f"[dev] Python 3.11 or newer is needed; this is {sys.version.split()[0]}")
    if PYTHON.exists() and not _venv_base_readable():
        _say(f"recreating {VENV.relative_to(ROOT)}: its Python is not readable by the tenants' accounts")
        shutil.rmtree(VENV)
    if not PYTHON.exists():
        base = _base_python()
        _say(f"creating {VENV.relative_to(ROOT)} with {base}")
        if base == sys.executable:
            venv.EnvBuilder(with_pip=True).create(VENV)
        else:
            subprocess.run([base, "-m", "venv", str(VENV)], check=True)
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + extras.encode()).hexdigest()
    stamp = VENV / f".installed-{extras or 'base'}"
    if stamp.exists() and stamp.read_text() == digest:
        return
    _say(f"installing the workbench{f' [{extras}]' if extras else ''} into .venv (first run: a minute or two)")
    pip = [str(PYTHON), "-m", "pip", "--disable-pip-version-check", "install", "-q"]
    target = f".[{extras}]" if extras else "."
    # uv resolves and installs the same requirements as pip, several times faster (parallel
    # downloads, a shared cache); pip does it where uv cannot be had
    uv = VENV / "bin" / "uv"
    if uv.exists() or subprocess.run([*pip, "uv>=0.9"], cwd=ROOT).returncode == 0:
        subprocess.run([str(uv), "pip", "install", "-q", "--python", str(PYTHON), "-e", target], check=True, cwd=ROOT)
        # uv leaves its lock file writable by everyone; nothing in the tenants' Python may be
        (VENV / ".lock").unlink(missing_ok=True)
    else:
        subprocess.run([*pip, "--upgrade", "pip"], check=True)
        subprocess.run([*pip, "-e", target], check=True, cwd=ROOT)
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
    """The whole suite spread over the cores (pytest-xdist; the tests that make unix accounts
    or run a hub stay on one worker, in turn), or what ``args`` ask pytest for."""
    _setup("dev")  # the tests keep their state in temporary folders, never in var/
    _ensure_chromium()
    workers = max(1, min(os.cpu_count() or 1, 4))  # one more than the cores measured slower
    args = args or ["tests", "--numprocesses", str(workers), "--dist", "loadgroup"]
    result = subprocess.run([str(PYTHON), "-m", "pytest", *args], cwd=ROOT, env=_environment())
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
