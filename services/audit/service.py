"""What the audit service runs: the log's consumer, the sealer, the exporters, and AuditService.

- ``audit.log`` consumes every topic but the dead letters and its own export topic, maps each event
  to audit entries (``projector``) and chains them onto their tenants' logs, many events per
  transaction (``log_store.append``);
- the sealer signs tree heads and seals segments into WORM storage by count and by time;
- AuditService serves search, heads, proofs and public keys to auditors.

The log is not a read model: ``privtune replay`` never rebuilds or truncates it.
"""

from __future__ import annotations

import threading

from sqlalchemy import Connection, Engine

from privtune.v1 import events_pb2
from services.audit import exports, grpc_api, keys, log_store, projector
from services.audit.sealer import RetentionPolicy, Sealer
from services.audit.worm.registry import open_segment_store
from services.common.bus import EventBus
from services.common.clock import now_ms
from services.common.config import PlatformConfig
from services.common.projection import Projection
from services.common.service import ServiceParts
from services.common.topics import ALL_TOPICS, AUDIT, DEAD_LETTER

LOG_CONSUMER = "audit.log"
AUDITED_TOPICS = tuple(t for t in ALL_TOPICS if t not in (AUDIT, DEAD_LETTER))


def apply_batch(conn: Connection, envs: list[events_pb2.EventEnvelope]) -> None:
    log_store.append(conn, [entry for env in envs for entry in projector.entries(env)], now_ms())


def apply_one(conn: Connection, env: events_pb2.EventEnvelope) -> None:
    apply_batch(conn, [env])


# record ids are unique per tenant and the append skips those already there: a redelivered event is
# never a second record without a dedupe-table row per event
PROJECTION = Projection(LOG_CONSUMER, AUDITED_TOPICS, tables=(), apply=apply_one, apply_batch=apply_batch,
                        self_deduping=True)


def sealer_for(engine: Engine, config: PlatformConfig) -> Sealer:
    """The sealer of this deployment: its key (made on first start and published) and WORM store."""
    key = keys.load_or_create(config.audit_key_file or config.audit_dir / "signing-key.pem")
    keys.publish(engine, key.public_key(), config.audit_dir / "public-keys")
    return Sealer(engine, open_segment_store(config.audit_storage_uri), key,
                  RetentionPolicy.parse(config.audit_retention, config.audit_legal_hold),
                  seal_records=config.audit_seal_records, seal_ms=config.audit_seal_ms)


def build(engine: Engine, bus: EventBus | None, config: PlatformConfig, stop: threading.Event) -> ServiceParts:
    parts = ServiceParts(name="audit", bindings=[grpc_api.binding(engine, stop)], projections=[PROJECTION])
    if bus is not None:
        parts.workers.append(sealer_for(engine, config).run)
        parts.workers.extend(exports.exporters(engine, bus, config.audit_exports))
    return parts
