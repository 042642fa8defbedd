"""Retrying a create with the same ``request_id`` answers the original at once, on SQLite and PostgreSQL,
while other writes go on — a retry never holds a transaction that blocks the store."""

from __future__ import annotations

from concurrent import futures
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from privtune.platform import Platform
from privtune.v1 import curation_service_pb2 as cpb
from privtune.v1 import curation_service_pb2_grpc as cpb_grpc
from privtune.v1 import dataset_service_pb2 as dpb
from tests.orchestrator_fixtures import job_request, register_version, training_stub
from tests.platform_fixtures import channel, dataset_stub, metadata, put_files, start_platform
from tests.training_fixtures import make_models

pytestmark = pytest.mark.integration

RETRY_DEADLINE_S = 10.0   # a retry answers well within this; the old code waited 60 s for a lock
ROUNDS = 4                # concurrent retries of each create, interleaved with fresh writes


@pytest.fixture(params=["sqlite", "postgres"])
def platform(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Platform]:
    store = None if request.param == "sqlite" else request.getfixturevalue("postgres_db_factory")("retry")
    make_models(tmp_path / "models")  # the platform's models_dir
    p = start_platform(tmp_path, services=("ingest", "curation", "orchestrator"), store_uri=store)
    yield p
    p.stop()


def test_a_retried_create_answers_the_original_at_once_while_other_writes_go_on(platform: Platform) -> None:
    datasets = dataset_stub(platform)
    curation = cpb_grpc.CurationServiceStub(channel(platform))
    training = training_stub(platform)
    md = metadata("acme")
    uri = put_files(platform, "acme", "docs", {"rows.jsonl": b'{"prompt": "p", "completion": "c"}\n'})
    version = register_version(platform.engine, platform.config.storage_uri)  # type: ignore[arg-type]

    create_dataset = dpb.CreateDatasetRequest(name="docs", storage_uri=uri, classification=2, request_id="r-ds")
    first_dataset = datasets.CreateDataset(create_dataset, metadata=md, timeout=30).dataset
    create_curation = cpb.CreateCurationJobRequest(dataset_id=first_dataset.dataset_id, request_id="r-cj")
    first_curation = curation.CreateCurationJob(create_curation, metadata=md, timeout=30).job
    create_training = job_request(version, name="retry-bot", max_steps=4)
    create_training.request_id = "r-tj"
    create_training.spec.gpu_pool = "nowhere"  # refused by policy: nothing runs, the job still exists
    first_training = training.CreateTrainingJob(create_training, metadata=md, timeout=60).job

    retries: list[tuple[str, Callable[[], Any], str]] = [
        ("CreateDataset", lambda: datasets.CreateDataset(create_dataset, metadata=md,
                                                         timeout=RETRY_DEADLINE_S).dataset,
         first_dataset.dataset_id),
        ("CreateCurationJob", lambda: curation.CreateCurationJob(create_curation, metadata=md,
                                                                 timeout=RETRY_DEADLINE_S).job, first_curation.job_id),
        ("CreateTrainingJob", lambda: training.CreateTrainingJob(create_training, metadata=md,
                                                                 timeout=RETRY_DEADLINE_S).job, first_training.job_id),
    ]
    counter = iter(range(1000))

    def other_write() -> str:
        i = next(counter)
        return datasets.CreateDataset(dpb.CreateDatasetRequest(name=f"other-{i}", storage_uri=uri, classification=2,
                                                               request_id=f"other-{i}"),
                                      metadata=md, timeout=RETRY_DEADLINE_S).dataset.dataset_id


    with futures.ThreadPoolExecutor(12) as pool:
        jobs = []
        for _ in range(ROUNDS):
            for name, retry, expected in retries:
                jobs.append((name, expected, pool.submit(retry)))
            jobs.append(("other write", "", pool.submit(other_write)))
        for name, expected, job in jobs:
            answer = job.result(timeout=60)  # every call has a RETRY_DEADLINE_S deadline: a blocked one fails
            if expected:
                assert getattr(answer, "dataset_id", "") == expected or getattr(answer, "job_id", "") == expected, \
                    f"{name} answered {answer} instead of the original {expected}"

    # the originals are answered whole, not only their ids
    again = curation.CreateCurationJob(create_curation, metadata=md, timeout=RETRY_DEADLINE_S).job
    assert again.job_id == first_curation.job_id and again.dataset_id == first_dataset.dataset_id
    again_training = training.CreateTrainingJob(create_training, metadata=md, timeout=RETRY_DEADLINE_S).job
    assert again_training.job_id == first_training.job_id and again_training.state == first_training.state
    # a request_id of another tenant is not a retry: globex gets its own dataset
    put_files(platform, "globex", "docs", {"a.txt": b"x"})
    create_dataset.storage_uri = uri.replace("/acme/", "/globex/")
    theirs = datasets.CreateDataset(create_dataset, metadata=metadata("globex"), timeout=30).dataset
    assert theirs.dataset_id != first_dataset.dataset_id


def test_concurrent_first_calls_with_one_request_id_create_one_job(platform: Platform) -> None:
    """Two calls racing with a new request_id: one creates, the other answers the same job."""
    datasets = dataset_stub(platform)
    curation = cpb_grpc.CurationServiceStub(channel(platform))
    md = metadata("acme")
    uri = put_files(platform, "acme", "docs", {"a.txt": b"x"})
    dataset = datasets.CreateDataset(dpb.CreateDatasetRequest(name="docs", storage_uri=uri, classification=2),
                                     metadata=md, timeout=30).dataset
    request = cpb.CreateCurationJobRequest(dataset_id=dataset.dataset_id, request_id="race-1")
    with futures.ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: curation.CreateCurationJob(request, metadata=md,
                                                                     timeout=RETRY_DEADLINE_S).job, range(6)))
    assert len({a.job_id for a in answers}) == 1
    listed = curation.ListCurationJobs(cpb.ListCurationJobsRequest(dataset_id=dataset.dataset_id), metadata=md)
    assert len(listed.jobs) <= 1  # the read model may lag, but never shows two
