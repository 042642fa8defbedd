"""EvalService over gRPC: translate messages, call the application, nothing else."""

from __future__ import annotations

import threading
from typing import Iterator

import grpc

from privtune.v1 import eval_service_pb2 as pb
from privtune.v1 import eval_service_pb2_grpc as pb_grpc
from privtune.v1 import events_pb2
from services.common.grpc_server import ServiceBinding
from services.common.identity import caller_from_metadata
from services.eval.application import EvalApplication
from services.eval.domain import EvalRunState
from services.eval.suites import SuiteOptions

_OPTION_FIELDS = ("include_general", "general_per_category", "include_safety", "max_domain_items",
                  "extraction_items", "safety_per_category")


def suite_options(message: pb.EvalSuiteOptions) -> SuiteOptions:
    """The request's options over the defaults (unset fields keep them)."""
    values = {name: getattr(message, name) for name in _OPTION_FIELDS if message.HasField(name)}
    try:
        return SuiteOptions(seed=message.seed, **values)
    except ValueError as exc:
        from services.common.errors import InvalidArgument

        raise InvalidArgument(str(exc), field="options") from None


def suite_message(e: events_pb2.EvalSuiteCreated) -> pb.EvalSuite:
    return pb.EvalSuite(suite_id=e.suite_id, name=e.name, uri=e.uri, manifest_sha256=e.manifest_sha256,
                        item_count=e.item_count, counts=dict(e.counts), dataset_version_id=e.dataset_version_id,
                        canaries=e.canaries)


def run_message(s: EvalRunState, shards_done: int) -> pb.EvalRun:
    r = s.request
    run = pb.EvalRun(eval_id=s.eval_id, state=s.state, model_version_id=r.model_version_id, suite_id=r.suite_id,
                     job_id=r.job_id, shards_total=r.shard_count, shards_done=shards_done, judge=r.judge,
                     item_count=r.item_count, trigger=r.trigger)
    if s.completed is not None:
        c = s.completed
        run.passed = c.passed
        run.metrics.update(dict(c.metrics))
        run.estimates.extend(c.estimates)
        run.gates.extend(c.gates)
        run.reason = c.reason
        run.report_uri = c.report_uri
    if s.failed is not None:
        run.reason, run.error_code = s.failed.reason, s.failed.error_code
    run.created_at.FromMilliseconds(s.created_at_ms)
    run.updated_at.FromMilliseconds(s.updated_at_ms)
    return run


def run_from_row(r: dict) -> pb.EvalRun:
    """A ListEvalRuns row: GetEvalRun's fields less metrics, estimates and gates (the read model has none)."""
    run = pb.EvalRun(eval_id=r["eval_id"], state=r["state"], model_version_id=r["model_version_id"],
                     suite_id=r["suite_id"], job_id=r["job_id"], shards_total=r["shards_total"],
                     shards_done=r["shards_done"], passed=bool(r["passed"]), reason=r["reason"],
                     report_uri=r["report_uri"], judge=r["judge"], trigger=r["trigger"],
                     item_count=r["item_count"], error_code=r["error_code"])
    run.created_at.FromMilliseconds(r["created_at_ms"])
    run.updated_at.FromMilliseconds(r["updated_at_ms"])
    return run


class EvalServicer(pb_grpc.EvalServiceServicer):
    def __init__(self, app: EvalApplication, stop: threading.Event) -> None:
        self.app = app
        self.stop = stop

    def CreateEvalSuite(self, request: pb.CreateEvalSuiteRequest,
                        context: grpc.ServicerContext) -> pb.CreateEvalSuiteResponse:
        caller = caller_from_metadata(context.invocation_metadata())
        correlation = dict(context.invocation_metadata() or ()).get("x-correlation-id", "")
        suite = self.app.create_suite(caller, request.name, request.dataset_version_id,
                                      suite_options(request.options), correlation)
        return pb.CreateEvalSuiteResponse(suite=suite_message(suite))

    def GetEvalSuite(self, request: pb.GetEvalSuiteRequest, context: grpc.ServicerContext) -> pb.GetEvalSuiteResponse:
        caller = caller_from_metadata(context.invocation_metadata())
        return pb.GetEvalSuiteResponse(suite=suite_message(self.app.get_suite(caller, request.suite_id)))

    def CreateEvalRun(self, request: pb.CreateEvalRunRequest, context: grpc.ServicerContext) -> pb.CreateEvalRunResponse:
        caller = caller_from_metadata(context.invocation_metadata())
        correlation = dict(context.invocation_metadata() or ()).get("x-correlation-id", "")
        state = self.app.request_run(caller, request.model_version_id, request.suite_id, request.gates,
                                     request.judge, request.generation,
                                     request.shard_size if request.HasField("shard_size") else 0,
                                     request.request_id, correlation)
        return pb.CreateEvalRunResponse(run=run_message(state, self.app.shards_done(caller.tenant_id, state.eval_id)))

    def GetEvalRun(self, request: pb.GetEvalRunRequest, context: grpc.ServicerContext) -> pb.GetEvalRunResponse:
        caller = caller_from_metadata(context.invocation_metadata())
        state = self.app.get(caller, request.eval_id)
        return pb.GetEvalRunResponse(run=run_message(state, self.app.shards_done(caller.tenant_id, state.eval_id)))

    def ListEvalRuns(self, request: pb.ListEvalRunsRequest, context: grpc.ServicerContext) -> pb.ListEvalRunsResponse:
        caller = caller_from_metadata(context.invocation_metadata())
        rows, token = self.app.list(caller, request.page_size, request.page_token, request.model_version_id)
        return pb.ListEvalRunsResponse(runs=[run_from_row(r) for r in rows], next_page_token=token)

    def WatchEvalRun(self, request: pb.WatchEvalRunRequest,
                     context: grpc.ServicerContext) -> Iterator[pb.WatchEvalRunResponse]:
        caller = caller_from_metadata(context.invocation_metadata())
        for event in self.app.watch(caller, request.eval_id, context.is_active, self.stop):
            yield pb.WatchEvalRunResponse(event=event)


def binding(app: EvalApplication, stop: threading.Event) -> ServiceBinding:
    return ServiceBinding(full_name=pb.DESCRIPTOR.services_by_name["EvalService"].full_name,
                          servicer=EvalServicer(app, stop), add_to_server=pb_grpc.add_EvalServiceServicer_to_server)
