"""DeploymentService over gRPC: translate messages, call the application, nothing else."""

from __future__ import annotations

import grpc

from privtune.v1 import deployment_service_pb2 as pb
from privtune.v1 import deployment_service_pb2_grpc as pb_grpc
from services.common.grpc_server import ServiceBinding
from services.common.identity import caller_from_metadata
from services.deploy import deployment_domain as domain
from services.deploy.application import DeploymentApplication
from services.deploy.deployment_view import STATE_NUMBERS


def deployment_message(s: domain.DeploymentState, gateway_url: str = "") -> pb.Deployment:
    r = s.request
    d = pb.Deployment(
        deployment_id=s.deployment_id, model_version_id=r.model_version_id, environment=r.environment,
        strategy=r.strategy, state=STATE_NUMBERS.get(s.state, 0), endpoint_name=r.endpoint_name,
        requested_by=r.requested_by, approver=s.approver, pool=s.pool,
        previous_model_version_id=s.previous_model_version_id, gates_passed=list(s.gates_passed),
        weight_percent=s.weight_percent, drain_seconds=r.drain_seconds, verify_seconds=r.verify_seconds,
        rollback_on_regression=r.rollback_on_regression, canary_steps_percent=list(r.canary_steps_percent),
        gateway_url=gateway_url, eval_id=r.eval_id)
    d.metric_gates.CopyFrom(r.metric_gates)
    if s.rolled_back is not None:
        d.rollback_trigger, d.reason = s.rolled_back.trigger, s.rolled_back.reason
    if s.failed is not None:
        d.error_code, d.reason = s.failed.error_code, s.failed.reason
    d.created_at.FromMilliseconds(s.created_at_ms)
    d.updated_at.FromMilliseconds(s.updated_at_ms)
    return d


def row_message(r: dict, gateway_url: str = "") -> pb.Deployment:
    d = pb.Deployment(
        deployment_id=r["deployment_id"], model_version_id=r["model_version_id"], environment=r["environment"],
        strategy=r["strategy"], state=r["state"], endpoint_name=r["endpoint_name"], requested_by=r["requested_by"],
        approver=r["approver"], pool=r["pool"], weight_percent=r["weight_percent"],
        previous_model_version_id=r["previous_model_version_id"], rollback_trigger=r["rollback_trigger"],
        reason=r["reason"], error_code=r["error_code"], gateway_url=gateway_url)
    d.created_at.FromMilliseconds(r["created_at_ms"])
    d.updated_at.FromMilliseconds(r["updated_at_ms"])
    return d


class DeploymentServicer(pb_grpc.DeploymentServiceServicer):
    def __init__(self, app: DeploymentApplication) -> None:
        self.app = app

    def CreateDeployment(self, request: pb.CreateDeploymentRequest,
                         context: grpc.ServicerContext) -> pb.CreateDeploymentResponse:
        caller = caller_from_metadata(context.invocation_metadata())
        state = self.app.create(
            caller, model_version_id=request.model_version_id, environment=request.environment,
            strategy=request.strategy, canary_steps_percent=list(request.canary_steps_percent),
            drain_seconds=request.traffic_switch.drain_seconds if request.traffic_switch.HasField("drain_seconds")
            else None, rollback_on_regression=request.rollback_on_regression, metric_gates=request.metric_gates,
            endpoint_name=request.endpoint_name,
            verify_seconds=request.verify_seconds if request.HasField("verify_seconds") else None,
            request_id=request.request_id)
        return pb.CreateDeploymentResponse(deployment=deployment_message(state, self.app.gateway_url))

    def ApproveDeployment(self, request: pb.ApproveDeploymentRequest,
                          context: grpc.ServicerContext) -> pb.ApproveDeploymentResponse:
        caller = caller_from_metadata(context.invocation_metadata())
        state = self.app.approve(caller, request.deployment_id)
        return pb.ApproveDeploymentResponse(deployment=deployment_message(state, self.app.gateway_url))

    def RollbackDeployment(self, request: pb.RollbackDeploymentRequest,
                           context: grpc.ServicerContext) -> pb.RollbackDeploymentResponse:
        caller = caller_from_metadata(context.invocation_metadata())
        state = self.app.rollback(caller, request.deployment_id, request.reason)
        return pb.RollbackDeploymentResponse(deployment=deployment_message(state, self.app.gateway_url))

    def GetDeployment(self, request: pb.GetDeploymentRequest, context: grpc.ServicerContext) -> pb.GetDeploymentResponse:
        caller = caller_from_metadata(context.invocation_metadata())
        state = self.app.get(caller, request.deployment_id)
        return pb.GetDeploymentResponse(deployment=deployment_message(state, self.app.gateway_url))

    def ListDeployments(self, request: pb.ListDeploymentsRequest,
                        context: grpc.ServicerContext) -> pb.ListDeploymentsResponse:
        caller = caller_from_metadata(context.invocation_metadata())
        rows, token = self.app.list(caller, request.page_size, request.page_token, request.endpoint_name)
        return pb.ListDeploymentsResponse(deployments=[row_message(r, self.app.gateway_url) for r in rows],
                                          next_page_token=token)

    def GetServedRequest(self, request: pb.GetServedRequestRequest,
                         context: grpc.ServicerContext) -> pb.GetServedRequestResponse:
        caller = caller_from_metadata(context.invocation_metadata())
        r = self.app.served(caller, request.request_id)
        served = pb.ServedRequest(request_id=r["request_id"], endpoint_name=r["endpoint_name"],
                                  model_version_id=r["model_version_id"], deployment_id=r["deployment_id"],
                                  pool=r["pool"], routing_version=r["routing_version"], status=r["status"],
                                  seconds=r["seconds"], stream=bool(r["stream"]), principal=r["principal"])
        served.at.FromMilliseconds(r["at_ms"])
        return pb.GetServedRequestResponse(request=served)


def binding(app: DeploymentApplication) -> ServiceBinding:
    return ServiceBinding(full_name=pb.DESCRIPTOR.services_by_name["DeploymentService"].full_name,
                          servicer=DeploymentServicer(app),
                          add_to_server=pb_grpc.add_DeploymentServiceServicer_to_server)
