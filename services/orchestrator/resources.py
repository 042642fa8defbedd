"""Value objects the orchestrator's pure modules share: accelerators, pools, models, datasets.

No I/O here. ``settings.py`` loads pools from the orchestrator's configuration file,
``catalog.py`` builds :class:`ModelInfo` and :class:`DatasetInfo` from the stores.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

GIB = 1024 ** 3


@dataclass(frozen=True)
class GpuType:
    """One kind of accelerator, as the estimator and the cost model see it."""

    name: str                       # "a100-80gb", "h100-80gb", "cpu", ...
    memory_bytes: int               # usable memory of one device
    peak_tflops: float              # dense bf16 (fp32 for "cpu") TFLOP/s of one device
    price_per_hour_usd: float       # on-demand list price of one device-hour
    mfu: float = 0.4                # model FLOPs utilisation assumed for fine-tuning
    compute_dtype_bytes: int = 2    # bytes per weight/activation element when training (bf16: 2, fp32: 4)
    fp32_tflops: float = 0.0        # dense fp32 (no TF32) TFLOP/s, for jobs that train in fp32 (0: peak_tflops)


@dataclass(frozen=True)
class Pool:
    """A set of identical accelerators the scheduler places jobs on."""

    name: str
    gpu_type: str
    gpus: int                                   # declared capacity (devices)
    shared: bool = True                         # shared between tenants (restricted data may not run here)
    executor: str = "local"                     # "local" (gpu_worker pool over the bus) or "kubernetes"
    tenants: tuple[str, ...] = ()               # tenants allowed on it; () = every tenant
    node_selector: Mapping[str, str] = field(default_factory=dict)  # Kubernetes nodes of this pool
    max_gpus_per_node: int = 8                  # a bigger gang spans nodes (PyTorchJob workers)

    def admits(self, tenant_id: str) -> bool:
        return not self.tenants or tenant_id in self.tenants


@dataclass(frozen=True)
class ModelInfo:
    """Architecture of a base model, enough to size its memory and FLOPs."""

    model_id: str
    parameters: int
    hidden_size: int
    num_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    intermediate_size: int
    vocab_size: int
    sha256: str = ""
    tie_word_embeddings: bool = False


@dataclass(frozen=True)
class DatasetInfo:
    """The dataset version a job trains on, as policy and estimates need it (no data)."""

    dataset_version_id: str
    dataset_id: str
    classification: int                         # events_pb2.DataClassification
    labels: Mapping[str, str] = field(default_factory=dict)
    train_records: int = 0
    mean_tokens_per_record: float = 256.0       # estimated; the estimator caps it at max_seq_length
    uri: str = ""                               # dataset version folder in tenant storage
    manifest_sha256: str = ""
