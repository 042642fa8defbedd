"""What the orchestrator knows about a job's inputs, looked up (strongly consistent) from the stores.

Dataset versions: the tenant's ``DatasetVersionCreated`` events and the dataset's own
stream (classification, labels). Base models: the model store's manifests and configs.
Only ids, hashes, counts and the classification are read; never data.
"""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import Connection, Engine, select

from gpu_worker import base_models
from privtune.v1 import events_pb2
from services.common import envelope as codec
from services.common import eventstore
from services.common.errors import FailedPrecondition, InvalidArgument, NotFound
from services.common.store.schema import stored_events
from services.ingest import domain as dataset_domain
from services.orchestrator.resources import DatasetInfo, ModelInfo

VERSION_CREATED = events_pb2.DatasetVersionCreated.DESCRIPTOR.full_name
BYTES_PER_TOKEN = 4.0  # rough English/JSON average, used only to size a run before it starts


def find_dataset_version(conn: Connection, tenant_id: str, version_id: str,
                         dataset_id: str = "") -> events_pb2.EventEnvelope | None:
    """The first ``DatasetVersionCreated`` of ``version_id`` in this tenant (of ``dataset_id`` if given)."""
    rows = conn.execute(select(stored_events.c.payload).where(
        stored_events.c.tenant_id == tenant_id, stored_events.c.event_type == VERSION_CREATED)
        .order_by(stored_events.c.seq))
    for row in rows:
        env = codec.decode(row.payload)
        created = env.dataset_version_created
        if created.dataset_version_id == version_id and (not dataset_id or created.dataset_id == dataset_id):
            return env
    return None


def dataset_version_event(engine: Engine, tenant_id: str, version_id: str) -> events_pb2.EventEnvelope:
    """The ``DatasetVersionCreated`` event of ``version_id`` in this tenant.

    Raises:
        NotFound: no such version in the tenant (the message says how to make one).
    """
    if not version_id:
        raise InvalidArgument("train_dataset_version is required: the dataset version id curation produced")
    with engine.connect() as conn:
        env = find_dataset_version(conn, tenant_id, version_id)
    if env is None:
        raise NotFound(f"dataset version {version_id!r} not found in tenant {tenant_id!r}; curate a registered "
                       "dataset first (privtune curation create) and use the dataset_version_id it reports")
    return env


def dataset_info(engine: Engine, tenant_id: str, version_id: str, manifest: dict | None = None) -> DatasetInfo:
    created = dataset_version_event(engine, tenant_id, version_id).dataset_version_created
    with engine.connect() as conn:
        dataset = dataset_domain.DatasetState()
        for env in eventstore.load_stream(conn, tenant_id, created.dataset_id):
            dataset = dataset_domain.evolve(dataset, env)
    mean_tokens = 256.0
    if manifest:
        train = [s for s in manifest.get("shards", []) if s.get("split") == "train"]
        records = sum(int(s.get("records", 0)) for s in train)
        if records:
            mean_tokens = max(1.0, sum(int(s.get("bytes", 0)) for s in train) / records / BYTES_PER_TOKEN)
    uri = created.manifest_uri.rsplit("/", 1)[0] if created.manifest_uri.endswith("manifest.json") \
        else created.manifest_uri
    return DatasetInfo(dataset_version_id=version_id, dataset_id=created.dataset_id,
                       classification=dataset.classification, labels=dict(dataset.labels),
                       train_records=created.train_count, mean_tokens_per_record=mean_tokens, uri=uri,
                       manifest_sha256=created.manifest_sha256)


def model_info(models_dir: Path, model_id: str) -> ModelInfo:
    """Architecture and hash of a stored base model.

    Raises:
        FailedPrecondition: the model is not in the store (or does not match its hashes).
    """
    from services.orchestrator.estimate import model_info_from_config

    if not model_id:
        raise InvalidArgument("base_model_id is required (see `privtune models list`)")
    folder = models_dir / model_id
    manifest = folder / base_models.MANIFEST
    if "/" in model_id or model_id.startswith(".") or not manifest.exists():
        known = sorted(p.parent.name for p in models_dir.glob(f"*/{base_models.MANIFEST}")) \
            if models_dir.exists() else []
        raise FailedPrecondition(f"base model {model_id!r} is not in the model store {models_dir} (known: "
                                 f"{', '.join(known) or 'none'}); import it with `privtune models import`")
    # The worker verifies every file's hash before it trains; here the recorded hash is enough.
    meta = json.loads(manifest.read_text())
    config = json.loads((folder / "config.json").read_text())
    return model_info_from_config(model_id, config, sha256=meta["sha256"])
