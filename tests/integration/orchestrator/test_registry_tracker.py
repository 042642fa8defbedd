"""Model registry, experiment tracker, lineage and MLflow export on a real store, bus and gRPC server.

Job streams are built from realistic events appended to the event store; the outbox
relay publishes them on the embedded bus and the real consumers run the projections
and the registration follow-up, as the platform does.
"""

from __future__ import annotations

import argparse
import json
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import grpc
import pytest
from sqlalchemy import Engine, func, select

from privtune import cli_registry
from privtune.platform import security
from privtune.v1 import events_pb2
from privtune.v1 import registry_service_pb2 as pb
from privtune.v1 import registry_service_pb2_grpc as pb_grpc
from privtune.v1 import training_service_pb2 as ts_pb
from services.common import envelope as codec
from services.common import eventstore
from services.common.bus import EventBus, Message, open_bus
from services.common.config import PlatformConfig
from services.common.consumer import EventConsumer
from services.common.envelope import Causation, new_envelope
from services.common.grpc_server import RunningServer, start_grpc_server
from services.common.outbox import OutboxRelay
from services.common.store import open_store
from services.common.store.schema import stored_events
from services.common.topics import ALL_TOPICS
from services.orchestrator import catalog, registry_grpc, registry_views
from services.orchestrator.mlflow_export import MlflowExporter, export_run, exporter_workers
from services.orchestrator.registry_application import RegistryApplication
from services.orchestrator.registry_domain import model_stream_id
from services.orchestrator.tracker import ExperimentTracker
from tests.platform_fixtures import channel, metadata, wait_until
from tests.stores import fresh_store_url

pytestmark = pytest.mark.integration


# ------------------------------------------------------------------ the rig


@dataclass
class Rig:
    engine: Engine
    bus: EventBus
    relay: OutboxRelay
    server: RunningServer
    channel: grpc.Channel
    consumers: list[EventConsumer] = field(default_factory=list)

    @property
    def registry(self) -> pb_grpc.ModelRegistryServiceStub:
        return pb_grpc.ModelRegistryServiceStub(self.channel)

    @property
    def experiments(self) -> pb_grpc.ExperimentServiceStub:
        return pb_grpc.ExperimentServiceStub(self.channel)

    def pump(self) -> None:
        """Relay and consume until nothing moves (follow-ups append events of their own)."""
        for _ in range(50):
            published = self.relay.drain()
            applied = sum(len(c.poll_and_apply(timeout=0.05)) for c in self.consumers)
            if not published and not applied:
                return
        raise AssertionError("the projections never settled")


def md(tenant: str = "acme", actor: str = "alice") -> list[tuple[str, str]]:
    """A token of ``tenant`` for ``actor`` (viewer, ml-engineer and approver: it may move aliases)."""
    return metadata(tenant, actor)


def _rig(store_url: str, tmp_path: Path, extra_projections: tuple = ()) -> Rig:
    engine = open_store(store_url)
    bus = open_bus(f"sqlite:///{tmp_path}/events-{uuid.uuid4().hex[:6]}.db?partitions=2")
    bus.ensure_topics(ALL_TOPICS)
    consumers = [EventConsumer(engine, bus, p.name, p.topics, p.apply)
                 for p in (*registry_views.PROJECTIONS, catalog.PROJECTION, *extra_projections)]
    # TLS and verified tokens as the platform serves them (the shared PKI and token issuer)
    tls, auth = security(PlatformConfig.from_env(tmp_path, grpc_address="127.0.0.1:0"))
    server = start_grpc_server("127.0.0.1:0",
                               registry_grpc.bindings(RegistryApplication(engine), engine, threading.Event()),
                               tls=tls, auth=auth)
    return Rig(engine, bus, OutboxRelay(engine, bus), server, channel(f"127.0.0.1:{server.port}"), consumers)


def _close(rig: Rig) -> None:
    rig.channel.close()
    rig.server.stop(0)
    for c in rig.consumers:
        c.close()
    rig.bus.close()
    rig.engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def rig(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Rig]:
    r = _rig(fresh_store_url(request, request.param, tmp_path), tmp_path)
    yield r
    _close(r)


# ------------------------------------------------------------------ event streams


def append(engine: Engine, stream_type: str, subject: str, payloads: list, tenant: str = "acme",
           actor: str = "alice") -> list[events_pb2.EventEnvelope]:
    with engine.begin() as conn:
        version = eventstore.stream_version(conn, subject)
        envs = [new_envelope(p, subject=subject, tenant_id=tenant, source="test",
                             causation=Causation(actor, f"corr-{subject}")) for p in payloads]
        eventstore.append(conn, stream_type, envs, expected_version=version)
    return envs


def curated_dataset(engine: Engine, tenant: str = "acme") -> str:
    """Raw dataset -> curation job -> dataset version; returns the dataset version id."""
    suffix = uuid.uuid4().hex[:8]
    dataset_id, cj, dv = f"ds-{suffix}", f"cj-{suffix}", f"dv-{suffix}"
    append(engine, "dataset", dataset_id, [events_pb2.DatasetRegistered(
        dataset_id=dataset_id, name=f"tickets-{suffix}", storage_uri=f"file:///tenants/{tenant}/tickets",
        classification=2, checksum_sha256="r" * 64, file_count=3, total_bytes=100)], tenant)
    append(engine, "curation_job", cj, [
        events_pb2.CurationRequested(job_id=cj, dataset_id=dataset_id, recipe="tickets_to_sft",
                                     config_sha256="k" * 64, config_json="{}"),
        # the version carries the raw dataset's and the curation run's facts (the orchestrator's catalog keeps them)
        events_pb2.DatasetVersionCreated(dataset_version_id=dv, dataset_id=dataset_id, job_id=cj,
                                         manifest_sha256="m" * 64, record_count=10, train_count=8,
                                         dataset_classification=2, dataset_checksum_sha256="r" * 64,
                                         dataset_storage_uri=f"file:///tenants/{tenant}/tickets",
                                         curation_config_sha256="k" * 64)], tenant)
    return dv


def trained_job(engine: Engine, dataset_version: str, *, learning_rate: float = 2e-4, r: int = 8,
                steps: int = 20, tenant: str = "acme", tags: dict | None = None, name: str = "support-bot",
                dataset_id: str = "") -> tuple[str, list[events_pb2.EventEnvelope]]:
    """A job's whole life: Requested .. Progress xN, CheckpointSaved .. Completed. Returns (job id, events)."""
    job_id = f"tj-{uuid.uuid4().hex[:12]}"
    spec = {"job_id": job_id, "tenant_id": tenant, "method": "lora", "base_model": "smollm2-135m-instruct",
            "dataset_uri": f"file:///tenants/{tenant}/datasets/x/versions/{dataset_version}",
            "lora": {"r": r, "alpha": 16.0, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]},
            "learning_rate": learning_rate, "max_steps": steps, "seed": 7, "micro_batch_size": 4}
    lifecycle = [
        events_pb2.TrainingRequested(job_id=job_id, name=name, base_model_id="smollm2-135m-instruct",
                                     dataset_version_id=dataset_version, dataset_id=dataset_id,
                                     config_sha256=f"{r:02d}" * 32, config_json=json.dumps(spec),
                                     experiment_tags={"team": "support", **(tags or {})}, gpu_pool="local"),
        events_pb2.TrainingQueued(job_id=job_id, gpu_pool="local", attempt=1, reason="admitted"),
        events_pb2.TrainingScheduled(job_id=job_id, gpu_pool="local", gpus=1, attempt=1, executor="local"),
        events_pb2.TrainingStarted(job_id=job_id, worker_id="worker-1", attempt=1, dataset_manifest_sha256="m" * 64,
                                   base_model_sha256="b" * 64, code_version="git:1234abcd", seed=7,
                                   hardware="cpu: 2 cores", library_versions={"torch": "2.9.0", "peft": "0.17"},
                                   total_steps=steps, config_sha256=f"{r:02d}" * 32)]
    progress = [events_pb2.TrainingProgress(job_id=job_id, step=s, total_steps=steps, loss=3.0 / s,
                                            learning_rate=learning_rate, grad_norm=1.0 / s, tokens_per_second=900.0,
                                            eval_loss=3.2 / s if s % 5 == 0 else 0.0) for s in range(1, steps + 1)]
    ending = [events_pb2.CheckpointSaved(job_id=job_id, checkpoint_id=f"ckpt-{steps}", step=steps, uri="file:///c",
                                         sha256="c" * 64),
              events_pb2.TrainingCompleted(job_id=job_id, artifact_uri=f"file:///tenants/{tenant}/artifacts/{job_id}",
                                           artifact_sha256="a" * 64, steps=steps, final_loss=3.0 / steps,
                                           eval_loss=3.2 / steps, initial_eval_loss=3.5, duration_seconds=12.5)]
    envs = append(engine, "training_job", job_id, lifecycle + progress[:10], tenant, actor="alice")
    envs += append(engine, "training_job", job_id, progress[10:] + ending, tenant, actor="worker-1")
    return job_id, envs


def _model_events(engine: Engine, tenant: str, model: str) -> list[events_pb2.EventEnvelope]:
    with engine.connect() as conn:
        return eventstore.load_stream(conn, tenant, model_stream_id(tenant, model))


# ------------------------------------------------------------------ registry


def test_a_completed_job_is_registered_exactly_once(rig: Rig) -> None:
    dv = curated_dataset(rig.engine)
    job_id, envs = trained_job(rig.engine, dv)
    rig.pump()
    version = rig.registry.GetModelVersion(pb.GetModelVersionRequest(model_version_id="support-bot/v1"),
                                           metadata=md(), timeout=10).model_version
    assert (version.job_id, version.kind, version.dataset_version_id, version.artifact_sha256) == (
        job_id, pb.MODEL_ARTIFACT_KIND_ADAPTER, dv, "a" * 64)
    assert version.code_version == "git:1234abcd" and version.base_model_sha256 == "b" * 64
    assert version.metrics["initial_eval_loss"] == 3.5

    # the completion is delivered again (a replayed topic) and the follow-up runs again by hand
    completed = envs[-1]
    rig.bus.publish([Message(codec.topic_of(completed), completed.subject.encode(), codec.encode(completed))])
    rig.pump()
    with rig.engine.begin() as conn:
        registry_views.register_on_completion(conn, completed)
    assert len(_model_events(rig.engine, "acme", "support-bot")) == 1

    second, _ = trained_job(rig.engine, dv)
    rig.pump()
    listed = rig.registry.ListModelVersions(pb.ListModelVersionsRequest(model_name="support-bot"), metadata=md(),
                                            timeout=10)
    assert [(v.model_version_id, v.job_id) for v in listed.versions] == [("support-bot/v1", job_id),
                                                                          ("support-bot/v2", second)]


def test_aliases_and_their_history_through_grpc(rig: Rig) -> None:
    dv = curated_dataset(rig.engine)
    for _ in range(2):
        trained_job(rig.engine, dv, tags={"model_name": "faq-bot"})
    rig.pump()
    registry = rig.registry
    registry.SetModelAlias(pb.SetModelAliasRequest(model_name="faq-bot", alias="production",
                                                   model_version_id="faq-bot/v1", reason="first release"),
                           metadata=md(actor="alice"), timeout=10)
    moved = registry.SetModelAlias(pb.SetModelAliasRequest(model_name="faq-bot", alias="production",
                                                           model_version_id="v2", reason="eval loss 0.16 < 0.2"),
                                   metadata=md(actor="bob"), timeout=10).model_version
    assert moved.model_version_id == "faq-bot/v2" and list(moved.aliases) == ["production"]
    registry.SetModelAlias(pb.SetModelAliasRequest(model_name="faq-bot", alias="staging", model_version_id="2",
                                                   reason="canary"), metadata=md(actor="bob"), timeout=10)
    again = registry.SetModelAlias(pb.SetModelAliasRequest(model_name="faq-bot", alias="staging",
                                                           model_version_id="faq-bot/v2", reason="again"),
                                   metadata=md(actor="carol"), timeout=10).model_version
    assert again.model_version_id == "faq-bot/v2"  # already there: nothing recorded

    current = registry.GetModelVersion(pb.GetModelVersionRequest(model_version_id="faq-bot@production"),
                                       metadata=md(), timeout=10).model_version
    assert current.model_version_id == "faq-bot/v2" and sorted(current.aliases) == ["production", "staging"]
    history = registry.ListAliasHistory(pb.ListAliasHistoryRequest(model_name="faq-bot", alias="production"),
                                        metadata=md(), timeout=10).changes
    assert [(c.previous_model_version_id, c.model_version_id, c.actor, c.reason) for c in history] == [
        ("", "faq-bot/v1", "alice", "first release"), ("faq-bot/v1", "faq-bot/v2", "bob", "eval loss 0.16 < 0.2")]
    assert all(c.HasField("changed_at") and c.changed_at.seconds > 0 for c in history)  # when it moved is recorded
    everything = registry.ListAliasHistory(pb.ListAliasHistoryRequest(model_name="faq-bot"), metadata=md(),
                                           timeout=10).changes
    assert [c.alias for c in everything] == ["production", "production", "staging"]

    registry.SetModelAlias(pb.SetModelAliasRequest(model_name="faq-bot", alias="staging", reason="canary over"),
                           metadata=md(actor="bob"), timeout=10)
    rig.pump()
    listed = registry.ListModelVersions(pb.ListModelVersionsRequest(model_name="faq-bot"), metadata=md(), timeout=10)
    assert {v.model_version_id: list(v.aliases) for v in listed.versions} == {"faq-bot/v1": [],
                                                                               "faq-bot/v2": ["production"]}

    for request, code, needle in [
        (pb.SetModelAliasRequest(model_name="faq-bot", alias="production", model_version_id="faq-bot/v9"),
         grpc.StatusCode.NOT_FOUND, "faq-bot/v9"),
        (pb.SetModelAliasRequest(model_name="faq-bot", alias="Prod!", model_version_id="faq-bot/v1"),
         grpc.StatusCode.INVALID_ARGUMENT, "Prod!"),
        (pb.SetModelAliasRequest(model_name="nope", alias="production", model_version_id="nope/v1"),
         grpc.StatusCode.NOT_FOUND, "'nope'"),
    ]:
        with pytest.raises(grpc.RpcError) as info:
            registry.SetModelAlias(request, metadata=md(), timeout=10)
        assert info.value.code() == code and needle in info.value.details()


def test_evaluation_summary_is_the_latest_even_when_it_arrives_first(rig: Rig) -> None:
    dv = curated_dataset(rig.engine)
    append(rig.engine, "eval", "ev-early", [events_pb2.EvalCompleted(
        eval_id="ev-early", model_version_id="support-bot/v1", suite_id="support", metrics={"exact_match": 0.5},
        passed=False)])
    rig.pump()  # the evaluation is consumed before the registration exists
    trained_job(rig.engine, dv)
    rig.pump()
    append(rig.engine, "eval", "ev-late", [events_pb2.EvalCompleted(
        eval_id="ev-late", model_version_id="support-bot/v1", suite_id="support", metrics={"exact_match": 0.8},
        passed=True)])
    rig.pump()
    version = rig.registry.GetModelVersion(pb.GetModelVersionRequest(model_version_id="support-bot/v1"),
                                           metadata=md(), timeout=10).model_version
    assert dict(version.evaluation) == {"exact_match": 0.8} and version.evaluation_passed
    listed = rig.registry.ListModelVersions(pb.ListModelVersionsRequest(), metadata=md(), timeout=10).versions
    assert [(v.model_version_id, v.kind, v.evaluation["exact_match"]) for v in listed] == [
        ("support-bot/v1", pb.MODEL_ARTIFACT_KIND_ADAPTER, 0.8)]


def test_tenants_never_see_or_move_each_others_models(rig: Rig) -> None:
    dv = curated_dataset(rig.engine)
    job_id, _ = trained_job(rig.engine, dv)
    rig.pump()
    globex = md("globex", "mallory")
    calls = [
        lambda: rig.registry.GetModelVersion(pb.GetModelVersionRequest(model_version_id="support-bot/v1"),
                                             metadata=globex, timeout=10),
        lambda: rig.registry.SetModelAlias(pb.SetModelAliasRequest(model_name="support-bot", alias="production",
                                                                   model_version_id="support-bot/v1"),
                                           metadata=globex, timeout=10),
        lambda: rig.registry.ListAliasHistory(pb.ListAliasHistoryRequest(model_name="support-bot"),
                                              metadata=globex, timeout=10),
        lambda: rig.registry.GetLineage(pb.GetLineageRequest(job_id=job_id), metadata=globex, timeout=10),
        lambda: rig.experiments.GetRun(pb.GetRunRequest(run_id=job_id), metadata=globex, timeout=10),
        lambda: rig.experiments.CompareRuns(pb.CompareRunsRequest(run_ids=[job_id]), metadata=globex, timeout=10),
    ]
    for call in calls:
        with pytest.raises(grpc.RpcError) as info:
            call()
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert not rig.registry.ListModelVersions(pb.ListModelVersionsRequest(), metadata=globex, timeout=10).versions
    assert not rig.experiments.ListRuns(pb.ListRunsRequest(), metadata=globex, timeout=10).runs
    assert _model_events(rig.engine, "globex", "support-bot") == []
    assert rig.registry.ListAliasHistory(pb.ListAliasHistoryRequest(model_name="support-bot"), metadata=md(),
                                         timeout=10).changes == []


# ------------------------------------------------------------------ runs


def test_runs_compare_shows_differing_params_and_learning_curves(rig: Rig) -> None:
    dv = curated_dataset(rig.engine)
    base, _ = trained_job(rig.engine, dv, learning_rate=2e-4, r=8, tags={"sweep": "lr"})
    faster, _ = trained_job(rig.engine, dv, learning_rate=1e-3, r=16, steps=15, tags={"sweep": "lr"})
    other, _ = trained_job(rig.engine, dv, tags={"sweep": "other"})
    rig.pump()
    comparison = rig.experiments.CompareRuns(pb.CompareRunsRequest(run_ids=[base, faster]), metadata=md(),
                                             timeout=10)
    assert list(comparison.differing_params) == ["learning_rate", "lora.r", "max_steps"]
    assert list(comparison.metric_names) == ["eval_loss", "grad_norm", "learning_rate", "loss", "tokens_per_second"]
    first, second = comparison.runs
    curves = {s.name: [(p.step, p.value) for p in s.points] for s in first.series}
    assert [step for step, _ in curves["loss"]] == list(range(1, 21))
    assert curves["loss"][0] == (1, 3.0) and curves["eval_loss"] == [(s, pytest.approx(3.2 / s))
                                                                      for s in (5, 10, 15, 20)]
    assert len({s.name: s for s in second.series}["loss"].points) == 15
    assert first.params["lora.r"] == "8" and second.params["lora.r"] == "16"
    assert first.params["dataset_version_id"] == dv and "dataset_uri" not in first.params
    assert first.state == ts_pb.TRAINING_JOB_STATE_SUCCEEDED and first.metrics["loss"] == pytest.approx(0.15)
    assert first.metrics["duration_seconds"] == 12.5 and first.metrics["initial_eval_loss"] == 3.5
    assert (first.dataset_manifest_sha256, first.base_model_sha256, first.code_version, first.seed) == (
        "m" * 64, "b" * 64, "git:1234abcd", 7)
    assert dict(first.library_versions) == {"torch": "2.9.0", "peft": "0.17"} and first.hardware == "cpu: 2 cores"
    assert first.HasField("started_at") and first.HasField("ended_at")  # taken from the job's events

    sweep = rig.experiments.ListRuns(pb.ListRunsRequest(tags={"sweep": "lr", "team": "support"}), metadata=md(),
                                     timeout=10)
    assert sorted(r.run_id for r in sweep.runs) == sorted([base, faster])
    assert {r.run_id: r.state for r in sweep.runs} == {base: ts_pb.TRAINING_JOB_STATE_SUCCEEDED,
                                                       faster: ts_pb.TRAINING_JOB_STATE_SUCCEEDED}
    assert len(rig.experiments.ListRuns(pb.ListRunsRequest(), metadata=md(), timeout=10).runs) == 3
    page = rig.experiments.ListRuns(pb.ListRunsRequest(page_size=2), metadata=md(), timeout=10)
    rest = rig.experiments.ListRuns(pb.ListRunsRequest(page_size=2, page_token=page.next_page_token), metadata=md(),
                                    timeout=10)
    assert sorted(r.run_id for r in [*page.runs, *rest.runs]) == sorted([base, faster, other])
    with rig.engine.connect() as conn:
        points = conn.execute(select(func.count()).select_from(registry_views.run_metric_points).where(
            registry_views.run_metric_points.c.job_id == base)).scalar()
    assert points == 20 * 4 + 4  # loss, lr, grad norm, tokens/s per step, eval loss every 5th

    with pytest.raises(grpc.RpcError) as info:
        rig.experiments.CompareRuns(pb.CompareRunsRequest(run_ids=[base, "tj-missing"]), metadata=md(), timeout=10)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND and "tj-missing" in info.value.details()


# ------------------------------------------------------------------ lineage


def test_lineage_returns_the_whole_chain(rig: Rig) -> None:
    dv = curated_dataset(rig.engine)
    job_id, _ = trained_job(rig.engine, dv)
    rig.pump()
    append(rig.engine, "deployment", "dep-1", [events_pb2.DeploymentRequested(
        deployment_id="dep-1", model_version_id="support-bot/v1", environment="production")])

    by_deployment = rig.registry.GetLineage(pb.GetLineageRequest(deployment_id="dep-1"), metadata=md(),
                                            timeout=10).lineage
    assert by_deployment.deployment_id == "dep-1" and by_deployment.model_version_id == "support-bot/v1"
    assert by_deployment.job_id == job_id and by_deployment.artifact_sha256 == "a" * 64
    assert by_deployment.dataset_version_id == dv and by_deployment.dataset_manifest_sha256 == "m" * 64
    assert by_deployment.curation_job_id.startswith("cj-") and by_deployment.curation_config_sha256 == "k" * 64
    assert by_deployment.dataset_id.startswith("ds-") and by_deployment.raw_dataset_checksum_sha256 == "r" * 64
    assert by_deployment.raw_dataset_storage_uri == "file:///tenants/acme/tickets"
    assert by_deployment.code_version == "git:1234abcd" and by_deployment.seed == 7
    assert by_deployment.library_versions["torch"] == "2.9.0" and by_deployment.hardware == "cpu: 2 cores"
    assert by_deployment.config_sha256 == "08" * 32 and json.loads(by_deployment.config_json)["lora"]["r"] == 8
    assert by_deployment.base_model_id == "smollm2-135m-instruct" and by_deployment.base_model_sha256 == "b" * 64
    assert by_deployment.requested_by == "alice"

    by_version = rig.registry.GetLineage(pb.GetLineageRequest(model_version_id="support-bot/v1"), metadata=md(),
                                         timeout=10).lineage
    by_job = rig.registry.GetLineage(pb.GetLineageRequest(job_id=job_id), metadata=md(), timeout=10).lineage
    by_version.deployment_id = by_job.deployment_id = "dep-1"
    assert by_version == by_deployment == by_job

    orphan, _ = trained_job(rig.engine, "dv-never-curated", name="orphan")
    for request, needle in [(pb.GetLineageRequest(deployment_id="dep-404"), "deployment 'dep-404'"),
                            (pb.GetLineageRequest(model_version_id="support-bot/v9"), "support-bot/v9"),
                            (pb.GetLineageRequest(job_id=orphan), "dataset version 'dv-never-curated'")]:
        with pytest.raises(grpc.RpcError) as info:
            rig.registry.GetLineage(request, metadata=md(), timeout=10)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND and needle in info.value.details()


# ------------------------------------------------------------------ MLflow


def _mlflow_runs(uri: str) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    return [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]


def test_mlflow_export_round_trips_and_is_idempotent(tmp_path: Path) -> None:
    pytest.importorskip("mlflow")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    rig = _rig(f"sqlite:///{tmp_path}/store.db", tmp_path)
    assert exporter_workers(rig.engine, rig.bus, {}) == []
    assert len(exporter_workers(rig.engine, rig.bus, {"PRIVTUNE_MLFLOW_TRACKING_URI": uri})) == 1
    exporter = MlflowExporter(rig.engine, rig.bus, uri)
    try:
        dv = curated_dataset(rig.engine)
        job_id, _ = trained_job(rig.engine, dv, tags={"model_name": "faq-bot"})
        rig.pump()
        while exporter.poll_and_export(timeout=0.2):  # the exporter sends the finished run
            pass
        run = ExperimentTracker(rig.engine).get_run(_caller(), job_id)
        again = export_run(run, uri)  # and by hand, twice more
        assert export_run(run, uri) == again

        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=uri)
        runs = _mlflow_runs(uri)
        assert [r.info.run_id for r in runs] == [again]
        exported = runs[0]
        assert client.get_experiment(exported.info.experiment_id).name == "privtune/acme/faq-bot"
        assert exported.info.status == "FINISHED"
        assert exported.data.params == dict(run.params)
        tags = exported.data.tags
        assert tags["privtune.run_id"] == job_id and tags["privtune.config_sha256"] == "08" * 32
        assert tags["privtune.dataset_manifest_sha256"] == "m" * 64 and tags["privtune.base_model_sha256"] == "b" * 64
        assert tags["privtune.code_version"] == "git:1234abcd" and tags["privtune.library.torch"] == "2.9.0"
        history = client.get_metric_history(again, "loss")
        assert sorted((m.step, m.value) for m in history) == [(s, 3.0 / s) for s in range(1, 21)]
        assert [m.step for m in client.get_metric_history(again, "eval_loss")] == [5, 10, 15, 20]
        assert client.get_metric_history(again, "final.initial_eval_loss")[0].value == 3.5
        assert "file:///" not in json.dumps({**exported.data.params, **tags})  # no storage paths, no data

        # the CLI path: fetch over gRPC, export from the client
        out = _cli(["runs", "export", job_id, "--mlflow-uri", uri, "--tenant", "acme",
                    "--target", f"127.0.0.1:{rig.server.port}"])
        assert json.loads(out)["mlflow_run_id"] == again
        assert len(_mlflow_runs(uri)) == 1
        assert len(client.get_metric_history(again, "loss")) == 20
    finally:
        exporter.close()
        _close(rig)


def test_mlflow_export_holds_no_store_transaction_and_is_idempotent_on_redelivery(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """While MLflow is being called, other writers commit to the SQLite store; an export that fails after
    MLflow has the run is redelivered and updates the same MLflow run."""
    from mlflow.tracking import MlflowClient
    from sqlalchemy import create_engine

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    store_url = f"sqlite:///{tmp_path}/store.db"
    rig = _rig(store_url, tmp_path)
    other_writer = create_engine(store_url, connect_args={"timeout": 2.0})  # gives up after 2 s of a held lock
    committed: list[str] = []
    failures: list[str] = []
    terminations: list[str] = []
    log_batch, set_terminated = MlflowClient.log_batch, MlflowClient.set_terminated

    def log_batch_while_another_writer_commits(self, run_id, *args, **kwargs):  # type: ignore[no-untyped-def]
        try:
            suffix = uuid.uuid4().hex[:8]
            append(other_writer, "dataset", f"ds-{suffix}", [events_pb2.DatasetRegistered(
                dataset_id=f"ds-{suffix}", name=f"other-{suffix}", storage_uri="file:///tenants/acme/other",
                classification=2, checksum_sha256="o" * 64, file_count=1, total_bytes=1)])
            committed.append(suffix)
        except Exception as exc:  # noqa: BLE001 - what the old exporter caused: "database is locked"
            failures.append(f"{type(exc).__name__}: {exc}")
        return log_batch(self, run_id, *args, **kwargs)

    def set_terminated_fails_once(self, run_id, *args, **kwargs):  # type: ignore[no-untyped-def]
        terminations.append(run_id)
        if len(terminations) == 1:
            raise ConnectionError("MLflow went away after the run was logged")
        return set_terminated(self, run_id, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, "log_batch", log_batch_while_another_writer_commits)
    monkeypatch.setattr(MlflowClient, "set_terminated", set_terminated_fails_once)
    stop = threading.Event()
    exporter = MlflowExporter(rig.engine, rig.bus, uri)
    thread = threading.Thread(target=exporter.run, args=(stop,))
    try:
        dv = curated_dataset(rig.engine)
        job_id, _ = trained_job(rig.engine, dv, tags={"model_name": "faq-bot"})
        rig.pump()
        thread.start()

        def exported() -> bool:
            runs = _mlflow_runs(uri)
            return bool(runs) and runs[0].info.status == "FINISHED"
        wait_until(exported, timeout=120, what="the redelivered export to finish the MLflow run")
    finally:
        stop.set()
        thread.join(timeout=60)
        exporter.close()
        other_writer.dispose()
        _close(rig)
    assert failures == [], f"a writer could not commit while MLflow was called: {failures}"
    assert committed, "MLflow's log_batch was never called"
    assert len(terminations) == 2, terminations  # the failed attempt, then the redelivered one
    runs = _mlflow_runs(uri)
    assert len(runs) == 1 and runs[0].data.tags["privtune.run_id"] == job_id
    client = MlflowClient(tracking_uri=uri)
    history = client.get_metric_history(runs[0].info.run_id, "loss")
    assert sorted((m.step, m.value) for m in history) == [(s, 3.0 / s) for s in range(1, 21)]  # none twice


# ------------------------------------------------------------------ CLI


def _caller():  # type: ignore[no-untyped-def]
    from services.common.identity import Caller

    return Caller("acme", "alice")


def _cli(argv: list[str]) -> str:
    import contextlib
    import io

    parser = argparse.ArgumentParser(prog="privtune")
    cli_registry.add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert args.func(args) == 0
    return out.getvalue()


def test_cli_alias_history_and_lineage(tmp_path: Path) -> None:
    rig = _rig(f"sqlite:///{tmp_path}/store.db", tmp_path)
    try:
        target = ["--tenant", "acme", "--target", f"127.0.0.1:{rig.server.port}"]
        dv = curated_dataset(rig.engine)
        job_id, _ = trained_job(rig.engine, dv)
        rig.pump()
        _cli(["registry", "alias", "support-bot", "production", "support-bot/v1", "--reason", "go live",
              "--actor", "ops", *target])
        history = json.loads(_cli(["registry", "history", "support-bot", *target]))["changes"]
        assert [(c["alias"], c["model_version_id"], c["actor"], c["reason"]) for c in history] == [
            ("production", "support-bot/v1", "ops", "go live")]
        assert json.loads(_cli(["registry", "get", "support-bot@production", *target]))["job_id"] == job_id
        assert json.loads(_cli(["lineage", "--model-version", "support-bot/v1", *target]))["dataset_version_id"] == dv
        assert len(json.loads(_cli(["runs", "list", "--tag", "team=support", *target]))["runs"]) == 1
        with rig.engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(stored_events).where(
                stored_events.c.stream_type == "registered_model")).scalar() == 2
    finally:
        _close(rig)
