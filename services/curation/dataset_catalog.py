"""Curation's own projection of DatasetRegistered: the datasets a curation job may be asked for.

Curation never reads the ingest service's state: what it needs of a dataset (where its raw
files are, their checksum, classification and labels) comes from the event, kept here in
``curation_dataset_catalog``. A job requested a moment after its dataset was registered waits
briefly for the projection (``await_projection``).
"""

from __future__ import annotations

import json
import re

from sqlalchemy import Connection, Engine, insert, select

from privtune.v1 import events_pb2
from services.common.consistency import await_projection
from services.common.projection import Projection
from services.common.store.engine import reader
from services.common.store.schema import curation_dataset_catalog as catalog
from services.common.topics import DATASET_EVENTS
from services.curation.domain import DatasetFacts

DATASET_ID_RE = re.compile(r"^ds-[0-9a-f]{8,64}$")  # ingest names datasets ds-<uuid hex>


def apply(conn: Connection, env: events_pb2.EventEnvelope) -> None:
    if env.WhichOneof("payload") != "dataset_registered":
        return
    e = env.dataset_registered
    key = (catalog.c.tenant_id == env.tenant_id, catalog.c.dataset_id == e.dataset_id)
    if conn.execute(select(catalog.c.dataset_id).where(*key)).first() is not None:
        return  # a dataset is registered once; a redelivery changes nothing
    conn.execute(insert(catalog).values(
        tenant_id=env.tenant_id, dataset_id=e.dataset_id, storage_uri=e.storage_uri, classification=e.classification,
        checksum_sha256=e.checksum_sha256, labels_json=json.dumps(dict(e.labels), sort_keys=True),
        registered_at_ms=env.time.ToMilliseconds()))


PROJECTION = Projection(name="curation.dataset_catalog", topics=(DATASET_EVENTS,), tables=(catalog,), apply=apply)


def find_dataset(engine: Engine, tenant_id: str, dataset_id: str) -> DatasetFacts | None:
    """The dataset's facts, waiting briefly for one registered a moment ago; None when unknown."""

    def lookup() -> DatasetFacts | None:
        with reader(engine).connect() as conn:
            row = conn.execute(select(catalog).where(catalog.c.tenant_id == tenant_id,
                                                     catalog.c.dataset_id == dataset_id)).mappings().first()
        if row is None:
            return None
        return DatasetFacts(storage_uri=row["storage_uri"], checksum_sha256=row["checksum_sha256"],
                            classification=row["classification"], labels=json.loads(row["labels_json"]))

    return await_projection(lookup, 2.0 if DATASET_ID_RE.match(dataset_id) else 0.0)
