"""Rule strategies: entry and exit conditions plus actions, as JSON or as text.

``parse_rules(text or JSON)`` gives the canonical JSON (the form a strategy stores, described
in ``_model``); ``rules_text(JSON or text)`` gives the canonical text (described in
``_text``); each is the other's inverse. ``rule_indicators()`` lists the indicators with their
parameters and outputs. The ``rules`` template backtests, sweeps and trades them with one
compiled kernel (``_kernel``) over signal rows evaluated with numpy (``_evaluate``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from workbench.strategies.rules._model import MAX_DEPTH, MAX_LADDER, catalogue, normalise, resolve, tree
from workbench.strategies.rules._parse import MAX_TEXT, parse
from workbench.strategies.rules._template import RuleTemplate
from workbench.strategies.rules._text import to_text

__all__ = [
    "MAX_DEPTH",
    "MAX_LADDER",
    "MAX_TEXT",
    "RuleTemplate",
    "parse_rules",
    "resolve",
    "rule_indicators",
    "rules_text",
    "tree",
]


def parse_rules(rules: str | Mapping[str, Any]) -> dict[str, Any]:
    """The canonical JSON of a rule strategy given as text or as JSON.

    Raises:
        RuleError: (a ParameterError) for text, with ``line`` and ``column`` and what was
            expected there; for JSON, naming the path (``long.entry.and[1].left``). Unknown
            indicators, variables and values out of range are named.

    Example:
        >>> parse_rules("buy 10% when EMA(12) > EMA(26) and RSI(14) < 30\\n    stop_loss 0.5%")["long"]["size"]
        {'percent': 10}
    """
    return json.loads(_parsed(rules)) if isinstance(rules, str) else normalise(rules)


@lru_cache(maxsize=256)
def _parsed(text: str) -> str:
    """Parsed once per text (a sweep validates the same text for every combination), kept as
    a JSON string so each caller gets its own objects."""
    return json.dumps(parse(text))


def rules_text(rules: str | Mapping[str, Any]) -> str:
    """The canonical text of a rule strategy given as JSON or as text (see :func:`parse_rules`).

    ``parse_rules(rules_text(j)) == parse_rules(j)`` for every valid ``j``, and
    ``rules_text(parse_rules(t)) == t`` for canonical text ``t``.
    """
    return to_text(parse_rules(rules))


def rule_indicators() -> dict[str, dict[str, Any]]:
    """Every indicator a rule can use: help, signature, parameters (name, whole, min, max,
    default) and outputs (with the default one), e.g. to fill a rule builder's menus."""
    return catalogue()
