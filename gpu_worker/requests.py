"""TrainingRequested <-> TrainingSpec: what travels on the bus and what the worker runs."""

from __future__ import annotations

import json
from typing import Any

from privtune.v1 import events_pb2
from gpu_worker.spec import METHODS, TrainingSpec

_METHOD_ENUM = {name: getattr(events_pb2, f"TRAINING_METHOD_{name.upper()}") for name in METHODS}
_METHOD_NAME = {v: k for k, v in _METHOD_ENUM.items()}


def to_request(spec: TrainingSpec, name: str = "", gpu_pool: str = "local", train_dataset_version: str = "",
               priority: int = 0) -> events_pb2.TrainingRequested:
    """The command for ``spec``: typed summary fields plus the full spec as canonical JSON."""
    return events_pb2.TrainingRequested(
        job_id=spec.job_id, name=name or spec.job_id, base_model_id=spec.base_model,
        train_dataset_version=train_dataset_version or spec.dataset_uri.rstrip("/").rsplit("/", 1)[-1],
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
