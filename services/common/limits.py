"""How big an API request may be, checked before any work (STYLE.md lesson 11).

The gRPC server applies these to every call (``grpc_limits.RequestLimitsInterceptor``):
the serialized request against a per-method byte limit, then every string field of the
parsed request against a limit for what it holds (ids, names, URIs, request ids, JSON
configuration, free text) and for NUL characters. Fields holding JSON are also checked
for nesting depth, so no parser ever recurses 100,000 levels deep.

Error messages quote client input only through :func:`quote` (a short prefix), so a
1 MiB value never comes back in a status message.
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from services.common.errors import InvalidArgument

# -- strings, in characters, by what a field holds -------------------------------------------
MAX_ID = 128             # dataset, job, version, run and deployment ids (the store's id columns)
MAX_NAME = 128           # dataset, job and model names, aliases
MAX_SHORT = 64           # recipe and pool names (columns of 64)
MAX_MODEL_ID = 255       # base model ids (column of 255)
MAX_REQUEST_ID = 255     # idempotency keys (unique_names.name)
MAX_URI = 2048
MAX_TEXT = 1024          # anything else: reasons, label and tag values, page tokens
MAX_MAP_KEY = 128        # keys of labels, tags and config entries
MAX_ITEMS = 256          # entries of one repeated or map field
MAX_JSON = 64 * 1024     # one JSON configuration value
MAX_JSON_DEPTH = 32      # nesting of [ and { in a JSON value

# -- whole requests, in serialized bytes -------------------------------------------------------
MAX_WIRE_BYTES = 4 << 20  # gRPC's own receive limit: larger messages get RESOURCE_EXHAUSTED before any parsing
DEFAULT_REQUEST_BYTES = 64 * 1024
REQUEST_BYTES: dict[str, int] = {  # full method name -> limit, where the default is too small
    "/privtune.v1.CurationService/CreateCurationJob": 512 * 1024,
    "/privtune.v1.TrainingService/CreateTrainingJob": 256 * 1024,
    "/privtune.v1.TrainingService/EstimateTrainingJob": 256 * 1024,
}

# -- what goes back --------------------------------------------------------------------------
QUOTE_CHARS = 64         # characters of client input an error message may quote
MAX_MESSAGE_CHARS = 1024  # status messages are cut here (a backstop: messages quote input with quote())

_CHARS_BY_FIELD = {
    "request_id": MAX_REQUEST_ID, "name": MAX_NAME, "model_name": MAX_NAME, "alias": MAX_NAME,
    "recipe": MAX_SHORT, "gpu_pool": MAX_SHORT, "base_model_id": MAX_MODEL_ID, "checksum_sha256": 64,
    "month": 16, "languages": 16, "entities": MAX_SHORT,
}


@dataclass(frozen=True)
class StreamLimits:
    """Server streams (the Watch* calls) one process serves at once.

    Each open stream holds a server thread for as long as it is open, so the server
    keeps ``per_process`` threads for streams besides the ones for unary calls; a
    stream beyond either cap is refused with RESOURCE_EXHAUSTED and a retry hint.
    """

    per_process: int = 128   # every tenant together
    per_tenant: int = 64     # one tenant can take at most half
    retry_after_ms: int = 2000


def quote(value: object, limit: int = QUOTE_CHARS) -> str:
    """``repr`` of at most the first ``limit`` characters of ``value``, with '…' when it was cut."""
    text = str(value)
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}…"


def cut(message: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``message`` cut to ``limit`` characters (a status message must stay small)."""
    return message if len(message) <= limit else message[:limit - 1] + "…"


def cut_bytes(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes, never inside a character, with '…' when cut."""
    data = text.encode()
    if len(data) <= limit:
        return text
    return data[:max(0, limit - 3)].decode(errors="ignore") + "…"


def max_request_bytes(method: str) -> int:
    """The serialized size a request to ``method`` (``/package.Service/Method``) may have."""
    return REQUEST_BYTES.get(method, DEFAULT_REQUEST_BYTES)


def max_chars(field_name: str) -> int:
    """The length a string field may have, by its name."""
    if field_name in _CHARS_BY_FIELD:
        return _CHARS_BY_FIELD[field_name]
    if field_name.endswith(("_id", "_ids")):
        return MAX_ID
    if field_name.endswith("_uri"):
        return MAX_URI
    if field_name.endswith("_json"):
        return MAX_JSON
    return MAX_TEXT


def check_text(where: str, value: str, limit: int, field: str = "") -> str:
    """Return ``value`` if it has at most ``limit`` characters and no NUL, else raise ``InvalidArgument``
    (naming ``field``, or ``where`` when it is a field path)."""
    field = field or where
    if len(value) > limit:
        raise InvalidArgument(f"{where} is {len(value)} characters long; at most {limit} are allowed",
                              reason="FIELD_TOO_LONG", field=field, metadata={"max_chars": str(limit)})
    if "\0" in value:
        raise InvalidArgument(f"{where} contains a NUL character at position {value.index(chr(0))}; remove it",
                              reason="NUL_CHARACTER", field=field)
    return value


def json_depth(text: str, stop_after: int = MAX_JSON_DEPTH) -> int:
    """How deeply ``[`` and ``{`` nest in ``text`` (strings skipped), counting no further than ``stop_after + 1``.

    One pass, no parsing: it also bounds text that is not valid JSON.
    """
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > stop_after:
                    break
        elif ch in "]}":
            depth -= 1
    return deepest


def check_json(where: str, text: str, max_size: int = MAX_JSON, max_depth: int = MAX_JSON_DEPTH) -> str:
    """Return ``text`` if it is small and shallow enough to parse safely, else raise ``InvalidArgument``."""
    check_text(where, text, max_size)
    if json_depth(text, max_depth) > max_depth:
        raise InvalidArgument(f"{where} nests JSON arrays or objects more than {max_depth} levels deep; "
                              "flatten it", reason="JSON_TOO_DEEP", field=where)
    return text


def check_request(message: Message) -> None:
    """Check every string of ``message`` (nested messages, lists and maps too) against its limit.

    Raises:
        InvalidArgument: naming the first field that is too long, holds a NUL character,
            has too many entries, or holds JSON nested too deeply.
    """
    _check_message(message, "")


def _check_message(message: Message, path: str) -> None:
    for field, value in message.ListFields():
        where = f"{path}{field.name}"
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            _check_count(where, len(value))
            value_field = field.message_type.fields_by_name["value"]
            for key, item in value.items():
                if isinstance(key, str):
                    check_text(f"a key of {where}", key, MAX_MAP_KEY, field=where)
                entry = f"{where}[{quote(key, 32)}]"
                _check_value(value_field, entry, item, field.name)
        elif field.is_repeated:
            _check_count(where, len(value))
            for i, item in enumerate(value):
                _check_value(field, f"{where}[{i}]", item, field.name)
        else:
            _check_value(field, where, value, field.name)


def _check_value(field: FieldDescriptor, where: str, value: object, name: str) -> None:
    if isinstance(value, str):
        if name.endswith("_json"):
            check_json(where, value, max_chars(name))
        else:
            check_text(where, value, max_chars(name))
    elif isinstance(value, Message):
        _check_message(value, f"{where}.")


def _check_count(where: str, count: int) -> None:
    if count > MAX_ITEMS:
        raise InvalidArgument(f"{where} has {count} entries; at most {MAX_ITEMS} are allowed",
                              reason="TOO_MANY_ENTRIES", field=where, metadata={"max_entries": str(MAX_ITEMS)})
