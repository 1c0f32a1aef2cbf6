"""Record payload encoding: strict JSON in a small versioned envelope. Never pickle.

The envelope is ``{"v": 1, "c": created_at, "d": {...app data...}}``. App data is nested, so
no app key can overwrite the metadata, and a record in an unknown format is refused.

Values are checked to be plain JSON that comes back exactly as it went in (``str``, ``int``
within 64 bits, finite ``float``, ``bool``, ``None``, lists and ``str``-keyed dicts of them)
before they are encoded, so both encoders accept exactly the same values and every accepted
value decodes equal to itself, type included. A tuple is refused (it would come back as a
list), as is an int past 64 bits (orjson would read it back as a float). With the ``fast``
extra (orjson) encoding and decoding run in C.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from .devices import Client, device_meta

if TYPE_CHECKING:
    from ._sealing import Sealer

fast_json: Any  # orjson when the ``fast`` extra is installed, else None
try:
    import orjson as fast_json
except ImportError:
    fast_json = None

FORMAT_VERSION = 1
_MAX_DEPTH = 64
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1  # what orjson reads back as an int
TOMBSTONE = b"rotated"
"""What a store without ``rotate`` holds under a rotated-away key until it is deleted: not JSON,
so it never decodes as a session."""

_encoder = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
_loads = json.JSONDecoder().decode


class CorruptRecordError(ValueError):
    """A stored record that is not a coatcheck envelope (internal: it reads as no session)."""


class UnknownKeyError(CorruptRecordError):
    """A record sealed under a secret that is no longer among the configured ones."""


class UnsealedRecordError(CorruptRecordError):
    """A record that is not sealed, read by a manager that seals (and does not ``accept_unsealed``)."""


def finite(value: Any) -> float | None:
    """``value`` as a finite float, or None for anything else (a bool, NaN, an int too large)."""
    if type(value) is float:  # what a record holds
        return value if math.isfinite(value) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def check_value(
    value: Any,
    depth: int = 0,
    *,
    leaf: Callable[[Any], bool] | None = None,
    tuples: bool = False,
    refusal: str = "is not a JSON type",
) -> None:
    """Raise ``TypeError`` (``ValueError`` for NaN/infinity) unless ``value`` is plain JSON.

    A codec that stores more types passes ``leaf`` (True for a value of one of them, which it
    may also refuse by raising), ``tuples=True`` if it keeps tuples, and the ``refusal`` that
    follows a refused type's name in the error message.
    """
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return
    if kind is int:
        if not _INT_MIN <= value <= _INT_MAX:
            raise ValueError(f"{value} is outside the 64-bit range of integers that round-trip")
        return
    if kind is float:
        if not math.isfinite(value):
            raise ValueError(f"{value!r} is not valid JSON")
        return
    if leaf is not None and leaf(value):
        return
    if depth >= _MAX_DEPTH:
        raise ValueError(f"nested deeper than {_MAX_DEPTH} levels")
    if kind is list or (tuples and kind is tuple):
        for item in value:
            check_value(item, depth + 1, leaf=leaf, tuples=tuples, refusal=refusal)
        return
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise TypeError(f"dict key {key!r} is not a str")
            check_value(item, depth + 1, leaf=leaf, tuples=tuples, refusal=refusal)
        return
    if kind is tuple:
        raise TypeError("tuple is not a JSON type: store a list (a tuple would come back as a list)")
    raise TypeError(f"{kind.__name__} {refusal}")


def _dumps(value: Any) -> bytes:
    if fast_json is not None:
        return bytes(fast_json.dumps(value))
    return _encoder.encode(value).encode()


def encode_value(value: Any) -> bytes:
    """Check and encode one value (see :func:`check_value`)."""
    check_value(value)
    return _dumps(value)


def encode(created_at: float, data: Mapping[str, Any]) -> bytes:
    """Encode a session's creation time and (already checked) data as record bytes.

    The result is an exact-size copy: orjson's output keeps its whole write buffer (about
    4 KiB), which an in-memory store would otherwise hold for every session.
    """
    return bytes(memoryview(_dumps({"v": FORMAT_VERSION, "c": created_at, "d": data})))


def open_envelope(raw: bytes) -> tuple[Any, float, dict[str, Any]]:
    """``(version, created_at, data)`` of record bytes, the creation time a finite number; raise
    :class:`CorruptRecordError` if they are not such an envelope. The version is the caller's to check."""
    try:
        envelope = fast_json.loads(raw) if fast_json is not None else _loads(raw.decode())
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CorruptRecordError("record is not UTF-8 JSON") from exc
    if type(envelope) is not dict:
        raise CorruptRecordError("record has an unknown format")
    created_at, data = finite(envelope.get("c")), envelope.get("d")
    if created_at is None or type(data) is not dict:
        raise CorruptRecordError("record envelope is incomplete")
    return envelope.get("v"), created_at, data


def decode(raw: bytes) -> tuple[float, dict[str, Any]]:
    """Decode record bytes to ``(created_at, data)``; raise :class:`CorruptRecordError` if malformed."""
    version, created_at, data = open_envelope(raw)
    if version != FORMAT_VERSION:
        raise CorruptRecordError("record has an unknown format version")
    return created_at, data


class Codec(Protocol):
    """How a session's values become record bytes and back. The default, :data:`JSON`, takes
    exactly the values above; an integration may take more (Flask's tagged types), as long as
    every value it accepts comes back equal, type included."""

    def check(self, value: Any) -> bytes:
        """Raise ``TypeError`` or ``ValueError`` unless ``value`` can be stored and come back
        exactly; return its encoding (compared to tell in-place changes)."""

    def encode(self, created_at: float, data: Mapping[str, Any]) -> bytes:
        """The record bytes of a session created at ``created_at`` holding ``data`` (checked)."""

    def decode(self, raw: bytes) -> tuple[float, dict[str, Any]]:
        """``(created_at, data)`` from record bytes; :class:`CorruptRecordError` if malformed."""


class JSONCodec:
    """The default codec: strict JSON in the versioned envelope (see the module docstring)."""

    __slots__ = ()
    # The module's functions themselves (no extra call per value on the hot path).
    check = staticmethod(encode_value)
    encode = staticmethod(encode)
    decode = staticmethod(decode)


JSON = JSONCodec()


# -- records with a readable header: device metadata, sealed data ----------------------------------

FRAME = b"\x00cc\x01"
"""The first bytes of a framed record: never those of a JSON envelope, a tombstone or a claim."""
_HEADER_LENGTH = 2  # bytes, big-endian, after FRAME


class RecordFormat:
    """How a session becomes record bytes and back: the ``codec``'s envelope as it is, or, with
    device metadata or sealing, framed behind a readable header.

    A framed record is ``FRAME``, the header's length (2 bytes), the header (JSON: ``c`` the
    creation time, ``m`` the device metadata, ``k`` the sealing key's ID), then the codec's bytes,
    sealed when a ``sealer`` is given. The header stays readable without the session ID (for
    "your devices" listings and the operator's tools); the sealed part does not, and its
    associated data (the store key, the user ID, the header) makes a record whose parts were
    moved or edited fail to open. When sealing, a record that is not sealed is refused, unless
    ``accept_unsealed`` (while turning sealing on for a store that holds sessions already).
    """

    __slots__ = ("accept_unsealed", "address_bits", "codec", "framed", "sealer")

    def __init__(
        self,
        codec: Codec,
        sealer: Sealer | None = None,
        *,
        address_bits: tuple[int, int] | None = None,
        accept_unsealed: bool = False,
    ) -> None:
        self.codec = codec
        self.sealer = sealer
        self.address_bits = address_bits  # None: no device metadata
        self.framed = sealer is not None or address_bits is not None
        self.accept_unsealed = accept_unsealed or sealer is None

    def meta(self, previous: dict[str, Any] | None, client: Client | None, login_at: float | None) -> dict[str, Any] | None:
        """The device metadata a write keeps (None without ``SessionConfig.devices``)."""
        if self.address_bits is None:
            return None
        return device_meta(previous, client, login_at, self.address_bits)

    def frame(
        self, session_id: str, key: str, user_id: str | None, created_at: float, body: bytes, meta: dict[str, Any] | None
    ) -> bytes:
        """The record bytes of the session ``session_id`` stored under ``key`` for ``user_id``,
        whose codec made ``body``: framed behind its header, and sealed when sealing (only when
        ``framed``: otherwise the body is the record)."""
        header: dict[str, Any] = {"c": created_at}
        if meta:
            header["m"] = meta
        if self.sealer is not None:
            header["k"] = self.sealer.seal_id
        head = _dumps(header)
        prefix = FRAME + len(head).to_bytes(_HEADER_LENGTH, "big") + head
        if self.sealer is not None:
            body = self.sealer.seal(session_id, body, _associated(key, user_id, prefix))
        return prefix + body

    def unpack(
        self, session_id: str, key: str, user_id: str | None, raw: bytes
    ) -> tuple[float, dict[str, Any], dict[str, Any] | None]:
        """``(created_at, data, device metadata)`` of a plain or a framed record stored under
        ``key`` for ``user_id``; :class:`CorruptRecordError` if malformed, or sealed and not
        opening under this ID, key, user and secrets (:class:`UnknownKeyError` for a secret no
        longer listed), or not sealed when it must be (:class:`UnsealedRecordError`)."""
        if not raw.startswith(FRAME):
            if not self.accept_unsealed:
                raise UnsealedRecordError("record is not sealed, and encryption_keys are set (see accept_unsealed)")
            created_at, data = self.codec.decode(raw)
            return created_at, data, None
        header, body, prefix = _split(raw)
        key_id = header.get("k")
        if key_id is None:
            if not self.accept_unsealed:
                raise UnsealedRecordError("record is not sealed, and encryption_keys are set (see accept_unsealed)")
        elif self.sealer is None:
            raise CorruptRecordError("record is sealed and no encryption_keys are configured")
        elif type(key_id) is not str or not _KEY_ID.fullmatch(key_id):
            raise CorruptRecordError("record names no valid key ID")
        else:
            body = self.sealer.open(key_id, session_id, body, _associated(key, user_id, prefix))
        created_at, data = self.codec.decode(body)
        meta = header.get("m")
        return created_at, data, meta if type(meta) is dict else None

    def header(self, raw: bytes) -> tuple[float, dict[str, Any] | None]:
        """``(created_at, device metadata)``, read without the session ID (a sealed record's data
        stays closed, and its header is not authenticated: a listing shows what the store
        holds); :class:`CorruptRecordError` if malformed."""
        if not raw.startswith(FRAME):
            return self.codec.decode(raw)[0], None
        header, _, _ = _split(raw)
        created_at, meta = finite(header.get("c")), header.get("m")
        if created_at is None:
            raise CorruptRecordError("record header has no creation time")
        return created_at, meta if type(meta) is dict else None


_KEY_ID = re.compile(r"[0-9a-f]{8}")


def _associated(key: str, user_id: str | None, prefix: bytes) -> bytes:
    """What a sealed body is bound to: its store key, its user (length-prefixed: no two pairs
    give the same bytes) and its record's header."""
    user = b"" if user_id is None else user_id.encode()
    return key.encode() + b"\x00" + len(user).to_bytes(2, "big") + user + prefix


def _split(raw: bytes) -> tuple[dict[str, Any], bytes, bytes]:
    """A framed record's ``(header, body, prefix)``: the prefix is everything before the body."""
    start = len(FRAME) + _HEADER_LENGTH
    end = start + int.from_bytes(raw[len(FRAME) : start], "big")
    if len(raw) < end:
        raise CorruptRecordError("record header is cut short")
    try:
        header = fast_json.loads(raw[start:end]) if fast_json is not None else _loads(raw[start:end].decode())
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CorruptRecordError("record header is not UTF-8 JSON") from exc
    if type(header) is not dict:
        raise CorruptRecordError("record header is not an object")
    return header, raw[end:], raw[:end]
