"""CurationService over gRPC: translate messages, call the application, nothing else."""

from __future__ import annotations

import threading
from typing import Iterator

import grpc

from privtune.v1 import curation_config_pb2 as config_pb
from privtune.v1 import curation_service_pb2 as pb
from privtune.v1 import curation_service_pb2_grpc as pb_grpc
from services.common.grpc_server import ServiceBinding
from services.common.identity import caller_from_metadata
from services.curation.application import CurationApplication
from services.curation.config import from_message
from services.curation.domain import CurationJobState

_ERROR_CODES = {"InvalidArgument": pb.CURATION_ERROR_CODE_INVALID_ARGUMENT, "NotFound": pb.CURATION_ERROR_CODE_NOT_FOUND,
                "FailedPrecondition": pb.CURATION_ERROR_CODE_FAILED_PRECONDITION,
                "PermissionDenied": pb.CURATION_ERROR_CODE_PERMISSION_DENIED, "internal": pb.CURATION_ERROR_CODE_INTERNAL}


def recipe_value(name: str) -> int:
    """A recorded recipe name as the API's enum (UNSPECIFIED for a name this API version does not know)."""
    values = config_pb.CurationRecipe.DESCRIPTOR.values_by_name
    value = values.get(f"CURATION_RECIPE_{name.upper()}")
    return value.number if value is not None else config_pb.CURATION_RECIPE_UNSPECIFIED


def error_code_value(code: str) -> int:
    """The job's recorded error code (an error class name, or ``internal``) as the API's enum."""
    if not code:
        return pb.CURATION_ERROR_CODE_UNSPECIFIED
    return _ERROR_CODES.get(code, pb.CURATION_ERROR_CODE_INTERNAL)


def job_from_state(s: CurationJobState) -> pb.CurationJob:
    job = pb.CurationJob(job_id=s.job_id, dataset_id=s.dataset_id, recipe=recipe_value(s.recipe), state=s.state,
                         dataset_version_id=s.dataset_version_id, error_code=error_code_value(s.error_code),
                         reason=s.reason, config_sha256=s.config_sha256)
    job.created_at.FromMilliseconds(s.created_at_ms)
    job.updated_at.FromMilliseconds(s.updated_at_ms)
    return job


def job_from_row(r: dict) -> pb.CurationJob:
    job = pb.CurationJob(job_id=r["job_id"], dataset_id=r["dataset_id"], recipe=recipe_value(r["recipe"]),
                         state=r["state"], dataset_version_id=r["dataset_version_id"],
                         error_code=error_code_value(r["error_code"]), reason=r["reason"])
    job.created_at.FromMilliseconds(r["created_at_ms"])
    job.updated_at.FromMilliseconds(r["updated_at_ms"])
    return job


class CurationServicer(pb_grpc.CurationServiceServicer):
    def __init__(self, app: CurationApplication, stop: threading.Event) -> None:
        self.app = app
        self.stop = stop

    def CreateCurationJob(self, request: pb.CreateCurationJobRequest,
                          context: grpc.ServicerContext) -> pb.CreateCurationJobResponse:
        caller = caller_from_metadata(context.invocation_metadata())
        correlation = dict(context.invocation_metadata() or ()).get("x-correlation-id", "")
        state = self.app.request(caller, request.dataset_id, from_message(request.config), request.request_id,
                                 correlation)
        return pb.CreateCurationJobResponse(job=job_from_state(state))

    def GetCurationJob(self, request: pb.GetCurationJobRequest,
                       context: grpc.ServicerContext) -> pb.GetCurationJobResponse:
        caller = caller_from_metadata(context.invocation_metadata())
        return pb.GetCurationJobResponse(job=job_from_state(self.app.get(caller, request.job_id)))

    def ListCurationJobs(self, request: pb.ListCurationJobsRequest,
                         context: grpc.ServicerContext) -> pb.ListCurationJobsResponse:
        caller = caller_from_metadata(context.invocation_metadata())
        rows, token = self.app.list(caller, request.page_size, request.page_token, request.dataset_id)
        return pb.ListCurationJobsResponse(jobs=[job_from_row(r) for r in rows], next_page_token=token)

    def WatchCurationJob(self, request: pb.WatchCurationJobRequest,
                         context: grpc.ServicerContext) -> Iterator[pb.WatchCurationJobResponse]:
        caller = caller_from_metadata(context.invocation_metadata())
        for event in self.app.watch(caller, request.job_id, context.is_active, self.stop):
            yield pb.WatchCurationJobResponse(event=event)


def binding(app: CurationApplication, stop: threading.Event) -> ServiceBinding:
    return ServiceBinding(full_name=pb.DESCRIPTOR.services_by_name["CurationService"].full_name,
                          servicer=CurationServicer(app, stop),
                          add_to_server=pb_grpc.add_CurationServiceServicer_to_server)
