"""What the orchestrator knows about a job's inputs: its own projection of dataset versions, and
the base-model store.

Dataset versions come from ``DatasetVersionCreated`` events, which carry the raw dataset's
facts the orchestrator needs (classification, labels, raw checksum) so it never reads the
ingest or curation services' state: the projection ``orchestrator.dataset_versions`` keeps
them in ``dataset_version_catalog``. Base models: the model store's manifests and configs.
Only ids, hashes, counts and the classification are read; never data.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Mapping

from sqlalchemy import ColumnElement, Connection, Engine, bindparam, insert, select

from privtune.v1 import events_pb2
from services.common import model_store
from services.common.consistency import await_projection
from services.common.errors import FailedPrecondition, InvalidArgument, NotFound, Resource
from services.common.projection import Projection
from services.common.store.direct import DirectRead
from services.common.store.engine import reader
from services.common.store.schema import dataset_version_catalog as catalog
from services.common.topics import CURATION_EVENTS
from services.orchestrator.resources import DatasetInfo, ModelInfo

BYTES_PER_TOKEN = 4.0  # rough English/JSON average, used only to size a run before it starts
VERSION_ID_RE = re.compile(r"^dv-[0-9a-f]{8,64}$")  # curation names versions dv-<manifest sha256 prefix>


def apply(conn: Connection, env: events_pb2.EventEnvelope) -> None:
    """Record a DatasetVersionCreated; the first event of a version wins (a re-curation repeats it)."""
    if env.WhichOneof("payload") != "dataset_version_created":
        return
    created = env.dataset_version_created
    key = (catalog.c.tenant_id == env.tenant_id, catalog.c.dataset_version_id == created.dataset_version_id)
    if conn.execute(select(catalog.c.dataset_version_id).where(*key)).first() is not None:
        return
    conn.execute(insert(catalog).values(
        tenant_id=env.tenant_id, dataset_version_id=created.dataset_version_id, dataset_id=created.dataset_id,
        curation_job_id=created.job_id, manifest_uri=created.manifest_uri, manifest_sha256=created.manifest_sha256,
        record_count=created.record_count, train_count=created.train_count, holdout_count=created.holdout_count,
        recipe=created.recipe, classification=created.dataset_classification,
        labels_json=json.dumps(dict(created.dataset_labels), sort_keys=True),
        dataset_checksum_sha256=created.dataset_checksum_sha256, dataset_storage_uri=created.dataset_storage_uri,
        curation_config_sha256=created.curation_config_sha256, created_at_ms=env.time.ToMilliseconds()))


PROJECTION = Projection(name="orchestrator.dataset_versions", topics=(CURATION_EVENTS,), tables=(catalog,),
                        apply=apply)


_VERSION_SELECT = select(catalog).where(catalog.c.tenant_id == bindparam("tenant_id"),
                                        catalog.c.dataset_version_id == bindparam("version_id"))
_VERSION = DirectRead(_VERSION_SELECT)
_OF_DATASET = DirectRead(_VERSION_SELECT.where(catalog.c.dataset_id == bindparam("dataset_id")))


def find_dataset_version(conn: Connection, tenant_id: str, version_id: str, dataset_id: str = "",
                         read: DirectRead | None = None, params: Mapping[str, Any] | None = None) -> dict | None:
    """The catalog row of ``version_id`` in this tenant (of ``dataset_id`` if given), or None. ``read`` (from
    ``version_read_with``) adds its columns to the row, with ``params`` for their parameters."""
    if read is not None and dataset_id:
        raise ValueError("find_dataset_version: a read of its own (read=) does not filter by dataset_id")
    values = {"tenant_id": tenant_id, "version_id": version_id, "dataset_id": dataset_id, **(params or {})}
    statement = read or (_OF_DATASET if dataset_id else _VERSION)
    rows = statement.rows(conn, values)
    return dict(zip(statement.columns, rows[0])) if rows else None


def version_read_with(*columns: ColumnElement[Any]) -> DirectRead:
    """A read of a version's catalog row that also answers ``columns`` (labelled scalar subqueries, say) in the
    same statement: one round trip, one snapshot. Build it once; pass it to ``dataset_version``."""
    return DirectRead(_VERSION_SELECT.add_columns(*columns))


def dataset_version(engine: Engine, tenant_id: str, version_id: str, wait_seconds: float | None = None,
                    read: DirectRead | None = None, params: Mapping[str, Any] | None = None) -> dict:
    """The catalog row of ``version_id``, waiting briefly for a version curated a moment ago; with ``read``
    (``version_read_with``) and its ``params``, with that read's columns too.

    Raises:
        NotFound: no such version in the tenant (the message says how to make one).
    """
    if not version_id:
        raise InvalidArgument("dataset_version_id is required: the dataset version id curation produced",
                              field="spec.dataset_version_id")

    def lookup() -> dict | None:
        with reader(engine).connect() as conn:
            return find_dataset_version(conn, tenant_id, version_id, read=read, params=params)

    # only a well-formed id can be waiting in the projection; anything else is unknown at once
    well_formed = VERSION_ID_RE.match(version_id) is not None
    wait = 0.0 if not well_formed else wait_seconds
    row = await_projection(lookup) if wait is None else await_projection(lookup, wait)
    if row is None:
        raise NotFound(f"dataset version {version_id[:128]!r} not found in tenant {tenant_id!r}; curate a "
                       "registered dataset first (privtune curation create) and use the dataset_version_id it "
                       "reports", reason="DATASET_VERSION_NOT_FOUND",
                       resource=Resource("privtune.v1.DatasetVersion", version_id[:128]))
    return row


def dataset_info(engine: Engine, tenant_id: str, version_id: str, manifest: dict | None = None) -> DatasetInfo:
    return info_of(version_id, dataset_version(engine, tenant_id, version_id), manifest)


def info_of(version_id: str, row: Mapping[str, Any], manifest: dict | None = None) -> DatasetInfo:
    """What sizing and policy need of a version, from its catalog row (and its manifest, if read)."""
    mean_tokens = 256.0
    if manifest:
        train = [s for s in manifest.get("shards", []) if s.get("split") == "train"]
        records = sum(int(s.get("records", 0)) for s in train)
        if records:
            mean_tokens = max(1.0, sum(int(s.get("bytes", 0)) for s in train) / records / BYTES_PER_TOKEN)
    manifest_uri = row["manifest_uri"]
    uri = manifest_uri.rsplit("/", 1)[0] if manifest_uri.endswith("manifest.json") else manifest_uri
    return DatasetInfo(dataset_version_id=version_id, dataset_id=row["dataset_id"],
                       classification=row["classification"], labels=json.loads(row["labels_json"]),
                       train_records=row["train_count"], mean_tokens_per_record=mean_tokens, uri=uri,
                       manifest_sha256=row["manifest_sha256"])


def model_info(models_dir: Path, model_id: str) -> ModelInfo:
    """Architecture and hash of a stored base model.

    Raises:
        FailedPrecondition: the model is not in the store (or does not match its hashes).
    """
    from services.orchestrator.estimate import model_info_from_config

    if not model_id:
        raise InvalidArgument("base_model_id is required (see `privtune models list`)", field="spec.base_model_id")
    if not model_store.is_stored(models_dir, model_id):
        known = model_store.stored_model_ids(models_dir)
        raise FailedPrecondition(f"base model {model_id!r} is not in the model store (known: "
                                 f"{', '.join(known) or 'none'}); import it with `privtune models import`",
                                 reason="BASE_MODEL_NOT_FOUND", field="spec.base_model_id",
                                 resource=Resource("privtune.v1.BaseModel", model_id[:128]))
    # The worker verifies every file's hash before it trains; here the recorded hash is enough.
    meta = model_store.read_manifest(models_dir, model_id)
    config = model_store.read_config(models_dir, model_id)
    return model_info_from_config(model_id, config, sha256=meta["sha256"])
