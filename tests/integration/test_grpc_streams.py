"""Watch streams on a real server: many at once never starve unary calls, and none outlives its caller."""

from __future__ import annotations

import threading
import time
from concurrent import futures
from pathlib import Path
from typing import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from privtune.platform import Platform
from privtune.v1 import dataset_service_pb2 as pb
from privtune.v1 import dataset_service_pb2_grpc as ds_grpc
from tests.platform_fixtures import (channel, dataset_stub, error_details, metadata, register, start_platform,
                                     wait_until)

pytestmark = pytest.mark.integration

STREAMS = 100


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    p = start_platform(tmp_path, services=("ingest",))
    yield p
    p.stop()


def _start_watches(dataset_ids: dict[str, str], n: int, api: grpc.Channel) -> list[grpc.Future]:
    """``n`` WatchDataset streams spread over the tenants in ``dataset_ids`` (not read yet)."""
    stub = ds_grpc.DatasetServiceStub(api)
    tenants = sorted(dataset_ids)
    return [stub.WatchDataset(pb.WatchDatasetRequest(dataset_id=dataset_ids[tenants[i % len(tenants)]]),
                              metadata=metadata(tenants[i % len(tenants)]), timeout=300) for i in range(n)]


def _first_events(streams: list[grpc.Future]) -> None:
    """Every stream delivers the dataset's first event within a few seconds."""
    with futures.ThreadPoolExecutor(16) as pool:
        for got in pool.map(lambda s: next(s), streams, timeout=30):
            assert got.event.type == "privtune.v1.DatasetRegistered"


def _open_watches(dataset_ids: dict[str, str], n: int, api: grpc.Channel) -> list[grpc.Future]:
    streams = _start_watches(dataset_ids, n, api)
    _first_events(streams)
    return streams


def _active_streams(platform: Platform) -> int:
    assert platform.server is not None
    return platform.server.streams.active


def test_a_hundred_open_watch_streams_leave_unary_calls_and_health_answering(platform: Platform) -> None:
    stub = dataset_stub(platform)
    tenants = ("acme", "globex")
    ids = {t: register(stub, platform, t, "tickets").dataset_id for t in tenants}
    api = channel(platform)
    streams = _start_watches(ids, STREAMS, api)
    try:
        time.sleep(2)  # let the server take them all
        health = health_pb2_grpc.HealthStub(channel(platform))

        def unary_round(i: int) -> None:  # each call has a 10 s deadline: a starved call fails it
            assert health.Check(health_pb2.HealthCheckRequest(), timeout=10).status == \
                health_pb2.HealthCheckResponse.SERVING
            tenant = tenants[i % 2]
            got = stub.GetDataset(pb.GetDatasetRequest(dataset_id=ids[tenant]), metadata=metadata(tenant), timeout=10).dataset
            assert got.dataset_id == ids[tenant]
            stub.ListDatasets(pb.ListDatasetsRequest(), metadata=metadata(tenant), timeout=10)

        with futures.ThreadPoolExecutor(16) as pool:
            list(pool.map(unary_round, range(64)))
        # writes still go through as well, and every stream is being served
        register(stub, platform, "acme", "more-tickets")
        _first_events(streams)
        assert _active_streams(platform) == STREAMS
    finally:
        for stream in streams:
            stream.cancel()
    wait_until(lambda: _active_streams(platform) == 0, timeout=15, what="cancelled streams to end on the server")


def test_streams_over_the_caps_are_refused_with_a_retry_hint(tmp_path: Path) -> None:
    from services.common import limits
    from services.common.config import PlatformConfig

    config = PlatformConfig.from_env(tmp_path, grpc_address="127.0.0.1:0")
    caps = limits.StreamLimits(per_process=6, per_tenant=4)
    platform = Platform(config, services=("ingest",), stream_limits=caps).start()
    try:
        stub = dataset_stub(platform)
        ids = {t: register(stub, platform, t, "tickets").dataset_id for t in ("acme", "globex")}
        api = channel(platform)
        acme = _open_watches({"acme": ids["acme"]}, 4, api)
        with pytest.raises(grpc.RpcError) as info:
            next(stub.WatchDataset(pb.WatchDatasetRequest(dataset_id=ids["acme"]), metadata=metadata("acme"),
                                   timeout=10))
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "acme" in info.value.details() and "retry" in info.value.details()
        assert dict(info.value.trailing_metadata() or ()).get("retry-after-ms")
        refused = error_details(info.value)
        assert refused.reason == "TOO_MANY_STREAMS" and int(refused.metadata["retry_after_ms"]) > 0
        globex = _open_watches({"globex": ids["globex"]}, 2, api)
        with pytest.raises(grpc.RpcError) as info:
            next(stub.WatchDataset(pb.WatchDatasetRequest(dataset_id=ids["globex"]), metadata=metadata("globex"),
                                   timeout=10))
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "retry" in info.value.details()
        # unary calls are not streams: they still answer
        stub.GetDataset(pb.GetDatasetRequest(dataset_id=ids["acme"]), metadata=metadata("acme"), timeout=10)
        acme[0].cancel()
        wait_until(lambda: _active_streams(platform) == 5, timeout=10, what="the cancelled stream's slot")
        _open_watches({"acme": ids["acme"]}, 1, api)
        for stream in acme + globex:
            stream.cancel()
    finally:
        platform.stop()


def test_streams_end_when_the_client_goes_away(platform: Platform) -> None:
    stub = dataset_stub(platform)
    dataset_id = register(stub, platform, "acme", "tickets").dataset_id
    api = channel(platform)
    _open_watches({"acme": dataset_id}, 5, api)
    assert _active_streams(platform) == 5
    api.close()  # the client process goes away without cancelling
    wait_until(lambda: _active_streams(platform) == 0, timeout=5, what="streams of a closed channel to end")
    short = stub.WatchDataset(pb.WatchDatasetRequest(dataset_id=dataset_id), metadata=metadata(), timeout=1.5)
    next(short)
    with pytest.raises(grpc.RpcError) as info:
        next(short)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    wait_until(lambda: _active_streams(platform) == 0, timeout=5, what="a stream past its deadline to end")


def test_streams_end_when_the_server_stops(tmp_path: Path) -> None:
    platform = start_platform(tmp_path, services=("ingest",))
    stub = dataset_stub(platform)
    dataset_id = register(stub, platform, "acme", "tickets").dataset_id
    streams = _open_watches({"acme": dataset_id}, 10, channel(platform))
    ended: list[grpc.StatusCode] = []

    def drain(stream: grpc.Future) -> None:
        try:
            for _ in stream:
                pass
            ended.append(grpc.StatusCode.OK)
        except grpc.RpcError as exc:
            ended.append(exc.code())

    readers = [threading.Thread(target=drain, args=(s,), daemon=True) for s in streams]
    for reader in readers:
        reader.start()
    platform.stop()
    for reader in readers:
        reader.join(timeout=30)
    assert len(ended) == 10, "every stream ended when the server stopped"
    # not OK: OK promises the watched thing reached its end; a stopping server says "call again"
    assert set(ended) == {grpc.StatusCode.UNAVAILABLE}, ended
    assert platform.server is not None and platform.server.streams.active == 0
