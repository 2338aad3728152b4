"""The vault's ciphertext format: AES-256-GCM with a version header and bound context.

Every ciphertext the vault stores (a tenant data key wrapped by a master key, or an
exchange-account field encrypted by a tenant data key) is one self-describing blob::

    offset  size    field
    0       1       format version, 0x01
    1       4       key version, unsigned big-endian: the master key version for a wrapped
                    data key, the tenant data key version for an account field
    5       12      nonce, fresh from os.urandom for every encryption (never reused)
    17      n + 16  AES-256-GCM ciphertext of the n-byte plaintext, then the 16-byte tag

The associated data is the 5-byte header followed by a context naming what the blob
belongs to (``data-key / tenant / version`` or ``field / tenant / account / field name``).
GCM authenticates both, so a blob copied onto another row, field or tenant, or with an
edited key version, fails to decrypt instead of yielding someone else's key.
"""

from __future__ import annotations

import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from workbench.errors import VaultError

FORMAT_VERSION = 1
KEY_SIZE = 32  # AES-256
_NONCE_SIZE = 12  # 96 bits, the size GCM is specified for
_TAG_SIZE = 16
_HEADER = struct.Struct(">BI")
_MIN_SIZE = _HEADER.size + _NONCE_SIZE + _TAG_SIZE


def data_key_context(tenant_id: object, version: int) -> bytes:
    """Associated data of a tenant data key wrapped under the master key."""
    return _context("data-key", tenant_id, version)


def field_context(tenant_id: object, account_id: object, field: str) -> bytes:
    """Associated data of one encrypted field of one exchange account."""
    return _context("field", tenant_id, account_id, field)


def _context(kind: str, *parts: object) -> bytes:
    # NUL cannot occur in ids or field names, so the joined parts are unambiguous
    return "\0".join(["workbench.vault", kind, *map(str, parts)]).encode()


def seal(key: bytes, key_version: int, plaintext: bytes, context: bytes) -> bytes:
    """Encrypt ``plaintext`` under ``key`` into the blob format above."""
    header = _HEADER.pack(FORMAT_VERSION, key_version)
    nonce = os.urandom(_NONCE_SIZE)
    return header + nonce + AESGCM(key).encrypt(nonce, plaintext, header + context)


def key_version(blob: bytes, what: str) -> int:
    """The key version a blob was sealed under; ``what`` names the blob in errors."""
    blob = bytes(blob)
    if len(blob) < _MIN_SIZE:
        raise VaultError(f"{what} is {len(blob)} bytes, too short to be a vault ciphertext")
    fmt, version = _HEADER.unpack_from(blob)
    if fmt != FORMAT_VERSION:
        raise VaultError(f"{what} has ciphertext format {fmt}; this workbench reads format {FORMAT_VERSION}")
    return version


def unseal(key: bytes, key_version_: int, blob: bytes, context: bytes, what: str) -> bytes:
    """Decrypt a blob sealed under key version ``key_version_`` with ``context``.

    ``what`` names the blob in the error when it was sealed under another key version,
    altered, or moved from another row, field or tenant.
    """
    blob = bytes(blob)
    sealed_under = key_version(blob, what)
    if sealed_under != key_version_:
        raise VaultError(f"{what} was sealed under key version {sealed_under}, its row says {key_version_}")
    header, nonce = blob[: _HEADER.size], blob[_HEADER.size : _HEADER.size + _NONCE_SIZE]
    try:
        return AESGCM(key).decrypt(nonce, blob[_HEADER.size + _NONCE_SIZE :], header + context)
    except InvalidTag:
        raise VaultError(
            f"{what} does not decrypt: it was altered, copied from another row, field or "
            "tenant, or the key it names is not the one it was sealed with"
        ) from None
