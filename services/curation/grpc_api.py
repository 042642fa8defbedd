"""CurationService over gRPC: translate messages, call the application, nothing else."""

from __future__ import annotations

import threading
from typing import Iterator

import grpc

from privtune.v1 import curation_service_pb2 as pb
from privtune.v1 import curation_service_pb2_grpc as pb_grpc
from privtune.v1 import events_pb2
from services.common.grpc_server import ServiceBinding
from services.common.identity import caller_from_metadata
from services.curation.application import CurationApplication
from services.curation.domain import CurationJobState


def job_from_state(s: CurationJobState) -> pb.CurationJob:
    job = pb.CurationJob(job_id=s.job_id, dataset_id=s.dataset_id, recipe=s.recipe, state=s.state,
                         dataset_version_id=s.dataset_version_id, error_code=s.error_code, reason=s.reason)
    job.created_at.FromMilliseconds(s.created_at_ms)
    job.updated_at.FromMilliseconds(s.updated_at_ms)
    return job


def job_from_row(r: dict) -> pb.CurationJob:
    job = pb.CurationJob(job_id=r["job_id"], dataset_id=r["dataset_id"], recipe=r["recipe"], state=r["state"],
                         dataset_version_id=r["dataset_version_id"], error_code=r["error_code"], reason=r["reason"])
    job.created_at.FromMilliseconds(r["created_at_ms"])
    job.updated_at.FromMilliseconds(r["updated_at_ms"])
    return job


class CurationServicer(pb_grpc.CurationServiceServicer):
    def __init__(self, app: CurationApplication, stop: threading.Event) -> None:
        self.app = app
        self.stop = stop

    def CreateCurationJob(self, request: pb.CreateCurationJobRequest, context: grpc.ServicerContext) -> pb.CurationJob:
        caller = caller_from_metadata(context.invocation_metadata())
        correlation = dict(context.invocation_metadata() or ()).get("x-correlation-id", "")
        return job_from_state(self.app.request(caller, request.dataset_id, request.recipe, dict(request.config),
                                               request.request_id, correlation))

    def GetCurationJob(self, request: pb.GetCurationJobRequest, context: grpc.ServicerContext) -> pb.CurationJob:
        caller = caller_from_metadata(context.invocation_metadata())
        return job_from_state(self.app.get(caller, request.job_id))

    def ListCurationJobs(self, request: pb.ListCurationJobsRequest,
                         context: grpc.ServicerContext) -> pb.ListCurationJobsResponse:
        caller = caller_from_metadata(context.invocation_metadata())
        rows, token = self.app.list(caller, request.page_size, request.page_token, request.dataset_id)
        return pb.ListCurationJobsResponse(jobs=[job_from_row(r) for r in rows], next_page_token=token)

    def WatchCurationJob(self, request: pb.WatchCurationJobRequest,
                         context: grpc.ServicerContext) -> Iterator[events_pb2.EventEnvelope]:
        caller = caller_from_metadata(context.invocation_metadata())
        yield from self.app.watch(caller, request.job_id, context.is_active, self.stop)


def binding(app: CurationApplication, stop: threading.Event) -> ServiceBinding:
    return ServiceBinding(full_name=pb.DESCRIPTOR.services_by_name["CurationService"].full_name,
                          servicer=CurationServicer(app, stop),
                          add_to_server=pb_grpc.add_CurationServiceServicer_to_server)
