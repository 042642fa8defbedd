"""Opaque, signed page tokens: where a list left off, bound to its tenant, list and filter.

A token is ``v1.<payload>.<mac>``: the payload is the sort key of the last item returned
(base64url JSON), the MAC an HMAC-SHA256 over the payload *and* the tenant, the list and
its filter, under a key the service keeps in its store. So a client can neither forge a
position nor reuse a token with another tenant, list or filter: any of those is refused
as INVALID_ARGUMENT (reason INVALID_PAGE_TOKEN) instead of returning an arbitrary page.
The token does not carry the tenant or the filter, only the sort key of an item the
caller has already seen.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from typing import Any, Mapping, Sequence

from sqlalchemy import Engine, insert, select
from sqlalchemy.exc import IntegrityError

from services.common.errors import InvalidArgument
from services.common.store.engine import reader
from services.common.store.schema import signing_keys

VERSION = "v1"
KEY_NAME = "page-tokens"
_MAC_BYTES = 16


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    """Strict: only the one spelling ``_b64`` makes (no padding, no stray characters) decodes."""
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _b64(data) != text:
        raise ValueError("not canonical base64url")
    return data


def _mac(key: bytes, payload: str, tenant_id: str, scope: str, filters: Mapping[str, Any]) -> bytes:
    bound = json.dumps([VERSION, tenant_id, scope, sorted(filters.items()), payload], separators=(",", ":"))
    return hmac.new(key, bound.encode(), hashlib.sha256).digest()[:_MAC_BYTES]


def encode(key: bytes, position: Sequence[Any], tenant_id: str, scope: str,
           filters: Mapping[str, Any] | None = None) -> str:
    """The token for "after ``position``" (the sort key of the last item returned)."""
    payload = _b64(json.dumps(list(position), separators=(",", ":")).encode())
    return f"{VERSION}.{payload}.{_b64(_mac(key, payload, tenant_id, scope, filters or {}))}"


def decode(key: bytes, token: str, tenant_id: str, scope: str, filters: Mapping[str, Any] | None = None,
           width: int = 1) -> list[Any]:
    """The position a token of this tenant, list (``scope``) and filter carries.

    Raises:
        InvalidArgument: reason INVALID_PAGE_TOKEN, field page_token: malformed, altered, or
            issued for another tenant, list or filter.
    """
    parts = token.split(".")
    if len(parts) == 3 and parts[0] == VERSION:
        try:
            mac = _unb64(parts[2])
            if hmac.compare_digest(mac, _mac(key, parts[1], tenant_id, scope, filters or {})):
                position = json.loads(_unb64(parts[1]))
                if isinstance(position, list) and len(position) == width:
                    return position
        except (binascii.Error, ValueError, UnicodeDecodeError):
            pass
    raise InvalidArgument(
        "page_token is not a token this list issued: pass next_page_token back unchanged, with the same filter "
        "and as the same tenant, or leave it empty to start from the first page",
        reason="INVALID_PAGE_TOKEN", field="page_token")


_keys: dict[str, bytes] = {}


def signing_key(engine: Engine, name: str = KEY_NAME) -> bytes:
    """The store's key ``name``, made on first use (one key per store, so every process of the
    service agrees), cached per process."""
    cache = f"{engine.url!r}/{name}"
    if cache in _keys:
        return _keys[cache]
    with reader(engine).connect() as conn:
        row = conn.execute(select(signing_keys.c.secret).where(signing_keys.c.name == name)).first()
    if row is None:
        try:
            with engine.begin() as conn:
                conn.execute(insert(signing_keys).values(name=name, secret=secrets.token_bytes(32)))
        except IntegrityError:
            pass  # another process made it first: use theirs
        with reader(engine).connect() as conn:
            row = conn.execute(select(signing_keys.c.secret).where(signing_keys.c.name == name)).one()
    _keys[cache] = bytes(row[0])
    return _keys[cache]
