"""Pydantic validation errors as privtune errors: one field violation per bad field, by full path."""

from __future__ import annotations

from pydantic import ValidationError

from services.common.errors import FieldViolation, InvalidArgument


def field_path(prefix: str, loc: tuple[int | str, ...]) -> str:
    """``("dedupe", "threshold")`` under ``config`` -> ``config.dedupe.threshold``; list and map
    positions in brackets (``config.quality.languages[2]``)."""
    path = prefix
    for part in loc:
        if isinstance(part, int) or (isinstance(part, str) and part.isdigit()):
            path += f"[{part}]"
        else:
            path = f"{path}.{part}" if path else str(part)
    return path or prefix


def invalid(exc: ValidationError, prefix: str, what: str, reason: str) -> InvalidArgument:
    """An InvalidArgument listing every problem of ``exc`` (message) and one FieldViolation each."""
    fields = [FieldViolation(field_path(prefix, tuple(e["loc"])), e["msg"]) for e in exc.errors()]
    problems = "; ".join(f"{f.field}: {f.description}" for f in fields)
    return InvalidArgument(f"invalid {what}: {problems}", reason=reason, fields=fields)
