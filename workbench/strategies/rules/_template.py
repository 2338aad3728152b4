"""The ``rules`` template: one parameter, ``rules`` (text or JSON), whose variables are
parameters too, so ``{"rules": text, "fast": 20}`` backtests the rule with $fast = 20 and a
sweep grid ``{"rules": text, "fast": range(5, 50, 5)}`` sweeps it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from workbench.strategies._spec import Template
from workbench.strategies.rules._model import with_values
from workbench.strategies.rules._text import to_text


class RuleTemplate(Template):
    """A template whose ``rules`` parameter holds a rule strategy (canonical JSON once validated)."""

    def validate(self, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """``{"rules": canonical JSON}``; any other key sets the variable of that name (its
        value is stored in the rule's ``vars``, so the strategy JSON is self-contained)."""
        values = dict(params or {})
        clean = super().validate({"rules": values.pop("rules", self.params["rules"].default)})
        if values:
            clean["rules"] = with_values(clean["rules"], values)
        return clean

    def axis(self, params: Mapping[str, Any], name: str) -> Any:
        """A sweep table column: a variable's value, or the parameter's."""
        return params["rules"]["vars"][name] if name != "rules" else params[name]

    def describe(self, params: Mapping[str, Any]) -> str:
        """The rule's canonical text, its statements joined on one line."""
        return " · ".join(line.strip() for line in to_text(params["rules"]).splitlines())
