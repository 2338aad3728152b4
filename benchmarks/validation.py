"""Validation benchmark: walk-forward and combinatorial purged cross-validation at scale.

Times, on synthetic 1-minute candles (``_minute_candles``: 2018, seeded):

* ``workbench.walk_forward`` of the long breakout ``channel``: ``--folds`` rolling folds,
  each sweeping ``--combos`` (entry x exit window) over a training window of half the
  bars and backtesting the best on the next ``(bars / 2) / folds`` bars;
* the same walk-forward in vectorbt's standard pipeline (``sweep.py``'s: pandas rolling
  high/low -> signals -> ``Portfolio.from_signals`` with the window pairs as columns, then
  ``sharpe_ratio()`` per column), per fold: the columns go in chunks of at most
  ``--vbt-values`` bars x columns per call, which keeps its arrays in memory; the chosen
  pair is then traded on the test window with the same warm-up (three times its longest
  window), and the folds whose choice agrees with the workbench's are counted;
* ``workbench.cross_validate`` (CPCV and CSCV) with ``--groups`` groups over ``--cv-combos``
  combinations on the first ``--cv-bars`` bars.

Each run happens in its own freshly spawned process, so its peak memory is its own:
``ru_maxrss`` (resource.getrusage) of that process, which counts numba's and numpy's
buffers. Each process warms its engine on a tiny input first, so the timings exclude
compilation.

Usage: ``python benchmarks/validation.py [--bars N] [--combos N] [--skip-vectorbt]``.
"""

from __future__ import annotations

import argparse
import math
import platform
import time
from typing import Any

import numpy as np
from sweep import FEES, FIXED, INIT_CASH, NO_RISK, SLIPPAGE, _fresh_process, _peak_rss_mb, _vectorbt_pipeline

WARMUP_SPANS = 3  # as workbench.walk_forward warms a test window up


def _axes(combos: int) -> tuple[list[int], list[int]]:
    """Exactly ``combos`` (entry, exit) window pairs, as square a grid as they divide into:
    entries 20 bars apart, exits 10."""
    exits = max(d for d in range(1, math.isqrt(combos) + 1) if combos % d == 0)
    return list(range(20, 20 * (combos // exits) + 1, 20)), list(range(10, 10 * exits + 1, 10))


def _windows(bars: int, folds: int) -> tuple[int, int]:
    """Training window of half the bars; the other half tiled by ``folds`` test windows."""
    train = bars // 2
    return train, (bars - train) // folds


def _candles(bars: int):
    from _minute_candles import minute_candles

    return minute_candles().iloc[:bars]


def run_workbench_walk_forward(bars: int, combos: int, folds: int) -> dict:
    import workbench as wb

    candles = _candles(bars)
    entries, exits = _axes(combos)
    grid = {"entry_window": entries, "exit_window": exits, **FIXED}
    settings = {"risk": NO_RISK, "fees": FEES, "slippage": SLIPPAGE, "init_cash": INIT_CASH}
    wb.walk_forward(
        "channel",
        candles.iloc[:2000],
        {"entry_window": [10, 20], "exit_window": [5, 10]},
        train=1000,
        test=500,
        **settings,
    )
    train, test = _windows(bars, folds)
    rss_before = _peak_rss_mb()
    started = time.perf_counter()
    wf = wb.walk_forward("channel", candles, grid, train=train, test=test, **settings)
    seconds = time.perf_counter() - started
    return {
        "engine": "workbench.walk_forward",
        "seconds": seconds,
        "rss_before": rss_before,
        "rss_peak": _peak_rss_mb(),
        "folds": len(wf.folds),
        "combos": len(entries) * len(exits),
        "chosen": list(zip(wf.folds["entry_window"].astype(int), wf.folds["exit_window"].astype(int))),
        "oos_total_return": float(wf.equity.iloc[-1] / INIT_CASH - 1),
    }


def run_vectorbt_walk_forward(bars: int, combos: int, folds: int, values: int) -> dict:
    import vectorbt as vbt

    candles = _candles(bars).tz_localize(None)  # vectorbt's faster path (see sweep.py)
    entries, exits = _axes(combos)
    pairs = [(n, m) for n in entries for m in exits]
    tiny, _, _ = _vectorbt_pipeline(vbt, candles.iloc[:500], [(10, 5), (20, 10)])
    tiny.sharpe_ratio()
    train, test = _windows(bars, folds)
    size = max(1, values // train)
    rss_before = _peak_rss_mb()
    started = time.perf_counter()
    chosen, level = [], 1.0
    for fold in range(folds):
        test_start = train + fold * test
        window = candles.iloc[test_start - train : test_start]
        sharpe = np.concatenate(
            [
                _vectorbt_pipeline(vbt, window, pairs[first : first + size])[0].sharpe_ratio().to_numpy()
                for first in range(0, len(pairs), size)
            ]
        )
        n, m = pairs[int(np.nan_to_num(sharpe, nan=-np.inf).argmax())]
        lead = min(test_start, WARMUP_SPANS * max(n, m))
        traded, _, _ = _vectorbt_pipeline(vbt, candles.iloc[test_start - lead : test_start + test], [(n, m)])
        value = traded.value().to_numpy()[:, 0]
        level *= value[-1] / value[lead - 1] if lead else value[-1] / INIT_CASH
        chosen.append((n, m))
    seconds = time.perf_counter() - started
    return {
        "engine": "vectorbt from_signals per fold",
        "seconds": seconds,
        "rss_before": rss_before,
        "rss_peak": _peak_rss_mb(),
        "folds": folds,
        "combos": len(pairs),
        "chosen": chosen,
        "oos_total_return": level - 1.0,
        "columns_per_call": size,
    }


def run_cross_validate(bars: int, combos: int, groups: int) -> dict:
    import workbench as wb

    candles = _candles(bars)
    entries, exits = _axes(combos)
    grid = {"entry_window": entries, "exit_window": exits, **FIXED}
    settings = {"risk": NO_RISK, "fees": FEES, "slippage": SLIPPAGE, "init_cash": INIT_CASH}
    wb.cross_validate("channel", candles.iloc[:2000], {"entry_window": [10, 20]}, n_groups=4, **settings)
    rss_before = _peak_rss_mb()
    started = time.perf_counter()
    cv = wb.cross_validate("channel", candles, grid, n_groups=groups, k_test=2, embargo=max(entries), **settings)
    seconds = time.perf_counter() - started
    return {
        "engine": "workbench.cross_validate",
        "seconds": seconds,
        "rss_before": rss_before,
        "rss_peak": _peak_rss_mb(),
        "combos": len(entries) * len(exits),
        "splits": len(cv.splits),
        "paths": len(cv.paths),
        "cscv": len(cv.logits),
        "pbo": cv.pbo,
        "median_path_sharpe": float(cv.paths["sharpe"].median()),
    }


def _memory(run: dict[str, Any]) -> str:
    return f"peak RSS {run['rss_peak']:,.0f} MB (before the timed run {run['rss_before']:,.0f} MB)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=525_600, help="1-minute bars of the walk-forward (max 525,600)")
    parser.add_argument("--combos", type=int, default=2_500, help="window pairs swept in each walk-forward fold")
    parser.add_argument("--folds", type=int, default=10, help="walk-forward folds")
    parser.add_argument("--cv-bars", type=int, default=50_000, help="1-minute bars of the cross-validation")
    parser.add_argument("--cv-combos", type=int, default=1_000, help="window pairs of the cross-validation")
    parser.add_argument("--groups", type=int, default=16, help="CPCV/CSCV groups")
    parser.add_argument(
        "--vbt-values",
        type=int,
        default=20_000_000,
        help="bars x columns per vectorbt from_signals call (its memory bound)",
    )
    parser.add_argument("--skip-vectorbt", action="store_true", help="time the workbench only")
    options = parser.parse_args(argv)
    train, test = _windows(options.bars, options.folds)
    entries, exits = _axes(options.combos)
    print(f"{platform.processor() or platform.machine()}, Python {platform.python_version()}")
    print(
        f"walk-forward: {options.bars:,} 1-minute bars, {options.folds} folds of {train:,} training + {test:,} test "
        f"bars, {len(entries)} x {len(exits)} = {len(entries) * len(exits):,} combinations per fold"
    )
    runs = [_fresh_process(run_workbench_walk_forward, options.bars, options.combos, options.folds)]
    if not options.skip_vectorbt:
        runs.append(
            _fresh_process(run_vectorbt_walk_forward, options.bars, options.combos, options.folds, options.vbt_values)
        )
    for run in runs:
        print(
            f"  {run['engine']:<32} {run['seconds']:9.2f} s   {_memory(run)}   out-of-sample total return "
            f"{run['oos_total_return']:+.4f}"
        )
    if len(runs) == 2:
        same = sum(a == b for a, b in zip(runs[0]["chosen"], runs[1]["chosen"]))
        print(
            f"  vectorbt / workbench wall time: {runs[1]['seconds'] / runs[0]['seconds']:.1f}x; the same window "
            f"pair chosen in {same} of {options.folds} folds (vectorbt: {runs[1]['columns_per_call']} columns "
            "per from_signals call)"
        )
    cv = _fresh_process(run_cross_validate, options.cv_bars, options.cv_combos, options.groups)
    print(
        f"cross-validation: {options.cv_bars:,} 1-minute bars, {cv['combos']:,} combinations, {options.groups} "
        f"groups: {cv['splits']} CPCV splits (k=2), {cv['paths']} paths, {cv['cscv']:,} CSCV splits"
    )
    print(
        f"  {cv['engine']:<32} {cv['seconds']:9.2f} s   {_memory(cv)}   PBO {cv['pbo']:.3f}, median path "
        f"Sharpe {cv['median_path_sharpe']:+.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
