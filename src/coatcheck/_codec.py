"""Record payload encoding: strict JSON in a small versioned envelope. Never pickle.

The envelope is ``{"v": 1, "c": created_at, "d": {...app data...}}``. App data is nested, so
no app key can overwrite the metadata, and a record in an unknown format is refused.
"""

from __future__ import annotations

import json
from typing import Any

FORMAT_VERSION = 1

_encoder = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
_decode = json.JSONDecoder().decode


class CorruptRecordError(ValueError):
    """A stored record that is not a coatcheck envelope (internal: it reads as no session)."""


def encode_value(value: Any) -> str:
    """Encode one value; raises ``TypeError`` or ``ValueError`` if it is not strict JSON."""
    return _encoder.encode(value)


def encode(created_at: float, data: dict[str, Any]) -> bytes:
    """Encode a session's creation time and data as record bytes."""
    return _encoder.encode({"v": FORMAT_VERSION, "c": created_at, "d": data}).encode()


def decode(raw: bytes) -> tuple[float, dict[str, Any]]:
    """Decode record bytes to ``(created_at, data)``; raise :class:`CorruptRecordError` if malformed."""
    try:
        envelope = _decode(raw.decode())
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CorruptRecordError("record is not UTF-8 JSON") from exc
    if not isinstance(envelope, dict) or envelope.get("v") != FORMAT_VERSION:
        raise CorruptRecordError("record has an unknown format version")
    created_at, data = envelope.get("c"), envelope.get("d")
    if isinstance(created_at, bool) or not isinstance(created_at, (int, float)) or not isinstance(data, dict):
        raise CorruptRecordError("record envelope is incomplete")
    return float(created_at), data
