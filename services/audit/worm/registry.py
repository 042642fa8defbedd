"""Open the audit segment store by URI scheme.

Backends register a factory per scheme; the built-in ones are imported on first use,
so a ``file://`` deployment never imports boto3.
"""

from __future__ import annotations

import importlib
from typing import Callable
from urllib.parse import urlsplit

from services.audit.worm.protocol import SegmentStore
from services.common.errors import InvalidArgument
from services.common.limits import quote

_FACTORIES: dict[str, Callable[[str], SegmentStore]] = {}
_BUILTIN: dict[str, tuple[str, str]] = {
    "file": ("services.audit.worm.file", "open_file_segment_store"),
    "s3": ("services.audit.worm.s3", "open_s3_segment_store"),
}


def register_segment_store(scheme: str, factory: Callable[[str], SegmentStore]) -> None:
    """Make ``open_segment_store`` build ``factory(uri)`` for URIs of this scheme."""
    _FACTORIES[scheme] = factory


def _factory(scheme: str) -> Callable[[str], SegmentStore] | None:
    if scheme not in _FACTORIES and scheme in _BUILTIN:
        module, name = _BUILTIN[scheme]
        register_segment_store(scheme, getattr(importlib.import_module(module), name))
    return _FACTORIES.get(scheme)


def supported_schemes() -> list[str]:
    return sorted(set(_FACTORIES) | set(_BUILTIN))


def open_segment_store(uri: str) -> SegmentStore:
    """The WORM store of sealed audit segments at ``uri`` (``file:///path`` or ``s3://bucket/prefix?...``).

    Raises:
        InvalidArgument: unknown scheme or malformed URI.
        FailedPrecondition: the store cannot keep segments write-once (an S3 bucket without Object Lock).
    """
    scheme = urlsplit(uri).scheme
    factory = _factory(scheme)
    if factory is None:
        raise InvalidArgument(f"audit segment store {quote(uri)}: scheme {quote(scheme or '(none)', 16)} is not "
                              f"supported; use one of {', '.join(s + '://' for s in supported_schemes())}")
    return factory(uri)
