"""Template specs: the declarative parameter schema in ``templates/*.json`` and its checks.

A spec is the single source of truth for a template's parameters: the backtest validates
against it, the ipywidgets editor is generated from it, and saved strategies are checked
against it. The strategy format is JSON::

    {"type": "ema_reversal",
     "params": {"dip_levels": [0.3, 0.5, 0.8], "leverage": 100, ...},
     "risk_limits": {"max_position_size": 1000, "max_daily_loss": 100}}
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from workbench.errors import ParameterError, TemplateError

_KINDS = ("int", "float", "choice", "bool", "float_list", "rules")
RISK_LIMITS = ("max_position_size", "max_daily_loss")


@dataclass(frozen=True)
class Param:
    """One parameter of a template: its kind, range, default and help text."""

    name: str
    kind: str
    default: Any
    help: str = ""
    min: float | None = None
    max: float | None = None
    step: float | None = None
    choices: tuple[str, ...] = ()
    min_items: int = 1
    max_items: int = 10
    unit: str = ""

    def describe_range(self) -> str:
        if self.kind == "choice":
            return "one of " + ", ".join(repr(c) for c in self.choices)
        if self.kind == "bool":
            return "true or false"
        if self.kind == "rules":
            return "a rule strategy as text or JSON (workbench.parse_rules)"
        bounds = f"{_fmt(self.min)} to {_fmt(self.max)}"
        if self.kind == "float_list":
            return f"a list of {self.min_items} to {self.max_items} ascending numbers, each from {bounds}"
        return ("a whole number from " if self.kind == "int" else "a number from ") + bounds

    def check(self, value: Any) -> Any:
        """The value converted to the parameter's type; ParameterError when out of schema."""
        try:
            return self._convert(value)
        except ParameterError:  # a rule error says where in the rule, precisely
            raise
        except (TypeError, ValueError) as exc:
            detail = f" ({exc})" if str(exc) else ""
            raise ParameterError(
                f"parameter {self.name!r}: {value!r} is not allowed{detail}; expected {self.describe_range()}",
                param=self.name,
                value=value,
            ) from None

    def _convert(self, value: Any) -> Any:
        if self.kind == "rules":  # text or JSON -> canonical JSON (workbench.strategies.rules)
            from workbench.strategies.rules import parse_rules

            return parse_rules(value)
        if self.kind == "choice":
            if value not in self.choices:
                raise ValueError("")
            return value
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise ValueError("")
            return value
        if self.kind == "float_list":
            if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
                raise ValueError("not a list")
            items = [self._number(v, float) for v in value]
            if not self.min_items <= len(items) <= self.max_items:
                raise ValueError(f"{len(items)} items")
            if any(b <= a for a, b in zip(items, items[1:])):
                raise ValueError("not strictly ascending")
            return items
        return self._number(value, int if self.kind == "int" else float)

    def _number(self, value: Any, kind: type) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "__float__"):
            raise ValueError("not a number")
        number = float(value)
        if math.isnan(number) or math.isinf(number):
            raise ValueError("not a finite number")
        if kind is int:
            if number != int(number):
                raise ValueError("not a whole number")
            number = int(number)
        if (self.min is not None and number < self.min) or (self.max is not None and number > self.max):
            raise ValueError("out of range")
        return number


@dataclass(frozen=True)
class Template:
    """A named strategy family: its parameter schema, default risk limits and semantics."""

    name: str
    title: str
    description: str
    params: dict[str, Param]
    risk_limits: dict[str, float | None]
    semantics: dict[str, str] = field(default_factory=dict)
    kernel: str = ""  # the module that compiles and registers its kernel (the spec's "kernel")

    def defaults(self) -> dict[str, Any]:
        """Every parameter at its default value."""
        return {name: p.default for name, p in self.params.items()}

    def validate(self, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Parameters checked against the schema, with defaults for the missing ones."""
        params = dict(params or {})
        unknown = sorted(set(params) - set(self.params))
        if unknown:
            raise ParameterError(
                f"template {self.name!r} has no parameter {unknown[0]!r}; its parameters are {', '.join(self.params)}",
                param=unknown[0],
                value=params[unknown[0]],
            )
        return {name: p.check(params.get(name, p.default)) for name, p in self.params.items()}

    def validate_risk(self, risk: Mapping[str, Any] | None = None) -> dict[str, float | None]:
        """Risk limits with the template's defaults; ``None`` switches a limit off."""
        risk = dict(risk or {})
        unknown = sorted(set(risk) - set(RISK_LIMITS))
        if unknown:
            raise ParameterError(
                f"unknown risk limit {unknown[0]!r}; the limits are {', '.join(RISK_LIMITS)}",
                param=unknown[0],
                value=risk[unknown[0]],
            )
        out: dict[str, float | None] = {}
        for name in RISK_LIMITS:
            value = risk.get(name, self.risk_limits.get(name))
            if value is not None:
                ok = isinstance(value, (int, float)) and not isinstance(value, bool)
                if not ok or not value > 0 or math.isinf(value):
                    raise ParameterError(
                        f"risk limit {name!r}: {value!r} is not allowed; expected a positive "
                        "amount in the quote currency, or None for no limit",
                        param=name,
                        value=value,
                    )
                value = float(value)
            out[name] = value
        return out

    def axis(self, params: Mapping[str, Any], name: str) -> Any:
        """The value of sweep axis ``name`` in validated ``params`` (a sweep table column)."""
        return params[name]

    def describe(self, params: Mapping[str, Any]) -> str:
        """Validated ``params`` in one line, for a chart's subtitle."""
        return ", ".join(f"{k}={v}" for k, v in params.items())

    def strategy(
        self, params: Mapping[str, Any] | None = None, risk_limits: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """The strategy JSON: ``{"type": ..., "params": ..., "risk_limits": ...}``."""
        return {"type": self.name, "params": self.validate(params), "risk_limits": self.validate_risk(risk_limits)}

    def __repr__(self) -> str:
        return f"<Template {self.name!r}: {', '.join(self.params)}>"


def _fmt(value: float | None) -> str:
    if value is None:
        return "any"
    return str(int(value)) if float(value).is_integer() else str(value)


def parse_spec(spec: Mapping[str, Any], source: str) -> Template:
    """A Template from a spec mapping; TemplateError naming the file and the field."""
    try:
        params = {}
        for name, raw in spec["params"].items():
            kind = raw["type"]
            if kind not in _KINDS:
                raise TemplateError(f"{source}: parameter {name!r} has unknown type {kind!r}")
            options = {k: raw[k] for k in ("min", "max", "step", "min_items", "max_items", "unit", "help") if k in raw}
            param = Param(
                name=name, kind=kind, default=raw["default"], choices=tuple(raw.get("choices", ())), **options
            )
            param.check(param.default)
            params[name] = param
        cls = Template
        if any(p.kind == "rules" for p in params.values()):  # its variables are parameters too
            from workbench.strategies.rules import RuleTemplate as cls
        return cls(
            name=spec["name"],
            title=spec.get("title", spec["name"]),
            description=spec.get("description", ""),
            params=params,
            risk_limits=dict(spec.get("risk_limits", {})),
            semantics=dict(spec.get("semantics", {})),
            kernel=spec["kernel"],
        )
    except KeyError as exc:
        raise TemplateError(f"{source}: missing field {exc.args[0]!r}") from None
    except ParameterError as exc:
        raise TemplateError(f"{source}: the default is invalid: {exc}") from None


def load_specs() -> dict[str, Template]:
    """Every spec shipped in ``templates/`` (inside the package as ``workbench/templates``)."""
    folder = resources.files("workbench") / "templates"
    specs = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".json"):
            template = parse_spec(json.loads(entry.read_text()), f"templates/{entry.name}")
            specs[template.name] = template
    return specs
