"""Cold-start benchmark: ``import workbench`` and the first backtest in a fresh Python process.

For each built-in template, fresh interpreters (``python -c``) each time one session's
first steps on the bundled hourly candles: ``import workbench``, ``load_candles()``, the
first ``backtest`` (default parameters), then the first ``result.portfolio`` (the fills
replayed through vectorbt) and ``result.figure`` (bokeh). One untimed process per template
runs first so numba's on-disk cache is warm, as it is on a user's machine after the first
run. Medians over ``--repeat`` processes; the process wall time (interpreter start to
exit, measured by the parent) is given too.

Usage: ``python benchmarks/cold_start.py [--repeat N]`` (see benchmarks/RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

TEMPLATES = ("channel", "ema_reversal", "market_making")

# what one fresh process runs: every phase timed with perf_counter from the first line of code
_SESSION = """
import json, sys, time
started = time.perf_counter()
import workbench as wb
phases = {"import workbench": time.perf_counter() - started}
if sys.argv[1] != "-":
    mark = time.perf_counter()
    candles = wb.load_candles()
    phases["load_candles()"] = time.perf_counter() - mark
    mark = time.perf_counter()
    result = wb.backtest(sys.argv[1], candles)
    phases["first backtest"] = time.perf_counter() - mark
    mark = time.perf_counter()
    result.portfolio
    phases["first .portfolio"] = time.perf_counter() - mark
    mark = time.perf_counter()
    result.figure
    phases["first .figure"] = time.perf_counter() - mark
print(json.dumps(phases))
"""


def _session(template: str) -> dict[str, float]:
    """One fresh interpreter's phase timings, plus its whole wall time seen from outside."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _SESSION, template], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"the fresh process for {template!r} failed:\n{done.stderr}")
    phases = json.loads(done.stdout.strip().splitlines()[-1])
    phases["process wall"] = time.perf_counter() - started
    return phases


def _medians(template: str, repeat: int) -> dict[str, tuple[float, float, float]]:
    """(median, min, max) of each phase over ``repeat`` fresh processes."""
    runs = [_session(template) for _ in range(repeat)]
    return {
        phase: (statistics.median(r[phase] for r in runs), min(r[phase] for r in runs), max(r[phase] for r in runs))
        for phase in runs[0]
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="fresh processes per measurement (default 7)")
    args = parser.parse_args(argv)
    for template in TEMPLATES:  # warm numba's on-disk cache (and the OS file cache)
        _session(template)
    print(
        f"Python {sys.version.split()[0]}; medians of {args.repeat} fresh processes (min..max), seconds; "
        "on-disk numba cache warmed by one untimed process per template\n"
    )
    interpreter = statistics.median(_timed("pass") for _ in range(args.repeat))
    vectorbt = statistics.median(_timed("import vectorbt") for _ in range(args.repeat))
    plain = _medians("-", args.repeat)
    print(f"{'reference: python -c pass, wall':<34} {interpreter:6.3f}")
    print(f"{'reference: import vectorbt, wall':<34} {vectorbt:6.3f}  (what .portfolio imports)")
    for phase, (mid, low, high) in plain.items():
        print(f"{'import only: ' + phase:<34} {mid:6.3f}  ({low:.3f}..{high:.3f})")
    for template in TEMPLATES:
        print(f"\n{template}")
        for phase, (mid, low, high) in _medians(template, args.repeat).items():
            print(f"  {phase:<32} {mid:6.3f}  ({low:.3f}..{high:.3f})")
    print("\ntargets: import workbench well under 2 s; first backtest under 3 s")
    return 0


def _timed(code: str) -> float:
    """Wall time of a fresh interpreter running ``code``, start to exit."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - started


if __name__ == "__main__":
    sys.exit(main())
