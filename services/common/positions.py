"""Event-store positions as callers see them: sealed, and only good in the tenant they were given to.

A read model's freshness is a position in the store's event sequence (``stored_events.seq``), but
that sequence is shared by every tenant: two raw positions a tenant was given would tell it how
many events all other tenants wrote in between. So a position leaves the server sealed (AES-GCM
under a key derived from the store's signing key, with the tenant id as associated data, a fresh
nonce each time): the caller can only hand it back. A sealed position from another tenant, an
edited one, or one from another store is refused, never interpreted. Nonces are random 96-bit values
under one key per store: past about 2^32 positions (50 days at 1,000 lists a second) a repeat
becomes plausible. A repeat would at worst let a caller forge a position of its own tenant,
which buys a refusal or a list it may read anyway.
"""

from __future__ import annotations

import binascii
import hashlib
import threading

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Engine

from services.common import page_tokens, random_ids
from services.common.errors import InvalidArgument

PREFIX = "p1."
_lock = threading.Lock()
_ciphers: dict[str, AESGCM] = {}


def _cipher(engine: Engine) -> AESGCM:
    cache = repr(engine.url)
    with _lock:
        found = _ciphers.get(cache)
    if found is None:
        key = hashlib.sha256(b"privtune positions v1\0" + page_tokens.signing_key(engine)).digest()
        found = AESGCM(key)
        with _lock:
            _ciphers[cache] = found
    return found


def prepare(engine: Engine) -> None:
    """Load (on a new store: make) the key positions are sealed with, so that ``seal`` then writes nothing:
    call it before a writer's transaction that seals inside (making the key is a write of its own)."""
    _cipher(engine)


def seal(engine: Engine, tenant_id: str, seq: int) -> str:
    """The position ``seq`` as tenant ``tenant_id`` may see it ("" for 0: nothing written yet)."""
    if seq <= 0:
        return ""
    nonce = random_ids.random_bytes(12)
    sealed = _cipher(engine).encrypt(nonce, seq.to_bytes(8, "big"), tenant_id.encode())
    return PREFIX + page_tokens._b64(nonce + sealed)


def unseal(engine: Engine, tenant_id: str, position: str, field: str = "min_position") -> int:
    """The sequence number inside a position this tenant was given (0 for "").

    Raises:
        InvalidArgument: not a position this server gave this tenant (POSITION_INVALID).
    """
    if not position:
        return 0
    refused = InvalidArgument(f"{field} is not a position this tenant was given: pass the `position` a write or "
                              "a list of yours returned, unchanged", reason="POSITION_INVALID", field=field)
    if not position.startswith(PREFIX) or len(position) > 200:
        raise refused
    body = position[len(PREFIX):]
    try:
        raw = page_tokens._unb64(body)  # strict: one spelling per position
        plain = _cipher(engine).decrypt(raw[:12], raw[12:], tenant_id.encode())
    except (binascii.Error, ValueError, InvalidTag):
        raise refused from None
    return int.from_bytes(plain, "big")
