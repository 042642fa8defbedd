"""Orchestrator test helpers: dataset versions in the store, job requests, the TrainingService client.

``register_version`` writes a synthetic dataset version into the tenant's storage and
records it exactly as ingest and curation would (DatasetRegistered on the dataset's
stream, CurationRequested + DatasetVersionCreated on a curation job's stream), so the
orchestrator finds it by id like any curated version. The curation pipeline itself is
tested elsewhere; the lineage test runs it for real.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

from sqlalchemy import Engine

from gpu_worker.synthetic import reverse_task, write_dataset_version
from privtune.cli_fields import merge_dict, nest
from privtune.cli_jobs import SPEC_ALIASES
from privtune.platform import Platform
from privtune.v1 import events_pb2
from privtune.v1 import training_service_pb2 as pb
from privtune.v1 import training_service_pb2_grpc as pb_grpc
from services.common import eventstore
from services.common.envelope import Causation, new_envelope
from services.common.storage import open_tenant_storage
from services.curation import domain as curation_domain
from services.orchestrator import catalog
from services.ingest import domain as dataset_domain
from tests.platform_fixtures import channel, metadata

TINY_SETTINGS: dict[str, Any] = {"max_steps": 30, "micro_batch_size": 8, "checkpoint_every": 10,
                                 "learning_rate": 0.01, "seed": 7}


def register_version(engine: Engine, storage_root: str, tenant: str = "acme", n: int = 128, holdout: int = 16,
                     classification: int = events_pb2.DATA_CLASSIFICATION_CONFIDENTIAL,
                     labels: dict[str, str] | None = None, shape: str = "chat",
                     rows: tuple[list[dict[str, Any]], list[dict[str, Any]]] | None = None) -> str:
    """Write a reverse-the-word dataset version (or ``rows``: train and holdout examples) and record it;
    returns its dataset_version_id."""
    storage = open_tenant_storage(storage_root, tenant)
    dataset_id = f"ds-{uuid.uuid4().hex[:24]}"
    raw = json.dumps(reverse_task(n, 1, shape)).encode()
    storage.write(f"raw/{dataset_id}/rows.json", raw)
    version_id = f"dv-{uuid.uuid4().hex[:24]}"
    final = f"datasets/{dataset_id}/versions/{version_id}"
    train, held_out = rows or (reverse_task(n, 1, shape), reverse_task(holdout, 2, shape))
    n, holdout = len(train), len(held_out)
    manifest_sha = write_dataset_version(storage, final, train, held_out)
    causation = Causation(actor="alice", correlation_id=uuid.uuid4().hex)
    registered = dataset_domain.decide_register(dataset_domain.DatasetState(), dataset_domain.RegisterDataset(
        tenant_id=tenant, dataset_id=dataset_id, name=f"synthetic-{dataset_id[3:11]}",
        storage_uri=storage.uri_for(f"raw/{dataset_id}/rows.json"), format_hint=events_pb2.DATASET_FORMAT_JSONL,
        classification=classification, checksum_sha256=hashlib.sha256(raw).hexdigest(), file_count=1,
        total_bytes=len(raw), labels=labels or {}))
    job_id = f"cj-{uuid.uuid4().hex[:24]}"
    config = json.dumps({"recipe": "synthetic"})
    facts = curation_domain.DatasetFacts(storage_uri=storage.uri_for(f"raw/{dataset_id}/rows.json"),
                                         checksum_sha256=hashlib.sha256(raw).hexdigest(),
                                         classification=classification, labels=labels or {})
    requested = curation_domain.decide_request(curation_domain.CurationJobState(), job_id, dataset_id, facts,
                                               "synthetic", config, hashlib.sha256(config.encode()).hexdigest())
    job = curation_domain.fold([new_envelope(requested[0], subject=job_id, tenant_id=tenant,
                                             source="privtune/curation", causation=causation)])
    created = curation_domain.version_created(
        job, dataset_version_id=version_id, manifest_uri=storage.uri_for(f"{final}/manifest.json"),
        manifest_sha256=manifest_sha, record_count=n + holdout, train_count=n, holdout_count=holdout, shard_count=2)
    with engine.begin() as conn:
        eventstore.append(conn, "dataset", [new_envelope(e, subject=dataset_id, tenant_id=tenant,
                                                         source="privtune/ingest", causation=causation)
                                            for e in registered], expected_version=0)
        curation_events = [new_envelope(e, subject=job_id, tenant_id=tenant, source="privtune/curation",
                                        causation=causation) for e in [*requested, created]]
        eventstore.append(conn, "curation_job", curation_events, expected_version=0)
        # the orchestrator's catalog sees the version at once (its consumer would, a moment later)
        catalog.apply(conn, curation_events[-1])
    return version_id


def job_request(version_id: str, name: str = "tiny-job", base_model: str = "tiny-llama", **settings: Any
                ) -> pb.CreateTrainingJobRequest:
    """A LoRA request on the tiny model; ``settings`` are TrainingSpec fields (e.g. max_steps=12) or
    TrainingJobSpec fields (gpus, priority, gpu_pool, dp, experiment_tags)."""
    body = {**TINY_SETTINGS, **settings}
    method = body.pop("method", "lora")
    spec = pb.TrainingJobSpec(name=name, base_model_id=base_model, dataset_version_id=version_id,
                              method=getattr(events_pb2, f"TRAINING_METHOD_{method.upper()}"))
    merge_dict(spec, nest(body, SPEC_ALIASES))
    return pb.CreateTrainingJobRequest(spec=spec)


def training_stub(platform: Platform | str) -> pb_grpc.TrainingServiceStub:
    """A TrainingService client (TLS) for an in-process platform or a ``host:port`` on the shared PKI."""
    return pb_grpc.TrainingServiceStub(channel(platform))


def create_job(platform: Platform, request: pb.CreateTrainingJobRequest, tenant: str = "acme") -> pb.TrainingJob:
    return training_stub(platform).CreateTrainingJob(request, metadata=metadata(tenant), timeout=60).job
