"""The trial ledger: every search a tenant runs, so that its luck is counted in full.

A deflated Sharpe ratio deflates by the number of trials the result was chosen from. The
grid of the last sweep is not that number: the tenant who swept 500 parameter sets
yesterday, 300 this morning and validates 50 now has tried 850 on that strategy and data.
Each :func:`workbench.walk_forward`, :func:`workbench.cross_validate` and
:func:`workbench.validate` records one row in the tenant's ``trials`` table (PostgreSQL,
row-level security: a tenant sees only its own rows; append-only: no tenant may change or
delete one); a sweep is recorded with :func:`record_trials` (``workbench.backtest`` sits
below the research layer and records nothing itself). A row holds:

* the **family**: a template's name, or for a rule strategy its canonical text with the
  ``vars`` line reduced to the variables' names (``vars fast, slow``), so sweeping other
  values of the same variables stays one family;
* the **data set**: sha256 of the candles' open, high, low, close and volume as float64
  bytes, row by row (little-endian), with the first and last bar's open time and the count;
* the **combinations** the run tried, what ran, and when.

:func:`trial_count` sums the combinations of a family on a data set;
:func:`trials` lists the rows. Recording never skips silently: without a database the call
fails with a one-line :class:`~workbench.errors.DatabaseError` (the workbench always has
one; an embedded PostgreSQL by default).
"""

from __future__ import annotations

import contextvars
import hashlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd

from workbench.errors import DatabaseError, ParameterError, WorkbenchError
from workbench.strategies import Template, get_template, templates

OHLCV = ("open", "high", "low", "close", "volume")
COLUMNS = ("recorded_at", "what", "template", "family", "combinations", "data_hash", "data_start", "data_end", "bars")
_PAUSED: contextvars.ContextVar[bool] = contextvars.ContextVar("workbench_trials_paused", default=False)


def hash_candles(candles: pd.DataFrame) -> str:
    """sha256 (hex) of the candles' OHLCV values as little-endian float64, row by row."""
    missing = [c for c in OHLCV if not isinstance(candles, pd.DataFrame) or c not in candles.columns]
    if missing:
        raise ParameterError(
            f"candles: no {', '.join(missing)} column; expected OHLCV candles (wb.load_candles())",
            param="candles",
            value=missing,
        )
    values = np.ascontiguousarray(candles[list(OHLCV)].to_numpy(dtype="<f8"))
    return hashlib.sha256(values.tobytes()).hexdigest()


def strategy_family(template: str | Template | Mapping[str, Any], grid: Mapping[str, Any] | None = None) -> str:
    """The strategy family a run searched: the template's name, or for a rule strategy
    (rule text or JSON, or the ``rules`` template with ``grid["rules"]``) ``"rules:"`` and its
    canonical text with the ``vars`` line reduced to the variables' names."""
    name, rules = _resolve(template, grid)
    if rules is None:
        return name
    from workbench.strategies.rules import parse_rules, rules_text

    texts = []
    for one in rules if isinstance(rules, (list, tuple)) else [rules]:
        parsed = parse_rules(one)
        lines = rules_text(parsed).splitlines()
        if lines and lines[0].startswith("vars "):
            lines[0] = "vars " + ", ".join(parsed["vars"])
        texts.append("\n".join(lines))
    return "rules:\n" + "\n--\n".join(sorted(set(texts)))  # a grid of several rule strategies: all of them


def record_trials(
    template: str | Template | Mapping[str, Any],
    candles: pd.DataFrame,
    n: int,
    what: str = "sweep",
    *,
    grid: Mapping[str, Any] | None = None,
) -> int:
    """Record that ``n`` parameter combinations of ``template`` were tried on ``candles``.

    :func:`workbench.walk_forward`, :func:`workbench.cross_validate` and
    :func:`workbench.validate` record themselves; record a :func:`workbench.sweep` (or any
    search of your own) with this, so that a later validation deflates by it too.

    Args:
        template: a template name or :class:`Template`, or a rule strategy (text or JSON);
            for the ``rules`` template, give its text in ``grid["rules"]``.
        candles: the candles searched.
        n: the parameter combinations tried (``len(table)`` of a sweep).
        what: what ran, e.g. ``"sweep"``.
        grid: the grid searched (only its ``rules`` entry is read).

    Returns:
        The tenant's cumulative number of combinations on this family and data set, this
        run's included.

    Raises:
        ParameterError: a bad ``n`` or ``what``.
        DatabaseError: the row could not be written (one line; nothing is skipped silently).

    Example:
        >>> table = wb.sweep("channel", candles, grid)                  # doctest: +SKIP
        >>> wb.record_trials("channel", candles, len(table))            # doctest: +SKIP
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ParameterError(
            f"n: {n!r} is not allowed; expected the number of combinations tried, a whole number >= 1",
            param="n",
            value=n,
        )
    if not isinstance(what, str) or not what.strip() or len(what) > 64:
        raise ParameterError(
            f"what: {what!r} is not allowed; expected a short name of what ran, e.g. 'sweep'", param="what", value=what
        )
    name, _ = _resolve(template, grid)
    key, digest = strategy_family(template, grid), hash_candles(candles)
    index = candles.index
    if len(index) < 1 or not isinstance(index, pd.DatetimeIndex):
        raise ParameterError(
            "candles: expected candles indexed by time with at least one bar", param="candles", value=len(index)
        )
    from workbench import store

    row = {
        "template": name,
        "family": key,
        "data_hash": digest,
        "data_start": _utc(index[0]),
        "data_end": _utc(index[-1]),
        "bars": len(index),
        "combinations": int(n),
        "what": what.strip(),
    }
    try:
        with store.session() as scope:
            scope.add(store.Trial(**row))
            scope.flush()
            return _count(scope, key, digest)
    except WorkbenchError as exc:
        raise DatabaseError(f"trial ledger: could not record {n} {what} trials of {name}: {_line(exc)}") from None
    except Exception as exc:  # SQLAlchemy and driver errors: one line, never a silent skip
        raise DatabaseError(
            f"trial ledger: could not record {n} {what} trials of {name}: {type(exc).__name__}: {_line(exc)}"
        ) from None


def trial_count(family: str | Template | Mapping[str, Any], data_hash: str | pd.DataFrame) -> int:
    """The tenant's cumulative parameter combinations tried on a strategy family and data set.

    Args:
        family: a family as :func:`trials` lists it (a template's name, or ``"rules:..."``),
            or a template or rule strategy, turned into its family.
        data_hash: the data set's sha256 as :func:`trials` lists it, or the candles.

    Returns:
        The sum of ``combinations`` over the tenant's rows of that family and data set (0 when
        none).
    """
    key = family if isinstance(family, str) and family.startswith("rules:") else strategy_family(family)
    digest = data_hash if isinstance(data_hash, str) else hash_candles(data_hash)
    from workbench import store

    try:
        with store.session() as scope:
            return _count(scope, key, digest)
    except WorkbenchError as exc:
        raise DatabaseError(f"trial ledger: could not read: {_line(exc)}") from None
    except Exception as exc:
        raise DatabaseError(f"trial ledger: could not read: {type(exc).__name__}: {_line(exc)}") from None


def trials(
    template: str | Template | Mapping[str, Any] | None = None, candles: pd.DataFrame | None = None
) -> pd.DataFrame:
    """The tenant's trial ledger, oldest first: one row per recorded run.

    Args:
        template: only this family's rows (a template name, :class:`Template` or rule strategy).
        candles: only the rows of this data set.

    Returns:
        A DataFrame indexed by ``id``: ``recorded_at``, ``what``, ``template``, ``family``,
        ``combinations``, ``data_hash``, ``data_start``, ``data_end``, ``bars`` and
        ``cumulative`` (the running sum of combinations of the row's family and data set).
    """
    from sqlalchemy import select

    from workbench import store

    query = select(store.Trial).order_by(store.Trial.id)
    if template is not None:
        query = query.where(store.Trial.family == strategy_family(template))
    if candles is not None:
        query = query.where(store.Trial.data_hash == hash_candles(candles))
    try:
        with store.session() as scope:
            rows = [{"id": r.id, **{c: getattr(r, c) for c in COLUMNS}} for r in scope.scalars(query)]
    except WorkbenchError as exc:
        raise DatabaseError(f"trial ledger: could not read: {_line(exc)}") from None
    except Exception as exc:
        raise DatabaseError(f"trial ledger: could not read: {type(exc).__name__}: {_line(exc)}") from None
    table = pd.DataFrame(rows, columns=["id", *COLUMNS]).set_index("id")
    for column in ("recorded_at", "data_start", "data_end"):
        table[column] = pd.to_datetime(table[column], utc=True)
    table = table.astype({"combinations": "int64", "bars": "int64"})
    table["cumulative"] = table.groupby(["family", "data_hash"])["combinations"].cumsum().astype("int64")
    return table


def record_run(
    template: str | Template, candles: pd.DataFrame, n: int, what: str, grid: Mapping[str, Any] | None
) -> int | None:
    """What the research tools call: record unless a :func:`paused` block (validate's own
    walk-forward and cross-validation, which it records once as a whole) is running."""
    if _PAUSED.get():
        return None
    return record_trials(template, candles, n, what, grid=grid)


@contextmanager
def paused() -> Iterator[None]:
    """The research calls inside record nothing (their caller records the whole run)."""
    token = _PAUSED.set(True)
    try:
        yield
    finally:
        _PAUSED.reset(token)


def _count(scope: Any, key: str, digest: str) -> int:
    from sqlalchemy import func, select

    from workbench import store

    total = scope.scalar(
        select(func.coalesce(func.sum(store.Trial.combinations), 0)).where(
            store.Trial.family == key, store.Trial.data_hash == digest
        )
    )
    return int(total)


def _resolve(
    template: str | Template | Mapping[str, Any], grid: Mapping[str, Any] | None
) -> tuple[str, str | Mapping[str, Any] | list[Any] | tuple[Any, ...] | None]:
    """(template name, rule strategy (or a grid's several) or None)."""
    if isinstance(template, Template):
        name = template.name
    elif isinstance(template, str) and template in templates():
        name = get_template(template).name
    elif isinstance(template, (str, Mapping)):
        return "rules", template
    else:
        raise ParameterError(
            f"template: a {type(template).__name__} is not allowed; expected a template name, "
            "a Template or a rule strategy",
            param="template",
            value=template,
        )
    if name == "rules":
        rules = (grid or {}).get("rules")
        if isinstance(rules, (list, tuple)) and len(rules) == 1:
            rules = rules[0]
        if not (
            isinstance(rules, (str, Mapping))
            or (isinstance(rules, (list, tuple)) and rules and all(isinstance(r, (str, Mapping)) for r in rules))
        ):
            raise ParameterError(
                "grid: the rules template needs its rule strategy, one text or JSON in "
                "grid['rules'], to name the family searched",
                param="rules",
                value=rules,
            )
        return name, rules
    return name, None


def _utc(stamp: pd.Timestamp) -> pd.Timestamp:
    stamp = pd.Timestamp(stamp)
    return (stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")).to_pydatetime()


def _line(exc: BaseException) -> str:
    """The error in one line: a driver's own message rather than SQLAlchemy's wrapping of it."""
    text = " ".join(str(getattr(exc, "orig", None) or exc).split())
    return text[:300] + ("..." if len(text) > 300 else "")
