"""Tables of the metadata store. Changes ship as Alembic migrations (migrations/versions)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger, Column, Float, Integer, LargeBinary, MetaData, String, Table, Text, UniqueConstraint, Index,
)

metadata = MetaData()

# Write side: every aggregate's history; (stream_id, stream_version) makes writers optimistic.
stored_events = Table(
    "stored_events", metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False, unique=True),
    Column("tenant_id", String(128), nullable=False),
    Column("stream_type", String(64), nullable=False),
    Column("stream_id", String(128), nullable=False),
    Column("stream_version", Integer, nullable=False),
    Column("event_type", String(128), nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("recorded_at_ms", BigInteger, nullable=False),
    UniqueConstraint("stream_id", "stream_version", name="uq_stored_events_stream_version"),
    Index("ix_stored_events_tenant_stream", "tenant_id", "stream_id"),
    # a tenant's events of one type (e.g. its DatasetVersionCreated) without reading its training progress
    Index("ix_stored_events_tenant_type", "tenant_id", "event_type"),
    # a tenant's newest position (read models report how fresh they are against it)
    Index("ix_stored_events_tenant_seq", "tenant_id", "seq"),
)

# Transactional outbox: written in the same transaction as stored_events; the relay publishes it.
outbox = Table(
    "outbox", metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False, unique=True),
    Column("topic", String(255), nullable=False),
    Column("key", String(255), nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("published_at_ms", BigInteger, nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text, nullable=True),
    Index("ix_outbox_unpublished", "published_at_ms", "seq"),
)

# Idempotent consumers: an event id applied by a consumer, recorded with its effect.
processed_events = Table(
    "processed_events", metadata,
    Column("consumer", String(128), primary_key=True),
    Column("event_id", String(64), primary_key=True),
    Column("processed_at_ms", BigInteger, nullable=False),
)

# One outbox relay at a time publishes, so per-key order on the bus follows commit order.
relay_leases = Table(
    "relay_leases", metadata,
    Column("name", String(64), primary_key=True),
    Column("owner", String(64), nullable=False),
    Column("lease_until_ms", BigInteger, nullable=False),
)

# Secrets a service keeps in its own store, shared by all its processes (e.g. the key that
# signs page tokens, so a token one replica issued is honoured by every other).
signing_keys = Table(
    "signing_keys", metadata,
    Column("name", String(64), primary_key=True),
    Column("secret", LargeBinary, nullable=False),
)

# Write-side uniqueness and idempotency keys, checked in the command's transaction.
unique_names = Table(
    "unique_names", metadata,
    Column("tenant_id", String(128), primary_key=True),
    Column("kind", String(64), primary_key=True),
    Column("name", String(255), primary_key=True),
    Column("aggregate_id", String(128), nullable=False),
)

# Read model: datasets as the API lists them (rebuilt by `privtune replay`).
dataset_view = Table(
    "dataset_view", metadata,
    Column("tenant_id", String(128), primary_key=True),
    Column("dataset_id", String(128), primary_key=True),
    Column("name", String(255), nullable=False),
    Column("storage_uri", Text, nullable=False),
    Column("format_hint", Integer, nullable=False),
    Column("classification", Integer, nullable=False),
    Column("checksum_sha256", String(64), nullable=False),
    Column("file_count", BigInteger, nullable=False),
    Column("total_bytes", BigInteger, nullable=False),
    Column("labels_json", Text, nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("created_by", String(255), nullable=False),
    Column("version", Integer, nullable=False),
    Index("ix_dataset_view_created", "tenant_id", "created_at_ms", "dataset_id"),
)

# Read model: curation jobs as ListCurationJobs serves them.
curation_job_view = Table(
    "curation_job_view", metadata,
    Column("tenant_id", String(128), primary_key=True),
    Column("job_id", String(128), primary_key=True),
    Column("dataset_id", String(128), nullable=False),
    Column("recipe", String(64), nullable=False),
    Column("state", Integer, nullable=False),
    Column("dataset_version_id", String(128), nullable=False),
    Column("error_code", String(64), nullable=False),
    Column("reason", Text, nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("updated_at_ms", BigInteger, nullable=False),
    Index("ix_curation_job_view_dataset", "tenant_id", "dataset_id"),
    Index("ix_curation_job_view_created", "tenant_id", "created_at_ms", "job_id"),
)

# Read model: training jobs as ListTrainingJobs serves them; the orchestrator's controller
# also finds the jobs it still has to act on here (it then folds their streams for the truth).
training_job_view = Table(
    "training_job_view", metadata,
    Column("tenant_id", String(128), primary_key=True),
    Column("job_id", String(128), primary_key=True),
    Column("name", String(255), nullable=False),
    Column("state", Integer, nullable=False),
    Column("gpu_pool", String(64), nullable=False),
    Column("gpus", Integer, nullable=False),
    Column("priority", Integer, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("method", Integer, nullable=False),
    Column("base_model_id", String(255), nullable=False),
    Column("dataset_version_id", String(128), nullable=False),
    Column("step", BigInteger, nullable=False),
    Column("total_steps", BigInteger, nullable=False),
    Column("loss", Float, nullable=False),
    Column("epsilon_spent", Float, nullable=False),
    Column("gpu_hours", Float, nullable=False),           # estimate while active, measured once ended
    Column("retry_pending", Integer, nullable=False),     # failed, but the orchestrator will retry it
    Column("failures", Integer, nullable=False),
    Column("state_version", Integer, nullable=False),     # aggregate version of the event that set the state
    Column("started_at_ms", BigInteger, nullable=False),
    Column("month", String(7), nullable=False),           # creation month (UTC), for monthly quotas
    Column("reason", Text, nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("updated_at_ms", BigInteger, nullable=False),
    Index("ix_training_job_view_state", "state"),
    Index("ix_training_job_view_tenant_month", "tenant_id", "month"),
    Index("ix_training_job_view_created", "tenant_id", "created_at_ms", "job_id"),
)

# The orchestrator's own projection of DatasetVersionCreated (admission and lineage read it): what a
# dataset version is, and the raw dataset's facts the event carries, without reading curation's or
# ingest's state. The first event of a version wins (curation may make the same version twice).
dataset_version_catalog = Table(
    "dataset_version_catalog", metadata,
    Column("tenant_id", String(128), primary_key=True),
    Column("dataset_version_id", String(128), primary_key=True),
    Column("dataset_id", String(128), nullable=False),
    Column("curation_job_id", String(128), nullable=False),
    Column("manifest_uri", Text, nullable=False),
    Column("manifest_sha256", String(64), nullable=False),
    Column("record_count", BigInteger, nullable=False),
    Column("train_count", BigInteger, nullable=False),
    Column("holdout_count", BigInteger, nullable=False),
    Column("recipe", String(64), nullable=False),
    Column("classification", Integer, nullable=False),
    Column("labels_json", Text, nullable=False),
    Column("dataset_checksum_sha256", String(64), nullable=False),
    Column("dataset_storage_uri", Text, nullable=False),
    Column("curation_config_sha256", String(64), nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
)

# Curation's own projection of DatasetRegistered: what a curation request needs to know of a dataset.
curation_dataset_catalog = Table(
    "curation_dataset_catalog", metadata,
    Column("tenant_id", String(128), primary_key=True),
    Column("dataset_id", String(128), primary_key=True),
    Column("storage_uri", Text, nullable=False),
    Column("classification", Integer, nullable=False),
    Column("checksum_sha256", String(64), nullable=False),
    Column("labels_json", Text, nullable=False),
    Column("registered_at_ms", BigInteger, nullable=False),
)

# The eval service's read model of its runs (ListEvalRuns).
eval_run_view = Table(
    "eval_run_view", metadata,
    Column("tenant_id", String(128), primary_key=True),
    Column("eval_id", String(64), primary_key=True),
    Column("model_version_id", String(255), nullable=False),
    Column("suite_id", String(64), nullable=False),
    Column("job_id", String(128), nullable=False),
    Column("state", Integer, nullable=False),
    Column("shards_total", Integer, nullable=False),
    Column("shards_done", Integer, nullable=False),
    Column("passed", Integer, nullable=False),
    Column("reason", Text, nullable=False),
    Column("report_uri", Text, nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("updated_at_ms", BigInteger, nullable=False),
    Column("judge", Text, nullable=False),
    Column("trigger", String(32), nullable=False),
    Column("item_count", Integer, nullable=False),
    Column("error_code", Text, nullable=False),
    Index("ix_eval_run_view_created", "tenant_id", "created_at_ms", "eval_id"),
    Index("ix_eval_run_view_model", "tenant_id", "model_version_id", "created_at_ms"),
)

# The eval service's own projection of ModelVersionRegistered: what a candidate is (its artifact,
# base model, the job's suite and gates), without reading the orchestrator's state.
eval_model_catalog = Table(
    "eval_model_catalog", metadata,
    Column("tenant_id", String(128), primary_key=True),
    Column("model_version_id", String(255), primary_key=True),
    Column("job_id", String(128), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("artifact_uri", Text, nullable=False),
    Column("artifact_sha256", String(64), nullable=False),
    Column("base_model_id", String(255), nullable=False),
    Column("base_model_sha256", String(64), nullable=False),
    Column("dataset_version_id", String(128), nullable=False),
    Column("dataset_uri", Text, nullable=False),
    Column("evaluation_suite_id", String(64), nullable=False),
    Column("gates_json", Text, nullable=False),
    Column("dataset_manifest_sha256", String(64), nullable=False),
    Column("registered_at_ms", BigInteger, nullable=False),
)

# ... and of DatasetVersionCreated: where a dataset version's folder is (suites are built from it).
eval_dataset_catalog = Table(
    "eval_dataset_catalog", metadata,
    Column("tenant_id", String(128), primary_key=True),
    Column("dataset_version_id", String(128), primary_key=True),
    Column("manifest_uri", Text, nullable=False),
    Column("manifest_sha256", String(64), nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
)

# The deploy service's own projection of ModelVersionRegistered and EvalCompleted: what it can
# deploy (artifact, base model) and whether the version's evaluation gates held.
deploy_model_catalog = Table(
    "deploy_model_catalog", metadata,
    Column("tenant_id", String(128), primary_key=True),
    Column("model_version_id", String(255), primary_key=True),
    Column("model_name", String(255), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("artifact_uri", Text, nullable=False),
    Column("artifact_sha256", String(64), nullable=False),
    Column("base_model_id", String(255), nullable=False),
    Column("base_model_sha256", String(64), nullable=False),
    Column("evaluation_suite_id", String(64), nullable=False),
    Column("dataset_uri", Text, nullable=False),          # the dataset version trained on (its canaries.json)
    Column("eval_id", String(64), nullable=False),        # the gating evaluation ("" none requested yet)
    Column("eval_passed", Integer, nullable=False),
    Column("eval_reason", Text, nullable=False),
    Column("eval_at_ms", BigInteger, nullable=False),
    Column("registered_at_ms", BigInteger, nullable=False),
)

# Deployments as ListDeployments shows them (a consumer projection of the deployment events).
deployment_view = Table(
    "deployment_view", metadata,
    Column("tenant_id", String(128), primary_key=True),
    Column("deployment_id", String(64), primary_key=True),
    Column("model_version_id", String(255), nullable=False),
    Column("environment", String(64), nullable=False),
    Column("endpoint_name", String(255), nullable=False),
    Column("strategy", Integer, nullable=False),
    Column("state", Integer, nullable=False),
    Column("requested_by", String(128), nullable=False),
    Column("approver", String(128), nullable=False),
    Column("pool", String(64), nullable=False),
    Column("weight_percent", Integer, nullable=False),
    Column("previous_model_version_id", String(255), nullable=False),
    Column("rollback_trigger", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("error_code", String(64), nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("updated_at_ms", BigInteger, nullable=False),
    Index("ix_deployment_view_created", "tenant_id", "created_at_ms", "deployment_id"),
)

# One row per request the gateway answered: which model version (and pool, routing) answered whom.
served_requests = Table(
    "served_requests", metadata,
    Column("tenant_id", String(128), primary_key=True),
    Column("request_id", String(64), primary_key=True),
    Column("endpoint_name", String(255), nullable=False),
    Column("model_version_id", String(255), nullable=False),
    Column("deployment_id", String(64), nullable=False),
    Column("pool", String(64), nullable=False),
    Column("routing_version", BigInteger, nullable=False),
    Column("status", Integer, nullable=False),
    Column("seconds", Float, nullable=False),
    Column("stream", Integer, nullable=False),
    Column("principal", String(128), nullable=False),
    Column("at_ms", BigInteger, nullable=False),
    Index("ix_served_requests_version", "tenant_id", "model_version_id", "at_ms"),
)
