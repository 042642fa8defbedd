"""Structured records (a JSON object, a CSV row) to documents, recognising already-paired shapes.

=================================================  ============  =====================================
record keys                                         ``kind``      ``fields``
=================================================  ============  =====================================
ticket thread (see tickets.py)                      ticket        ticket_id, subject, messages
``messages``: [{role, content}, ...]                chat          messages
prompt + chosen + rejected                          preference    prompt, chosen, rejected
instruction + output|response (+ input)             paired        the keys present, as strings
prompt + completion|response                        paired        the keys present, as strings
question + answer (+ context)                       paired        the keys present, as strings
text (+ title)                                      text          title when present
anything else                                       text          (none); text = its string values
=================================================  ============  =====================================

Keys match case-insensitively. ``text`` always renders every part, so PII detection,
dedupe and quality filters see all of it.
"""

from __future__ import annotations

import json
from typing import Iterator, Mapping

from services.curation.documents import Document, Provenance, Quarantined
from services.curation.parsers.tickets import InvalidTicket, is_ticket, ticket_fields, ticket_text

_PAIRED_SHAPES = (
    ("instruction", ("output", "response"), ("input",)),
    ("prompt", ("completion", "response"), ()),
    ("question", ("answer",), ("context",)),
)
_END = object()


class InvalidRecord(ValueError):
    """A recognised shape with unusable parts; the message names the problem, never the content."""


def _as_text(value: object) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _strings(value: object) -> Iterator[str]:
    """Every non-blank string inside ``value``, in document order, at any depth (no recursion: a record
    nested hundreds of levels deep is still read, its size being bounded by ``max_record_bytes``)."""
    stack: list[Iterator[object]] = [iter((value,))]
    while stack:
        item = next(stack[-1], _END)
        if item is _END:
            stack.pop()
        elif isinstance(item, str):
            if item.strip():
                yield item
        elif isinstance(item, Mapping):
            stack.append(iter(item.values()))
        elif isinstance(item, list):
            stack.append(iter(item))


def _content(value: object) -> str:
    """A chat message's content: a string, or a list of parts like ``{"type": "text", "text": ...}``."""
    if isinstance(value, list):
        return "\n".join(_as_text(p.get("text")) if isinstance(p, Mapping) else _as_text(p) for p in value)
    return _as_text(value)


def _chat(listed: list[object]) -> dict[str, object]:
    messages = []
    for i, message in enumerate(listed, 1):
        if not isinstance(message, Mapping) or not isinstance(message.get("role"), str) or "content" not in message:
            raise InvalidRecord(f"chat message {i} is not an object with 'role' and 'content'")
        messages.append({"role": str(message["role"]).strip().lower(), "content": _content(message["content"])})
    return {"messages": messages}


def _conversation_text(value: object) -> str:
    if isinstance(value, list):
        return "\n".join(f"{_as_text(m.get('role'))}: {_content(m.get('content'))}" if isinstance(m, Mapping)
                         else _as_text(m) for m in value)
    return _as_text(value)


def classify(record: Mapping[str, object]) -> tuple[str, dict[str, object], str]:
    """``(kind, fields, text)`` for one record.

    Raises:
        InvalidRecord, InvalidTicket: the shape is recognised but its parts are unusable.
    """
    keys = {k.strip().lower(): v for k, v in record.items() if isinstance(k, str)}
    if is_ticket(keys):
        fields = ticket_fields(keys)
        return "ticket", fields, ticket_text(fields)
    messages = keys.get("messages")
    if isinstance(messages, list) and messages:
        chat = _chat(messages)
        return "chat", chat, _conversation_text(chat["messages"])
    if all(k in keys for k in ("prompt", "chosen", "rejected")):
        preference = {k: _conversation_text(keys[k]) for k in ("prompt", "chosen", "rejected")}
        return "preference", dict(preference), "\n\n".join(preference.values())
    for ask, answers, extras in _PAIRED_SHAPES:
        answer = next((a for a in answers if a in keys), None)
        if ask in keys and answer:
            paired = {k: _as_text(keys[k]) for k in (ask, *extras, answer) if k in keys}
            return "paired", dict(paired), "\n\n".join(v for v in paired.values() if v.strip())
    if isinstance(keys.get("text"), str):
        title = keys.get("title")
        return "text", ({"title": title} if isinstance(title, str) and title.strip() else {}), str(keys["text"])
    return "text", {}, "\n".join(_strings(keys))


def document_from_record(record: object, provenance: Provenance, fmt: str) -> Document | Quarantined:
    """One record as a ``Document``, or ``Quarantined`` saying what is wrong with it."""
    where = f"line {provenance.line}" if provenance.line else f"byte offset {provenance.offset}"
    if not isinstance(record, Mapping):
        kind = {list: "array", str: "string", bool: "boolean"}.get(type(record), "number or null")
        return Quarantined(provenance, "invalid_record",
                           f"record at {where} is a JSON {kind}; each record must be a JSON object")
    try:
        kind, fields, text = classify(record)
    except (InvalidRecord, InvalidTicket) as exc:
        return Quarantined(provenance, "invalid_record", f"record at {where}: {exc}")
    if not text.strip():
        return Quarantined(provenance, "empty_record", f"record at {where} has no text; fill it in or remove it")
    return Document(text=text, provenance=provenance, kind=kind, fields=fields, format=fmt)
