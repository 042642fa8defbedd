"""A failing job's exception text never reaches the bus: the event carries a code and a safe message.

The dataset version's manifest names a shard whose content no longer matches its hash,
and the shard's name carries a planted canary. The trainer's error quotes that name; the
TrainingFailed event must not: its reason is privtune's own wording, and the details stay
in the job log in the tenant's storage (``log_uri``), inside the trust boundary.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Iterator

import pytest
from sqlalchemy import select

from privtune.platform import Platform
from services.common import eventstore
from services.common.config import PlatformConfig
from services.common.storage import open_tenant_storage
from services.common.store.schema import outbox, stored_events
from services.common.topics import ALL_TOPICS
from services.orchestrator.catalog import dataset_info
from tests.orchestrator_fixtures import create_job, job_request, register_version
from tests.platform_fixtures import wait_until
from tests.training_fixtures import TENANT, make_models

pytestmark = pytest.mark.integration


@pytest.fixture
def platform(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Platform]:
    monkeypatch.setenv("PRIVTUNE_HEARTBEAT_S", "0.5")
    (tmp_path / "pools.yaml").write_text("pools:\n  - {name: local, gpu_type: cpu, gpus: 1, shared: false}\n")
    config = PlatformConfig.from_env(tmp_path, grpc_address="127.0.0.1:0")
    make_models(config.models_dir)
    running = Platform(config, services=("orchestrator", "training")).start()
    yield running
    running.stop()


def _plant_canary_shard(storage_root: str, dataset_uri: str, canary: str) -> None:
    """Rename the first train shard to a name holding the canary and alter one byte (the hash no longer matches)."""
    storage = open_tenant_storage(storage_root, TENANT)
    prefix = dataset_uri.split(f"/{TENANT}/", 1)[1].strip("/")
    with storage.open(f"{prefix}/manifest.json") as fh:
        manifest = json.loads(fh.read())
    shard = next(s for s in manifest["shards"] if s["split"] == "train")
    with storage.open(f"{prefix}/{shard['name']}") as fh:
        body = bytearray(fh.read())
    body[-2] = ord("X") if body[-2] != ord("X") else ord("Y")
    shard["name"] = f"train-{canary}.jsonl"
    storage.write(f"{prefix}/{shard['name']}", bytes(body))
    storage.write(f"{prefix}/manifest.json", json.dumps(manifest).encode())


def test_a_failure_quoting_private_text_reports_a_code_and_keeps_the_text_in_tenant_storage(
        platform: Platform) -> None:
    canary = f"CANARY-{uuid.uuid4().hex}"
    config = platform.config
    version = register_version(platform.engine, config.storage_uri)  # type: ignore[arg-type]
    _plant_canary_shard(config.storage_uri, dataset_info(platform.engine, TENANT, version).uri,  # type: ignore[arg-type]
                        canary)
    job_id = create_job(platform, job_request(version, max_steps=4)).job_id

    def failed() -> list:  # type: ignore[type-arg]
        with platform.engine.connect() as conn:  # type: ignore[union-attr]
            events = eventstore.load_stream(conn, TENANT, job_id)
        return [e.training_failed for e in events if e.WhichOneof("payload") == "training_failed"]

    wait_until(lambda: bool(failed()), 180, "the job to fail")
    failure = failed()[0]
    assert failure.error_code == "invalid_input" and "does not match the manifest" in failure.reason
    assert canary not in failure.reason
    # nothing of it in the store's events and outbox, or on any topic of the bus
    with platform.engine.connect() as conn:  # type: ignore[union-attr]
        payloads = [r.payload for r in conn.execute(select(stored_events.c.payload))]
        payloads += [r.payload for r in conn.execute(select(outbox.c.payload))]
    assert payloads and not any(canary.encode() in p for p in payloads)
    reader = platform.bus.subscribe(f"canary-{uuid.uuid4().hex[:6]}", list(ALL_TOPICS))  # type: ignore[union-attr]
    seen = []
    for _ in range(20):
        batch = reader.poll(max_records=500, timeout=0.5)
        if not batch and seen:
            break
        seen += batch
    reader.close()
    assert any(job_id.encode() in r.value for r in seen)
    assert not any(canary.encode() in r.value or canary.encode() in b"".join(r.headers.values()) for r in seen)
    # the details are in the job log, in the tenant's storage
    assert failure.log_uri.startswith("file://") and f"/{TENANT}/training/{job_id}/logs/" in failure.log_uri
    log_text = Path(failure.log_uri[len("file://"):]).read_text()
    assert canary in log_text and "DatasetError" in log_text
