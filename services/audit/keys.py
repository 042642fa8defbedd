"""The audit service's head-signing key: made on first start, kept owner-only, its public half published.

The private key is a PEM file (``audit_key_file``, default ``<data>/audit/signing-key.pem``). Every
public key that ever signed is kept in the store (``audit_public_keys``, served by
``AuditService.ListAuditPublicKeys``) and written to ``<data>/audit/public-keys/<key id>.pem``,
where ``privtune audit verify`` finds them on the embedded default. Rotating the key is replacing
the file: older heads stay verifiable because their keys stay published.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import Engine, insert, select
from sqlalchemy.exc import IntegrityError

from services.audit.signed_heads import (
    key_id, new_private_key, private_key_from_pem, private_key_to_pem, public_key_from_pem, public_key_to_pem,
)
from services.audit.tables import audit_public_keys
from services.common.auth.pki import creation_lock, write_private
from services.common.clock import now_ms


def load_or_create(path: Path) -> Ed25519PrivateKey:
    """The signing key at ``path``, made (owner-only, atomically) if there is none yet."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with creation_lock(path.parent):
        if not path.exists():
            write_private(path, private_key_to_pem(new_private_key()))
    return private_key_from_pem(path.read_bytes())


def publish(engine: Engine, public_key: Ed25519PublicKey, folder: Path | None) -> str:
    """Record ``public_key`` in the store (and as a file in ``folder``); returns its key id."""
    kid = key_id(public_key)
    pem = public_key_to_pem(public_key)
    with engine.connect() as conn:
        known = conn.execute(select(audit_public_keys.c.key_id).where(audit_public_keys.c.key_id == kid)).first()
    if known is None:
        try:
            with engine.begin() as conn:
                conn.execute(insert(audit_public_keys).values(key_id=kid, public_key_pem=pem.decode(),
                                                              created_at_ms=now_ms()))
        except IntegrityError:
            pass  # another process published it first
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{kid}.pem"
        if not target.exists():
            tmp = folder / f".{kid}.pem.tmp"
            tmp.write_bytes(pem)
            tmp.replace(target)
    return kid


def published(engine: Engine) -> dict[str, Ed25519PublicKey]:
    """Every published key by key id."""
    with engine.connect() as conn:
        rows = conn.execute(select(audit_public_keys.c.key_id, audit_public_keys.c.public_key_pem)).all()
    return {r.key_id: public_key_from_pem(r.public_key_pem.encode()) for r in rows}


def published_pems(engine: Engine) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        rows = conn.execute(select(audit_public_keys.c.key_id, audit_public_keys.c.public_key_pem)
                            .order_by(audit_public_keys.c.created_at_ms, audit_public_keys.c.key_id)).all()
    return [(r.key_id, r.public_key_pem) for r in rows]


def keys_in_folder(folder: Path) -> dict[str, Ed25519PublicKey]:
    """The public keys published as files in ``folder`` (``privtune audit verify`` on the embedded default)."""
    keys = {}
    for pem in sorted(folder.glob("*.pem")) if folder.is_dir() else []:
        key = public_key_from_pem(pem.read_bytes())
        keys[key_id(key)] = key
    return keys
