"""Record payload encoding: strict JSON in a small versioned envelope. Never pickle.

The envelope is ``{"v": 1, "c": created_at, "d": {...app data...}}``. App data is nested, so
no app key can overwrite the metadata, and a record in an unknown format is refused.

Values are checked to be plain JSON (``str``, ``int``, finite ``float``, ``bool``, ``None``,
lists/tuples and ``str``-keyed dicts of them) before they are encoded, so both encoders accept
exactly the same values. With the ``fast`` extra (orjson) encoding and decoding run in C.
"""

from __future__ import annotations

import json
import math
from typing import Any

fast_json: Any  # orjson when the ``fast`` extra is installed, else None
try:
    import orjson as fast_json
except ImportError:
    fast_json = None

FORMAT_VERSION = 1
_MAX_DEPTH = 64

_encoder = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
_loads = json.JSONDecoder().decode


class CorruptRecordError(ValueError):
    """A stored record that is not a coatcheck envelope (internal: it reads as no session)."""


def check_value(value: Any, depth: int = 0) -> None:
    """Raise ``TypeError`` (``ValueError`` for NaN/infinity) unless ``value`` is plain JSON."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return
    if kind is float:
        if not math.isfinite(value):
            raise ValueError(f"{value!r} is not valid JSON")
        return
    if depth >= _MAX_DEPTH:
        raise ValueError(f"nested deeper than {_MAX_DEPTH} levels")
    if kind is list or kind is tuple:
        for item in value:
            check_value(item, depth + 1)
        return
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise TypeError(f"dict key {key!r} is not a str")
            check_value(item, depth + 1)
        return
    raise TypeError(f"{kind.__name__} is not a JSON type")


def _dumps(value: Any) -> bytes:
    if fast_json is not None:
        try:
            return bytes(fast_json.dumps(value))
        except TypeError:  # integers past 64 bits: the standard library handles them
            pass
    return _encoder.encode(value).encode()


def encode_value(value: Any) -> bytes:
    """Check and encode one value (see :func:`check_value`)."""
    check_value(value)
    return _dumps(value)


def encode(created_at: float, data: dict[str, Any]) -> bytes:
    """Encode a session's creation time and (already checked) data as record bytes.

    The result is an exact-size copy: orjson's output keeps its whole write buffer (about
    4 KiB), which an in-memory store would otherwise hold for every session.
    """
    return bytes(memoryview(_dumps({"v": FORMAT_VERSION, "c": created_at, "d": data})))


def decode(raw: bytes) -> tuple[float, dict[str, Any]]:
    """Decode record bytes to ``(created_at, data)``; raise :class:`CorruptRecordError` if malformed."""
    try:
        envelope = fast_json.loads(raw) if fast_json is not None else _loads(raw.decode())
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CorruptRecordError("record is not UTF-8 JSON") from exc
    if type(envelope) is not dict or envelope.get("v") != FORMAT_VERSION:
        raise CorruptRecordError("record has an unknown format version")
    created_at, data = envelope.get("c"), envelope.get("d")
    if isinstance(created_at, bool) or not isinstance(created_at, (int, float)) or type(data) is not dict:
        raise CorruptRecordError("record envelope is incomplete")
    return float(created_at), data
