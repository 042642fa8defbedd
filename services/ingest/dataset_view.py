"""Read model of datasets, as ListDatasets serves it. Rebuilt by `privtune replay`."""

from __future__ import annotations

import json

from sqlalchemy import Connection, insert

from privtune.v1 import events_pb2
from services.common.projection import Projection
from services.common.store.schema import dataset_view
from services.common.topics import DATASET_EVENTS


def apply(conn: Connection, env: events_pb2.EventEnvelope) -> None:
    if env.WhichOneof("payload") != "dataset_registered":
        return
    e = env.dataset_registered
    conn.execute(insert(dataset_view).values(
        tenant_id=env.tenant_id, dataset_id=e.dataset_id, name=e.name, storage_uri=e.storage_uri,
        format_hint=e.format_hint, classification=e.classification, checksum_sha256=e.checksum_sha256,
        file_count=e.file_count, total_bytes=e.total_bytes, labels_json=json.dumps(dict(e.labels), sort_keys=True),
        created_at_ms=env.time.ToMilliseconds(), created_by=env.actor, version=env.aggregate_version,
    ))


PROJECTION = Projection(name="ingest.dataset_view", topics=(DATASET_EVENTS,), tables=(dataset_view,), apply=apply)
