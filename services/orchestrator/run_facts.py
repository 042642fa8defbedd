"""What an experiment run records, read off training events: parameters, metric points, final metrics.

Pure functions shared by the run read model, the tracker and the MLflow exporter, so
every view of a run agrees. Only configuration, hashes and numbers: never data.
"""

from __future__ import annotations

import json
import math
from typing import Any, Mapping

from privtune.v1 import events_pb2
from services.common.envelope import payload_name

SERIES = ("loss", "learning_rate", "grad_norm", "eval_loss", "epsilon", "tokens_per_second")
# identity and storage location differ between any two runs and say nothing about the recipe
PARAM_EXCLUDE = frozenset({"job_id", "tenant_id", "dataset_uri"})


def flatten(value: Any, prefix: str = "") -> dict[str, str]:
    """Nested dicts become dotted keys (``lora.r``); leaves become strings (JSON for non-strings)."""
    out: dict[str, str] = {}
    _flatten_into(out, value, prefix)
    return out


def _flatten_into(out: dict[str, str], value: Any, prefix: str) -> None:
    if isinstance(value, dict) or not isinstance(value, (str, int, float, list)) and isinstance(value, Mapping):
        for key in sorted(value):
            _flatten_into(out, value[key], f"{prefix}{key}.")
        return
    out[prefix.removesuffix(".")] = _leaf(value)


def _leaf(value: Any) -> str:
    """``value`` as ``json.dumps(value, sort_keys=True)`` writes it (a string as it is), without the encoder
    for the common scalars (a run view applies every created job's spec)."""
    if isinstance(value, str):
        return value
    kind = type(value)
    if kind is int:
        return int.__repr__(value)
    if kind is float and math.isfinite(value):
        return float.__repr__(value)
    if value is True or value is False or value is None:
        return "true" if value else ("false" if value is False else "null")
    return json.dumps(value, sort_keys=True)


def run_params(request: events_pb2.TrainingRequested) -> dict[str, str]:
    """The run's parameters: its flattened TrainingSpec (``config_json``), else the typed request fields."""
    try:
        config = json.loads(request.config_json) if request.config_json else None
    except json.JSONDecodeError:
        config = None
    if not isinstance(config, dict):
        from google.protobuf.json_format import MessageToDict

        config = {name: MessageToDict(getattr(request, name), preserving_proto_field_name=True)
                  for name in ("lora_config", "hyperparameters", "dp") if request.HasField(name)}
        config["method"] = events_pb2.TrainingMethod.Name(request.method).removeprefix("TRAINING_METHOD_").lower()
        config["base_model"] = request.base_model_id
    params = {k: v for k, v in flatten(config).items() if k.split(".", 1)[0] not in PARAM_EXCLUDE}
    if request.dataset_version_id:
        params["dataset_version_id"] = request.dataset_version_id
    return params


def progress_points(progress: events_pb2.TrainingProgress) -> dict[str, float]:
    """Metric values at ``progress.step``; eval loss and epsilon only when measured."""
    points = {"loss": progress.loss, "learning_rate": progress.learning_rate, "grad_norm": progress.grad_norm,
              "tokens_per_second": progress.tokens_per_second}
    if progress.eval_loss:
        points["eval_loss"] = progress.eval_loss
    if progress.epsilon_spent:
        points["epsilon"] = progress.epsilon_spent
    return points


def final_metrics(*, step: int, loss: float, eval_loss: float = 0.0, initial_eval_loss: float = 0.0,
                  epsilon_spent: float = 0.0, duration_seconds: float = 0.0) -> dict[str, float]:
    """A run's latest (once finished: final) values; unmeasured ones are left out."""
    metrics = {"step": float(step), "loss": loss}
    optional = {"eval_loss": eval_loss, "initial_eval_loss": initial_eval_loss, "epsilon": epsilon_spent,
                "duration_seconds": duration_seconds}
    metrics.update({k: v for k, v in optional.items() if v})
    return metrics


def series_from_events(events: list[events_pb2.EventEnvelope]) -> dict[str, list[tuple[int, float, int]]]:
    """Learning curves from a job's stream: name -> [(step, value, time_ms)] by step.

    A step reported twice (a resumed attempt repeats the steps after its checkpoint)
    keeps the later value.
    """
    by_name: dict[str, dict[int, tuple[float, int]]] = {}
    for env in events:
        if payload_name(env) != "training_progress":
            continue
        at = env.time.ToMilliseconds()
        for name, value in progress_points(env.training_progress).items():
            by_name.setdefault(name, {})[env.training_progress.step] = (value, at)
    return {name: [(step, v, at) for step, (v, at) in sorted(points.items())] for name, points in by_name.items()}
