"""The platform attacked: every RPC of every service refuses a caller without a valid token for the
right issuer and audience (identity headers alone included), a forged tenant header, a role it
lacks, a plaintext client and a certificate from another CA — and records each denial under the
tenant the verified identity belongs to. An honest tenant still registers and curates a dataset,
its curation worker claiming the job over mutual TLS."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterator

import grpc
import pytest
from google.protobuf import descriptor as pbd

from privtune.platform import Platform
from privtune.v1 import (curation_service_pb2, curation_service_pb2_grpc, curation_work_service_pb2,
                         dataset_service_pb2, dataset_service_pb2_grpc, events_pb2, registry_service_pb2,
                         training_attempt_service_pb2, training_service_pb2)
from services.common import envelope as codec
from services.common.auth.pki import ensure_local_pki, issue_client
from services.common.auth.roles import RPC_ROLES
from services.common.auth.tokens import DevIssuer
from services.common.bus import open_bus
from services.common.topics import ACCESS_EVENTS
from tests.oidc_provider import OidcProvider
from tests.platform_fixtures import error_details, start_platform, wait_until

pytestmark = pytest.mark.integration

SERVICES: list[pbd.ServiceDescriptor] = [m.DESCRIPTOR.services_by_name[n] for m, n in (
    (dataset_service_pb2, "DatasetService"), (curation_service_pb2, "CurationService"),
    (training_service_pb2, "TrainingService"), (registry_service_pb2, "ModelRegistryService"),
    (registry_service_pb2, "ExperimentService"), (training_attempt_service_pb2, "TrainingAttemptService"),
    (curation_work_service_pb2, "CurationWorkService"))]
METHODS = [(s, m) for s in SERVICES for m in s.methods]


class Secured:
    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.issuer = DevIssuer(platform.config.auth_dir)
        self.pki = ensure_local_pki(platform.config.pki_dir)
        self.channel = grpc.secure_channel(platform.grpc_target, grpc.ssl_channel_credentials(self.pki.ca_bytes()))

    def token(self, tenant: str = "acme", roles: tuple[str, ...] = ("ml-engineer",), **kw: object) -> str:
        return self.issuer.mint(tenant, f"{tenant}-user", roles, **kw)  # type: ignore[arg-type]

    @property
    def component_target(self) -> str:
        assert self.platform.server is not None
        return f"127.0.0.1:{self.platform.server.component_port}"


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    data = tmp_path_factory.mktemp("secured")
    platform = start_platform(data, services=("ingest", "curation", "curation-worker",
                                                               "orchestrator"))
    try:
        yield Secured(platform)
    finally:
        platform.stop()


def _bearer(token: str, tenant: str = "") -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")] + ([("x-privtune-tenant", tenant)] if tenant else [])


def _call(channel: grpc.Channel, service: pbd.ServiceDescriptor, method: pbd.MethodDescriptor,
          md: list[tuple[str, str]]) -> grpc.RpcError:
    path = f"/{service.full_name}/{method.name}"
    with pytest.raises(grpc.RpcError) as info:
        if method.server_streaming:
            next(channel.unary_stream(path)(b"", metadata=md, timeout=10))
        else:
            channel.unary_unary(path)(b"", metadata=md, timeout=10)
    return info.value


def test_an_honest_tenant_registers_and_curates_and_the_worker_claims_over_mutual_tls(secured: Secured) -> None:
    folder = secured.platform.config.storage_path / "acme" / "faq"
    folder.mkdir(parents=True)
    (folder / "faq.jsonl").write_text("".join(
        f'{{"prompt": "Where is branch {i}?", "completion": "Branch {i} is on Main Street, open nine to five."}}\n'
        for i in range(12)))
    md = _bearer(secured.token())
    datasets = dataset_service_pb2_grpc.DatasetServiceStub(secured.channel)
    dataset = datasets.CreateDataset(dataset_service_pb2.CreateDatasetRequest(
        name="faq", storage_uri=f"file://{folder}", classification=events_pb2.DATA_CLASSIFICATION_INTERNAL),
        metadata=md, timeout=30).dataset
    assert dataset.created_by == "acme-user"  # the token's subject, not a header
    curation = curation_service_pb2_grpc.CurationServiceStub(secured.channel)
    job = curation.CreateCurationJob(curation_service_pb2.CreateCurationJobRequest(dataset_id=dataset.dataset_id),
                                     metadata=md, timeout=30).job
    events = [r.event.WhichOneof("payload") for r in curation.WatchCurationJob(
        curation_service_pb2.WatchCurationJobRequest(job_id=job.job_id), metadata=md, timeout=300)]
    assert events[-1] == "dataset_version_created", events
    # another tenant's valid token sees nothing of it
    with pytest.raises(grpc.RpcError) as info:
        datasets.GetDataset(dataset_service_pb2.GetDatasetRequest(dataset_id=dataset.dataset_id),
                            metadata=_bearer(secured.token("globex", ("admin",))), timeout=10)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("case", ["no token", "expired", "not yet valid", "other issuer", "impostor key",
                                  "wrong audience", "garbage", "headers only"])
def test_every_rpc_refuses_a_caller_without_a_valid_token(secured: Secured, case: str, tmp_path: Path) -> None:
    other = DevIssuer(tmp_path / "other", issuer="https://evil.example/")
    impostor = DevIssuer(tmp_path / "impostor")  # same issuer name, its own key
    md = {
        "no token": [],
        "expired": _bearer(secured.token(ttl_s=60, now=1_000_000_000)),
        "not yet valid": _bearer(secured.token(now=4_000_000_000)),
        "other issuer": _bearer(other.mint("acme", "x", ["admin"])),
        "impostor key": _bearer(impostor.mint("acme", "x", ["admin"])),
        "wrong audience": _bearer(secured.token(audience="billing")),
        "garbage": [("authorization", "Bearer not.a.jwt")],
        "headers only": [("x-privtune-tenant", "acme"), ("x-privtune-actor", "alice")],
    }[case]
    for service, method in METHODS:
        error = _call(secured.channel, service, method, md)
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED, (method.full_name, error.details())
        assert error_details(error).domain == "privtune.dev"


def test_a_forged_tenant_header_is_refused_everywhere_and_recorded_under_the_real_tenant(secured: Secured) -> None:
    token = secured.token("acme", ("admin",))
    for service, method in METHODS:
        error = _call(secured.channel, service, method, _bearer(token, tenant="globex"))
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED, (method.full_name, error.details())
        assert error_details(error).reason == "TENANT_MISMATCH"
    bus = open_bus(secured.platform.config.bus_uri)
    sub = bus.subscribe("test-forged-header", [ACCESS_EVENTS])
    denials: list[events_pb2.EventEnvelope] = []

    def all_seen() -> bool:
        denials.extend(codec.decode(r.value) for r in sub.poll(timeout=0.2))
        return sum(1 for e in denials if e.access_denied.reason.startswith("x-privtune-tenant names")) >= len(METHODS)

    try:
        wait_until(all_seen, what="a denial record per forged call")
    finally:
        sub.close()
    forged = [e for e in denials if e.access_denied.reason.startswith("x-privtune-tenant names")]
    assert {e.tenant_id for e in forged} == {"acme"}  # never globex's trail
    # the token's verified subject, and the rule that refused it
    assert {(e.access_denied.principal, e.access_denied.rule) for e in forged} == {("acme-user", "authorization")}


def test_each_rpc_refuses_a_caller_without_its_role(secured: Secured) -> None:
    everyone_but = {method: {"viewer", "ml-engineer", "approver", "auditor", "admin"} - allowed
                    for method, allowed in RPC_ROLES.items()}
    for service, method in METHODS:
        path = f"/{service.full_name}/{method.name}"
        lacking = sorted(everyone_but[path])
        if not lacking:
            continue
        error = _call(secured.channel, service, method, _bearer(secured.token("acme", tuple(lacking))))
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED, (path, error.details())
        details = error_details(error)
        assert details.reason == "ROLE_REQUIRED" and details.metadata["required_roles"], path


def test_break_glass_is_allowed_flagged_and_recorded(secured: Secured, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="services.common.auth.grpc_auth")
    datasets = dataset_service_pb2_grpc.DatasetServiceStub(secured.channel)
    datasets.ListDatasets(dataset_service_pb2.ListDatasetsRequest(), metadata=_bearer(
        secured.token("glass", ("break-glass",))), timeout=10)
    assert any("BREAK-GLASS" in r.getMessage() and "ListDatasets" in r.getMessage() for r in caplog.records)
    bus = open_bus(secured.platform.config.bus_uri)
    sub = bus.subscribe("test-break-glass", [ACCESS_EVENTS])
    seen: list[events_pb2.EventEnvelope] = []
    try:
        wait_until(lambda: seen.extend(codec.decode(r.value) for r in sub.poll(timeout=0.2)) or any(
            e.WhichOneof("payload") == "break_glass_used" and e.tenant_id == "glass" for e in seen),
            what="a BreakGlassUsed record")
    finally:
        sub.close()
    used = next(e for e in seen if e.WhichOneof("payload") == "break_glass_used" and e.tenant_id == "glass")
    assert used.break_glass_used.principal == "glass-user" and used.break_glass_used.method.endswith("ListDatasets")


def test_public_streams_and_forged_headers_cannot_spend_a_tenants_stream_slots(tmp_path: Path) -> None:
    """Stream slots count against the verified tenant; unauthenticated health and reflection streams
    share one bucket, whatever tenant their headers name."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from services.common.limits import StreamLimits

    platform = start_platform(tmp_path, services=("ingest",))
    platform.stop()
    platform = Platform(platform.config, services=("ingest",), stream_limits=StreamLimits(
        per_process=8, per_tenant=2, retry_after_ms=100)).start()
    try:
        secured = Secured(platform)
        health = health_pb2_grpc.HealthStub(secured.channel)
        victim_header = [("x-privtune-tenant", "victim")]
        public = [health.Watch(health_pb2.HealthCheckRequest(), metadata=victim_header, timeout=60) for _ in range(2)]
        for stream in public:
            next(stream)
        mallory = secured.token("mallory", ("viewer",))
        datasets = dataset_service_pb2_grpc.DatasetServiceStub(secured.channel)
        folder = platform.config.storage_path / "victim" / "d"
        folder.mkdir(parents=True)
        (folder / "a.txt").write_text("a")
        victim = _bearer(secured.token("victim", ("ml-engineer",)))
        dataset = datasets.CreateDataset(dataset_service_pb2.CreateDatasetRequest(
            name="d", storage_uri=f"file://{folder}", classification=1), metadata=victim, timeout=30).dataset
        # mallory's own token, with the victim named in a (duplicated) header: refused, spends nothing
        with pytest.raises(grpc.RpcError):
            next(datasets.WatchDataset(dataset_service_pb2.WatchDatasetRequest(dataset_id="ds-x"), timeout=10,
                                       metadata=_bearer(mallory) + [("x-privtune-tenant", "victim")] * 2))
        # the victim can still open its share of streams
        own = [datasets.WatchDataset(dataset_service_pb2.WatchDatasetRequest(dataset_id=dataset.dataset_id),
                                     metadata=victim, timeout=60) for _ in range(2)]
        for stream in own:
            assert next(stream).event.type == "privtune.v1.DatasetRegistered"
        for stream in public + own:
            stream.cancel()
    finally:
        platform.stop()


def test_a_watch_ends_when_its_token_expires(secured: Secured) -> None:
    import time

    folder = secured.platform.config.storage_path / "expiring" / "d"
    folder.mkdir(parents=True)
    (folder / "a.txt").write_text("a")
    datasets = dataset_service_pb2_grpc.DatasetServiceStub(secured.channel)
    dataset = datasets.CreateDataset(dataset_service_pb2.CreateDatasetRequest(
        name="d", storage_uri=f"file://{folder}", classification=1),
        metadata=_bearer(secured.token("expiring")), timeout=30).dataset
    # a token that expired 27 s ago is still within the 30 s leeway: it opens the stream, which
    # must then end about 3 s later instead of living on (3 s: a loaded machine may take over a
    # second to send the first event)
    short = secured.issuer.mint("expiring", "u", ["viewer"], ttl_s=60, now=time.time() - 87)
    stream = datasets.WatchDataset(dataset_service_pb2.WatchDatasetRequest(dataset_id=dataset.dataset_id),
                                   metadata=_bearer(short), timeout=60)
    assert next(stream).event.type == "privtune.v1.DatasetRegistered"
    with pytest.raises(grpc.RpcError) as info:
        next(stream)
    assert info.value.code() == grpc.StatusCode.CANCELLED


def test_nothing_is_served_in_plaintext_nor_to_a_certificate_of_another_ca(secured: Secured, tmp_path: Path) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    plaintext = health_pb2_grpc.HealthStub(grpc.insecure_channel(secured.platform.grpc_target))
    with pytest.raises(grpc.RpcError) as info:
        plaintext.Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    foreign = ensure_local_pki(tmp_path / "foreign")
    cert, key = issue_client(foreign, "worker", "training").read()
    for credentials in (grpc.ssl_channel_credentials(secured.pki.ca_bytes()),  # no client certificate
                        grpc.ssl_channel_credentials(secured.pki.ca_bytes(), private_key=key, certificate_chain=cert)):
        stub = health_pb2_grpc.HealthStub(grpc.secure_channel(secured.component_target, credentials))
        with pytest.raises(grpc.RpcError) as refused:
            stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    # the platform's own worker certificate is accepted there, and only for the worker's RPCs
    cert, key = issue_client(secured.pki, "worker", "probe").read()
    component = grpc.secure_channel(secured.component_target, grpc.ssl_channel_credentials(
        secured.pki.ca_bytes(), private_key=key, certificate_chain=cert))
    assert health_pb2_grpc.HealthStub(component).Check(health_pb2.HealthCheckRequest(), timeout=5).status == \
        health_pb2.HealthCheckResponse.SERVING
    datasets = dataset_service_pb2_grpc.DatasetServiceStub(component)
    with pytest.raises(grpc.RpcError) as denied:
        datasets.ListDatasets(dataset_service_pb2.ListDatasetsRequest(), metadata=[("x-privtune-tenant", "acme")],
                              timeout=10)
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_details(denied.value).reason == "ROLE_REQUIRED"


def test_the_cli_speaks_tls_with_a_token_from_the_local_issuer(secured: Secured) -> None:
    import json
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    config = secured.platform.config
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PRIVTUNE_")},
           "PRIVTUNE_DATA_DIR": str(config.data_dir), "PRIVTUNE_PKI_DIR": str(config.pki_dir),
           "PRIVTUNE_AUTH_DIR": str(config.auth_dir)}
    cli = [sys.executable, "-m", "privtune", "datasets", "--target", secured.platform.grpc_target,
           "--tenant", "cli-tenant", "--actor", "carol"]
    listed = subprocess.run(cli + ["list"], cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == {}  # an empty page: no datasets yet, and no error
    viewer = subprocess.run(cli + ["create", "--name", "x", "--uri", "file:///nowhere"], cwd=root,
                            env={**env, "PRIVTUNE_ROLES": "viewer"}, capture_output=True, text=True, timeout=120)
    assert viewer.returncode == 1 and "PERMISSION_DENIED" in viewer.stderr and "ROLE_REQUIRED" in viewer.stderr
    removed = subprocess.run(cli + ["list"], cwd=root, env={**env, "PRIVTUNE_AUTH": "insecure-headers"},
                             capture_output=True, text=True, timeout=120)
    assert removed.returncode == 1 and "that auth mode was removed" in removed.stderr, removed.stderr


def test_tokens_of_a_real_openid_connect_provider_are_honoured_and_checked(
        oidc_provider: OidcProvider, tmp_path: Path) -> None:
    """Ory Hydra on loopback issues client-credentials JWTs with tenant and roles; the platform trusts
    it through its JWKS and refuses its tokens for another audience or with a forged tenant header."""
    platform = start_platform(tmp_path, services=("ingest",), oidc_issuer=oidc_provider.issuer,
                              oidc_audience="privtune", oidc_jwks_uri=oidc_provider.jwks_url)
    try:
        secured = Secured(platform)
        datasets = dataset_service_pb2_grpc.DatasetServiceStub(secured.channel)
        client_id, secret = oidc_provider.create_client("hydra-acme", ["ml-engineer"])
        engineer = oidc_provider.client_credentials_token(client_id, secret, audience=["privtune"])
        folder = platform.config.storage_path / "hydra-acme" / "docs"
        folder.mkdir(parents=True)
        (folder / "a.txt").write_text("alpha")
        created = datasets.CreateDataset(dataset_service_pb2.CreateDatasetRequest(
            name="docs", storage_uri=f"file://{folder}", classification=events_pb2.DATA_CLASSIFICATION_INTERNAL),
            metadata=_bearer(engineer), timeout=30).dataset
        assert created.created_by == client_id  # Hydra's "sub" of a client-credentials token
        wait_until(lambda: [d.dataset_id for d in datasets.ListDatasets(
            dataset_service_pb2.ListDatasetsRequest(), metadata=_bearer(engineer), timeout=10).datasets]
            == [created.dataset_id], what="the dataset listed for its tenant")
        viewer = oidc_provider.client_credentials_token(
            *oidc_provider.create_client("hydra-acme", ["viewer"]), audience=["privtune"])
        billing = oidc_provider.client_credentials_token(
            *oidc_provider.create_client("hydra-acme", ["admin"], audience=["billing"]), audience=["billing"])
        for md, code, reason in (
                (_bearer(viewer), grpc.StatusCode.PERMISSION_DENIED, "ROLE_REQUIRED"),
                (_bearer(billing), grpc.StatusCode.UNAUTHENTICATED, "WRONG_AUDIENCE"),
                (_bearer(engineer, tenant="globex"), grpc.StatusCode.PERMISSION_DENIED, "TENANT_MISMATCH"),
                (_bearer(engineer[:-4] + "AAAA"), grpc.StatusCode.UNAUTHENTICATED, "BAD_SIGNATURE")):
            with pytest.raises(grpc.RpcError) as info:
                datasets.CreateDataset(dataset_service_pb2.CreateDatasetRequest(
                    name="again", storage_uri=f"file://{folder}", classification=1), metadata=md, timeout=30)
            assert info.value.code() == code and error_details(info.value).reason == reason, info.value.details()
    finally:
        platform.stop()
