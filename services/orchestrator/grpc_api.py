"""TrainingService over gRPC: translate messages, call the application, nothing else."""

from __future__ import annotations

import threading
from typing import Iterator

import grpc

from privtune.v1 import training_service_pb2 as pb
from privtune.v1 import training_service_pb2_grpc as pb_grpc
from services.common.grpc_server import ServiceBinding
from services.common.identity import caller_from_metadata, correlation_id_from_metadata
from services.orchestrator.application import TrainingJobApplication
from services.orchestrator.job_domain import TrainingJobState



def job_from_state(s: TrainingJobState) -> pb.TrainingJob:
    r = s.request
    job = pb.TrainingJob(
        job_id=s.job_id, name=s.name, state=s.state, base_model_id=r.base_model_id,
        dataset_version_id=r.dataset_version_id, method=r.method, lora_config=r.lora_config, qlora=r.qlora,
        gpu_pool=s.gpu_pool, hyperparameters=r.hyperparameters, dp=r.dp, evaluation_suite_id=r.evaluation_suite_id,
        experiment_tags=dict(r.experiment_tags), step=s.step, loss=s.loss, last_checkpoint_id=s.last_checkpoint_id,
        artifact_uri=s.artifact_uri, artifact_sha256=s.artifact_sha256, reason=s.reason, priority=s.priority,
        attempt=s.attempt, gpus=s.gpus, estimate=s.estimate, violations=list(s.violations),
        epsilon_spent=s.epsilon_spent, policy_version=s.policy_version, total_steps=s.total_steps,
        eval_loss=s.eval_loss)
    job.created_at.FromMilliseconds(s.created_at_ms)
    job.updated_at.FromMilliseconds(s.updated_at_ms)
    return job


def job_from_row(r: dict) -> pb.TrainingJob:
    job = pb.TrainingJob(job_id=r["job_id"], name=r["name"], state=r["state"], base_model_id=r["base_model_id"],
                         dataset_version_id=r["dataset_version_id"], method=r["method"], gpu_pool=r["gpu_pool"],
                         step=r["step"], loss=r["loss"], reason=r["reason"], priority=r["priority"],
                         attempt=r["attempt"], gpus=r["gpus"], epsilon_spent=r["epsilon_spent"],
                         total_steps=r["total_steps"])
    job.created_at.FromMilliseconds(r["created_at_ms"])
    job.updated_at.FromMilliseconds(r["updated_at_ms"])
    return job


class TrainingServicer(pb_grpc.TrainingServiceServicer):
    def __init__(self, app: TrainingJobApplication, stop: threading.Event) -> None:
        self.app = app
        self.stop = stop

    def CreateTrainingJob(self, request: pb.CreateTrainingJobRequest,
                          context: grpc.ServicerContext) -> pb.CreateTrainingJobResponse:
        caller = caller_from_metadata(context.invocation_metadata())
        state, position = self.app.create(caller, request,
                                          correlation_id=correlation_id_from_metadata(context.invocation_metadata()))
        return pb.CreateTrainingJobResponse(job=job_from_state(state), position=position)

    def GetTrainingJob(self, request: pb.GetTrainingJobRequest,
                       context: grpc.ServicerContext) -> pb.GetTrainingJobResponse:
        caller = caller_from_metadata(context.invocation_metadata())
        return pb.GetTrainingJobResponse(job=job_from_state(self.app.get(caller, request.job_id)))

    def ListTrainingJobs(self, request: pb.ListTrainingJobsRequest,
                         context: grpc.ServicerContext) -> pb.ListTrainingJobsResponse:
        caller = caller_from_metadata(context.invocation_metadata())
        rows, token, position = self.app.list(caller, request.page_size, request.page_token, request.state,
                                              request.min_position)
        return pb.ListTrainingJobsResponse(jobs=[job_from_row(r) for r in rows], next_page_token=token,
                                           position=position)

    def CancelTrainingJob(self, request: pb.CancelTrainingJobRequest,
                          context: grpc.ServicerContext) -> pb.CancelTrainingJobResponse:
        caller = caller_from_metadata(context.invocation_metadata())
        state, position = self.app.cancel(caller, request.job_id, request.reason,
                                          correlation_id_from_metadata(context.invocation_metadata()))
        return pb.CancelTrainingJobResponse(job=job_from_state(state), position=position)

    def WatchTrainingJob(self, request: pb.WatchTrainingJobRequest,
                         context: grpc.ServicerContext) -> Iterator[pb.WatchTrainingJobResponse]:
        caller = caller_from_metadata(context.invocation_metadata())
        for event in self.app.watch(caller, request.job_id, context.is_active, self.stop):
            yield pb.WatchTrainingJobResponse(event=event)

    def EstimateTrainingJob(self, request: pb.EstimateTrainingJobRequest,
                            context: grpc.ServicerContext) -> pb.EstimateTrainingJobResponse:
        caller = caller_from_metadata(context.invocation_metadata())
        return self.app.estimate(caller, request.spec)

    def GetPrivacyLedger(self, request: pb.GetPrivacyLedgerRequest,
                         context: grpc.ServicerContext) -> pb.GetPrivacyLedgerResponse:
        caller = caller_from_metadata(context.invocation_metadata())
        return pb.GetPrivacyLedgerResponse(ledger=self.app.privacy_ledger(caller, request.month))


def binding(app: TrainingJobApplication, stop: threading.Event) -> ServiceBinding:
    return ServiceBinding(full_name=pb.DESCRIPTOR.services_by_name["TrainingService"].full_name,
                          servicer=TrainingServicer(app, stop),
                          add_to_server=pb_grpc.add_TrainingServiceServicer_to_server)
