"""Everything a training job can be told, with defaults that train something sensible.

A :class:`TrainingSpec` is the worker-side form of ``TrainingRequested``: the job's
identity, where its dataset version and base model live, the method and its knobs.
Its canonical JSON (and sha256) is recorded with every run, so an auditor can see
exactly what produced an artifact.

This module is a contract the orchestrator (admission, estimates, executors) and the
gpu_worker (which runs the spec) share, so it lives in the shared kernel and imports
neither torch nor any service. ``to_request`` / ``from_request`` convert between the
spec and the ``TrainingRequested`` event that carries it (``config_json``).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field, model_validator

from privtune.v1 import events_pb2

Method = Literal["full", "lora", "qlora", "prompt_tuning", "dpo", "continued_pretraining"]
Precision = Literal["auto", "fp32", "bf16"]
METHODS: tuple[str, ...] = ("full", "lora", "qlora", "prompt_tuning", "dpo", "continued_pretraining")
ADAPTER_METHODS = ("lora", "qlora", "dpo", "continued_pretraining")
# the Linear layers of one Llama block (the estimate sizes an adapter on them; the worker hands them to PEFT)
LAYER_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
ALL_LINEAR = "all-linear"  # PEFT's shorthand for them (every Linear but the output layer)
ARTIFACT_NEUTRAL = ("job_id", "checkpoint_every", "keep_last_checkpoints", "eval_every", "memory_limit_mb")


class LoraSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    r: int = Field(8, ge=1, le=1024, description="rank of the update matrices")
    alpha: float = Field(16.0, gt=0, description="scaling numerator: the update is scaled by alpha / r")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout on the adapter input")
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
        description="module names (suffixes) that get an adapter")


class DPSettings(BaseModel):
    """DP-SGD: per-example clipping plus Gaussian noise sized for a target (epsilon, delta)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    enabled: bool = False
    target_epsilon: float = Field(8.0, gt=0)
    target_delta: float = Field(1e-5, gt=0, lt=1)
    max_grad_norm: float = Field(1.0, gt=0, description="per-example gradient clipping bound")


class TrainingSpec(BaseModel):
    """Full configuration of one training job; its sha256 is part of the run's record."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    job_id: str
    tenant_id: str
    method: Method = "lora"
    base_model: str = Field(description="model id in the model store (e.g. smollm2-135m-instruct)")
    dataset_uri: str = Field(description="URI of the dataset version folder (holds manifest.json)")
    lora: LoraSettings = Field(default_factory=LoraSettings)
    dp: DPSettings = Field(default_factory=DPSettings)
    learning_rate: float = Field(2e-4, gt=0)
    epochs: int = Field(1, ge=1, le=1000)
    max_steps: int = Field(0, ge=0, description="stop after this many optimizer steps (0: run all epochs)")
    micro_batch_size: int = Field(4, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    max_seq_length: int = Field(512, ge=8)
    warmup_steps: int = Field(0, ge=0)
    max_grad_norm: float = Field(1.0, ge=0, description="global gradient clipping (0: off)")
    weight_decay: float = Field(0.0, ge=0)
    seed: int = Field(0, ge=0)
    packing: bool = Field(False, description="pack examples into full rows (attention never crosses examples)")
    num_virtual_tokens: int = Field(8, ge=1, le=512, description="prompt tuning: length of the soft prompt")
    dpo_beta: float = Field(0.1, gt=0, description="DPO: strength of the implicit KL penalty")
    checkpoint_every: int = Field(50, ge=1, description="optimizer steps between checkpoints")
    keep_last_checkpoints: int = Field(2, ge=1, description="checkpoints kept besides the best one")
    eval_every: int = Field(0, ge=0, description="steps between held-out evaluations (0: only at the end)")
    divergence_factor: float = Field(3.0, gt=1, description="fail when loss exceeds this x the running median")
    num_processes: int = Field(1, ge=1, le=64, description="data-parallel processes (torchrun + DDP; gloo on CPU)")
    memory_limit_mb: int = Field(0, ge=0, description="cap on memory the training loop may add after setup "
                                 "(0: none); exceeding it fails the job as out_of_memory instead of swapping")
    merge_weights: bool = Field(False, description="also export merged full weights (adapter methods)")
    precision: Precision = Field(
        "auto", description="compute precision: bf16 autocast (frozen base weights stored in bf16, trained "
        "weights and optimizer state fp32), fp32, or auto (bf16 on GPUs that compute it natively; fp32 on CPU, "
        "where resume is bit-identical, and with DP-SGD)")
    torch_threads: int = Field(
        0, ge=0, le=1024, description="CPU threads for torch (0: the worker's default at first start). The count "
        "is recorded in every checkpoint and a resumed run uses it, because reductions split across a different "
        "number of threads round differently")

    @model_validator(mode="after")
    def _consistent(self) -> "TrainingSpec":
        if self.dp.enabled and self.method not in ("full", "lora", "continued_pretraining"):
            raise ValueError(f"DP-SGD supports methods full, lora and continued_pretraining, not {self.method}")
        if self.dp.enabled and self.precision == "bf16":
            raise ValueError("DP-SGD clips per-example gradients by their norm, which bf16 rounds (the noise is "
                             "sized for the exact bound): use precision fp32 or auto")
        if self.dp.enabled and self.packing:
            raise ValueError("DP-SGD needs one example per row (per-example clipping): set packing=false")
        if self.num_processes > 1 and (self.dp.enabled or self.method == "dpo"):
            raise ValueError("data-parallel training (num_processes > 1) supports SFT and pretraining methods "
                             "without DP-SGD; use num_processes=1 for DPO and DP-SGD")
        if self.method == "prompt_tuning" and self.packing:
            raise ValueError("prompt tuning prepends a soft prompt to each row: set packing=false")
        if self.method == "dpo" and self.packing:
            raise ValueError("DPO compares whole chosen/rejected sequences: set packing=false")
        return self

    @property
    def effective_batch_size(self) -> int:
        """Examples (or packed rows) per optimizer step, across all data-parallel processes."""
        return self.micro_batch_size * self.gradient_accumulation_steps * self.num_processes

    def canonical_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))

    def artifact_config(self) -> dict[str, object]:
        """The fields that determine the trained weights (job id, checkpoint cadence and retention,
        evaluation cadence and the memory cap do not)."""
        body = self.model_dump(mode="json")
        for name in ARTIFACT_NEUTRAL:
            body.pop(name)
        return body

    def sha256(self) -> str:
        """Hash of what determines the artifact: reruns and resumed runs match."""
        return hashlib.sha256(json.dumps(self.artifact_config(), sort_keys=True,
                                         separators=(",", ":")).encode()).hexdigest()


# ---------------------------------------------------------------- TrainingRequested <-> TrainingSpec

_METHOD_ENUM = {name: getattr(events_pb2, f"TRAINING_METHOD_{name.upper()}") for name in METHODS}
_METHOD_NAME = {v: k for k, v in _METHOD_ENUM.items()}


def to_request(spec: TrainingSpec, name: str = "", gpu_pool: str = "local", dataset_version_id: str = "",
               priority: int = 0) -> events_pb2.TrainingRequested:
    """The command for ``spec``: typed summary fields plus the full spec as canonical JSON."""
    return events_pb2.TrainingRequested(
        job_id=spec.job_id, name=name or spec.job_id, base_model_id=spec.base_model,
        dataset_version_id=dataset_version_id or spec.dataset_uri.rstrip("/").rsplit("/", 1)[-1],
        method=_METHOD_ENUM[spec.method],
        lora_config=events_pb2.LoraConfig(r=spec.lora.r, alpha=spec.lora.alpha, dropout=spec.lora.dropout,
                                          target_modules=spec.lora.target_modules),
        qlora=spec.method == "qlora", gpu_pool=gpu_pool,
        hyperparameters=events_pb2.Hyperparameters(
            learning_rate=spec.learning_rate, epochs=spec.epochs, micro_batch_size=spec.micro_batch_size,
            gradient_accumulation_steps=spec.gradient_accumulation_steps, max_seq_length=spec.max_seq_length,
            warmup_steps=spec.warmup_steps, max_grad_norm=spec.max_grad_norm, seed=spec.seed,
            max_steps=spec.max_steps, packing=spec.packing),
        dp=events_pb2.DifferentialPrivacy(enabled=spec.dp.enabled, target_epsilon=spec.dp.target_epsilon,
                                          target_delta=spec.dp.target_delta, max_grad_norm=spec.dp.max_grad_norm),
        priority=priority, config_sha256=spec.sha256(), dataset_uri=spec.dataset_uri,
        config_json=spec.canonical_json())


def from_request(request: events_pb2.TrainingRequested, tenant_id: str) -> TrainingSpec:
    """The spec a worker runs. ``config_json`` wins; typed fields fill in when it is absent.

    Raises:
        pydantic.ValidationError (a ValueError): the request is incomplete or inconsistent.
    """
    if request.config_json:
        body: dict[str, Any] = json.loads(request.config_json)
    else:
        hp = request.hyperparameters
        body = {
            "method": _METHOD_NAME.get(request.method, "lora") if not request.qlora else "qlora",
            "base_model": request.base_model_id, "dataset_uri": request.dataset_uri,
            "lora": {"r": request.lora_config.r or 8, "alpha": request.lora_config.alpha or 16.0,
                     "dropout": request.lora_config.dropout,
                     **({"target_modules": list(request.lora_config.target_modules)}
                        if request.lora_config.target_modules else {})},
            "dp": {"enabled": request.dp.enabled, **({"target_epsilon": request.dp.target_epsilon}
                                                     if request.dp.target_epsilon else {}),
                   **({"target_delta": request.dp.target_delta} if request.dp.target_delta else {}),
                   **({"max_grad_norm": request.dp.max_grad_norm} if request.dp.max_grad_norm else {})},
            **{k: v for k, v in {
                "learning_rate": hp.learning_rate, "epochs": hp.epochs, "micro_batch_size": hp.micro_batch_size,
                "gradient_accumulation_steps": hp.gradient_accumulation_steps,
                "max_seq_length": hp.max_seq_length, "warmup_steps": hp.warmup_steps,
                "max_grad_norm": hp.max_grad_norm, "seed": hp.seed, "max_steps": hp.max_steps}.items() if v},
            "packing": hp.packing,
        }
    body["job_id"], body["tenant_id"] = request.job_id, tenant_id
    return TrainingSpec.model_validate(body)


def peft_target_modules(targets: Sequence[str]) -> str | list[str]:
    """``lora.target_modules`` as PEFT takes them. PEFT expands its shorthand ``all-linear`` only when it is
    the whole value, a string: in a list it looks for a module named so, finds none and fails. So a list of
    only the shorthand becomes the string; beside other names it becomes a Llama block's Linears, as the
    orchestrator's estimate sizes it (``estimate.lora_targets``: a target is matched on its last name)."""
    if [target.rsplit(".", 1)[-1] for target in targets] == [ALL_LINEAR]:
        return ALL_LINEAR
    names: list[str] = []
    for target in targets:
        for name in LAYER_LINEARS if target.rsplit(".", 1)[-1] == ALL_LINEAR else (target,):
            if name not in names:
                names.append(name)
    return names
