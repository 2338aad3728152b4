"""``Secret``: a plaintext key that does not show itself.

Notebook outputs, logs, tracebacks and pickles are where keys leak by accident, so a
``Secret`` prints masked, refuses to be pickled and hands out its value only through the
explicit ``reveal()``.
"""

from __future__ import annotations

import hmac
from typing import NoReturn

from workbench.errors import VaultError

_ELLIPSIS = "…"
# keys shorter than this show no characters at all in their hint
_HINT_MIN_LENGTH = 12


def mask(value: str) -> str:
    """A hint that tells keys apart without revealing them: ``ab12…9f``.

    Four leading and two trailing characters of a key of at least 12 characters (at most
    half of a short key's entropy would show otherwise); just ``…`` for shorter values.
    """
    if len(value) < _HINT_MIN_LENGTH:
        return _ELLIPSIS
    return f"{value[:4]}{_ELLIPSIS}{value[-2:]}"


class Secret:
    """A plaintext credential held in memory; ``repr``/``str`` show ``Secret('***')``."""

    __slots__ = ("_value",)

    def __init__(self, value: str | Secret):
        if isinstance(value, Secret):
            value = value.reveal()
        if not isinstance(value, str):
            raise VaultError(f"a Secret holds a str, not {type(value).__name__}")
        self._value = value

    def reveal(self) -> str:
        """The plaintext, for the one call that must send it (e.g. the ccxt client)."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __copy__(self) -> Secret:
        return self  # immutable; copying must not go through pickling

    def __deepcopy__(self, memo: dict) -> Secret:
        return self

    def __reduce__(self) -> NoReturn:
        raise VaultError("a Secret cannot be pickled: that would write the plaintext key out")
