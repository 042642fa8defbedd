"""TrainingAttemptService over gRPC: the claim a worker must win before it runs an attempt."""

from __future__ import annotations

import logging

import grpc

from privtune.v1 import training_attempt_service_pb2 as pb
from privtune.v1 import training_attempt_service_pb2_grpc as pb_grpc
from services.common.grpc_server import ServiceBinding
from services.common.auth.roles import ATTEMPT
from services.common.errors import PermissionDenied
from services.common.identity import Caller, caller_from_metadata
from services.orchestrator.application import TrainingJobApplication
from services.orchestrator.executors.kubernetes_credentials import pod_identity_name
from services.orchestrator.executors.kubernetes_names import workload_name

log = logging.getLogger(__name__)
# UNSPECIFIED: any executor (older workers); an unknown value matches none
EXECUTORS = {pb.TRAINING_EXECUTOR_UNSPECIFIED: "", pb.TRAINING_EXECUTOR_LOCAL: "local",
             pb.TRAINING_EXECUTOR_KUBERNETES: "kubernetes"}


def check_attempt_certificate(caller: Caller, job_id: str, worker_id: str, attempt: int) -> None:
    """A Kubernetes pod's per-attempt certificate claims only the attempt it was issued for: its name is
    the attempt's workload name, which hashes tenant and job, so a leaked pod key can claim no other
    attempt, job or tenant, and pose as no other worker.

    Raises:
        PermissionDenied: reason WORKER_IDENTITY_MISMATCH.
    """
    if ATTEMPT not in caller.roles:
        return
    expected = pod_identity_name(workload_name(job_id, caller.tenant_id, attempt))
    if caller.actor != f"worker:{expected}" or worker_id != expected:
        raise PermissionDenied(f"certificate {caller.actor.split(':', 1)[-1][:80]} was issued for one attempt and "
                               f"may claim only it, as its own worker; this claim names tenant {caller.tenant_id}, "
                               f"job {job_id[:64]!r}, attempt {attempt}, worker {worker_id[:64]!r}",
                               reason="WORKER_IDENTITY_MISMATCH")


class TrainingAttemptServicer(pb_grpc.TrainingAttemptServiceServicer):
    def __init__(self, app: TrainingJobApplication) -> None:
        self.app = app

    def ClaimAttempt(self, request: pb.ClaimAttemptRequest, context: grpc.ServicerContext) -> pb.ClaimAttemptResponse:
        caller = caller_from_metadata(context.invocation_metadata())
        check_attempt_certificate(caller, request.job_id, request.worker_id, request.attempt)
        decision, state = self.app.claim_attempt(caller, request.job_id, request.attempt, request.worker_id,
                                                 request.claim_id, EXECUTORS.get(request.executor, "?"))
        if not decision.granted:
            log.info("training job %s: %s lost the claim on attempt %d: %s", request.job_id[:64],
                     request.worker_id[:64], request.attempt, decision.reason)
            return pb.ClaimAttemptResponse(granted=False, reason=decision.reason)
        return pb.ClaimAttemptResponse(granted=True, request=state.request,
                                       resume_from_checkpoint_id=state.last_checkpoint_id,
                                       correlation_id=state.correlation_id)


def binding(app: TrainingJobApplication) -> ServiceBinding:
    return ServiceBinding(full_name=pb.DESCRIPTOR.services_by_name["TrainingAttemptService"].full_name,
                          servicer=TrainingAttemptServicer(app),
                          add_to_server=pb_grpc.add_TrainingAttemptServiceServicer_to_server)
