"""ModelRegistryService and ExperimentService over gRPC: translate messages, call the application."""

from __future__ import annotations

import json
import threading
from typing import Any, Mapping

import grpc
from sqlalchemy import Engine

from privtune.v1 import registry_service_pb2 as pb
from privtune.v1 import training_service_pb2 as ts_pb
from privtune.v1 import registry_service_pb2_grpc as pb_grpc
from services.common.grpc_server import ServiceBinding
from services.common.identity import caller_from_metadata, correlation_id_from_metadata
from services.orchestrator.lineage import Lineage, lineage
from services.orchestrator.registry_application import ModelVersionDetails, RegistryApplication
from services.orchestrator.registry_domain import AliasChange, model_name_from
from services.orchestrator.tracker import ExperimentTracker, Run, RunComparison



# fields ModelVersion shares with ModelVersionRegistered and with model_version_view
VERSION_FIELDS = ("model_version_id", "model_name", "version", "artifact_uri", "artifact_sha256", "job_id",
                  "base_model_id", "base_model_sha256", "dataset_version_id", "dataset_manifest_sha256",
                  "config_sha256", "code_version")


def _enum_value(enum: Any, prefix: str, name: str) -> int:
    """``name`` as a value of ``enum`` (0, UNSPECIFIED, for a name this API version does not know)."""
    value = enum.DESCRIPTOR.values_by_name.get(f"{prefix}{name.upper()}")
    return value.number if value is not None else 0


def kind_value(kind: str) -> int:
    """``adapter`` / ``merged`` / ``full`` as the API's ModelArtifactKind."""
    return _enum_value(pb.ModelArtifactKind, "MODEL_ARTIFACT_KIND_", kind)


def state_value(state: str) -> int:
    """A run's state (its job's, ``succeeded``...) as the API's TrainingJobState."""
    return _enum_value(ts_pb.TrainingJobState, "TRAINING_JOB_STATE_", state)


def state_name(value: int) -> str:
    values = ts_pb.TrainingJobState.DESCRIPTOR.values_by_number
    return values[value].name.removeprefix("TRAINING_JOB_STATE_").lower() if value in values and value else ""


def version_from_details(d: ModelVersionDetails) -> pb.ModelVersion:
    e = d.version.registered
    msg = pb.ModelVersion(**{f: getattr(e, f) for f in VERSION_FIELDS}, metrics=dict(e.metrics),
                          aliases=list(d.aliases), evaluation=dict(d.evaluation),
                          evaluation_passed=d.evaluation_passed, registered_by=d.version.registered_by,
                          kind=kind_value(e.kind))
    msg.registered_at.FromMilliseconds(d.version.registered_at_ms)
    return msg


def version_from_row(r: Mapping[str, Any]) -> pb.ModelVersion:
    msg = pb.ModelVersion(**{f: r[f] for f in VERSION_FIELDS}, metrics=json.loads(r["metrics_json"]),
                          aliases=json.loads(r["aliases_json"]), evaluation=json.loads(r["evaluation_json"]),
                          evaluation_passed=bool(r["evaluation_passed"]), registered_by=r["registered_by"],
                          kind=kind_value(r["kind"]))
    msg.registered_at.FromMilliseconds(r["registered_at_ms"])
    return msg


def alias_change_to_proto(model_name: str, c: AliasChange) -> pb.AliasChange:
    msg = pb.AliasChange(model_name=model_name, alias=c.alias, model_version_id=c.model_version_id,
                         previous_model_version_id=c.previous_model_version_id, actor=c.actor, reason=c.reason)
    msg.changed_at.FromMilliseconds(c.changed_at_ms)
    return msg


def lineage_to_proto(x: Lineage) -> pb.Lineage:
    fields = dict(x.__dict__)
    fields["library_versions"] = dict(x.library_versions)
    return pb.Lineage(**fields)


def run_to_proto(run: Run) -> pb.Run:
    msg = pb.Run(
        run_id=run.run_id, name=run.name, state=state_value(run.state), params=dict(run.params), metrics=dict(run.metrics),
        series=[pb.RunMetricSeries(name=name, points=[pb.RunMetricPoint(step=step, value=value)
                                                      for step, value, _ in points])
                for name, points in sorted(run.series.items())],
        tags=dict(run.tags), dataset_manifest_sha256=run.dataset_manifest_sha256, base_model_id=run.base_model_id,
        base_model_sha256=run.base_model_sha256, code_version=run.code_version,
        library_versions=dict(run.library_versions), seed=run.seed, hardware=run.hardware)
    if run.started_at_ms:
        msg.started_at.FromMilliseconds(run.started_at_ms)
    if run.ended_at_ms:
        msg.ended_at.FromMilliseconds(run.ended_at_ms)
    return msg


def run_from_proto(msg: pb.Run, tenant_id: str, config_sha256: str = "", requested_by: str = "") -> Run:
    """The tracker's run from the API message (e.g. to export it to MLflow from a client).

    The message carries neither the tenant nor the config hash (pass them), nor when each
    metric point was measured (they get the run's start time).
    """
    started = msg.started_at.ToMilliseconds() if msg.HasField("started_at") else 0
    ended = msg.ended_at.ToMilliseconds() if msg.HasField("ended_at") else 0
    return Run(
        run_id=msg.run_id, tenant_id=tenant_id, name=msg.name,
        model_name=model_name_from(msg.tags, msg.name, msg.run_id), state=state_name(msg.state), params=dict(msg.params),
        metrics=dict(msg.metrics),
        series={s.name: [(p.step, p.value, started) for p in s.points] for s in msg.series},
        tags=dict(msg.tags), dataset_version_id=msg.params.get("dataset_version_id", ""),
        dataset_manifest_sha256=msg.dataset_manifest_sha256, base_model_id=msg.base_model_id,
        base_model_sha256=msg.base_model_sha256, code_version=msg.code_version,
        library_versions=dict(msg.library_versions), seed=msg.seed, hardware=msg.hardware,
        config_sha256=config_sha256, requested_by=requested_by, started_at_ms=started, ended_at_ms=ended)


def comparison_to_proto(c: RunComparison) -> pb.CompareRunsResponse:
    return pb.CompareRunsResponse(runs=[run_to_proto(r) for r in c.runs], differing_params=c.differing_params,
                            metric_names=c.metric_names)


class ModelRegistryServicer(pb_grpc.ModelRegistryServiceServicer):
    def __init__(self, app: RegistryApplication, engine: Engine) -> None:
        self.app = app
        self.engine = engine

    def ListModelVersions(self, request: pb.ListModelVersionsRequest,
                          context: grpc.ServicerContext) -> pb.ListModelVersionsResponse:
        caller = caller_from_metadata(context.invocation_metadata())
        rows, token = self.app.list_versions(caller, request.model_name, request.page_size, request.page_token)
        return pb.ListModelVersionsResponse(versions=[version_from_row(r) for r in rows], next_page_token=token)

    def GetModelVersion(self, request: pb.GetModelVersionRequest,
                        context: grpc.ServicerContext) -> pb.GetModelVersionResponse:
        caller = caller_from_metadata(context.invocation_metadata())
        return pb.GetModelVersionResponse(
            model_version=version_from_details(self.app.get_version(caller, request.model_version_id)))

    def SetModelAlias(self, request: pb.SetModelAliasRequest,
                      context: grpc.ServicerContext) -> pb.SetModelAliasResponse:
        caller = caller_from_metadata(context.invocation_metadata())
        details = self.app.set_alias(caller, request.model_name, request.alias, request.model_version_id,
                                     request.reason, correlation_id=correlation_id_from_metadata(context.invocation_metadata()))
        return pb.SetModelAliasResponse(model_version=version_from_details(details) if details else
                                        pb.ModelVersion(model_name=request.model_name))

    def ListAliasHistory(self, request: pb.ListAliasHistoryRequest,
                         context: grpc.ServicerContext) -> pb.ListAliasHistoryResponse:
        caller = caller_from_metadata(context.invocation_metadata())
        changes = self.app.alias_history(caller, request.model_name, request.alias)
        return pb.ListAliasHistoryResponse(changes=[alias_change_to_proto(request.model_name, c) for c in changes])

    def GetLineage(self, request: pb.GetLineageRequest, context: grpc.ServicerContext) -> pb.GetLineageResponse:
        caller = caller_from_metadata(context.invocation_metadata())
        return pb.GetLineageResponse(lineage=lineage_to_proto(lineage(
            self.engine, caller.tenant_id, deployment_id=request.deployment_id,
            model_version_id=request.model_version_id, job_id=request.job_id)))


class ExperimentServicer(pb_grpc.ExperimentServiceServicer):
    def __init__(self, tracker: ExperimentTracker) -> None:
        self.tracker = tracker

    def GetRun(self, request: pb.GetRunRequest, context: grpc.ServicerContext) -> pb.GetRunResponse:
        caller = caller_from_metadata(context.invocation_metadata())
        return pb.GetRunResponse(run=run_to_proto(self.tracker.get_run(caller, request.run_id)))

    def ListRuns(self, request: pb.ListRunsRequest, context: grpc.ServicerContext) -> pb.ListRunsResponse:
        caller = caller_from_metadata(context.invocation_metadata())
        runs, token = self.tracker.list_runs(caller, dict(request.tags), request.page_size, request.page_token)
        return pb.ListRunsResponse(runs=[run_to_proto(r) for r in runs], next_page_token=token)

    def CompareRuns(self, request: pb.CompareRunsRequest, context: grpc.ServicerContext) -> pb.CompareRunsResponse:
        caller = caller_from_metadata(context.invocation_metadata())
        return comparison_to_proto(self.tracker.compare_runs(caller, list(request.run_ids)))


def bindings(registry_app: RegistryApplication, engine: Engine, stop: threading.Event) -> list[ServiceBinding]:
    """Both services; ``stop`` is unused for now (neither has a server stream)."""
    return [
        ServiceBinding(full_name=pb.DESCRIPTOR.services_by_name["ModelRegistryService"].full_name,
                       servicer=ModelRegistryServicer(registry_app, engine),
                       add_to_server=pb_grpc.add_ModelRegistryServiceServicer_to_server),
        ServiceBinding(full_name=pb.DESCRIPTOR.services_by_name["ExperimentService"].full_name,
                       servicer=ExperimentServicer(ExperimentTracker(engine)),
                       add_to_server=pb_grpc.add_ExperimentServiceServicer_to_server),
    ]
