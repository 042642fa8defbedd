"""``--set key=value`` flags into typed protobuf messages (curation configs, training specs).

Keys are field paths (``dedupe.threshold``, ``options.checkpoint_every``); values are JSON when
they parse as JSON (``0.7``, ``true``, ``["en","de"]``), else strings. Enum values may be given
by their short lower-case name (``pii.mode=tag`` for ``PII_MODE_TAG``). An unknown key or a
value of the wrong type is a usage error naming the flag.
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Sequence, TypeVar

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

M = TypeVar("M", bound=Message)


class BadFlag(ValueError):
    """A --set entry that does not fit the message; the text says which and why."""


def entries_to_dict(entries: Sequence[str], aliases: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``["a.b=1", "c=x"]`` -> ``{"a": {"b": 1}, "c": "x"}``; ``aliases`` rename a key's first part."""
    flat: list[tuple[str, Any]] = []
    for item in entries:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise BadFlag(f"--set {item!r} must look like key=value")
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        flat.append((key, value))
    return nest(flat, aliases)


def nest(flat: Sequence[tuple[str, Any]] | Mapping[str, Any], aliases: Mapping[str, str] | None = None
         ) -> dict[str, Any]:
    """Dotted keys to nested dicts: ``{"a.b": 1}`` -> ``{"a": {"b": 1}}``; ``aliases`` rename a key's
    first part (``{"max_steps": "hyperparameters.max_steps"}``)."""
    body: dict[str, Any] = {}
    for key, value in (flat.items() if isinstance(flat, Mapping) else flat):
        head, _, rest = key.partition(".")
        path = [*(aliases or {}).get(head, head).split("."), *(rest.split(".") if rest else [])]
        node = body
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise BadFlag(f"--set {key}: {part!r} is set to a value and cannot also have fields")
            node = child
        node[path[-1]] = value
    return body


def merge_dict(message: M, body: Any, flag: str = "--set") -> M:
    """Merge ``body`` (field names as in the .proto) into ``message``; enums by short name too,
    and numbers or booleans given for a text field taken as text (``--set name=123``)."""
    if not isinstance(body, Mapping):
        raise BadFlag(f"{flag}: expected fields of {message.DESCRIPTOR.name} (a mapping), got a "
                      f"{type(body).__name__}")
    try:
        json_format.ParseDict(_normalise(dict(body), message.DESCRIPTOR, flag), message, ignore_unknown_fields=False)
    except json_format.ParseError as exc:
        raise BadFlag(f"{flag}: {exc}") from None
    return message


def _normalise(body: dict[str, Any], descriptor: Descriptor, flag: str) -> dict[str, Any]:
    for name, value in list(body.items()):
        field = descriptor.fields_by_name.get(name)
        if field is None:
            continue  # ParseDict names the unknown field
        if value is None:
            raise BadFlag(f"{flag}: {descriptor.name}.{name} needs a value (null leaves it unset: omit it)")
        if field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            if value_field.type == FieldDescriptor.TYPE_STRING and isinstance(value, dict):
                body[name] = {k: _text(v) for k, v in value.items()}
        elif field.type == FieldDescriptor.TYPE_MESSAGE and isinstance(value, dict):
            body[name] = _normalise(value, field.message_type, flag)
        elif field.type == FieldDescriptor.TYPE_ENUM:
            body[name] = [_enum_name(field, v) for v in value] if isinstance(value, list) else _enum_name(field, value)
        elif field.type == FieldDescriptor.TYPE_STRING:
            body[name] = [_text(v) for v in value] if isinstance(value, list) else _text(value)
    return body


def _text(value: Any) -> Any:
    """A number or boolean parsed from a flag, back as the text it was typed as (``123``, ``true``)."""
    return json.dumps(value) if isinstance(value, (bool, int, float)) else value


def _enum_name(field: FieldDescriptor, value: Any) -> Any:
    """``tag`` -> ``PII_MODE_TAG`` when that is a value of the field's enum."""
    if not isinstance(value, str) or value in field.enum_type.values_by_name:
        return value
    prefix = field.enum_type.values[0].name.removesuffix("UNSPECIFIED")
    full = prefix + value.upper()
    return full if full in field.enum_type.values_by_name else value
