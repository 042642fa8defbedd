"""What an enterprise client relies on, tried the way a careless or hostile one would: reflection in
both protocol versions listing only what is served, every listed service healthy, page tokens
that cannot be forged or carried to another tenant or filter, and paging that holds while the
list grows."""

from __future__ import annotations

import base64
import threading
from typing import Iterator

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2

from privtune.platform import Platform
from privtune.v1 import curation_service_pb2 as cpb
from privtune.v1 import curation_service_pb2_grpc as cpb_grpc
from privtune.v1 import dataset_service_pb2 as pb
from tests.platform_fixtures import (channel, dataset_stub, error_details, metadata, register, start_platform,
                                     wait_until)

pytestmark = pytest.mark.integration

REFLECTION = {"v1": "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
              "v1alpha": "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"}


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    p = start_platform(tmp_path_factory.mktemp("api"))
    yield p
    p.stop()


def _reflect(api: grpc.Channel, version: str,
             requests: list[reflection_pb2.ServerReflectionRequest]) -> list[reflection_pb2.ServerReflectionResponse]:
    # v1 and v1alpha messages are the same bytes on the wire: one message class serves both
    call = api.stream_stream(REFLECTION[version], request_serializer=reflection_pb2.ServerReflectionRequest
                                 .SerializeToString,
                                 response_deserializer=reflection_pb2.ServerReflectionResponse.FromString)
    return list(call(iter(requests), timeout=10))


@pytest.mark.parametrize("version", ["v1", "v1alpha"])
def test_reflection_answers_in_both_versions_and_lists_only_what_is_served(platform: Platform, version: str) -> None:
    api = channel(platform)
    listed, described = _reflect(api, version, [
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol="privtune.v1.CurationService")])
    names = {s.name for s in listed.list_services_response.service}
    assert {"privtune.v1.DatasetService", "privtune.v1.CurationService", "privtune.v1.TrainingService",
            "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"} <= names
    assert "privtune.v1.DeploymentService" in names  # served by the deploy service
    files = [descriptor_pb2.FileDescriptorProto.FromString(b)
             for b in described.file_descriptor_response.file_descriptor_proto]
    assert any(f.name == "privtune/v1/curation_service.proto" for f in files)
    health = health_pb2_grpc.HealthStub(api)
    for name in names:  # everything reflection lists is served: health knows it, or it is infrastructure
        if name.startswith("privtune."):
            status = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=10).status
            assert status == health_pb2.HealthCheckResponse.SERVING, name


def test_the_v1_reflection_service_describes_itself(platform: Platform) -> None:
    [answer] = _reflect(channel(platform), "v1", [
        reflection_pb2.ServerReflectionRequest(file_containing_symbol="grpc.reflection.v1.ServerReflection")])
    files = [descriptor_pb2.FileDescriptorProto.FromString(b)
             for b in answer.file_descriptor_response.file_descriptor_proto]
    assert [f.package for f in files] == ["grpc.reflection.v1"]


def _token_error(call) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as info:
        call()
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    details = error_details(info.value)
    assert details.reason == "INVALID_PAGE_TOKEN" and "page_token" in details.fields


def test_a_forged_altered_or_foreign_page_token_is_refused(platform: Platform) -> None:
    stub = dataset_stub(platform)
    for i in range(3):
        register(stub, platform, "tokens", f"set-{i}")
        register(stub, platform, "thief", f"set-{i}")
    for tenant in ("tokens", "thief"):
        wait_until(lambda: len(stub.ListDatasets(pb.ListDatasetsRequest(), metadata=metadata(tenant),
                                                 timeout=10).datasets) == 3, what=f"{tenant}'s datasets listed")
    first = stub.ListDatasets(pb.ListDatasetsRequest(page_size=1), metadata=metadata("tokens"), timeout=10)
    token = first.next_page_token
    assert token and first.datasets[0].dataset_id not in token  # opaque: no raw id inside
    version, payload, mac = token.split(".")
    forged_position = base64.urlsafe_b64encode(b'[0,""]').rstrip(b"=").decode()
    flipped_mac = mac[:-1] + ("A" if mac[-1] != "A" else "B")
    for bad in ("ds-0", "forged", f"{version}.{forged_position}.{mac}", f"{version}.{payload}.{flipped_mac}",
                f"v9.{payload}.{mac}", token + "x", "v1..", "v1.%%%.%%%"):
        _token_error(lambda: stub.ListDatasets(pb.ListDatasetsRequest(page_size=1, page_token=bad),
                                               metadata=metadata("tokens"), timeout=10))
    # another tenant's token, even a valid one, is refused rather than read as a position in its own list
    _token_error(lambda: stub.ListDatasets(pb.ListDatasetsRequest(page_size=1, page_token=token),
                                           metadata=metadata("thief"), timeout=10))
    # the genuine token still works for its owner
    second = stub.ListDatasets(pb.ListDatasetsRequest(page_size=1, page_token=token), metadata=metadata("tokens"),
                               timeout=10)
    assert second.datasets[0].dataset_id != first.datasets[0].dataset_id


def test_a_page_token_only_works_with_its_own_filter_and_list(platform: Platform) -> None:
    stub = dataset_stub(platform)
    curation = cpb_grpc.CurationServiceStub(channel(platform))
    md = metadata("filters")
    a = register(stub, platform, "filters", "a")
    b = register(stub, platform, "filters", "b")
    for dataset in (a, a, b):
        curation.CreateCurationJob(cpb.CreateCurationJobRequest(dataset_id=dataset.dataset_id), metadata=md,
                                   timeout=30)
    wait_until(lambda: len(curation.ListCurationJobs(cpb.ListCurationJobsRequest(dataset_id=a.dataset_id),
                                                     metadata=md, timeout=10).jobs) == 2, what="a's jobs listed")
    page = curation.ListCurationJobs(cpb.ListCurationJobsRequest(dataset_id=a.dataset_id, page_size=1),
                                     metadata=md, timeout=10)
    assert page.next_page_token
    _token_error(lambda: curation.ListCurationJobs(
        cpb.ListCurationJobsRequest(dataset_id=b.dataset_id, page_size=1, page_token=page.next_page_token),
        metadata=md, timeout=10))
    _token_error(lambda: curation.ListCurationJobs(
        cpb.ListCurationJobsRequest(page_size=1, page_token=page.next_page_token), metadata=md, timeout=10))
    # a curation-job token is no dataset-list token either
    _token_error(lambda: stub.ListDatasets(pb.ListDatasetsRequest(page_size=1, page_token=page.next_page_token),
                                           metadata=md, timeout=10))
    rest = curation.ListCurationJobs(cpb.ListCurationJobsRequest(dataset_id=a.dataset_id, page_size=1,
                                                                 page_token=page.next_page_token),
                                     metadata=md, timeout=10)
    assert len(rest.jobs) == 1 and rest.jobs[0].job_id != page.jobs[0].job_id


def test_paging_while_datasets_are_added_never_repeats_or_skips_one(platform: Platform) -> None:
    """Every dataset listed before paging began is on exactly one page; none repeats, however many
    are registered between (and during) the page calls."""
    stub = dataset_stub(platform)
    md = metadata("growing")
    for i in range(12):
        register(stub, platform, "growing", f"before-{i}")
    wait_until(lambda: len(stub.ListDatasets(pb.ListDatasetsRequest(page_size=500), metadata=md,
                                             timeout=10).datasets) == 12, what="12 datasets listed")
    before = [d.dataset_id for d in stub.ListDatasets(pb.ListDatasetsRequest(page_size=500), metadata=md,
                                                      timeout=10).datasets]
    stop = threading.Event()
    added: list[str] = []

    def keep_adding() -> None:
        while not stop.is_set() and len(added) < 40:
            added.append(register(stub, platform, "growing", f"during-{len(added)}").dataset_id)

    writer = threading.Thread(target=keep_adding)
    writer.start()
    try:
        seen, token, pages = [], "", 0
        while True:
            page = stub.ListDatasets(pb.ListDatasetsRequest(page_size=2, page_token=token), metadata=md, timeout=10)
            seen += [d.dataset_id for d in page.datasets]
            created = [d.created_at.ToMilliseconds() for d in page.datasets]
            assert created == sorted(created)  # oldest first
            pages += 1
            token = page.next_page_token
            if not token:
                break
            if pages == 2:  # a burst between two pages as well as the steady stream
                added.extend(register(stub, platform, "growing", f"burst-{i}").dataset_id for i in range(3))
    finally:
        stop.set()
        writer.join(timeout=60)
    assert len(seen) == len(set(seen)), "a dataset was returned twice"
    assert set(before) <= set(seen), f"skipped: {set(before) - set(seen)}"
    assert set(seen) <= set(before) | set(added)
    assert added, "nothing was added while paging: the test proved nothing"


def test_list_order_is_documented_oldest_first(platform: Platform) -> None:
    stub = dataset_stub(platform)
    md = metadata("ordered")
    ids = [register(stub, platform, "ordered", f"n-{i}").dataset_id for i in range(5)]
    wait_until(lambda: len(stub.ListDatasets(pb.ListDatasetsRequest(), metadata=md, timeout=10).datasets) == 5,
               what="5 datasets listed")
    listed = [d.dataset_id for d in stub.ListDatasets(pb.ListDatasetsRequest(), metadata=md, timeout=10).datasets]
    by_time = sorted(stub.ListDatasets(pb.ListDatasetsRequest(), metadata=md, timeout=10).datasets,
                     key=lambda d: (d.created_at.ToMilliseconds(), d.dataset_id))
    assert listed == [d.dataset_id for d in by_time] and set(listed) == set(ids)


def test_a_long_multibyte_error_reaches_a_default_client_whole(platform: Platform) -> None:
    """Status message and details travel in trailing metadata, which clients cap at 8 KiB by default:
    an error about many bad non-ASCII values must still arrive as INVALID_ARGUMENT with its details,
    not as RESOURCE_EXHAUSTED from the client's metadata limit."""
    from privtune.v1 import curation_config_pb2 as ccpb

    dataset = register(dataset_stub(platform), platform, "multibyte", "docs")
    curation = cpb_grpc.CurationServiceStub(channel(platform))  # default options
    entities = ["€" * 60 + str(i) for i in range(30)]
    ngrams = {n: -1.0 for n in range(2, 200)}  # ~200 violations, one per entry
    for config in (ccpb.CurationConfig(pii=ccpb.PiiSettings(entities=entities)),
                   ccpb.CurationConfig(quality=ccpb.QualitySettings(max_duplicate_ngram_fraction=ngrams,
                                                                    languages=["€€"] * 100))):
        with pytest.raises(grpc.RpcError) as info:
            curation.CreateCurationJob(cpb.CreateCurationJobRequest(dataset_id=dataset.dataset_id, config=config),
                                       metadata=metadata("multibyte"), timeout=30)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
        details = error_details(info.value)
        assert details.reason == "INVALID_CURATION_CONFIG" and details.fields
        assert all(path.startswith("config.") for path in details.fields)
