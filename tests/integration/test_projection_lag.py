"""A read model's lag, in events and seconds, and its health (issue 17), on the embedded store and bus.

The attack a crash would write: a consumer that cannot apply (here: another connection holds the
store's write lock, as a stuck writer would) while its topic fills. Its health name must turn
NOT_SERVING (it stops measuring, and an old measure counts as late), then SERVING again once it
applied everything; its batches land whole, each event once; and API replicas refuse the
services whose state lives in one process.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import func, select, text

from privtune.platform import PROJECTION_HEALTH_PREFIX, Platform, projection_health_file
from privtune.v1 import events_pb2
from services.common import envelope as codec
from services.common.bus import Message
from services.common.config import PlatformConfig
from services.common.envelope import Causation, new_envelope
from services.common.store.engine import reader
from services.common.store.schema import dataset_version_catalog, processed_events
from services.common.topics import CURATION_EVENTS
from tests.platform_fixtures import channel, shared_auth_overrides, wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EVENTS = 1200  # more than one poll's 500: the backlog is seen between batches
PROJECTION = "orchestrator.dataset_versions"


def _version_created(n: int) -> Message:
    version = f"dv-{uuid.uuid4().hex}"
    env = new_envelope(events_pb2.DatasetVersionCreated(dataset_version_id=version, dataset_id="ds-lag", job_id="cj-1",
                                                        manifest_uri=f"file:///x/{n}/manifest.json",
                                                        record_count=1, train_count=1),
                       subject=version, tenant_id="acme", source="privtune/curation",
                       causation=Causation(actor="test", correlation_id=f"c-{n}"))
    return Message(CURATION_EVENTS, version.encode(), codec.encode(env))


def _health(ch: grpc.Channel, name: str) -> int:
    """The status of ``name`` (-1 until the platform's first lag check names it: NOT_FOUND)."""
    try:
        return health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=name), timeout=10).status
    except grpc.RpcError as err:
        if err.code() == grpc.StatusCode.NOT_FOUND:
            return -1
        raise


def test_a_stuck_read_model_turns_not_serving_and_recovers_with_every_event_applied_once(tmp_path: Path) -> None:
    config = PlatformConfig.from_env(tmp_path, grpc_address="127.0.0.1:0", gateway_address="127.0.0.1:0",
                                     metrics_address="127.0.0.1:0", **shared_auth_overrides())
    published = projection_health_file(tmp_path, os.getpid())
    platform = Platform(config, services=("orchestrator",), projection_lag_limit_s=2.0,
                        projection_health_file=published).start()
    # an API replica runs no consumers: it answers the same health names from what the full process publishes
    replica_config = PlatformConfig.from_env(tmp_path, grpc_address="127.0.0.1:0", gateway_address="127.0.0.1:0",
                                             **shared_auth_overrides())
    replica = Platform(replica_config, services=("orchestrator",), projection_lag_limit_s=2.0, api_only=True,
                       projection_health_file=published).start()
    stopped = False
    try:
        assert platform.engine is not None and platform.bus is not None
        ch, replica_ch = channel(platform), channel(replica)
        name = PROJECTION_HEALTH_PREFIX + PROJECTION
        wait_until(lambda: _health(ch, name) == _health(replica_ch, name) == health_pb2.HealthCheckResponse.SERVING,
                   timeout=60, what="the read model to be measured as caught up")
        assert platform.projection_lag()[PROJECTION].events == 0
        for _ in range(8):  # an idle, healthy consumer stays SERVING (its measures are never too old)
            time.sleep(0.5)
            assert _health(ch, name) == health_pb2.HealthCheckResponse.SERVING

        with platform.engine.begin() as stuck:  # the write lock, as a stuck writer would hold it
            stuck.execute(text("UPDATE signing_keys SET name = name"))
            platform.bus.publish([_version_created(n) for n in range(EVENTS)])
            wait_until(lambda: _health(ch, name) == health_pb2.HealthCheckResponse.NOT_SERVING, timeout=60,
                       what="the stuck read model to report NOT_SERVING")
            wait_until(lambda: _health(replica_ch, name) == health_pb2.HealthCheckResponse.NOT_SERVING, timeout=30,
                       what="the API replica to report it too")
            assert _health(ch, "") == health_pb2.HealthCheckResponse.SERVING  # the API itself still serves

        def caught_up() -> bool:
            lag = platform.projection_lag()[PROJECTION]
            return _health(ch, name) == health_pb2.HealthCheckResponse.SERVING and lag.events == 0
        wait_until(caught_up, timeout=120, what="the read model to catch up")
        wait_until(lambda: _health(replica_ch, name) == health_pb2.HealthCheckResponse.SERVING, timeout=30,
                   what="the API replica to report it caught up")
        with reader(platform.engine).connect() as conn:
            rows = conn.execute(select(func.count()).select_from(dataset_version_catalog)
                                .where(dataset_version_catalog.c.dataset_id == "ds-lag")).scalar()
            applied = conn.execute(select(func.count()).select_from(processed_events)
                                   .where(processed_events.c.consumer == PROJECTION)).scalar()
        assert rows == EVENTS and applied == EVENTS

        assert platform.metrics is not None  # the same numbers, scraped as Prometheus gauges
        scraped = urllib.request.urlopen(f"http://127.0.0.1:{platform.metrics.port}/metrics", timeout=10)
        assert scraped.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        gauges = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
                  for line in scraped.read().decode().splitlines() if line and not line.startswith("#")}
        label = f'{{projection="{PROJECTION}"}}'
        assert gauges[f"privtune_projection_lag_events{label}"] == 0
        assert gauges[f"privtune_projection_lag_seconds{label}"] == 0
        age = gauges[f"privtune_projection_lag_measure_age_seconds{label}"]
        assert math.isfinite(age) and age >= 0  # measured (NaN: never)
        assert {name.split("{")[1] for name in gauges} == {f'projection="{n}"}}' for n in platform.projection_lag()}
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"http://127.0.0.1:{platform.metrics.port}/", timeout=10)
        assert err.value.code == 404

        platform.stop()  # the full process is gone: its replica can no longer vouch for the read model
        stopped = True
        assert not published.exists()
        wait_until(lambda: _health(replica_ch, name) == health_pb2.HealthCheckResponse.NOT_SERVING, timeout=30,
                   what="the replica to stop vouching for a read model nobody measures")
        assert _health(replica_ch, "") == health_pb2.HealthCheckResponse.SERVING  # its API still serves
    finally:
        if not stopped:
            platform.stop()
        replica.stop()


@pytest.mark.parametrize("service", ["deploy", "training"])
def test_services_whose_state_lives_in_one_process_are_refused_as_api_replicas(tmp_path: Path,
                                                                                service: str) -> None:
    done = subprocess.run([sys.executable, "-m", "privtune", "serve", service, "--api-processes", "2",
                           "--data-dir", str(tmp_path), "--grpc", "127.0.0.1:0"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert f"{service} cannot run as an API replica" in done.stderr
    assert not (tmp_path / "privtune.db").exists(), "refused before anything started"
