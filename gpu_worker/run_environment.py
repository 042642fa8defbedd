"""Facts about the run environment a training run records or relies on.

Library versions, code version and hardware go into ``TrainingStarted`` (invariant 3:
every run is explainable). Seeded generators make the data order a pure function of
the seed, which is what lets a resumed run skip straight to its step.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any


def seeded_generator(seed: int, *salt: int) -> Any:
    """A torch generator for one purpose (``salt``) of one run (``seed``)."""
    import torch

    gen = torch.Generator()
    gen.manual_seed((seed * 1_000_003 + sum(s * 7919 ** i for i, s in enumerate(salt, 1))) % (2 ** 63))
    return gen


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("torch", "transformers", "peft", "opacus", "bitsandbytes", "numpy", "safetensors", "privtune"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def hardware() -> str:
    import torch

    parts = [f"{platform.machine()} {os.cpu_count()} cpus", f"kernels {cpu_capability()}",
             f"torch threads {torch.get_num_threads()}"]
    if torch.cuda.is_available():
        parts.append(", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())))
    return "; ".join(parts)


def code_version() -> str:
    import subprocess

    root = Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        from importlib.metadata import version

        return f"privtune-{version('privtune')}"


def is_out_of_memory(exc: BaseException) -> bool:
    import torch

    if isinstance(exc, (MemoryError, torch.OutOfMemoryError)):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text
                                              or "cannot allocate memory" in text)


def limit_memory_growth(megabytes: int) -> None:
    """Let this process's data segment grow by at most ``megabytes`` from now on (RLIMIT_DATA)."""
    import resource

    with open("/proc/self/status") as fh:
        used_kb = next(int(line.split()[1]) for line in fh if line.startswith("VmData:"))
    limit = used_kb * 1024 + megabytes * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_DATA, (limit, resource.getrlimit(resource.RLIMIT_DATA)[1]))




def cpu_capability() -> str:
    """The kernel family torch dispatches to on this CPU (``AVX512``, ``AVX2``, ``DEFAULT``...)."""
    import torch

    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):
        return "unknown"


def cpu_has_amx() -> bool:
    """Whether the CPU has AMX, where bf16 matmuls should beat fp32. AVX512_BF16 alone is not
    enough: on such a CPU torch's bf16 matmul measured half the fp32 rate (docs/benchmarks.md)."""
    try:
        with open("/proc/cpuinfo") as fh:
            flags = next((line.split(":", 1)[1].split() for line in fh if line.startswith("flags")), [])
    except OSError:
        return False
    return "amx_bf16" in flags


def resolve_precision(requested: str, private: bool = False) -> str:
    """``fp32`` or ``bf16``. ``auto`` is bf16 on a GPU that computes bf16 natively (Ampere and
    later), else fp32: on CPU (where resume is bit-identical), on older GPUs (T4, V100 emulate
    bf16), and with DP-SGD (``private``), whose per-example clipping must see fp32 norms."""
    import torch

    if requested != "auto":
        return requested
    if private or not torch.cuda.is_available():
        return "fp32"
    try:
        native = torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # older torch without the keyword
        native = torch.cuda.is_bf16_supported()
    return "bf16" if native else "fp32"


def training_device() -> Any:
    """The device this process trains on: its local rank's GPU when there is one, else the CPU."""
    import torch

    if torch.cuda.is_available():
        index = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(index)
        return torch.device("cuda", index)
    return torch.device("cpu")


def pin_threads(count: int) -> int:
    """Use exactly ``count`` torch CPU threads (intra-op); returns it."""
    import torch

    if count < 1:
        raise ValueError(f"torch_threads must be at least 1, got {count}")
    if torch.get_num_threads() != count:
        torch.set_num_threads(count)
    return torch.get_num_threads()
