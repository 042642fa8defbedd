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

    parts = [f"{platform.machine()} {os.cpu_count()} cpus", f"torch threads {torch.get_num_threads()}"]
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


