"""The validation battery: one call asks every question of a parameter search, and certifies.

:func:`validate` runs the research tools with sensible defaults on one template, one grid and
one set of candles, and gives a verdict against written-down thresholds:

* ``walk_forward_efficiency`` > 0.5: did the walked-forward choice keep half of its
  in-sample annualised return? (the usual rule of thumb: Pardo, *The Evaluation and
  Optimization of Trading Strategies*, 2008)
* ``oos_total_return`` > 0: did the stitched out-of-sample equity make money?
* ``pbo`` < 0.5: is the grid's in-sample best more than a draw out of sample? (CSCV; Bailey,
  Borwein, López de Prado and Zhu, "The Probability of Backtest Overfitting", 2017)
* ``deflated_sharpe`` > 0.95: is the selected row's Sharpe ratio more than the best that luck
  gives **every** combination the tenant ever tried on this family and data set?
* ``lookahead`` passed: does the strategy decide nothing from later bars?
* shown only: ``probability_of_ruin`` (the share of Monte Carlo paths of the trades whose
  equity fell to half the initial cash), ``max_drawdown_p50`` and ``max_drawdown_p95``
  (the median and 95th percentile of their drawdowns).

The shown rows get a threshold (checked as "below") through ``thresholds=``. The trial count
comes from the tenant's trial ledger (``_trials``), this run included.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import cached_property
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from workbench.backtest import BacktestResult, backtest, sweep
from workbench.errors import ParameterError
from workbench.research._cross_validate import CrossValidation, cross_validate
from workbench.research._lookahead import LookAhead, check_lookahead
from workbench.research._monte_carlo import MonteCarlo, monte_carlo
from workbench.research._sharpe import DeflatedSharpe, deflated_sharpe
from workbench.research._trials import hash_candles, paused, record_trials, strategy_family
from workbench.research._walk_forward import WalkForward, _plain, walk_forward
from workbench.strategies import Template, get_template

# name -> (default threshold, how a value passes it); None: shown, not checked
THRESHOLDS: dict[str, tuple[Any, str]] = {
    "walk_forward_efficiency": (0.5, ">"),
    "oos_total_return": (0.0, ">"),
    "pbo": (0.5, "<"),
    "deflated_sharpe": (0.95, ">"),
    "lookahead": (True, "=="),
    "probability_of_ruin": (None, "<"),
    "max_drawdown_p50": (None, "<"),
    "max_drawdown_p95": (None, "<"),
}
RUIN = 0.5  # a Monte Carlo path is ruined when its equity falls to this share of the initial cash
MONTE_CARLO_PATHS = 1000
LOOKAHEAD_CUTS = 8
OBJECTIVE = "sharpe"


class ValidationReport:
    """What :func:`validate` returns.

    Attributes:
        passed: True when every checked row of :attr:`checks` passed.
        checks: one row per check: ``name``, ``value``, ``threshold`` (None: shown, not
            checked), ``passed`` (None when not checked).
        certificate: a JSON-serialisable record of the run (see :func:`validate`).
        params: the selected parameters the deflated Sharpe ratio, Monte Carlo and look-ahead
            check were run on.
        trials: the tenant's cumulative combinations on this family and data set, this run's
            included: the deflated Sharpe ratio's number of trials.
        walk_forward, cross_validation, deflated_sharpe, monte_carlo, lookahead: each tool's
            own result (``monte_carlo`` is None when the selected backtest closed no trade,
            ``deflated_sharpe`` when its equity never moved: those checks fail).
        result: the backtest of :attr:`params` on all the candles.
    """

    def __init__(
        self,
        *,
        checks: pd.DataFrame,
        certificate: dict[str, Any],
        params: dict[str, Any],
        trials: int,
        walk_forward: WalkForward,
        cross_validation: CrossValidation,
        deflated_sharpe: DeflatedSharpe | None,
        monte_carlo: MonteCarlo | None,
        lookahead: LookAhead,
        result: BacktestResult,
    ):
        self.checks = checks
        self.certificate = certificate
        self.params = params
        self.trials = trials
        self.walk_forward = walk_forward
        self.cross_validation = cross_validation
        self.deflated_sharpe = deflated_sharpe
        self.monte_carlo = monte_carlo
        self.lookahead = lookahead
        self.result = result

    @property
    def passed(self) -> bool:
        checked = self.checks["passed"].dropna()
        return bool(len(checked)) and bool(checked.astype(bool).all())

    @property
    def failed(self) -> list[str]:
        """The names of the checks that did not pass."""
        return [row.name for row in self.checks.itertuples() if row.passed is False]

    @cached_property
    def figure(self):
        """A bokeh layout: the walk-forward's out-of-sample equity over its test windows, the
        CSCV logit histogram and the CPCV paths' Sharpe ratios, and the Monte Carlo fan."""
        from bokeh.layouts import column

        charts = [self.walk_forward.figure, self.cross_validation.figure]
        if self.monte_carlo is not None:
            charts.append(self.monte_carlo.figure)
        return column(charts)

    def html(self, resources: str = "cdn") -> str:
        """The report as one standalone HTML page (Voila, a browser, a file): the verdict,
        the checks, the charts and the certificate. ``resources``: ``"cdn"`` loads BokehJS
        from its CDN, ``"inline"`` embeds it (a page that works offline, about 1 MB)."""
        from bokeh.embed import components
        from bokeh.resources import CDN, INLINE

        if resources not in ("cdn", "inline"):
            raise ParameterError(
                f"resources: {resources!r} is not allowed; expected 'cdn' or 'inline'",
                param="resources",
                value=resources,
            )
        script, div = components(self.figure)
        head = (CDN if resources == "cdn" else INLINE).render()
        certificate = escape(json.dumps(self.certificate, indent=2))
        title = escape(f"Validation of {self.certificate['strategy']['template']}")
        return (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{title}</title>{head}<style>{_STYLE}</style></head><body>"
            f"{self._repr_html_()}{div}<details><summary>Certificate (JSON)</summary><pre>{certificate}</pre>"
            f"</details>{script}</body></html>"
        )

    def _repr_html_(self) -> str:
        verdict = "passed" if self.passed else f"failed: {', '.join(self.failed)}"
        strategy, data = self.certificate["strategy"], self.certificate["data"]
        rows = "".join(
            f"<tr><td>{escape(row.name)}</td><td>{_shown(row.value)}</td>"
            f"<td>{'' if row.threshold is None else escape(THRESHOLDS[row.name][1]) + ' ' + _shown(row.threshold)}"
            f"</td><td>{'' if row.passed is None else ('✔' if row.passed else '✘')}</td></tr>"
            for row in self.checks.itertuples()
        )
        return (
            f'<div class="wb-validation"><h3>{escape(strategy["template"])} '
            f'{escape(json.dumps(strategy["params"]))}: <span style="color:'
            f'{"#2ca02c" if self.passed else "#d62728"}">{escape(verdict)}</span></h3>'
            f"<p>{data['bars']:,} bars from {escape(data['start'])} to {escape(data['end'])} "
            f"(sha256 {data['sha256'][:12]}…); {self.trials:,} combinations tried on this family and data set"
            f"</p><table><thead><tr><th>check</th><th>value</th><th>threshold</th><th>passed</th></tr></thead>"
            f"<tbody>{rows}</tbody></table></div>"
        )

    def __repr__(self) -> str:
        verdict = "passed" if self.passed else f"failed ({', '.join(self.failed)})"
        return (
            f"<ValidationReport {self.certificate['strategy']['template']} {self.params}: {verdict}; "
            f"{self.trials} trials>"
        )


def validate(
    template: str | Template,
    candles: pd.DataFrame,
    grid: Mapping[str, Any],
    *,
    params: Mapping[str, Any] | None = None,
    folds: int = 4,
    n_groups: int = 8,
    thresholds: Mapping[str, Any] | None = None,
    **settings: Any,
) -> ValidationReport:
    """Validate a parameter search: walk-forward, CPCV and PBO, deflated Sharpe, Monte Carlo
    and look-ahead, with a verdict and a certificate.

    The battery, all on the same ``candles`` and ``settings``:

    * **walk-forward** (:func:`workbench.walk_forward`): ``folds`` rolling folds, each
      training on twice as many bars as it tests, the test windows tiling the candles' end;
      its efficiency and the out-of-sample total return;
    * **CPCV** (:func:`workbench.cross_validate`): ``n_groups`` groups, two tested at a time;
      the probability of backtest overfitting and the paths' Sharpe ratios;
    * the **selected parameters**: ``params``, or the best Sharpe ratio of a sweep of the
      grid over all the candles; backtested once;
    * their **deflated Sharpe ratio** (:func:`workbench.deflated_sharpe`) against the
      tenant's *cumulative* combinations on this strategy family and data set (the trial
      ledger, :func:`workbench.trials`, this run included), against the Sharpe ratio the best
      of that many skill-less trials is expected to show (their spread ``1 / sqrt(n - 1)``
      per bar: earlier runs' Sharpe ratios are not kept, and a grid's own spread would
      punish a grid for holding the opposite of its best row);
    * **Monte Carlo** (:func:`workbench.monte_carlo`) of their trades: 1,000 paths, the
      probability that the equity falls to half the initial cash, the drawdown quantiles;
    * the **look-ahead check** (:func:`workbench.check_lookahead`) at 8 cuts.

    Default thresholds (``docs/METRICS.md``): ``pbo`` < 0.5, ``deflated_sharpe`` > 0.95,
    ``oos_total_return`` > 0, ``walk_forward_efficiency`` > 0.5 (the usual rule of thumb:
    out of sample keeps at least half the in-sample return), ``lookahead`` passed.
    ``probability_of_ruin``, ``max_drawdown_p50`` and ``max_drawdown_p95`` are shown and
    checked ("below") only when given a threshold. A value that does not exist (NaN) fails.

    Args:
        template: a template name or :class:`Template` (``"rules"`` with ``grid["rules"]``).
        candles: the candles (as :func:`workbench.backtest`).
        grid: the parameter grid searched (as :func:`workbench.sweep`), at least 2 rows.
        params: the parameters to certify; default the sweep's best Sharpe ratio.
        folds: walk-forward folds (at least 1).
        n_groups: CPCV groups (even, 2 to 20).
        thresholds: overrides by check name, e.g. ``{"pbo": 0.3, "probability_of_ruin": 0.05}``;
            None turns a check into a shown row. An unknown name is refused.
        settings: passed to every backtest (fees, slippage, init_cash, risk...).

    Returns:
        A :class:`ValidationReport`: ``.passed``, ``.checks``, ``.figure``, ``.html()``, and
        ``.certificate``: the template, family and parameters, the grid, the data set
        (sha256 of the OHLCV values, first and last bar, bar count), the workbench version and
        the code's git commit (None outside a git checkout), every statistic and threshold, the
        trial counts and the UTC time.

    Raises:
        ParameterError: an unknown threshold, a bad argument (named).
        DatabaseError: the trial ledger could not be written or read.

    Example:
        >>> report = wb.validate("channel", candles, {"entry_window": range(20, 200, 20),
        ...                                          "exit_window": [12, 24, 48]})     # doctest: +SKIP
        >>> report.passed, report.checks                                               # doctest: +SKIP
        >>> report.figure                                                             # doctest: +SKIP
        >>> json.dumps(report.certificate)                                            # doctest: +SKIP
    """
    tpl = template if isinstance(template, Template) else get_template(template)
    limits = _thresholds(thresholds)
    total = len(candles)
    train, test = fold_windows(total, folds)
    table = sweep(tpl, candles, grid, sort_by=OBJECTIVE, progress=False, **settings)  # checks grid and settings
    combos = len(table)
    if combos < 2:
        raise ParameterError(
            f"grid: {combos} combination is not allowed; expected at least 2 rows to choose from",
            param="grid",
            value=combos,
        )
    with paused():  # recorded below, once, as this validation
        wf = walk_forward(tpl, candles, grid, train=train, test=test, objective=OBJECTIVE, **settings)
        cv = cross_validate(tpl, candles, grid, n_groups=n_groups, k_test=2, objective=OBJECTIVE, **settings)
    if params is None:
        chosen = {name: _plain(table.iloc[0][name]) for name in grid}
    else:
        if not isinstance(params, Mapping):
            raise ParameterError(
                f"params: a {type(params).__name__} is not allowed; expected a mapping of parameters",
                param="params",
                value=params,
            )
        chosen = {**({"rules": grid["rules"]} if "rules" in grid and "rules" not in params else {}), **params}
    result = backtest(tpl, candles, chosen, **settings)
    cumulative = record_trials(tpl, candles, combos, "validate", grid=grid)
    try:  # the spread of skill-less trials' Sharpe ratios
        dsr = deflated_sharpe(result, trials=cumulative)
    except ParameterError:  # returns that never vary (no trade): no Sharpe ratio to deflate, the check fails
        dsr = None
    mc = monte_carlo(result, MONTE_CARLO_PATHS, seed=0) if len(result.trades) else None
    look = check_lookahead(tpl, candles, chosen, cuts=min(LOOKAHEAD_CUTS, total - 2), seed=0, **settings)

    init_cash = float(result.settings["init_cash"])
    drawdowns = mc.paths["max_drawdown"].quantile([0.5, 0.95]).to_numpy() if mc is not None else [math.nan] * 2
    values = {
        "walk_forward_efficiency": float(wf.efficiency),
        "oos_total_return": float(wf.equity.iloc[-1] / wf.init_cash - 1.0),
        "pbo": float(cv.pbo),
        "deflated_sharpe": float(dsr.probability) if dsr is not None else math.nan,
        "lookahead": bool(look.passed),
        "probability_of_ruin": mc.probability_of_ruin(RUIN * init_cash) if mc is not None else math.nan,
        "max_drawdown_p50": float(drawdowns[0]),
        "max_drawdown_p95": float(drawdowns[1]),
    }
    checks = pd.DataFrame(
        [
            {
                "name": name,
                "value": values[name],
                "threshold": limits[name],
                "passed": None if limits[name] is None else _passes(values[name], limits[name], THRESHOLDS[name][1]),
            }
            for name in THRESHOLDS
        ],
        columns=["name", "value", "threshold", "passed"],
    )
    checks = checks.astype({"value": object, "threshold": object, "passed": object}).set_index("name", drop=False)
    checks.index.name = None
    statistics = {
        **values,
        "walk_forward": {
            "folds": len(wf.folds),
            "train_bars": train,
            "test_bars": test,
            "in_sample_cagr": float(wf.folds["is_cagr"].mean()),
            "oos_cagr": float(wf.efficiency * wf.folds["is_cagr"].mean()) if np.isfinite(wf.efficiency) else None,
        },
        "cross_validation": {
            "n_groups": cv.n_groups,
            "k_test": cv.k_test,
            "splits": len(cv.splits),
            "paths": len(cv.paths),
            "median_path_sharpe": float(cv.paths["sharpe"].median()),
        },
        "selected": {
            "sharpe": result.metrics["sharpe"],
            "total_return": result.metrics["total_return"],
            "max_drawdown": result.metrics["max_drawdown"],
            "trades": result.metrics["trades"],
        },
        "deflated_sharpe_detail": None
        if dsr is None
        else {
            "annualised_sharpe": dsr.annualised_sharpe,
            "annualised_expected_max_sharpe": dsr.annualised_expected_max_sharpe,
            "trials": dsr.trials,
            "n": dsr.n,
            "skew": dsr.skew,
            "kurtosis": dsr.kurtosis,
        },
        "monte_carlo": {"paths": MONTE_CARLO_PATHS if mc is not None else 0, "ruin_floor": RUIN * init_cash, "seed": 0},
        "lookahead_cuts": list(look.cuts),
    }
    certificate = _jsonable(
        {
            "kind": "workbench.validation",
            "passed": bool(checks["passed"].dropna().astype(bool).all()) and checks["passed"].notna().any(),
            "strategy": {
                "template": tpl.name,
                "family": strategy_family(tpl, grid),
                "params": result.params,
                "grid": {name: _axis(values) for name, values in grid.items()},
            },
            "data": {
                "sha256": hash_candles(candles),
                "start": candles.index[0],
                "end": candles.index[-1],
                "bars": total,
            },
            "settings": result.settings,
            "workbench_version": sys.modules["workbench"].__version__,  # the root package, loaded with this one
            "code_version": code_version(),
            "trials": {"this_run": combos, "cumulative": cumulative},
            "statistics": statistics,
            "thresholds": {name: {"value": limits[name], "passes_when": THRESHOLDS[name][1]} for name in THRESHOLDS},
            "checks": checks.to_dict("records"),
            "created_at": datetime.now(UTC),
        }
    )
    return ValidationReport(
        checks=checks,
        certificate=certificate,
        params=dict(result.params),
        trials=cumulative,
        walk_forward=wf,
        cross_validation=cv,
        deflated_sharpe=dsr,
        monte_carlo=mc,
        lookahead=look,
        result=result,
    )


def fold_windows(total: int, folds: int) -> tuple[int, int]:
    """(train, test) bars of ``folds`` rolling walk-forward folds over ``total`` bars: the test
    windows tile the end, each training window twice a test window (or more)."""
    if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or not 1 <= folds <= max(1, total // 6):
        raise ParameterError(
            f"folds: {folds!r} is not allowed; expected a whole number from 1 to "
            f"{max(1, total // 6)} for {total} candles",
            param="folds",
            value=folds,
        )
    test = total // (int(folds) + 2)
    return total - int(folds) * test, test


def code_version() -> str | None:
    """The git commit of the checkout this package runs from, None when it is not one."""
    root = Path(__file__).resolve().parents[2]
    try:
        top = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--show-toplevel", "HEAD"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    lines = top.stdout.split()
    if top.returncode != 0 or len(lines) != 2 or Path(lines[0]).resolve() != root:
        return None
    return lines[1] if re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", lines[1]) else None


def _thresholds(given: Mapping[str, Any] | None) -> dict[str, Any]:
    limits = {name: default for name, (default, _) in THRESHOLDS.items()}
    if given is None:
        return limits
    if not isinstance(given, Mapping):
        raise ParameterError(
            f"thresholds: a {type(given).__name__} is not allowed; expected a mapping of check names to thresholds",
            param="thresholds",
            value=given,
        )
    unknown = sorted(str(name) for name in set(given) - set(THRESHOLDS))
    if unknown:
        raise ParameterError(
            f"thresholds: {', '.join(unknown)} not a check; expected any of {', '.join(THRESHOLDS)}",
            param="thresholds",
            value=unknown,
        )
    for name, value in given.items():
        if name == "lookahead":
            ok = value is None or isinstance(value, (bool, np.bool_))
        else:
            ok = value is None or (
                isinstance(value, (int, float, np.integer, np.floating))
                and not isinstance(value, bool)
                and math.isfinite(value)
            )
        if not ok:
            raise ParameterError(
                f"thresholds: {name}={value!r} is not allowed; expected "
                f"{'True, False or None' if name == 'lookahead' else 'a finite number or None'}",
                param="thresholds",
                value=value,
            )
        limits[name] = (
            bool(value) if name == "lookahead" and value is not None else (None if value is None else float(value))
        )
    return limits


def _passes(value: Any, threshold: Any, how: str) -> bool:
    if how == "==":
        return bool(value) == bool(threshold)
    if value is None or not math.isfinite(value):
        return False
    return bool(value > threshold) if how == ">" else bool(value < threshold)


def _axis(values: Any) -> Any:
    if isinstance(values, (str, bytes, Mapping)) or not hasattr(values, "__iter__"):
        return values
    return list(values)


def _jsonable(value: Any) -> Any:
    """Plain JSON types: NaN and infinity as None, times as ISO 8601 (UTC), numpy as Python."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, range, np.ndarray, pd.Index, pd.Series)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, (pd.Timestamp, datetime)):
        stamp = pd.Timestamp(value)
        return (stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")).isoformat()
    if value is None or isinstance(value, str):
        return value
    return str(value)


def _shown(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    return f"{value:.4g}" if isinstance(value, (float, np.floating)) else escape(str(value))


_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:1.5em;max-width:960px}"
    ".wb-validation table{border-collapse:collapse;margin:1em 0}"
    ".wb-validation td,.wb-validation th{border-bottom:1px solid #ddd;padding:.3em .8em;text-align:left}"
    "pre{font-size:12px;background:#f6f6f6;padding:1em;overflow:auto}"
)
