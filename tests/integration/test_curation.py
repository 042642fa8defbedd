"""From raw files in tenant storage to a dataset version, through the gRPC API."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Iterator

import grpc
import pytest

from privtune.cli_fields import merge_dict, nest
from privtune.platform import Platform
from privtune.v1 import curation_config_pb2 as ccpb
from privtune.v1 import curation_service_pb2 as cpb
from privtune.v1 import curation_service_pb2_grpc as cgrpc
from privtune.v1 import dataset_service_pb2 as dpb
from privtune.v1 import events_pb2
from tests.curation_corpus import CANARY, raw_corpus
from tests.platform_fixtures import (channel, dataset_stub, error_details, metadata, put_files, register,
                                     start_platform)

pytestmark = pytest.mark.integration


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    p = start_platform(tmp_path)
    yield p
    p.stop()


def _config(**fields: object) -> ccpb.CurationConfig:
    """A CurationConfig from dotted field paths: ``_config(**{"pii.mode": "tag"})``."""
    return merge_dict(ccpb.CurationConfig(), nest(fields))


def _run_job(platform: Platform, dataset_id: str, **config: object) -> cpb.CurationJob:
    stub = cgrpc.CurationServiceStub(channel(platform))
    job = stub.CreateCurationJob(cpb.CreateCurationJobRequest(dataset_id=dataset_id, config=_config(**config)),
                                 metadata=metadata(), timeout=30).job
    events = [r.event for r in stub.WatchCurationJob(cpb.WatchCurationJobRequest(job_id=job.job_id),
                                                     metadata=metadata(), timeout=600)]
    assert events[-1].WhichOneof("payload") in ("dataset_version_created", "curation_failed")
    return stub.GetCurationJob(cpb.GetCurationJobRequest(job_id=job.job_id), metadata=metadata(), timeout=30).job


def test_raw_files_become_a_content_addressed_dataset_version(
        platform: Platform, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    dataset = register(dataset_stub(platform), platform, "acme", "support", raw_corpus())
    job = _run_job(platform, dataset.dataset_id)
    assert job.state == cpb.CURATION_JOB_STATE_SUCCEEDED, job.reason
    assert job.dataset_version_id.startswith("dv-")

    root = platform.config.storage_path / "acme" / "datasets" / dataset.dataset_id / "versions" / job.dataset_version_id
    manifest = json.loads((root / "manifest.json").read_text())
    report = json.loads((root / "report.json").read_text())
    assert (root / "report.html").read_text().startswith("<!doctype html>")
    import hashlib
    for shard in manifest["shards"]:
        data = (root / shard["name"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == shard["sha256"]
        assert data.count(b"\n") == shard["records"]
    assert manifest["counts"]["train"] > 0 and manifest["counts"]["holdout"] >= 0
    codes = report["quarantine"]["by_code"]
    assert codes.get("truncated_json") == 1 and codes.get("binary_file") == 1 and codes.get("empty_file") == 1
    assert sum(report["dedupe"]["dropped"].values()) >= 2  # exact + near duplicate, and the gz copy of the csv
    assert report["pii"]["found_by_type"].get("EMAIL_ADDRESS", 0) >= 20
    assert report["pii"]["found_by_type"].get("PHONE_NUMBER", 0) >= 12
    shards_text = b"".join((root / s["name"]).read_bytes() for s in manifest["shards"])
    assert b"@example.com" not in shards_text and b"415 555" not in shards_text  # redacted

    # the same job again gives the same version
    again = _run_job(platform, dataset.dataset_id)
    assert again.dataset_version_id == job.dataset_version_id and again.job_id != job.job_id

    # the canary stays in tenant storage: never on the bus, in the store or in the logs
    for db in ("events.db", "privtune.db"):
        for path in platform.config.data_dir.glob(db + "*"):
            assert CANARY.encode() not in path.read_bytes(), path.name
    assert CANARY not in caplog.text
    assert CANARY.encode() in shards_text  # it is not PII, so it reaches the training data itself


def test_bad_requests_are_refused_with_the_reason(platform: Platform) -> None:
    stub = cgrpc.CurationServiceStub(channel(platform))
    dataset = register(dataset_stub(platform), platform, "acme", "small")
    ds = dataset.dataset_id
    cases = [  # request, code, words of the message, ErrorInfo reason, the fields BadRequest names
        (cpb.CreateCurationJobRequest(dataset_id="ds-missing"), grpc.StatusCode.NOT_FOUND, "register it first",
         "DATASET_NOT_FOUND", set()),
        (cpb.CreateCurationJobRequest(), grpc.StatusCode.INVALID_ARGUMENT, "dataset_id is required",
         "INVALID_ARGUMENT", {"dataset_id"}),
        (cpb.CreateCurationJobRequest(dataset_id=ds, config=_config(holdout_fraction=0.9)),
         grpc.StatusCode.INVALID_ARGUMENT, "holdout_fraction", "INVALID_CURATION_CONFIG", {"config.holdout_fraction"}),
        (cpb.CreateCurationJobRequest(dataset_id=ds, config=_config(general_mix_ratio=0.5)),
         grpc.StatusCode.INVALID_ARGUMENT, "general_mix_ratio", "INVALID_CURATION_CONFIG",
         {"config.general_mix_ratio"}),
        # several problems: every one named, each by its full path (not the first part of a dotted key)
        (cpb.CreateCurationJobRequest(dataset_id=ds, config=_config(**{
            "dedupe.threshold": 2, "quality.max_toxicity_score": -1, "parser.max_record_bytes": 10})),
         grpc.StatusCode.INVALID_ARGUMENT, "config.dedupe.threshold", "INVALID_CURATION_CONFIG",
         {"config.dedupe.threshold", "config.quality.max_toxicity_score", "config.parser.max_record_bytes"}),
        (cpb.CreateCurationJobRequest(dataset_id=ds, config=ccpb.CurationConfig(recipe=99)),  # type: ignore[arg-type]
         grpc.StatusCode.INVALID_ARGUMENT, "recipe", "INVALID_CURATION_CONFIG", {"config.recipe"}),
        (cpb.CreateCurationJobRequest(dataset_id=ds, config=_config(**{"pii.entities": ["SHOE_SIZE"]})),
         grpc.StatusCode.INVALID_ARGUMENT, "SHOE_SIZE", "INVALID_CURATION_CONFIG", {"config.pii.entities"}),
    ]
    for request, code, needle, reason, fields in cases:
        with pytest.raises(grpc.RpcError) as info:
            stub.CreateCurationJob(request, metadata=metadata(), timeout=30)
        assert info.value.code() == code and needle in info.value.details(), info.value.details()
        details = error_details(info.value)
        assert details.reason == reason and set(details.fields) == fields, details
    with pytest.raises(grpc.RpcError) as info:
        stub.CreateCurationJob(cpb.CreateCurationJobRequest(dataset_id=dataset.dataset_id),
                               metadata=metadata("globex"), timeout=30)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_details(info.value).resource == ("privtune.v1.Dataset", dataset.dataset_id)
    for call in (lambda: stub.GetCurationJob(cpb.GetCurationJobRequest(job_id="cj-none"), metadata=metadata(),
                                             timeout=30),
                 lambda: next(stub.WatchCurationJob(cpb.WatchCurationJobRequest(job_id="cj-none"),
                                                    metadata=metadata(), timeout=30))):
        with pytest.raises(grpc.RpcError) as info:
            call()
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        assert error_details(info.value).reason == "CURATION_JOB_NOT_FOUND"
        assert error_details(info.value).resource == ("privtune.v1.CurationJob", "cj-none")


def test_curation_on_s3_tenant_storage(tmp_path: Path, s3_server, s3_bucket: str) -> None:  # type: ignore[no-untyped-def]
    """The same flow with the tenant's data in S3 (a real S3 API server on loopback)."""
    root = s3_server.root_uri(s3_bucket)  # s3://bucket/tenants?endpoint_url=...
    client = s3_server.client()
    for key, data in raw_corpus().items():
        client.put_object(Bucket=s3_bucket, Key=f"tenants/acme/support/{key}", Body=data)
    platform = start_platform(tmp_path, storage_root=root)
    try:
        stub = dataset_stub(platform)
        dataset = stub.CreateDataset(dpb.CreateDatasetRequest(
            name="support", storage_uri=f"s3://{s3_bucket}/tenants/acme/support/", classification=3),
            metadata=metadata(), timeout=60).dataset
        assert dataset.file_count == len(raw_corpus())
        with pytest.raises(grpc.RpcError) as info:  # another tenant's prefix in the same bucket
            stub.CreateDataset(dpb.CreateDatasetRequest(name="x", storage_uri=f"s3://{s3_bucket}/tenants/globex/",
                                                        classification=3), metadata=metadata(), timeout=60)
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        job = _run_job(platform, dataset.dataset_id)
        assert job.state == cpb.CURATION_JOB_STATE_SUCCEEDED, job.reason
        prefix = f"tenants/acme/datasets/{dataset.dataset_id}/versions/{job.dataset_version_id}/"
        keys = [o["Key"] for o in client.list_objects_v2(Bucket=s3_bucket, Prefix=prefix)["Contents"]]
        assert f"{prefix}manifest.json" in keys and f"{prefix}report.html" in keys
        manifest = json.loads(client.get_object(Bucket=s3_bucket, Key=f"{prefix}manifest.json")["Body"].read())
        assert manifest["counts"]["train"] > 0
    finally:
        platform.stop()


def test_cli_creates_and_waits_for_a_curation_job(platform: Platform) -> None:
    import subprocess
    import sys

    dataset = register(dataset_stub(platform), platform, "acme", "cli-set", raw_corpus())
    root = Path(__file__).resolve().parents[2]
    cli = [sys.executable, "-m", "privtune", "curation", "--target", platform.grpc_target, "--tenant", "acme"]
    done = subprocess.run(cli + ["create", "--dataset", dataset.dataset_id, "--set", "output_format=chat",
                                 "--set", "holdout_fraction=0.2", "--wait"],
                          cwd=root, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)
    assert job["state"] == "CURATION_JOB_STATE_SUCCEEDED" and job["dataset_version_id"].startswith("dv-")
    assert "DatasetVersionCreated" in done.stderr
    bad = subprocess.run(cli + ["create", "--dataset", dataset.dataset_id, "--set", "pii.mode=shout"],
                         cwd=root, capture_output=True, text=True, timeout=60)  # refused before any call
    assert bad.returncode == 2 and "shout" in bad.stderr and "pii.mode" in bad.stderr
    unknown = subprocess.run(cli + ["create", "--dataset", dataset.dataset_id, "--set", "no.such.key=1"],
                             cwd=root, capture_output=True, text=True, timeout=60)
    assert unknown.returncode == 2 and '"no"' in unknown.stderr and "CurationConfig" in unknown.stderr
    refused = subprocess.run(cli + ["create", "--dataset", dataset.dataset_id, "--set", "dedupe.threshold=2"],
                             cwd=root, capture_output=True, text=True, timeout=60)  # refused by the server
    assert refused.returncode == 1 and "INVALID_ARGUMENT" in refused.stderr
    assert "reason: INVALID_CURATION_CONFIG" in refused.stderr and "field config.dedupe.threshold" in refused.stderr


def test_pii_redaction_can_be_turned_off_for_public_data_only(platform: Platform) -> None:
    stub = cgrpc.CurationServiceStub(channel(platform))
    internal = register(dataset_stub(platform), platform, "acme", "internal-notes")  # DATA_CLASSIFICATION_INTERNAL
    with pytest.raises(grpc.RpcError) as info:
        stub.CreateCurationJob(cpb.CreateCurationJobRequest(dataset_id=internal.dataset_id,
                                                            config=_config(redact_pii=False)),
                               metadata=metadata(), timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "redact_pii=false" in info.value.details() and "DATA_CLASSIFICATION_INTERNAL" in info.value.details()
    details = error_details(info.value)
    assert details.reason == "PII_REDACTION_REQUIRED" and "config.redact_pii" in details.fields
    assert details.preconditions and details.preconditions[0][0] == "CLASSIFICATION"

    uri = put_files(platform, "acme", "public-faq", {"faq.jsonl": b'{"prompt": "Where is the branch?", '
                                                                  b'"completion": "Our branch is at 1 Main Street, '
                                                                  b'open from nine to five on weekdays."}\n'})
    public = dataset_stub(platform).CreateDataset(dpb.CreateDatasetRequest(
        name="public-faq", storage_uri=uri, classification=events_pb2.DATA_CLASSIFICATION_PUBLIC),
        metadata=metadata(), timeout=30).dataset
    job = _run_job(platform, public.dataset_id, redact_pii=False)
    assert job.state == cpb.CURATION_JOB_STATE_SUCCEEDED, job.reason
