"""The gRPC API on a real server (TLS, bearer tokens): health, reflection, identity, status codes, tenant
isolation, watch."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from privtune.platform import Platform
from privtune.v1 import dataset_service_pb2 as pb
from tests.platform_fixtures import (channel, dataset_stub, error_details, metadata, put_files, register,
                                     start_platform, token, wait_until)

pytestmark = pytest.mark.integration


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    p = start_platform(tmp_path)
    yield p
    p.stop()


def test_health_reports_serving_for_the_server_and_each_service(platform: Platform) -> None:
    stub = health_pb2_grpc.HealthStub(channel(platform))
    for service in ("", "privtune.v1.DatasetService"):
        resp = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.RpcError) as info:
        stub.Check(health_pb2.HealthCheckRequest(service="nope.Service"), timeout=10)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_reflection_lists_and_describes_the_api(platform: Platform) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel(platform))
    reqs = [reflection_pb2.ServerReflectionRequest(list_services=""),
            reflection_pb2.ServerReflectionRequest(file_containing_symbol="privtune.v1.DatasetService")]
    responses = list(stub.ServerReflectionInfo(iter(reqs), timeout=10))
    names = {s.name for s in responses[0].list_services_response.service}
    assert {"privtune.v1.DatasetService", "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= names
    assert responses[1].file_descriptor_response.file_descriptor_proto


def test_create_get_list_and_watch_a_dataset(platform: Platform) -> None:
    stub = dataset_stub(platform)
    created = register(stub, platform, "acme", "tickets")
    assert created.dataset_id.startswith("ds-") and created.version == 1 and created.created_by == "alice"
    assert len(created.checksum_sha256) == 64 and created.file_count == 1
    got = stub.GetDataset(pb.GetDatasetRequest(dataset_id=created.dataset_id), metadata=metadata(), timeout=10).dataset
    assert got == created
    wait_until(lambda: len(stub.ListDatasets(pb.ListDatasetsRequest(), metadata=metadata()).datasets) == 1,
               what="the dataset read model")
    listed = stub.ListDatasets(pb.ListDatasetsRequest(), metadata=metadata()).datasets[0]
    assert listed == created
    stream = stub.WatchDataset(pb.WatchDatasetRequest(dataset_id=created.dataset_id), metadata=metadata(),
                               timeout=30)
    first = next(stream).event
    stream.cancel()
    assert first.type == "privtune.v1.DatasetRegistered" and first.subject == created.dataset_id
    assert first.tenant_id == "acme" and first.actor == "alice"


def test_list_pages_through_every_dataset(platform: Platform) -> None:
    stub = dataset_stub(platform)
    ids = {register(stub, platform, "acme", f"set-{i}").dataset_id for i in range(7)}
    wait_until(lambda: len(stub.ListDatasets(pb.ListDatasetsRequest(page_size=100),
                                             metadata=metadata()).datasets) == 7, what="7 datasets listed")
    seen, token = [], ""
    while True:
        page = stub.ListDatasets(pb.ListDatasetsRequest(page_size=3, page_token=token), metadata=metadata())
        seen += [d.dataset_id for d in page.datasets]
        token = page.next_page_token
        if not token:
            break
    assert sorted(seen) == sorted(ids) and len(seen) == 7


def test_request_id_makes_create_idempotent(platform: Platform) -> None:
    stub = dataset_stub(platform)
    uri = put_files(platform, "acme", "once", {"a.txt": b"x"})
    req = pb.CreateDatasetRequest(name="once", storage_uri=uri, classification=1, request_id="req-42")
    first = stub.CreateDataset(req, metadata=metadata(), timeout=10).dataset
    again = stub.CreateDataset(req, metadata=metadata(), timeout=10).dataset
    assert again.dataset_id == first.dataset_id


def _code(call) -> tuple[grpc.StatusCode, str]:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), info.value.details()


def test_errors_map_to_status_codes_with_actionable_messages_and_details(platform: Platform) -> None:
    """Each error: its status code, a message a person can act on, and machine-readable details
    (ErrorInfo with a stable reason; BadRequest naming the field; ResourceInfo for a missing one)."""
    stub = dataset_stub(platform)
    md = metadata()
    uri = put_files(platform, "acme", "docs", {"a.txt": b"hello"})
    cases = [
        (lambda: stub.GetDataset(pb.GetDatasetRequest(dataset_id="ds-x")),
         grpc.StatusCode.UNAUTHENTICATED, "authorization: Bearer", "MISSING_CREDENTIALS", None),
        (lambda: stub.GetDataset(pb.GetDatasetRequest(dataset_id="ds-x"), metadata=md),
         grpc.StatusCode.NOT_FOUND, "not found", "DATASET_NOT_FOUND", None),
        (lambda: stub.GetDataset(pb.GetDatasetRequest(), metadata=md),
         grpc.StatusCode.INVALID_ARGUMENT, "dataset_id is required", "INVALID_ARGUMENT", "dataset_id"),
        (lambda: stub.CreateDataset(pb.CreateDatasetRequest(name="bad name", storage_uri=uri, classification=1),
                                    metadata=md), grpc.StatusCode.INVALID_ARGUMENT, "dataset name",
         "INVALID_ARGUMENT", "name"),
        (lambda: stub.CreateDataset(pb.CreateDatasetRequest(name="docs", storage_uri=uri), metadata=md),
         grpc.StatusCode.INVALID_ARGUMENT, "classification is required", "INVALID_ARGUMENT", "classification"),
        (lambda: stub.CreateDataset(pb.CreateDatasetRequest(name="docs", classification=1), metadata=md),
         grpc.StatusCode.INVALID_ARGUMENT, "storage_uri is required", "INVALID_ARGUMENT", "storage_uri"),
        (lambda: stub.CreateDataset(pb.CreateDatasetRequest(name="etc", storage_uri="file:///etc",
                                                            classification=1), metadata=md),
         grpc.StatusCode.PERMISSION_DENIED, "outside the tenant's storage", "OUTSIDE_TENANT_STORAGE", "storage_uri"),
        (lambda: stub.CreateDataset(pb.CreateDatasetRequest(name="gone", storage_uri=uri + "/missing",
                                                            classification=1), metadata=md),
         grpc.StatusCode.FAILED_PRECONDITION, "upload the files first", "NO_FILES_AT_STORAGE_URI", "storage_uri"),
        (lambda: stub.CreateDataset(pb.CreateDatasetRequest(name="docs", storage_uri=uri, classification=1,
                                                            checksum_sha256="0" * 64), metadata=md),
         grpc.StatusCode.FAILED_PRECONDITION, "checksum mismatch", "CHECKSUM_MISMATCH", "checksum_sha256"),
        (lambda: stub.CreateDataset(pb.CreateDatasetRequest(name="n" * 129, storage_uri=uri, classification=1),
                                    metadata=md), grpc.StatusCode.INVALID_ARGUMENT, "129 characters",
         "FIELD_TOO_LONG", "name"),
        (lambda: stub.ListDatasets(pb.ListDatasetsRequest(page_size=100000), metadata=md),
         grpc.StatusCode.INVALID_ARGUMENT, "page_size", "PAGE_SIZE_TOO_LARGE", "page_size"),
        (lambda: stub.ListDatasets(pb.ListDatasetsRequest(page_token="ds-zzz"), metadata=md),
         grpc.StatusCode.INVALID_ARGUMENT, "page_token", "INVALID_PAGE_TOKEN", "page_token"),
    ]
    for call, code, needle, reason, field in cases:
        with pytest.raises(grpc.RpcError) as info:
            call()
        assert info.value.code() == code, info.value.details()
        assert needle in info.value.details()
        details = error_details(info.value)
        assert details.reason == reason and details.domain == "privtune.dev", details
        if field is not None:
            assert field in details.fields, details
    stub.CreateDataset(pb.CreateDatasetRequest(name="docs", storage_uri=uri, classification=1), metadata=md)
    with pytest.raises(grpc.RpcError) as info:
        stub.CreateDataset(pb.CreateDatasetRequest(name="docs", storage_uri=uri, classification=1), metadata=md)
    assert info.value.code() == grpc.StatusCode.ALREADY_EXISTS and "pick another name" in info.value.details()
    taken = error_details(info.value)
    assert taken.reason == "DATASET_NAME_TAKEN" and "name" in taken.fields
    assert taken.resource == ("privtune.v1.Dataset", "docs")
    code, _ = _code(lambda: next(stub.WatchDataset(pb.WatchDatasetRequest(dataset_id="ds-none"), metadata=md)))
    assert code == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as info:
        stub.GetDataset(pb.GetDatasetRequest(dataset_id="ds-none"), metadata=md)
    assert error_details(info.value).resource == ("privtune.v1.Dataset", "ds-none")


def test_one_tenant_never_sees_another_tenants_datasets(platform: Platform) -> None:
    stub = dataset_stub(platform)
    secret = register(stub, platform, "globex", "payroll")
    register(stub, platform, "acme", "tickets")
    wait_until(lambda: len(stub.ListDatasets(pb.ListDatasetsRequest(), metadata=metadata("globex")).datasets) == 1,
               what="globex's dataset listed")
    wait_until(lambda: len(stub.ListDatasets(pb.ListDatasetsRequest(), metadata=metadata("acme")).datasets) == 1,
               what="acme's dataset listed")
    acme = metadata("acme")
    assert [d.name for d in stub.ListDatasets(pb.ListDatasetsRequest(), metadata=acme).datasets] == ["tickets"]
    code, _ = _code(lambda: stub.GetDataset(pb.GetDatasetRequest(dataset_id=secret.dataset_id), metadata=acme))
    assert code == grpc.StatusCode.NOT_FOUND
    code, _ = _code(lambda: next(stub.WatchDataset(pb.WatchDatasetRequest(dataset_id=secret.dataset_id),
                                                   metadata=acme)))
    assert code == grpc.StatusCode.NOT_FOUND
    globex_uri = f"file://{platform.config.storage_path}/globex/payroll"
    code, _ = _code(lambda: stub.CreateDataset(pb.CreateDatasetRequest(name="steal", storage_uri=globex_uri,
                                                                       classification=1), metadata=acme))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    # the same name may exist in two tenants
    register(stub, platform, "acme", "payroll")


def test_denied_calls_are_published_as_access_denied_events(platform: Platform) -> None:
    from privtune.v1 import events_pb2
    from services.common import envelope as codec
    from services.common.bus import open_bus
    from services.common.topics import ACCESS_EVENTS

    stub = dataset_stub(platform)
    _code(lambda: stub.ListDatasets(pb.ListDatasetsRequest()))  # no token
    _code(lambda: stub.CreateDataset(pb.CreateDatasetRequest(name="etc", storage_uri="file:///etc",
                                                             classification=1), metadata=metadata("acme", "mallory")))
    bus = open_bus(platform.config.bus_uri)
    sub = bus.subscribe("test-access", [ACCESS_EVENTS])
    got: list[events_pb2.EventEnvelope] = []

    def denials() -> list[events_pb2.EventEnvelope]:
        return [e for e in got if e.WhichOneof("payload") == "access_denied"]  # allowed calls are recorded too

    wait_until(lambda: got.extend(codec.decode(r.value) for r in sub.poll(timeout=0.2)) or len(denials()) >= 2,
               what="2 AccessDenied events")
    sub.close()
    events = sorted(denials(), key=lambda e: e.access_denied.rule)
    assert [e.access_denied.rule for e in events] == ["authentication", "authorization"]
    assert events[0].tenant_id == "_unauthenticated"
    assert events[0].access_denied.method == "/privtune.v1.DatasetService/ListDatasets"
    assert events[1].tenant_id == "acme" and events[1].access_denied.principal == "mallory"
    assert "outside the tenant's storage" in events[1].access_denied.reason


def test_grpcurl_lists_and_calls_the_api(platform: Platform) -> None:
    import json
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    grpcurl = subprocess.run([str(root / "scripts" / "go_tool.sh"), "grpcurl"], check=True, capture_output=True,
                             text=True).stdout.strip()
    tls = ["-cacert", str(platform.config.pki_dir / "ca.pem")]  # listing needs no token, only TLS
    listed = subprocess.run([grpcurl, *tls, platform.grpc_target, "list"], capture_output=True, text=True,
                            check=True, timeout=60).stdout.split()
    assert "privtune.v1.DatasetService" in listed and "grpc.health.v1.Health" in listed
    created = register(dataset_stub(platform), platform, "acme", "via-grpcurl")
    call = [grpcurl, *tls, "-H", f"authorization: Bearer {token('acme', 'ops')}",
            "-d", json.dumps({"dataset_id": created.dataset_id}), platform.grpc_target,
            "privtune.v1.DatasetService/GetDataset"]
    got = json.loads(subprocess.run(call, capture_output=True, text=True, check=True, timeout=60).stdout)["dataset"]
    assert got.get("datasetId", got.get("dataset_id")) == created.dataset_id and got["name"] == "via-grpcurl"
    denied = subprocess.run([grpcurl, *tls, "-d", "{}", platform.grpc_target, "privtune.v1.DatasetService/ListDatasets"],
                            capture_output=True, text=True, timeout=60)
    assert denied.returncode != 0 and "Unauthenticated" in denied.stderr and "no credentials" in denied.stderr
    plaintext = subprocess.run([grpcurl, "-plaintext", platform.grpc_target, "list"], capture_output=True, text=True,
                               timeout=60)
    assert plaintext.returncode != 0  # nothing is served without TLS
