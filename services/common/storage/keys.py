"""Object keys: relative, ``/``-separated, never able to climb out of the tenant's root."""

from __future__ import annotations

from services.common.errors import InvalidArgument
from services.common.limits import quote

MAX_KEY_BYTES = 1024  # the S3 limit; also keeps file paths well inside PATH_MAX


def _problem(key: str) -> str:
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        return f"is longer than {MAX_KEY_BYTES} bytes"
    if key.startswith("/"):
        return "is absolute; keys are relative to the tenant's root"
    if "\\" in key or "\0" in key:
        return "contains a backslash or NUL byte"
    segments = key.split("/")
    if any(s in (".", "..") for s in segments):
        return "contains a '.' or '..' segment"
    if any(s == "" for s in segments[:-1]):
        return "contains an empty segment ('//')"
    return ""


def validate_key(key: str) -> str:
    """Return ``key`` if it names an object, else raise ``InvalidArgument`` saying why."""
    problem = "is empty" if not key else ("ends with '/' (that is a folder)" if key.endswith("/") else _problem(key))
    if problem:
        raise InvalidArgument(f"object key {quote(key)} {problem}; use a relative path like 'docs/a.jsonl'")
    return key


def validate_prefix(prefix: str) -> str:
    """Return ``prefix`` if it can start keys ("" and folder prefixes ending in '/' included)."""
    problem = _problem(prefix) if prefix else ""
    if problem:
        raise InvalidArgument(f"key prefix {quote(prefix)} {problem}; use a relative path like 'docs/'")
    return prefix


def has_dot_segment(path: str) -> bool:
    """Whether a URI path has ``.`` or ``..`` segments (refused: they could climb out of a root)."""
    return any(s in (".", "..") for s in path.split("/"))
