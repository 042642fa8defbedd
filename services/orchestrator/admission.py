"""Admission: turn a job request into a worker spec, size it, and check it against policy and budgets.

Used by ``CreateTrainingJob`` (which then records the outcome) and by
``EstimateTrainingJob`` / ``privtune estimate`` (which only reports it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from pydantic import ValidationError
from sqlalchemy import Engine, bindparam, func, select

from privtune.v1 import events_pb2
from privtune.v1 import training_service_pb2 as api
from services.common import eventstore
from services.common.errors import FieldViolation, InvalidArgument
from services.common.eval_gates import check_gates, check_suite_id
from services.common.store.schema import training_job_view, unique_names
from services.common.store.engine import reader
from services.common.training_spec import TrainingSpec, from_request
from services.common.validation import field_path
from services.orchestrator import catalog, job_domain, ledger
from services.orchestrator.estimate import Estimate, estimate, fitting_methods, lora_targets
from services.orchestrator.gpu_types import gpu_type
from services.orchestrator.policy import AdmissionRequest, Violation, evaluate, resolve_method
from services.orchestrator.policy_files import LoadedPolicy, load_policy
from services.orchestrator.settings import OrchestratorSettings

METHOD_NAMES = {v: k.removeprefix("TRAINING_METHOD_").lower()
                for k, v in events_pb2.TrainingMethod.items() if v}
METHOD_ENUM = {name: value for value, name in METHOD_NAMES.items()}
REQUEST_KIND = "training-request"  # unique_names kind of CreateTrainingJob's request ids


@dataclass(frozen=True)
class Admission:
    """Everything decided about a request before anything is written."""

    request: events_pb2.TrainingRequested
    spec: TrainingSpec
    estimate: Estimate
    violations: tuple[Violation, ...]
    policy: LoadedPolicy
    method_note: str
    fitting: tuple[str, ...]
    privacy: ledger.PlannedPrivacy | None
    month: str
    ledger_state: ledger.LedgerState | None = None  # the month's ledger judged against (a DP job's only)
    created_by: str = ""  # the job the request id given to ``admit`` created already, as read with the version

    @property
    def admitted(self) -> bool:
        return not self.violations

    def queued_event(self) -> events_pb2.TrainingQueued:
        r = self.request
        return events_pb2.TrainingQueued(job_id=r.job_id, gpu_pool=r.gpu_pool, attempt=1, reason="admitted",
                                         priority=r.priority, gpus=r.gpus, estimate=self.estimate_proto(),
                                         policy_version=self.policy.version, policy_sha256=self.policy.sha256)

    def estimate_proto(self) -> events_pb2.ResourceEstimate:
        proto = self.estimate.to_proto()
        if self.privacy is not None:
            proto.planned_epsilon = self.privacy.epsilon
            proto.noise_multiplier = self.privacy.noise_multiplier
        return proto


# where each TrainingSpec field comes from in a TrainingJobSpec (for field violations)
_SPEC_PATHS = {
    **{name: f"spec.hyperparameters.{name}" for name in (
        "learning_rate", "epochs", "micro_batch_size", "gradient_accumulation_steps", "max_seq_length",
        "warmup_steps", "max_grad_norm", "seed", "max_steps", "packing")},
    **{name: f"spec.options.{name}" for name in api.TrainingOptions.DESCRIPTOR.fields_by_name},
    "lora": "spec.lora_config", "dp": "spec.dp", "method": "spec.method", "num_processes": "spec.gpus",
    "base_model": "spec.base_model_id", "dataset_uri": "spec.dataset_version_id",
}


def _spec_request(job_id: str, tenant_id: str, req: api.TrainingJobSpec, method: str,
                  dataset_uri: str) -> TrainingSpec:
    """The worker spec for the request (typed fields, then the set ``options`` on top)."""
    typed = events_pb2.TrainingRequested(
        job_id=job_id, base_model_id=req.base_model_id, method=METHOD_ENUM[method], lora_config=req.lora_config,
        qlora=method == "qlora", hyperparameters=req.hyperparameters, dp=req.dp, dataset_uri=dataset_uri)
    try:
        spec = from_request(typed, tenant_id)
        body: dict[str, Any] = spec.model_dump(mode="json")
        body.update({field.name: value for field, value in req.options.ListFields()})
        body["num_processes"] = req.gpus or body.get("num_processes", 1)
        spec = TrainingSpec.model_validate(body)
    except ValidationError as exc:
        fields = [FieldViolation(_spec_path(tuple(e["loc"])), e["msg"]) for e in exc.errors()]
        problems = "; ".join(f"{f.field}: {f.description}" for f in fields)
        raise InvalidArgument(f"invalid training configuration: {problems}", reason="INVALID_TRAINING_CONFIG",
                              fields=fields) from None
    except ValueError as exc:
        raise InvalidArgument(f"invalid training configuration: {exc}", reason="INVALID_TRAINING_CONFIG",
                              field="spec") from None
    try:  # the estimate sizes the adapter on these (and on them for the methods that would fit): named here
        lora_targets(spec)
    except ValueError as exc:
        raise InvalidArgument(f"invalid training configuration: {exc}", reason="INVALID_TRAINING_CONFIG",
                              field="spec.lora_config.target_modules") from None
    return spec


def _spec_path(loc: tuple[int | str, ...]) -> str:
    """The request path of a TrainingSpec validation error's location."""
    if not loc:
        return "spec"
    head = _SPEC_PATHS.get(str(loc[0]), f"spec.{loc[0]}")
    return field_path(head, loc[1:])


_V = training_job_view.c
_U = unique_names.c
# the dataset version's catalog row, the tenant's GPU hours of the month (every job but this one that was not
# rejected) and the job the create's request id made already if any, in one statement: one round trip and one
# snapshot for what admission reads and the idempotency check a create with a request id makes
_VERSION_AND_GPU_HOURS = catalog.version_read_with(select(func.sum(_V.gpu_hours)).where(
    _V.tenant_id == bindparam("tenant_id"), _V.month == bindparam("month"), _V.job_id != bindparam("exclude_job"),
    _V.state != job_domain.REJECTED).scalar_subquery().label("gpu_hours_used"), select(_U.aggregate_id).where(
    _U.tenant_id == bindparam("tenant_id"), _U.kind == bindparam("request_kind"),
    _U.name == bindparam("request_id")).scalar_subquery().label("created_by"))


def load_ledger(engine: Engine, tenant_id: str, month: str) -> ledger.LedgerState:
    with reader(engine).connect() as conn:
        return ledger.fold(month, eventstore.load_stream(conn, tenant_id, ledger.ledger_stream_id(tenant_id, month)))


def admit(engine: Engine, settings: OrchestratorSettings, tenant_id: str, job_id: str,
          req: api.TrainingJobSpec, now_ms: int, request_id: str = "") -> Admission:
    """Decide whether ``req`` may run, and with what. Writes nothing. A job with differential privacy is
    judged against the month's privacy ledger as read here (``Admission.ledger_state``: its reservation
    must be appended at that ledger's version); other jobs do not read the ledger. With ``request_id``
    (a create's), the same read tells the job that request id created already, if any
    (``Admission.created_by``): a create's idempotency check costs no round trip of its own.

    Raises:
        InvalidArgument / NotFound / FailedPrecondition: the request cannot even be judged (missing
        dataset version or base model, malformed configuration); the message says what to fix.
    """
    if not req.name:
        raise InvalidArgument("name is required: a short name for the job (also the registered model's name "
                              "unless experiment_tags.model_name is set)", field="spec.name")
    check_suite_id(req.evaluation_suite_id, "spec.evaluation_suite_id")
    check_gates(req.eval_gates, "spec.eval_gates")
    policy = load_policy(settings.policies_dir, tenant_id)
    model = catalog.model_info(settings.models_dir, req.base_model_id)
    month = ledger.month_of(now_ms)
    row = catalog.dataset_version(engine, tenant_id, req.dataset_version_id, read=_VERSION_AND_GPU_HOURS,
                                  params={"month": month, "exclude_job": job_id, "request_kind": REQUEST_KIND,
                                          "request_id": request_id})
    dataset = catalog.info_of(req.dataset_version_id, row)
    tags: Mapping[str, str] = dict(req.experiment_tags)
    requested = "qlora" if req.qlora else METHOD_NAMES.get(req.method, "")
    method, note = resolve_method(policy.policy, requested, model, tags)
    spec = _spec_request(job_id, tenant_id, req, method, dataset.uri)
    pool_name = req.gpu_pool or settings.default_pool
    pool = settings.pools.get(pool_name)
    gpu = gpu_type(pool.gpu_type) if pool is not None else gpu_type("cpu")
    sized = estimate(model, spec, dataset, gpu)
    fitting = fitting_methods(model, spec, dataset, gpu)
    violations = list(evaluate(policy.policy, AdmissionRequest(
        tenant_id=tenant_id, spec=spec, model=model, dataset=dataset, pool_name=pool_name, pool=pool,
        now_ms=now_ms, available_pools=tuple(settings.pools.values()), gpus=spec.num_processes,
        priority=req.priority, tags=tags, peak_memory_bytes=sized.peak_memory_bytes,
        gpu_memory_bytes=sized.gpu_memory_bytes, fitting_methods=fitting, estimated_gpu_hours=sized.gpu_hours,
        gpu_hours_used_this_month=float(row["gpu_hours_used"] or 0.0))))
    privacy, state = None, None
    if spec.dp.enabled and dataset.train_records >= 2:
        privacy = ledger.planned_epsilon(spec, dataset.train_records)
        state = load_ledger(engine, tenant_id, month)
        over = ledger.check_budget(state, privacy.epsilon, policy.policy.privacy.monthly_epsilon_cap, job_id)
        if over is not None:
            violations.append(over)
    request = events_pb2.TrainingRequested(
        job_id=job_id, name=req.name, base_model_id=req.base_model_id,
        dataset_version_id=req.dataset_version_id, method=METHOD_ENUM[spec.method],
        lora_config=events_pb2.LoraConfig(r=spec.lora.r, alpha=spec.lora.alpha, dropout=spec.lora.dropout,
                                          target_modules=spec.lora.target_modules),
        qlora=spec.method == "qlora", gpu_pool=pool_name, hyperparameters=req.hyperparameters,
        dp=events_pb2.DifferentialPrivacy(enabled=spec.dp.enabled, target_epsilon=spec.dp.target_epsilon,
                                          target_delta=spec.dp.target_delta, max_grad_norm=spec.dp.max_grad_norm),
        evaluation_suite_id=req.evaluation_suite_id, eval_gates=req.eval_gates, experiment_tags=tags,
        priority=req.priority,
        config_sha256=spec.sha256(), dataset_uri=spec.dataset_uri, config_json=spec.canonical_json(),
        gpus=spec.num_processes, dataset_id=dataset.dataset_id, classification=dataset.classification)
    return Admission(request=request, spec=spec, estimate=sized, violations=tuple(violations), policy=policy,
                     method_note=note, fitting=fitting, privacy=privacy, month=month, ledger_state=state,
                     created_by=row["created_by"] or "")
