"""The exceptions the workbench raises: one base class, one subclass per kind of bad input.

Every message says what was wrong and where (the row, the parameter, the value), so a
notebook user can fix the input without reading a traceback.
"""

from __future__ import annotations


class WorkbenchError(Exception):
    """Base class of every error the workbench raises on purpose."""


class CandleError(WorkbenchError, ValueError):
    """Candles that would give a silently wrong backtest (missing columns, bad rows...)."""


class ParameterError(WorkbenchError, ValueError):
    """A strategy parameter outside its schema: names the parameter, the value and the range."""

    def __init__(self, message: str, *, param: str | None = None, value: object = None):
        super().__init__(message)
        self.param = param
        self.value = value


class RuleError(ParameterError):
    """A rule strategy that does not parse or does not fit its schema.

    The message reads ``line L, column C: path: reason``, each part where known; callers that
    place the error themselves (a form showing it beside the field) take the parts:

    Attributes:
        reason: what is wrong and what was expected, without where.
        path: where in the rules: a JSON path (``long.entry.and[1].left``), or the name of the
            setting (``leverage``, ``long stop_loss (percent)``); None for the whole strategy.
        line, column: where in rule text (1-based); None for JSON.
    """

    def __init__(
        self, reason: str, *, path: str | None = None, line: int | None = None, column: int | None = None
    ) -> None:
        where = f"line {line}, column {column}: " if line is not None else ""
        super().__init__(where + (f"{path}: " if path else "") + reason, param="rules")
        self.reason = reason
        self.path = path
        self.line = line
        self.column = column


class TemplateError(WorkbenchError, LookupError):
    """An unknown template name or a malformed template spec."""


class StrategyError(WorkbenchError):
    """A saved strategy that does not exist, or an operation its state refuses."""


class MarketError(WorkbenchError):
    """A marketplace listing that does not exist or is not visible, an action only its author
    (or the operator) may take, or a paid listing cloned without an entitlement."""


class VaultError(WorkbenchError):
    """A key-vault failure: a missing or malformed master key, a ciphertext that does not
    decrypt, an unknown account or exchange. Never carries a plaintext key."""


class AccountNotFound(VaultError, LookupError):
    """The tenant has no exchange account with that id (the service answers 404)."""


class DatabaseError(WorkbenchError, RuntimeError):
    """The database server cannot be started, reached or migrated; says which and how to fix it."""


class TenantError(WorkbenchError, ValueError):
    """A tenant name that is malformed, unknown, already taken or removed."""


class ExchangeError(WorkbenchError):
    """An exchange refused or failed a request; names the exchange, the call and the reason.
    Never carries an API key or secret."""


class AuthenticationFailed(ExchangeError):
    """The exchange rejected the API key or the request signature."""


class InsufficientFunds(ExchangeError):
    """The account lacks the balance or margin the order needs."""


class InvalidOrder(ExchangeError, ValueError):
    """An order the market does not accept (precision, limits, unknown symbol, duplicate id)."""


class DuplicateOrder(InvalidOrder):
    """An order whose client order id the exchange already has: it was placed before."""


class OrderNotFound(ExchangeError, LookupError):
    """No order with that id (or client order id) on the exchange."""


class RateLimited(ExchangeError):
    """Too many requests; ``retry_after`` is the delay in seconds the exchange asked for (or None)."""

    def __init__(self, message: str, *, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class ExchangeUnavailable(ExchangeError):
    """The exchange did not answer in time, dropped the connection or answered 5xx: the request's
    outcome is unknown, so an order may or may not exist (look it up by client order id)."""


class HubError(WorkbenchError):
    """A hub setting, tenant provisioning step or workbench-service call that failed; names
    the setting, tenant or endpoint and the reason."""


class SchedulerError(WorkbenchError):
    """A promotion, schedule or live-notebook operation the scheduler refuses; names the
    notebook, session or schedule and what is wrong with it."""


class SessionError(WorkbenchError):
    """A live trading session that does not exist, or a state change its state refuses (says
    from which state to which, and what is allowed)."""


class RiskLimitBreached(SessionError):
    """A live session broke one of its risk limits; names the limit, its value and by how much."""


class NotifyError(WorkbenchError, ValueError):
    """A notification channel that is malformed, unknown, or refused what was sent to it; names
    the channel, the setting or the failure. Never carries a channel secret (bot token, webhook
    URL or signing secret, SMTP password)."""


class ChannelNotFound(NotifyError, LookupError):
    """The tenant has no notification channel of that id or name (the service answers 404)."""
