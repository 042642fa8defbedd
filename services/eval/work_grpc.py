"""EvalWorkService over gRPC: the claim an eval worker must hold while it computes a shard."""

from __future__ import annotations

import grpc

from privtune.v1 import eval_work_service_pb2 as pb
from privtune.v1 import eval_work_service_pb2_grpc as pb_grpc
from services.common.grpc_server import ServiceBinding
from services.common.identity import caller_from_metadata
from services.eval.application import EvalApplication


class EvalWorkServicer(pb_grpc.EvalWorkServiceServicer):
    def __init__(self, app: EvalApplication) -> None:
        self.app = app

    def ClaimEvalShard(self, request: pb.ClaimEvalShardRequest,
                       context: grpc.ServicerContext) -> pb.ClaimEvalShardResponse:
        caller = caller_from_metadata(context.invocation_metadata())
        if request.next_unclaimed:
            granted, finished, reason, command = self.app.claim_next_shard(
                caller, request.eval_id, request.worker_id, request.claim_id, request.lease_seconds)
            return pb.ClaimEvalShardResponse(granted=granted, finished=finished, reason=reason, command=command)
        granted, finished, reason = self.app.claim_shard(caller, request.eval_id, request.shard, request.worker_id,
                                                         request.claim_id, request.lease_seconds)
        return pb.ClaimEvalShardResponse(granted=granted, finished=finished, reason=reason)


def binding(app: EvalApplication) -> ServiceBinding:
    return ServiceBinding(full_name=pb.DESCRIPTOR.services_by_name["EvalWorkService"].full_name,
                          servicer=EvalWorkServicer(app), add_to_server=pb_grpc.add_EvalWorkServiceServicer_to_server)
