"""CurationWorkService over gRPC: the claim a curation worker must hold while it curates a job."""

from __future__ import annotations

import grpc

from privtune.v1 import curation_work_service_pb2 as pb
from privtune.v1 import curation_work_service_pb2_grpc as pb_grpc
from services.common.grpc_server import ServiceBinding
from services.common.identity import caller_from_metadata
from services.curation.application import CurationApplication


class CurationWorkServicer(pb_grpc.CurationWorkServiceServicer):
    def __init__(self, app: CurationApplication) -> None:
        self.app = app

    def ClaimCurationJob(self, request: pb.ClaimCurationJobRequest,
                         context: grpc.ServicerContext) -> pb.ClaimCurationJobResponse:
        caller = caller_from_metadata(context.invocation_metadata())
        granted, finished, reason = self.app.claim_job(caller, request.job_id, request.worker_id, request.claim_id,
                                                       request.lease_seconds)
        return pb.ClaimCurationJobResponse(granted=granted, finished=finished, reason=reason)


def binding(app: CurationApplication) -> ServiceBinding:
    return ServiceBinding(full_name=pb.DESCRIPTOR.services_by_name["CurationWorkService"].full_name,
                          servicer=CurationWorkServicer(app),
                          add_to_server=pb_grpc.add_CurationWorkServiceServicer_to_server)
