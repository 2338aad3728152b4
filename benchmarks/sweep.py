"""Sweep benchmark: the long-only breakout ``channel`` on one year of 1-minute candles.

Runs the same strategy through ``workbench.sweep``, vectorbt's standard pipeline (pandas
rolling high/low -> signals -> one ``Portfolio.from_signals`` call with every window pair
broadcast as a column) and backtesting.py (``FractionalBacktest`` with a Strategy class),
checks that they trade on the same bars, and prints bar-evaluations per second
(bars x parameter combinations / wall seconds), wall time and peak memory. Then (unless
``--quick``) it sweeps a 10,000-combination grid through ``workbench.sweep``.

Every engine runs in its own fresh process (spawned), so its peak memory is its own:
``ru_maxrss`` of that process (resource.getrusage), which counts numba and numpy buffers
that tracemalloc would miss. Each process warms its engine on a tiny input first, so the
timings exclude compilation (workbench: numba's on-disk cache; vectorbt: its in-process
JIT, which it does not cache on disk).

Usage: ``python benchmarks/sweep.py [--quick]`` (see benchmarks/RESULTS.md).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import resource
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
from _minute_candles import minute_candles

FEES = 0.001  # taker fee, fraction of notional
SLIPPAGE = 0.0005  # fraction of the open price, against the order
INIT_CASH = 10_000.0
NO_RISK = {"max_position_size": None, "max_daily_loss": None}
FIXED = {"mode": "breakout", "direction": "long", "position_size": 1.0}

PEER_ENTRY = list(range(100, 1001, 100))  # 10 x 5 = 50 combinations, a subset of the big grid
PEER_EXIT = list(range(50, 251, 50))
BIG_ENTRY = list(range(10, 1001, 10))  # 100 x 100 = 10,000 combinations
BIG_EXIT = list(range(5, 501, 5))
REPEATS = 3  # timed repeats of the 50-combination runs (the median is reported): the machine is shared

Combo = tuple[int, int]  # (entry_window, exit_window)
Trade = tuple[int, int | None]  # (entry bar, exit bar or None while open at the end)


# -- measurement helpers -------------------------------------------------------------------


def _peak_rss_mb() -> float:
    """This process's peak resident set size so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _fresh_process(fn: Callable[..., dict], *args: Any) -> dict:
    """Run ``fn(*args)`` in a newly spawned Python process and return its result."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=context, max_tasks_per_child=1) as pool:
        return pool.submit(fn, *args).result()


def _combos(entries: Sequence[int], exits: Sequence[int]) -> list[Combo]:
    return [(n, m) for n in entries for m in exits]


# -- engine 1: workbench.sweep ---------------------------------------------------------------


def _workbench_trades(result: Any, index: pd.DatetimeIndex) -> list[Trade]:
    """Entry/exit bars of a long-only workbench backtest, from its fills."""
    bars = index.get_indexer(result.fills["time"]).tolist()
    kinds = result.fills["kind"].astype(str).tolist()
    entries = [b for b, k in zip(bars, kinds) if k == "entry"]
    exits = [b for b, k in zip(bars, kinds) if k != "entry"]
    return [(e, exits[i] if i < len(exits) else None) for i, e in enumerate(entries)]


def run_workbench(
    candles: pd.DataFrame,
    entries: list[int],
    exits: list[int],
    threads: int,
    checks: list[tuple[Combo, int, float]],
    repeats: int,
    progress: bool,
) -> dict:
    """Time ``workbench.sweep`` on the grid ``repeats`` times; then backtest ``checks`` for the parity check.

    ``checks``: (combo, number of leading bars, slippage) to backtest one by one.
    """
    import numba

    from workbench.backtest import backtest, sweep

    numba.set_num_threads(threads)
    started = time.perf_counter()
    sweep(
        "channel",
        candles.iloc[:1000],
        {"entry_window": [10, 20], "exit_window": [5, 10], **FIXED},
        risk=NO_RISK,
        progress=False,
    )
    warmup = time.perf_counter() - started
    rss_before = _peak_rss_mb()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        table = sweep(
            "channel",
            candles,
            {"entry_window": entries, "exit_window": exits, **FIXED},
            risk=NO_RISK,
            fees=FEES,
            slippage=SLIPPAGE,
            init_cash=INIT_CASH,
            progress=progress,
        )
        times.append(time.perf_counter() - started)
    rss_peak = _peak_rss_mb()
    returns = {(int(r.entry_window), int(r.exit_window)): float(r.total_return) for r in table.itertuples()}
    closed = {(int(r.entry_window), int(r.exit_window)): int(r.trades) for r in table.itertuples()}
    checked = {}
    for (n, m), bars, slippage in checks:
        part = candles.iloc[:bars]
        result = backtest(
            "channel",
            part,
            {"entry_window": n, "exit_window": m, **FIXED},
            risk=NO_RISK,
            fees=FEES,
            slippage=slippage,
            init_cash=INIT_CASH,
        )
        checked[(n, m), bars, slippage] = (_workbench_trades(result, part.index), result.metrics["final_equity"])
    return {
        "engine": f"workbench.sweep ({threads} thread{'s' * (threads > 1)})",
        "bars": len(candles),
        "combos": len(table),
        "seconds": statistics.median(times),
        "times": times,
        "warmup": warmup,
        "rss_before": rss_before,
        "rss_peak": rss_peak,
        "returns": returns,
        "closed": closed,
        "checked": checked,
        "completed": table.attrs["completed"],
    }


# -- engine 2: vectorbt's standard pipeline --------------------------------------------------


def _vectorbt_pipeline(vbt: Any, candles: pd.DataFrame, combos: list[Combo]) -> tuple[Any, float, float]:
    """Rolling channels -> entry/exit signals -> one from_signals call over every combo (columns).

    The signal of bar t is shifted to bar t+1 and filled at that bar's open, as the template does.
    """
    started = time.perf_counter()
    close, high, low = candles["close"], candles["high"], candles["low"]
    upper = {n: high.rolling(n).max().shift(1) for n in {n for n, _ in combos}}
    lower = {m: low.rolling(m).min().shift(1) for m in {m for _, m in combos}}
    columns = pd.MultiIndex.from_tuples(combos, names=["entry_window", "exit_window"])
    entries = pd.concat([close > upper[n] for n, _ in combos], axis=1, keys=columns)
    exits = pd.concat([close < lower[m] for _, m in combos], axis=1, keys=columns)
    signals = time.perf_counter() - started
    portfolio = vbt.Portfolio.from_signals(
        close,
        entries.shift(1, fill_value=False),
        exits.shift(1, fill_value=False),
        price=candles["open"],
        fees=FEES,
        slippage=SLIPPAGE,
        init_cash=INIT_CASH,
        freq="1min",
    )
    return portfolio, signals, time.perf_counter() - started - signals


def run_vectorbt(candles: pd.DataFrame, entries: list[int], exits: list[int], repeats: int) -> dict:
    """Time the vectorbt pipeline ``repeats`` times, then (separately) the metrics a ranking needs."""
    import vectorbt as vbt

    # the same wall-clock UTC times without the tz: vectorbt's faster path under pandas 3 (its
    # array wrapper turns a tz-aware index into Timestamp objects: from_signals 4.4 s instead of
    # 3.3 s and the metrics 18 s instead of 8 s in this benchmark)
    candles = candles.tz_localize(None)
    started = time.perf_counter()
    tiny, _, _ = _vectorbt_pipeline(vbt, candles.iloc[:500], [(10, 5), (20, 10)])
    _vectorbt_metrics(tiny)
    warmup = time.perf_counter() - started
    rss_before = _peak_rss_mb()
    combos = _combos(entries, exits)
    runs = []
    for _ in range(repeats):
        portfolio = None  # let the previous run's arrays go first, as a user's re-run would
        portfolio, signals, simulation = _vectorbt_pipeline(vbt, candles, combos)
        runs.append((signals + simulation, signals, simulation))
    seconds, signals, simulation = sorted(runs)[len(runs) // 2]
    rss_sim = _peak_rss_mb()
    started = time.perf_counter()
    total_return = _vectorbt_metrics(portfolio)
    metrics = time.perf_counter() - started
    records = portfolio.trades.records
    trades: dict[Combo, list[Trade]] = {combo: [] for combo in combos}
    for col, entry, exit_, status in zip(records["col"], records["entry_idx"], records["exit_idx"], records["status"]):
        trades[combos[col]].append((int(entry), int(exit_) if status == 1 else None))  # 1: TradeStatus.Closed
    return {
        "engine": "vectorbt from_signals",
        "bars": len(candles),
        "combos": len(combos),
        "seconds": seconds,
        "times": [r[0] for r in runs],
        "signals": signals,
        "simulation": simulation,
        "metrics": metrics,
        "warmup": warmup,
        "rss_before": rss_before,
        "rss_peak": rss_sim,
        "rss_peak_metrics": _peak_rss_mb(),
        "returns": dict(zip(combos, total_return.tolist())),
        "trades": trades,
    }


def _vectorbt_metrics(portfolio: Any) -> np.ndarray:
    """What ranking a sweep needs: total return, Sharpe, max drawdown, closed trades."""
    portfolio.sharpe_ratio()
    portfolio.max_drawdown()
    portfolio.trades.closed.count()
    return portfolio.total_return().to_numpy()


# -- engine 3: backtesting.py ---------------------------------------------------------------


def _strategy_class() -> type:
    from backtesting import Strategy

    class Channel(Strategy):
        """The template's long breakout rules. Bands are NaN-free (+inf/-inf while warming up)
        so backtesting.py starts calling ``next`` at the first bar, like the other engines."""

        entry_window = 20
        exit_window = 10

        def init(self) -> None:
            self.upper = self.I(_band, self.data.High, self.entry_window, True, name="upper")
            self.lower = self.I(_band, self.data.Low, self.exit_window, False, name="lower")

        def next(self) -> None:
            close = self.data.Close[-1]
            if self.position:
                if close < self.lower[-1]:
                    self.position.close()
            elif close > self.upper[-1]:
                self.buy(size=1 - 1e-9)  # all in: a fraction just under 1 of the available cash

    return Channel


def _band(values: np.ndarray, window: int, upper: bool) -> np.ndarray:
    """Max (min) of the ``window`` bars before each bar; +inf (-inf) until the window is full."""
    rolling = pd.Series(values).rolling(window)
    band = (rolling.max() if upper else rolling.min()).shift(1)
    return band.fillna(np.inf if upper else -np.inf).to_numpy()


def run_backtesting(candles: pd.DataFrame, combos: list[Combo]) -> dict:
    """Time backtesting.py over ``combos`` one by one (it has no vectorised sweep for this)."""
    os.environ["TQDM_DISABLE"] = "1"  # its per-run progress bar would flood the terminal
    from backtesting.lib import FractionalBacktest

    strategy = _strategy_class()
    data = candles.rename(columns=str.capitalize)
    # finalize_trades=False (the default): a position still open at the end stays open and is
    # marked to the last close, as in workbench and vectorbt (True would pay an exit fee on it)
    options = dict(cash=INIT_CASH, commission=FEES, spread=0.0, finalize_trades=False)
    warnings.filterwarnings("ignore", message="Some trades remain open")
    FractionalBacktest(data.iloc[:500], strategy, **options).run(entry_window=10, exit_window=5)
    rss_before = _peak_rss_mb()
    started = time.perf_counter()
    backtest = FractionalBacktest(data, strategy, **options)
    stats = [backtest.run(entry_window=n, exit_window=m) for n, m in combos]
    seconds = time.perf_counter() - started
    trades, equity = {}, {}
    for combo, s in zip(combos, stats):
        closed = [(int(e), int(x)) for e, x in zip(s._trades["EntryBar"], s._trades["ExitBar"])]
        trades[combo] = closed + [(int(t.entry_bar), None) for t in s._strategy.trades]
        equity[combo] = float(s["Equity Final [$]"])
    return {
        "engine": "backtesting.py FractionalBacktest",
        "bars": len(candles),
        "combos": len(combos),
        "seconds": seconds,
        "times": [seconds],
        "warmup": 0.0,
        "rss_before": rss_before,
        "rss_peak": _peak_rss_mb(),
        "trades": trades,
        "equity": equity,
    }


# -- the rules template against the channel template ------------------------------------------

RULE_CHANNEL = (
    "vars n = 100, m = 50\n"
    "buy 100% when close > DONCHIAN($n).high\n"
    "exit long when close < DONCHIAN($m).low\n"
)  # channel breakout, long only, all in


def run_rules_vs_channel(candles: pd.DataFrame, entries: list[int], exits: list[int], repeats: int) -> dict:
    """Sweep the same grid with ``channel`` and with the equivalent ``rules`` strategy (each
    ``repeats`` times, alternating); check that every combination trades alike."""
    from workbench.backtest import backtest, sweep

    costs = dict(risk=NO_RISK, fees=FEES, slippage=SLIPPAGE, init_cash=INIT_CASH)
    channel_grid = {"entry_window": entries, "exit_window": exits, **FIXED}
    rules_grid = {"rules": RULE_CHANNEL, "n": entries, "m": exits}
    sweep(
        "channel",
        candles.iloc[:1000],
        {"entry_window": [10, 20], "exit_window": [5, 10], **FIXED},
        **costs,
        progress=False,
    )
    sweep("rules", candles.iloc[:1000], {"rules": RULE_CHANNEL, "n": [10, 20], "m": [5, 10]}, **costs, progress=False)
    times: dict[str, list[float]] = {"channel": [], "rules": []}
    for _ in range(repeats):
        for name, grid in (("channel", channel_grid), ("rules", rules_grid)):
            started = time.perf_counter()
            table = sweep(name, candles, grid, **costs, progress=False)
            times[name].append(time.perf_counter() - started)
            if name == "channel":
                channel = table.sort_values(["entry_window", "exit_window"])
            else:
                rules = table.sort_values(["n", "m"])
    metrics = ["total_return", "sharpe", "trades", "fills", "fees_paid", "max_drawdown"]
    same_rows = bool(np.array_equal(channel[metrics].to_numpy(), rules[metrics].to_numpy(), equal_nan=True))
    n, m = entries[len(entries) // 2], exits[len(exits) // 2]
    ours = backtest("rules", candles, {"rules": RULE_CHANNEL, "n": n, "m": m}, **costs)
    theirs = backtest("channel", candles, {"entry_window": n, "exit_window": m, **FIXED}, **costs)
    return {
        "bars": len(candles),
        "combos": len(channel),
        "times": times,
        "channel": statistics.median(times["channel"]),
        "rules": statistics.median(times["rules"]),
        "same_rows": same_rows,
        "same_fills": bool(ours.fills.equals(theirs.fills)),
        "checked": (n, m),
        "fills": len(ours.fills),
    }


def rules_section(candles: pd.DataFrame) -> list[str]:
    """Print the rules-vs-channel comparison (issue 7: within 3x of the channel's speed, same trades)."""
    print(
        f"\nrules template vs channel: {RULE_CHANNEL!r}\n  the same {len(PEER_ENTRY) * len(PEER_EXIT)}-combination "
        f"grid over {len(candles):,} bars, both threads, each timed {REPEATS} times (alternating)"
    )
    run = _fresh_process(run_rules_vs_channel, candles, PEER_ENTRY, PEER_EXIT, REPEATS)
    for name in ("channel", "rules"):
        rate = run["bars"] * run["combos"] / run[name] / 1e6
        print(
            f"  {name:<8} wall {run[name]:.3f} s (runs "
            + ", ".join(f"{t:.3f}" for t in run["times"][name])
            + f"), {rate:.1f} M bar-evaluations/s"
        )
    ratio = run["rules"] / run["channel"]
    print(
        f"  rules / channel wall = {ratio:.2f}x (target <= 3x); sweep rows (return, Sharpe, trades, fills, fees, "
        f"drawdown) {'identical' if run['same_rows'] else 'DIFFER'}; backtest {run['checked']}: "
        f"{run['fills']} fills {'identical' if run['same_fills'] else 'DIFFER'}"
    )
    problems = [] if run["same_rows"] and run["same_fills"] else ["the rules sweep trades unlike the channel sweep"]
    return problems + ([f"rules sweep {ratio:.2f}x slower than channel (target 3x)"] if ratio > 3 else [])


# -- report ------------------------------------------------------------------------------------


def _rate(run: dict) -> float:
    return run["bars"] * run["combos"] / run["seconds"]


def _row(run: dict) -> str:
    return (
        f"{run['engine']:<36} {run['combos']:>6} {run['bars']:>8} {run['bars'] * run['combos']:>14,} "
        f"{run['seconds']:>9.2f} {_rate(run) / 1e6:>10.2f} {run['rss_peak']:>9.0f} {run['rss_before']:>8.0f}"
    )


def _header() -> str:
    return (
        f"{'engine':<36} {'combos':>6} {'bars':>8} {'bar-evals':>14} {'wall [s]':>9} {'M evals/s':>10} "
        f"{'peak MB':>9} {'base MB':>8}"
    )


def _parity(workbench: dict, vectorbt: dict, backtesting: dict, n_bars: int) -> list[str]:
    """Every disagreement on trades (and on returns where the engines model the same costs)."""
    problems = []
    checked = [combo for combo, bars, slippage in workbench["checked"] if slippage == SLIPPAGE]
    for combo in checked:
        ours, reference = workbench["checked"][combo, n_bars, SLIPPAGE][0], vectorbt["trades"][combo]
        if ours != reference:
            first = next((i for i, (a, b) in enumerate(zip(ours, reference)) if a != b), min(len(ours), len(reference)))
            problems.append(
                f"vectorbt {combo}: {len(reference)} trades vs workbench {len(ours)}; first "
                f"difference at trade {first}: vectorbt {reference[first : first + 1]} "
                f"workbench {ours[first : first + 1]}"
            )
    worst_return = max(abs(workbench["returns"][c] / vectorbt["returns"][c] - 1.0) for c in vectorbt["returns"])
    counts = [
        c
        for c, trades in vectorbt["trades"].items()
        if workbench["closed"][c] != sum(exit_ is not None for _, exit_ in trades)
    ]
    print(
        f"  vectorbt vs workbench: trade entry/exit bars of {len(checked)} combinations "
        f"{'identical' if not problems else 'DIFFER'}; closed-trade counts of all {len(vectorbt['trades'])} "
        f"{'equal' if not counts else 'DIFFER'}; total return max relative difference {worst_return:.1e}"
    )
    problems += [f"vectorbt {c}: closed-trade count differs from workbench.sweep's" for c in counts]
    if worst_return > 1e-9:
        problems.append(f"vectorbt total returns differ from workbench.sweep by up to {worst_return:.1e} (relative)")
    worst_equity, bt_problems = 0.0, []
    for combo, reference in backtesting["trades"].items():
        ours, equity = workbench["checked"][combo, n_bars, 0.0]
        if ours != reference:
            bt_problems.append(
                f"backtesting.py {combo}: {len(reference)} trades vs workbench {len(ours)}: "
                f"{reference[:3]} vs {ours[:3]}"
            )
        worst_equity = max(worst_equity, abs(backtesting["equity"][combo] / equity - 1.0))
    print(
        f"  backtesting.py vs workbench: trade entry/exit bars of {len(backtesting['trades'])} combinations "
        f"{'identical' if not bt_problems else 'DIFFER'}; final equity (both without slippage) max relative "
        f"difference {worst_equity:.1e} (backtesting.py trades whole satoshis)"
    )
    if worst_equity > 1e-5:
        bt_problems.append(f"backtesting.py final equity differs from workbench's by up to {worst_equity:.1e}")
    return problems + bt_problems


def _versions() -> str:
    from importlib.metadata import version

    names = ("workbench", "numba", "numpy", "pandas", "vectorbt", "backtesting")
    return f"Python {platform.python_version()}; " + ", ".join(f"{n} {version(n)}" for n in names)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="skip the 10,000-combination run and give backtesting.py only 2 combinations",
    )
    args = parser.parse_args(argv)
    print(f"{_versions()}\n{os.cpu_count()} CPUs: {platform.processor() or platform.machine()}")

    started = time.perf_counter()
    candles = minute_candles()
    print(
        f"candles: {len(candles):,} synthetic 1-minute bars {candles.index[0]} .. {candles.index[-1]} "
        f"({candles.attrs['source']}), built in {time.perf_counter() - started:.1f} s"
    )
    combos = _combos(PEER_ENTRY, PEER_EXIT)
    bt_combos = combos[::5][:2] if args.quick else combos[::5]  # every entry window once
    # trade-by-trade checks: vs vectorbt with slippage, vs backtesting.py without (see _parity)
    checks = [(c, len(candles), slippage) for c in bt_combos for slippage in (SLIPPAGE, 0.0)]
    print(
        f"grid: entry_window {PEER_ENTRY[0]}..{PEER_ENTRY[-1]} x exit_window {PEER_EXIT[0]}..{PEER_EXIT[-1]} "
        f"= {len(combos)} combinations (backtesting.py: {len(bt_combos)} of them); fees {FEES:g}, "
        f"slippage {SLIPPAGE:g} (backtesting.py: 0, see RESULTS.md), init cash {INIT_CASH:g}"
    )
    print(
        "each engine runs in a fresh spawned process and is warmed on a tiny input first "
        "(workbench: loads numba's on-disk cache; vectorbt: JIT-compiles in-process)"
    )

    runs = [
        _fresh_process(run_workbench, candles, PEER_ENTRY, PEER_EXIT, os.cpu_count(), checks, REPEATS, False),
        _fresh_process(run_workbench, candles, PEER_ENTRY, PEER_EXIT, 1, [], REPEATS, False),
        _fresh_process(run_vectorbt, candles, PEER_ENTRY, PEER_EXIT, REPEATS),
        _fresh_process(run_backtesting, candles, bt_combos),
    ]
    workbench, single, vectorbt, backtesting = runs
    print("\n" + _header())
    for run in runs:
        print(_row(run))
    for run in runs:
        print(f"  {run['engine']}: wall of each timed run " + ", ".join(f"{t:.2f}" for t in run["times"]) + " s")
    print(
        "wall: the median of the timed runs; peak MB: ru_maxrss of the engine's own process (interpreter, "
        "imports and the candles included); base MB: ru_maxrss just before the first timed run"
    )
    print(f"warm-up: workbench {workbench['warmup']:.2f} s, vectorbt {vectorbt['warmup']:.2f} s (excluded)")
    print(
        f"vectorbt wall = signals {vectorbt['signals']:.2f} s + from_signals {vectorbt['simulation']:.2f} s; "
        f"metrics for ranking (total_return, sharpe_ratio, max_drawdown, closed trades) add "
        f"{vectorbt['metrics']:.2f} s and take the peak to {vectorbt['rss_peak_metrics']:.0f} MB; "
        f"workbench.sweep's wall includes its 15 metrics"
    )
    with_metrics = vectorbt["bars"] * vectorbt["combos"] / (vectorbt["seconds"] + vectorbt["metrics"])
    print(
        f"\nratios (bar-evaluations/s): workbench / vectorbt = {_rate(workbench) / _rate(vectorbt):.1f}x "
        f"({_rate(workbench) / with_metrics:.1f}x counting vectorbt's metrics); "
        f"workbench / backtesting.py = {_rate(workbench) / _rate(backtesting):.0f}x; "
        f"single-thread workbench / vectorbt = {_rate(single) / _rate(vectorbt):.1f}x"
    )

    print("\nparity:")
    problems = _parity(workbench, vectorbt, backtesting, len(candles))
    problems += rules_section(candles)
    for problem in problems:
        print(f"  DISAGREEMENT: {problem}")

    if not args.quick:
        print(
            f"\nbig run: entry_window {BIG_ENTRY[0]}..{BIG_ENTRY[-1]} step {BIG_ENTRY[1] - BIG_ENTRY[0]} x "
            f"exit_window {BIG_EXIT[0]}..{BIG_EXIT[-1]} step {BIG_EXIT[1] - BIG_EXIT[0]} = "
            f"{len(BIG_ENTRY) * len(BIG_EXIT):,} combinations over {len(candles):,} bars"
        )
        big = _fresh_process(run_workbench, candles, BIG_ENTRY, BIG_EXIT, os.cpu_count(), [], 1, True)
        print(_header())
        print(_row(big))
        print(
            f"wall {big['seconds']:.1f} s (target < 300 s), peak RSS {big['rss_peak']:.0f} MB (target < 2048 MB), "
            f"{big['completed']:,} combinations completed"
        )
    print(f"\ntotal benchmark time {time.perf_counter() - started:.0f} s")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
