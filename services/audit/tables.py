"""The audit service's tables in the metadata store (migration 0007).

- ``audit_records``: every tenant's chained records, the staging area of the WORM segments
  (``position`` is one global, gap-free order across tenants, for exporters);
- ``audit_chains``: per tenant, the log's size and last hash (appends compare-and-set on size),
  and how far it is sealed into WORM segments;
- ``audit_heads``: signed tree heads, each with the Merkle frontier at its size;
- ``audit_segments``: which segments were sealed into WORM storage;
- ``audit_public_keys``: every key that ever signed a head;
- ``audit_counters``: the global position and each exporter's acknowledged position.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, String, Table, Text, UniqueConstraint

from services.common.store.schema import metadata

audit_records = Table(
    "audit_records", metadata,
    Column("tenant_id", String(128), primary_key=True),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("position", BigInteger, nullable=False, unique=True),
    Column("record_id", String(200), nullable=False),
    Column("time_ms", BigInteger, nullable=False),
    Column("kind", String(64), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("resource", String(300), nullable=False),
    Column("record_json", Text, nullable=False),
    UniqueConstraint("tenant_id", "record_id", name="uq_audit_records_record_id"),
    Index("ix_audit_records_time", "tenant_id", "time_ms"),
    Index("ix_audit_records_actor", "tenant_id", "actor", "seq"),
    Index("ix_audit_records_resource", "tenant_id", "resource", "seq"),
)

audit_chains = Table(
    "audit_chains", metadata,
    Column("tenant_id", String(128), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("last_hash", String(64), nullable=False),
    Column("sealed_size", BigInteger, nullable=False),          # records 1..sealed_size are in WORM segments
    Column("first_unsealed_ms", BigInteger, nullable=False),    # when record sealed_size + 1 was appended (0: none)
)

audit_heads = Table(
    "audit_heads", metadata,
    Column("tenant_id", String(128), primary_key=True),
    Column("size", BigInteger, primary_key=True, autoincrement=False),
    Column("signed_json", Text, nullable=False),
    Column("frontier", Text, nullable=False),   # the Merkle frontier's peaks at this size, hex, comma separated
)

audit_segments = Table(
    "audit_segments", metadata,
    Column("tenant_id", String(128), primary_key=True),
    Column("name", String(64), primary_key=True),
    Column("first_seq", BigInteger, nullable=False),
    Column("last_seq", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("sealed_at_ms", BigInteger, nullable=False),
)

audit_public_keys = Table(
    "audit_public_keys", metadata,
    Column("key_id", String(16), primary_key=True),
    Column("public_key_pem", Text, nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
)

audit_counters = Table(
    "audit_counters", metadata,
    Column("name", String(128), primary_key=True),
    Column("value", BigInteger, nullable=False),
)

TABLES = (audit_records, audit_chains, audit_heads, audit_segments, audit_public_keys, audit_counters)
