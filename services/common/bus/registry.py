"""Pick a bus backend by URI scheme. Backends register themselves on import."""

from __future__ import annotations

from typing import Callable
from urllib.parse import parse_qsl, urlencode, urlsplit

from services.common.bus.protocol import EventBus

_FACTORIES: dict[str, Callable[[str], EventBus]] = {}
_BUILTIN_MODULES = {"sqlite": "services.common.bus.sqlite", "kafka": "services.common.bus.kafka"}


def register_backend(scheme: str, factory: Callable[[str], EventBus]) -> None:
    """Make ``open_bus`` build ``factory(uri)`` for URIs of this scheme."""
    _FACTORIES[scheme] = factory


def open_bus(uri: str) -> EventBus:
    """Open the bus named by ``uri`` (``sqlite:///path/events.db`` or ``kafka://host:port``).

    Any backend takes ``?namespace=NAME`` to keep its topics and groups apart from
    other environments sharing the same log (see namespace.py).
    """
    parts = urlsplit(uri)
    query = parse_qsl(parts.query)
    namespace = dict(query).get("namespace")
    if namespace is not None:
        from services.common.bus.namespace import NamespacedBus

        rest = urlencode([(k, v) for k, v in query if k != "namespace"])
        inner_uri = uri.split("?", 1)[0] + (f"?{rest}" if rest else "")
        return NamespacedBus(open_bus(inner_uri), namespace, uri)
    scheme = parts.scheme
    if scheme not in _FACTORIES and scheme in _BUILTIN_MODULES:
        __import__(_BUILTIN_MODULES[scheme])
    try:
        factory = _FACTORIES[scheme]
    except KeyError:
        known = ", ".join(sorted(set(_FACTORIES) | set(_BUILTIN_MODULES)))
        raise ValueError(f"unknown event bus URI {uri!r}: scheme must be one of {known}") from None
    return factory(uri)
