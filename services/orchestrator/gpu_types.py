"""The accelerators the estimator knows: memory, peak throughput and price of one device.

Figures are public list values, not measurements:

- memory: the total one device reports (``nvidia-smi`` / vendor datasheet), in MiB;
- peak: dense (no 2:4 sparsity) bf16 tensor-core TFLOP/s from the vendor datasheet
  (T4 has no native bf16 and the worker has no fp16 mode: training there runs in fp32,
  so its fp32 figure and 4-byte compute dtype);
- fp32: dense fp32 TFLOP/s without TF32 (torch's default for matmuls), which jobs that
  train in fp32 on a GPU (DP-SGD, ``precision="fp32"``) run at;
- price: typical on-demand list price of one device-hour at the large public clouds
  (AWS, GCP, Azure price pages, 2024-2025), rounded. Reserved, spot and negotiated
  prices are lower; a deployment that knows its own should declare its own table.

``cpu`` is this project's development machine: 2 cores, fp32 training, ~0.15 TFLOP/s
(``benchmarks/train.py`` measures a 135-177 GFLOP/s fp32 matmul peak and 36% MFU).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

from services.orchestrator.resources import GIB, GpuType

MIB = 1024 ** 2


def cpu_type(memory_bytes: int = 24 * GIB) -> GpuType:
    """The CPU "accelerator": fp32 compute, free, as much memory as the machine gives a job."""
    return GpuType(name="cpu", memory_bytes=memory_bytes, peak_tflops=0.15, price_per_hour_usd=0.0, mfu=0.35,
                   compute_dtype_bytes=4)


GPU_TYPES: Mapping[str, GpuType] = MappingProxyType({t.name: t for t in (
    cpu_type(),
    GpuType("t4-16gb", memory_bytes=15_360 * MIB, peak_tflops=8.1, price_per_hour_usd=0.35, mfu=0.3,
            compute_dtype_bytes=4),
    GpuType("l4-24gb", memory_bytes=23_034 * MIB, peak_tflops=121.0, price_per_hour_usd=0.80, fp32_tflops=30.3),
    GpuType("a10g-24gb", memory_bytes=23_028 * MIB, peak_tflops=70.0, price_per_hour_usd=1.01, fp32_tflops=31.2),
    GpuType("a100-40gb", memory_bytes=40_960 * MIB, peak_tflops=312.0, price_per_hour_usd=3.67, fp32_tflops=19.5),
    GpuType("a100-80gb", memory_bytes=81_920 * MIB, peak_tflops=312.0, price_per_hour_usd=5.07, fp32_tflops=19.5),
    GpuType("h100-80gb", memory_bytes=81_559 * MIB, peak_tflops=989.0, price_per_hour_usd=6.98, fp32_tflops=67.0),
    GpuType("h200-141gb", memory_bytes=143_771 * MIB, peak_tflops=989.0, price_per_hour_usd=10.60, fp32_tflops=67.0),
)})

# Memory a training process holds besides its tensors: CUDA context, cuBLAS/cuDNN
# workspaces and NCCL buffers on a GPU (~0.5-1 GiB on current drivers); on the CPU the
# tokenized dataset, the autograd graph and allocator slack (measured in
# tests/integration/training/test_estimate_vs_measured.py and benchmarks/estimate_check.py).
RUNTIME_OVERHEAD_BYTES: Mapping[str, int] = MappingProxyType({"cpu": 64 * MIB})
GPU_RUNTIME_OVERHEAD_BYTES = 1 * GIB


def gpu_type(name: str) -> GpuType:
    """The known accelerator called ``name`` (e.g. ``a100-80gb``, ``cpu``).

    Raises:
        ValueError: ``name`` is not in the table; the message lists the known names.
    """
    try:
        return GPU_TYPES[name]
    except KeyError:
        raise ValueError(f"unknown GPU type {name!r}: known types are {', '.join(sorted(GPU_TYPES))}; "
                         "declare the pool with one of them") from None


def runtime_overhead_bytes(gpu: GpuType) -> int:
    """Fixed per-device memory of the training runtime itself (see ``RUNTIME_OVERHEAD_BYTES``)."""
    return RUNTIME_OVERHEAD_BYTES.get(gpu.name, GPU_RUNTIME_OVERHEAD_BYTES)
