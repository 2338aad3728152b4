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


class TemplateError(WorkbenchError, LookupError):
    """An unknown template name or a malformed template spec."""


class VaultError(WorkbenchError):
    """A key-vault failure: a missing or malformed master key, a ciphertext that does not
    decrypt, an unknown account or exchange. Never carries a plaintext key."""


class DatabaseError(WorkbenchError, RuntimeError):
    """The database server cannot be started, reached or migrated; says which and how to fix it."""


class TenantError(WorkbenchError, ValueError):
    """A tenant name that is malformed, unknown, already taken or removed."""
