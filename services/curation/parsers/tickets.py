"""Support-ticket threads: recognise the shape and normalise it.

A ticket is an object with an ``id`` (or ``ticket_id``), a ``subject`` and ``messages``,
each ``{"author_role": "customer"|"agent", "body": ..., "created_at": ...}``. It
becomes ``fields = {"ticket_id", "subject", "messages": [{"role", "text"}, ...]}``
with messages in time order when every message has an ISO timestamp.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Mapping

_ROLES = {"customer": "customer", "requester": "customer", "end_user": "customer", "end-user": "customer",
          "user": "customer", "agent": "agent", "support": "agent", "staff": "agent", "assistant": "agent"}
_ROLE_RE = re.compile(r"^[a-z][a-z_-]{0,31}$")


class InvalidTicket(ValueError):
    """The record has the ticket shape but cannot be used; the message names the problem, never the content."""


def is_ticket(record: Mapping[str, object]) -> bool:
    messages = record.get("messages")
    return isinstance(messages, list) and any(
        isinstance(m, Mapping) and ("author_role" in m or "body" in m) for m in messages)


def _when(message: Mapping[str, object]) -> datetime | None:
    stamp = message.get("created_at")
    if not isinstance(stamp, str):
        return None
    try:
        when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else None


def ticket_fields(record: Mapping[str, object]) -> dict[str, object]:
    """Normalised fields of a ticket-shaped record.

    Raises:
        InvalidTicket: no id, or no message with a body.
    """
    ticket_id = record.get("id", record.get("ticket_id"))
    if not isinstance(ticket_id, (str, int)) or isinstance(ticket_id, bool) or str(ticket_id) == "":
        raise InvalidTicket("ticket has no 'id' (or 'ticket_id'); export tickets with their ids")
    listed = record.get("messages")
    raw = [m for m in listed if isinstance(m, Mapping)] if isinstance(listed, list) else []
    stamps = [_when(m) for m in raw]
    if raw and all(stamps):
        raw = [m for _, _, m in sorted(zip(stamps, range(len(raw)), raw, strict=True), key=lambda t: (t[0], t[1]))]
    messages = []
    for message in raw:
        body = message.get("body")
        if not isinstance(body, str) or not body.strip():
            continue
        role = str(message.get("author_role", "")).strip().lower()
        role = _ROLES.get(role, role if _ROLE_RE.match(role) else "other")
        messages.append({"role": role, "text": body.strip()})
    if not messages:
        raise InvalidTicket("ticket has no message with a non-empty 'body'")
    subject = record.get("subject")
    return {"ticket_id": str(ticket_id), "subject": subject.strip() if isinstance(subject, str) else "",
            "messages": messages}


def ticket_text(fields: Mapping[str, object]) -> str:
    """Plain-text rendering of a normalised ticket (for PII detection, dedupe and quality filters)."""
    parts = [str(fields.get("subject", ""))]
    messages = fields.get("messages")
    if isinstance(messages, list):
        parts += [f"{m['role']}: {m['text']}" for m in messages if isinstance(m, Mapping)]
    return "\n\n".join(p for p in parts if p)
