"""A tenant's declarative training policy and its evaluation (pure, no I/O).

A :class:`Policy` says who may train what, on which data, where, and how big. The
orchestrator resolves a request's method (:func:`resolve_method`), gathers the facts
an admission needs into an :class:`AdmissionRequest` (pool, model, dataset, memory
estimate, GPU-hours used) and calls :func:`evaluate`, which returns *every* broken
rule as a :class:`Violation` naming the rule, the actual values and what would
comply. Policy files are loaded by ``policy_files.py``; the monthly epsilon cap is
checked against the privacy ledger by ``ledger.check_budget``.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Mapping

from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.common.training_spec import METHODS, TrainingSpec
from privtune.v1 import events_pb2
from services.orchestrator.resources import GIB, DatasetInfo, ModelInfo, Pool

EXPERT_OVERRIDE_TAG = "privtune.expert_override"
FULL_FINETUNE_OVERRIDE = "full_finetune"
_CLASS_PREFIX = "DATA_CLASSIFICATION_"
_DP_METHODS = ("full", "lora", "continued_pretraining")  # what DP-SGD supports (services/common/training_spec.py)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataRules(_Section):
    restricted_classes: list[str] = Field(default_factory=lambda: ["RESTRICTED"])
    hr_labels: dict[str, str] = Field(default_factory=lambda: {"domain": "hr"})
    restricted_requires_dp: bool = True

    @field_validator("restricted_classes")
    @classmethod
    def _known_classes(cls, names: list[str]) -> list[str]:
        known = [n.removeprefix(_CLASS_PREFIX) for n in events_pb2.DataClassification.keys()]
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ValueError(f"unknown data classification(s) {unknown}; known: {known}")
        return names


class ModelRules(_Section):
    allowed_base_models: list[str] = Field(default_factory=lambda: ["*"])
    lora_default_min_parameters: int = Field(7_000_000_000, ge=0)
    full_finetune_max_parameters: int = Field(7_000_000_000, ge=0)
    default_method_small: str = "lora"
    default_method_large: str = "qlora"

    @field_validator("default_method_small", "default_method_large")
    @classmethod
    def _known_method(cls, method: str) -> str:
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; known: {list(METHODS)}")
        return method


class Limits(_Section):
    max_seq_length: int = Field(8192, ge=8)
    max_epochs: int = Field(10, ge=1)
    max_gpus: int = Field(8, ge=1)


class PoolRules(_Section):
    allowed: list[str] = Field(default_factory=lambda: ["*"])


class PrivacyRules(_Section):
    monthly_epsilon_cap: float = Field(10.0, gt=0)
    max_epsilon_per_job: float = Field(8.0, gt=0)


class Quotas(_Section):
    max_concurrent_jobs: int = Field(4, ge=1)
    monthly_gpu_hours: float = Field(500.0, ge=0)
    weight: float = Field(1.0, gt=0)
    max_priority: int = Field(100, ge=0)


class Policy(_Section):
    """One tenant's policy; ``deploy/policies/default.yaml`` documents every field."""

    version: str = Field(min_length=1)
    data: DataRules = Field(default_factory=DataRules)
    models: ModelRules = Field(default_factory=ModelRules)
    limits: Limits = Field(default_factory=Limits)
    pools: PoolRules = Field(default_factory=PoolRules)
    privacy: PrivacyRules = Field(default_factory=PrivacyRules)
    quotas: Quotas = Field(default_factory=Quotas)


BUILTIN_VERSION = "default-1"


def default_policy() -> Policy:
    """The policy a tenant gets when no policy file names it (same as deploy/policies/default.yaml)."""
    return Policy(version=BUILTIN_VERSION)


@dataclass(frozen=True)
class Violation:
    """One broken rule: which, why (with the actual values) and what would comply."""

    rule: str
    reason: str
    remedy: str

    def to_proto(self) -> events_pb2.PolicyViolation:
        return events_pb2.PolicyViolation(rule=self.rule, reason=self.reason, remedy=self.remedy)


@dataclass(frozen=True, kw_only=True)
class AdmissionRequest:
    """Everything :func:`evaluate` needs to know about a job, gathered by the application layer.

    Attributes:
        pool: the requested pool, or None when no pool is named ``pool_name``.
        available_pools: every configured pool (remedies point at one that would comply).
        gpus: accelerators the job asks for.
        peak_memory_bytes: the estimate's peak memory per accelerator.
        gpu_memory_bytes: memory of one accelerator of the pool (0: unknown, not checked).
        fitting_methods: methods whose estimate fits that memory.
        estimated_gpu_hours: the estimate, summed over the job's accelerators.
        gpu_hours_used_this_month: the tenant's GPU-hours so far this calendar month (UTC).
        now_ms: the admission time (epoch ms), to say when the monthly quota resets.
    """

    tenant_id: str
    spec: TrainingSpec
    model: ModelInfo
    dataset: DatasetInfo
    pool_name: str
    pool: Pool | None
    now_ms: int
    available_pools: tuple[Pool, ...] = ()
    gpus: int = 1
    priority: int = 0
    tags: Mapping[str, str] = field(default_factory=dict)
    peak_memory_bytes: int = 0
    gpu_memory_bytes: int = 0
    fitting_methods: tuple[str, ...] = ()
    estimated_gpu_hours: float = 0.0
    gpu_hours_used_this_month: float = 0.0


# ---------------------------------------------------------------- method defaults

def resolve_method(policy: Policy, requested_method: str, model: ModelInfo,
                   tags: Mapping[str, str]) -> tuple[str, str]:
    """Pick the training method: the caller's explicit choice, else the policy's default by model size.

    Returns:
        ``(method, explanation)``; the explanation is recorded with the job.
    """
    size = _params(model.parameters)
    if requested_method:
        why = f"method {requested_method}: requested explicitly for {model.model_id} ({size} parameters)"
        if tags.get(EXPERT_OVERRIDE_TAG):
            why += f" with expert override {EXPERT_OVERRIDE_TAG}={tags[EXPERT_OVERRIDE_TAG]}"
        return requested_method, why
    threshold = policy.models.lora_default_min_parameters
    if model.parameters >= threshold:
        method = policy.models.default_method_large
        why = f"at least {_params(threshold)} parameters take models.default_method_large"
    else:
        method = policy.models.default_method_small
        why = f"under {_params(threshold)} parameters take models.default_method_small"
    return method, f"method {method}: no method requested; {model.model_id} has {size} parameters, and models {why}"


# ---------------------------------------------------------------- rules

Check = Callable[[Policy, AdmissionRequest], "tuple[str, str] | None"]
RULES: dict[str, Check] = {}


def _rule(name: str) -> Callable[[Check], Check]:
    def register(check: Check) -> Check:
        RULES[name] = check
        return check
    return register


def evaluate(policy: Policy, request: AdmissionRequest) -> list[Violation]:
    """Every rule the request breaks, in the (stable) order of :data:`RULES`; empty: admitted."""
    found: list[Violation] = []
    for name, check in RULES.items():
        broken = check(policy, request)
        if broken is not None:
            found.append(Violation(name, *broken))
    return found


@_rule("pools.unknown_pool")
def unknown_pool(policy: Policy, req: AdmissionRequest) -> tuple[str, str] | None:
    if req.pool is not None:
        return None
    usable = [p.name for p in _usable_pools(policy, req)]
    return (f"gpu_pool {req.pool_name!r} does not exist",
            f"set gpu_pool to one of {usable}" if usable else "no pool admits this tenant; ask the platform team "
            "to configure one (orchestrator pools) or to allow one in pools.allowed")


@_rule("pools.not_allowed")
def pool_not_allowed(policy: Policy, req: AdmissionRequest) -> tuple[str, str] | None:
    if req.pool is None or _pool_usable(policy, req.tenant_id, req.pool):
        return None
    if not req.pool.admits(req.tenant_id):
        why = f"pool {req.pool.name!r} admits only tenants {list(req.pool.tenants)}"
    else:
        why = f"pool {req.pool.name!r} matches none of the tenant's pools.allowed {policy.pools.allowed}"
    usable = [p.name for p in _usable_pools(policy, req)]
    return (f"tenant {req.tenant_id!r} may not use it: {why}",
            f"set gpu_pool to one of {usable}" if usable else "no configured pool admits this tenant; ask the "
            "platform team to add it to a pool's tenants or to pools.allowed")


@_rule("pools.gpus_exceed_capacity")
def gpus_exceed_capacity(policy: Policy, req: AdmissionRequest) -> tuple[str, str] | None:
    if req.pool is None or req.gpus <= req.pool.gpus:
        return None
    bigger = [p.name for p in _usable_pools(policy, req) if p.gpus >= req.gpus]
    return (f"the job asks for {req.gpus} GPUs but pool {req.pool.name!r} has only {req.pool.gpus}, so its "
            "gang could never be placed",
            f"ask for at most {req.pool.gpus} GPUs" + (f", or use pool {bigger[0]!r}" if bigger else ""))


@_rule("data.restricted_not_on_shared_pool")
def restricted_not_on_shared_pool(policy: Policy, req: AdmissionRequest) -> tuple[str, str] | None:
    kind = _sensitive(policy, req.dataset)
    if not kind or req.pool is None or not req.pool.shared:
        return None
    dedicated = [p.name for p in _usable_pools(policy, req) if not p.shared]
    return (f"dataset version {req.dataset.dataset_version_id} is {kind} data and pool {req.pool.name!r} is "
            "shared between tenants",
            f"use the dedicated pool {dedicated[0]!r}" if dedicated else "no dedicated (shared: false) pool admits "
            f"tenant {req.tenant_id!r}; ask the platform team to configure one")


@_rule("data.restricted_requires_dp")
def restricted_requires_dp(policy: Policy, req: AdmissionRequest) -> tuple[str, str] | None:
    kind = _sensitive(policy, req.dataset)
    if not kind or not policy.data.restricted_requires_dp or req.spec.dp.enabled:
        return None
    remedy = f"set dp.enabled=true with dp.target_epsilon <= {policy.privacy.max_epsilon_per_job:g}"
    if req.spec.method not in _DP_METHODS:
        remedy += f" and method lora (DP-SGD supports {', '.join(_DP_METHODS)}, not {req.spec.method})"
    if req.gpus > 1:
        remedy += " on 1 GPU (DP-SGD runs in one process)"
    return f"dataset version {req.dataset.dataset_version_id} is {kind} data and DP-SGD is off", remedy


@_rule("models.base_model_not_allowed")
def base_model_not_allowed(policy: Policy, req: AdmissionRequest) -> tuple[str, str] | None:
    patterns = policy.models.allowed_base_models
    if any(fnmatch.fnmatchcase(req.model.model_id, p) for p in patterns):
        return None
    return (f"base model {req.model.model_id!r} matches none of models.allowed_base_models {patterns}",
            f"choose a base model whose id matches one of {patterns}")


@_rule("methods.full_finetune_too_large")
def full_finetune_too_large(policy: Policy, req: AdmissionRequest) -> tuple[str, str] | None:
    cap = policy.models.full_finetune_max_parameters
    if req.spec.method != "full" or req.model.parameters <= cap:
        return None
    if req.tags.get(EXPERT_OVERRIDE_TAG) == FULL_FINETUNE_OVERRIDE:
        return None
    return (f"full fine-tuning of {req.model.model_id} ({_params(req.model.parameters)} parameters) is above "
            f"models.full_finetune_max_parameters ({_params(cap)})",
            "use method lora or qlora, or, as an expert who accepts the cost, set experiment tag "
            f"{EXPERT_OVERRIDE_TAG}={FULL_FINETUNE_OVERRIDE}")


@_rule("limits.max_seq_length")
def max_seq_length(policy: Policy, req: AdmissionRequest) -> tuple[str, str] | None:
    cap = policy.limits.max_seq_length
    if req.spec.max_seq_length <= cap:
        return None
    return f"max_seq_length {req.spec.max_seq_length} is above limits.max_seq_length {cap}", \
        f"set max_seq_length <= {cap}"


@_rule("limits.max_epochs")
def max_epochs(policy: Policy, req: AdmissionRequest) -> tuple[str, str] | None:
    cap = policy.limits.max_epochs
    if req.spec.epochs <= cap:
        return None
    return f"epochs {req.spec.epochs} is above limits.max_epochs {cap}", f"set epochs <= {cap}"


@_rule("limits.max_gpus")
def max_gpus(policy: Policy, req: AdmissionRequest) -> tuple[str, str] | None:
    cap = policy.limits.max_gpus
    if req.gpus <= cap:
        return None
    return f"the job asks for {req.gpus} GPUs, above limits.max_gpus {cap}", f"ask for at most {cap} GPUs"


@_rule("limits.priority")
def priority(policy: Policy, req: AdmissionRequest) -> tuple[str, str] | None:
    cap = policy.quotas.max_priority
    if 0 <= req.priority <= cap:
        return None
    return f"priority {req.priority} is outside 0..{cap} (quotas.max_priority)", \
        f"set priority between 0 and {cap}"


@_rule("privacy.max_epsilon_per_job")
def max_epsilon_per_job(policy: Policy, req: AdmissionRequest) -> tuple[str, str] | None:
    cap = policy.privacy.max_epsilon_per_job
    if not req.spec.dp.enabled or req.spec.dp.target_epsilon <= cap:
        return None
    return (f"dp.target_epsilon {req.spec.dp.target_epsilon:g} is above privacy.max_epsilon_per_job {cap:g}",
            f"set dp.target_epsilon <= {cap:g}")


@_rule("resources.does_not_fit")
def does_not_fit(policy: Policy, req: AdmissionRequest) -> tuple[str, str] | None:
    if not req.gpu_memory_bytes or req.peak_memory_bytes <= req.gpu_memory_bytes:
        return None
    where = f"pool {req.pool.name!r}" if req.pool is not None else "the pool"
    others = [m for m in req.fitting_methods if m != req.spec.method]
    if others:
        remedy = f"use method {' or '.join(others)}, which fits"
    else:
        remedy = (f"use more GPUs, a shorter max_seq_length (now {req.spec.max_seq_length}) or a smaller "
                  f"micro_batch_size (now {req.spec.micro_batch_size}, raise gradient_accumulation_steps to keep "
                  "the effective batch)")
    return (f"method {req.spec.method} needs about {_gib(req.peak_memory_bytes)} per accelerator; a GPU of "
            f"{where} has {_gib(req.gpu_memory_bytes)}", remedy)


@_rule("quotas.monthly_gpu_hours")
def monthly_gpu_hours(policy: Policy, req: AdmissionRequest) -> tuple[str, str] | None:
    quota = policy.quotas.monthly_gpu_hours
    total = req.gpu_hours_used_this_month + req.estimated_gpu_hours
    if total <= quota:
        return None
    left = max(0.0, quota - req.gpu_hours_used_this_month)
    return (f"the job needs about {req.estimated_gpu_hours:.1f} GPU-hours; with {req.gpu_hours_used_this_month:.1f} "
            f"used this month that makes {total:.1f}, above quotas.monthly_gpu_hours {quota:g}",
            f"{left:.1f} GPU-hours are left this month: shorten the job (fewer epochs or max_steps) to fit, or wait "
            f"until the quota resets on {_next_month_start(req.now_ms)}")


# ---------------------------------------------------------------- helpers

def _sensitive(policy: Policy, dataset: DatasetInfo) -> str:
    """``"RESTRICTED"`` (the class name) or ``"HR"`` when the dataset needs protection, else ``""``."""
    name = events_pb2.DataClassification.Name(dataset.classification) \
        if dataset.classification in events_pb2.DataClassification.values() else ""
    name = name.removeprefix(_CLASS_PREFIX)
    if name in policy.data.restricted_classes:
        return name
    labels = {k: v.casefold() for k, v in dataset.labels.items()}
    if labels.get("hr") == "true" or any(labels.get(k) == v.casefold() for k, v in policy.data.hr_labels.items()):
        return "HR"
    return ""


def _pool_usable(policy: Policy, tenant_id: str, pool: Pool) -> bool:
    return pool.admits(tenant_id) and any(fnmatch.fnmatchcase(pool.name, p) for p in policy.pools.allowed)


def _usable_pools(policy: Policy, req: AdmissionRequest) -> list[Pool]:
    return [p for p in req.available_pools if _pool_usable(policy, req.tenant_id, p)]


def _params(n: int) -> str:
    if n >= 1_000_000_000:
        return f"{n / 1e9:.1f}B"
    if n >= 1_000_000:
        return f"{n / 1e6:.0f}M"
    return str(n)


def _gib(n: int) -> str:
    return f"{n / GIB:.1f} GiB"


def _next_month_start(now_ms: int) -> str:
    now = datetime.fromtimestamp(now_ms / 1000, tz=timezone.utc)
    year, month = (now.year + 1, 1) if now.month == 12 else (now.year, now.month + 1)
    return f"{year:04d}-{month:02d}-01 00:00 UTC"
