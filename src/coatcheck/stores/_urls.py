"""Parsing of store URL query parameters, shared by every store that takes options in its URL."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl

from ..errors import ConfigurationError


def flag(text: str) -> bool:
    """``1/true/yes/on`` or ``0/false/no/off`` (any case); ``ValueError`` otherwise."""
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{text!r} is not a boolean")


def query_options(
    query: str, known: Mapping[str, Callable[[str], Any]], store: str, *, others: list[tuple[str, str]] | None = None
) -> dict[str, Any]:
    """The options ``known`` names in a store URL's ``query``, each converted by its function.
    Raises :class:`ConfigurationError` for a value its function refuses, and for a name it does
    not know, unless ``others`` is given: such parameters are then added to it, as given."""
    options: dict[str, Any] = {}
    for name, text in parse_qsl(query, keep_blank_values=True):
        if name not in known:
            if others is None:
                raise ConfigurationError(f"unknown {store} URL option {name!r}; known: {', '.join(sorted(known))}")
            others.append((name, text))
            continue
        try:
            options[name] = known[name](text)
        except ValueError as exc:
            raise ConfigurationError(f"bad value for {store} URL option {name!r}: {text!r} ({exc})") from exc
    return options
