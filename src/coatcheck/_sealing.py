"""Encryption at rest: each session's data sealed with AES-256-GCM under a key of its own.

A session's key is HKDF-SHA256 (RFC 5869) of a server secret, with the session's raw ID in the
``info``: a copy of the store holds only SHA-256 hashes of the IDs (the store keys), so it can
derive no key, and one session's key opens no other session. The associated data binds a sealed
body to its store key, its user ID and the record's readable header (format version, creation
time, device metadata), so a body moved to another key or user, or a header edited, fails to
open.

Key rotation: the first secret seals, every listed secret opens; a record says which one sealed
it by an 8-hex-digit key ID (a hash of the secret, which tells nothing of it).
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ._codec import CorruptRecordError, UnknownKeyError
from .errors import ConfigurationError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["Sealer"]

_SALT = b"coatcheck session sealing v1"
_INFO = b"coatcheck session key\x00"
NONCE_BYTES = 12
TAG_BYTES = 16
MIN_SECRET_BYTES = 32


class Sealer:
    """Seals and opens session bodies under ``secrets`` (the first seals, each opens)."""

    __slots__ = ("_aead", "_by_id", "seal_id")

    def __init__(self, secrets: Sequence[bytes]) -> None:
        try:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        except ImportError as exc:
            raise ConfigurationError("encryption_keys needs the cryptography package: pip install 'coatcheck[crypto]'") from exc
        self._aead = AESGCM
        self._by_id: dict[str, bytes] = {}
        for secret in secrets:
            prk = hmac.digest(_SALT, secret, "sha256")  # HKDF-Extract
            key_id = hmac.digest(prk, b"coatcheck key id", "sha256")[:4].hex()
            if key_id in self._by_id:
                raise ConfigurationError("encryption_keys holds the same secret twice")
            self._by_id[key_id] = prk
        self.seal_id = next(iter(self._by_id))

    def _cipher(self, key_id: str, session_id: str) -> AESGCM:
        prk = self._by_id.get(key_id)
        if prk is None:
            raise UnknownKeyError(f"record sealed under key {key_id}, which is no longer among encryption_keys")
        # HKDF-Expand to one SHA-256 block: T(1) = HMAC(PRK, info || 0x01).
        return self._aead(hmac.digest(prk, _INFO + session_id.encode() + b"\x01", "sha256"))

    def seal(self, session_id: str, body: bytes, associated: bytes) -> bytes:
        """``nonce || ciphertext || tag`` of ``body``, under the first secret."""
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._cipher(self.seal_id, session_id).encrypt(nonce, body, associated)

    def open(self, key_id: str, session_id: str, sealed: bytes, associated: bytes) -> bytes:
        """The body :meth:`seal` sealed; :class:`CorruptRecordError` if it does not authenticate."""
        from cryptography.exceptions import InvalidTag

        cipher = self._cipher(key_id, session_id)
        if len(sealed) < NONCE_BYTES + TAG_BYTES:
            raise CorruptRecordError("sealed record is cut short")
        try:
            return bytes(cipher.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], associated))
        except (InvalidTag, ValueError):
            raise CorruptRecordError(
                "sealed record does not authenticate (tampered, or moved from another key or user)"
            ) from None


def secret_bytes(name: str, value: object) -> bytes:
    """One of ``encryption_keys`` as bytes (a ``str`` is taken as UTF-8), checked long enough."""
    if isinstance(value, str):
        value = value.encode()
    if not isinstance(value, bytes):
        raise ConfigurationError(f"{name} must hold bytes or str secrets, not {type(value).__name__}")
    if len(value) < MIN_SECRET_BYTES:
        raise ConfigurationError(f"{name}: each secret needs at least {MIN_SECRET_BYTES} bytes (e.g. secrets.token_bytes(32))")
    return value
