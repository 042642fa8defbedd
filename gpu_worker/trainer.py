"""The shared training loop: setup, train, save_checkpoint, read top to bottom.

One :class:`Trainer` runs one job in the current process. What differs per method (how
records become units, the loss, held-out loss) is a recipe (:mod:`gpu_worker.recipes`);
the loop owns processes and devices, precision and threads, the step plan, the optimizer
with clipping or DP-SGD, the schedule, checkpoints, divergence checks and signals. Steps are planned from the
seed alone: step ``s`` of epoch ``e`` takes rows ``perm(seed, e)[k*B:(k+1)*B]`` (or, with
DP-SGD, a Poisson sample drawn from ``(seed, s)``), so resuming at step ``s`` computes
its place instead of replaying earlier batches. Together with restored weights,
optimizer, scheduler and RNG states, a resumed run on CPU reproduces the uninterrupted
run bit for bit, given the same torch thread count (pinned: the spec's ``torch_threads``, or
the process default at first start, recorded in every checkpoint and used again on resume),
the same kernel family (``torch.backends.cpu.get_cpu_capability()``) and the same library
versions. Losses are computed only at labelled positions (:mod:`gpu_worker.losses`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import signal
import statistics
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from gpu_worker import checkpoint as ckpt
from gpu_worker import data, losses
from gpu_worker.base_models import BaseModel, resolve
from gpu_worker.methods import build_model, load_trainable_state, packed_attention, trainable_state
from gpu_worker.recipes import Recipe, recipe_for
from gpu_worker.run_environment import (code_version, cpu_capability, cpu_has_amx, hardware, is_out_of_memory,
                                        library_versions, limit_memory_growth, pin_threads, resolve_precision,
                                        seeded_generator, training_device)
from services.common.training_spec import TrainingSpec
from services.common.storage import TenantStorage

log = logging.getLogger(__name__)
Emit = Callable[[str, dict[str, Any]], None]


# A loss counts as diverging only when it is also this far (in nats) above the running median.
DIVERGENCE_FLOOR = 0.5


class TrainingError(Exception):
    """A job failure with a code and whether retrying could help."""

    def __init__(self, code: str, reason: str, retryable: bool = False, step: int = 0) -> None:
        super().__init__(reason)
        self.code, self.reason, self.retryable, self.step = code, reason, retryable, step


class Preempted(Exception):
    """SIGTERM arrived; a checkpoint was written and the job should be requeued."""


@dataclass
class RunState:
    """What a checkpoint must carry besides tensors (plain JSON)."""

    step: int = 0
    tokens_seen: int = 0
    losses: list[float] = field(default_factory=list)
    best_checkpoint: str | None = None
    best_metric: float | None = None
    dp_steps: int = 0
    eval_losses: dict[str, float] = field(default_factory=dict)


class Trainer:
    def __init__(self, spec: TrainingSpec, models_root: Path, storage: TenantStorage, dataset_prefix: str,
                 work_dir: Path, emit: Emit | None = None) -> None:
        self.spec = spec
        self.models_root = Path(models_root)
        self.storage = storage
        self.dataset_prefix = dataset_prefix
        self.work_dir = Path(work_dir)
        self.checkpoints = self.work_dir / "checkpoints"
        self.emit: Emit = emit or (lambda kind, payload: None)
        self.state = RunState()
        self.preempt_requested = False
        self.resumed_from = ""
        self.rank, self.world = 0, 1

    # ------------------------------------------------------------------ setup

    def setup(self) -> None:
        import numpy as np
        import torch
        from transformers import AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")  # PEFT calling a renamed API
        warnings.filterwarnings("ignore", message="Full backward hook is firing")  # Opacus on frozen inputs
        spec = self.spec
        self._init_distributed()
        self._resume_point = self._find_checkpoint()
        recorded = ckpt.read_state(self._resume_point).get("environment", {}) if self._resume_point else {}
        # A resumed run keeps the thread count and precision it started with: both change the rounding.
        self.threads = pin_threads(int(recorded.get("torch_threads") or spec.torch_threads or torch.get_num_threads()))
        # checkpoints written before precision was recorded all trained in fp32
        self.precision = str(recorded.get("precision") or ("fp32" if self._resume_point
                                                            else resolve_precision(spec.precision, spec.dp.enabled)))
        self.device = training_device()
        self.kernel_change = ""
        if recorded.get("cpu_capability") and recorded["cpu_capability"] != cpu_capability():
            self.kernel_change = f"started on {recorded['cpu_capability']} kernels, resumed on {cpu_capability()}"
            log.warning("job %s: %s: the artifact will differ from an uninterrupted run", spec.job_id,
                        self.kernel_change)
        if self.precision == "bf16" and self.device.type == "cpu" and not cpu_has_amx():
            log.warning("job %s: bf16 on a CPU without AMX: measured slower than fp32 (docs/benchmarks.md)",
                        spec.job_id)
        torch.use_deterministic_algorithms(True)
        random.seed(spec.seed)
        np.random.seed(spec.seed % (2 ** 32))
        torch.manual_seed(spec.seed)

        self.base: BaseModel = resolve(self.models_root, spec.base_model)
        self.tokenizer = AutoTokenizer.from_pretrained(self.base.path)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.manifest, self.dataset_sha256 = data.read_manifest(self.storage, self.dataset_prefix)
        self.recipe: Recipe = recipe_for(self)
        self.recipe.load(data.load_split(self.storage, self.dataset_prefix, self.manifest, "train"),
                         data.load_split(self.storage, self.dataset_prefix, self.manifest, "holdout"))

        self.model = build_model(spec, self.base, self.precision, self.device)
        self.model.train()
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.trainable_count = sum(p.numel() for p in self.trainable)
        self.unfused = losses.unfusable_because(self.model, per_example_gradients=spec.dp.enabled)
        if not self.unfused and not self._fused_loss_agrees():
            self.unfused = "the fused loss differed from the model's own head on training rows"
        if self.unfused:
            log.info("job %s: loss over full logits (%s)", spec.job_id, self.unfused)
        self.optimizer = torch.optim.AdamW(self.trainable, lr=spec.learning_rate, weight_decay=spec.weight_decay,
                                           foreach=False)
        # Data-parallel ranks must all take part in every step: drop a last partial batch there.
        per_epoch = self.recipe.units / spec.effective_batch_size
        self.steps_per_epoch = max(1, math.floor(per_epoch) if spec.num_processes > 1 else math.ceil(per_epoch))
        self.total_steps = spec.max_steps or spec.epochs * self.steps_per_epoch
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.dp = None
        if spec.dp.enabled:
            from gpu_worker.dp import DPSGD

            self.dp = DPSGD(self.model, self.optimizer, spec, n_examples=self.recipe.units,
                            total_steps=self.total_steps)
            self.train_model = self.dp.module
        elif self.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            self.train_model = DistributedDataParallel(self.model)
        else:
            self.train_model = self.model
        if spec.memory_limit_mb and self.device.type == "cpu":
            limit_memory_growth(spec.memory_limit_mb)  # on a GPU it would cap the driver's host mappings instead

    def _init_distributed(self) -> None:
        """Join the torchrun process group (gloo on CPU) when launched with WORLD_SIZE > 1."""
        import torch.distributed as dist

        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        if self.world != self.spec.num_processes:
            raise ValueError(f"the job asks for num_processes={self.spec.num_processes} but runs in "
                             f"{self.world} process(es): launch it with torchrun --nproc_per_node "
                             f"{self.spec.num_processes}")
        if self.world > 1 and not dist.is_initialized():
            import torch

            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        if self.rank != 0:
            self.emit = lambda kind, payload: None  # rank 0 reports and writes for the group

    def all_sum(self, *values: float) -> list[float]:
        """``values`` summed over the data-parallel ranks."""
        if self.world == 1:
            return list(values)
        import torch
        import torch.distributed as dist

        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)  # NCCL reduces device tensors
        dist.all_reduce(tensor)
        return tensor.tolist()

    def _lr_factor(self, step: int) -> float:
        warmup = self.spec.warmup_steps
        if warmup and step < warmup:
            return (step + 1) / (warmup + 1)
        progress = (step - warmup) / max(1, self.total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    # ------------------------------------------------------------------ plan

    def step_units(self, step: int) -> list[int]:
        """Indices of the rows (or pairs) optimizer step ``step`` trains on, from the seed alone."""
        import torch

        n = self.recipe.units
        if self.dp is not None:
            return self.dp.poisson_sample(step)
        epoch, k = divmod(step, self.steps_per_epoch)
        order = torch.randperm(n, generator=seeded_generator(self.spec.seed, 1, epoch)).tolist()
        b = self.spec.effective_batch_size
        return order[k * b:(k + 1) * b]

    # ------------------------------------------------------------------ resume

    def _find_checkpoint(self) -> ckpt.Checkpoint | None:
        """The newest checkpoint that verifies (corrupt ones are skipped).

        Local checkpoints first; without one (the job ran on another machine), the newest
        good copy uploaded to tenant storage.
        """
        checkpoint = ckpt.latest_valid(self.checkpoints)
        if checkpoint is None:
            checkpoint = ckpt.fetch_remote(self.storage, f"training/{self.spec.job_id}/checkpoints", self.checkpoints)
        return checkpoint

    def restore_latest(self) -> ckpt.Checkpoint | None:
        """Load the checkpoint :meth:`setup` found (its thread count and precision are already in force)."""
        checkpoint = self._resume_point
        if checkpoint is None:
            return None
        import numpy as np
        import torch
        from safetensors.torch import load_file

        load_trainable_state(self.model, load_file(checkpoint.path / "trainable.safetensors",
                                                   device=str(self.device)))
        self.optimizer.load_state_dict(torch.load(checkpoint.path / "optimizer.pt", weights_only=True,
                                                  map_location=self.device))
        self.scheduler.load_state_dict(torch.load(checkpoint.path / "scheduler.pt", weights_only=True))
        rng = torch.load(checkpoint.path / "rng.pt", weights_only=True)
        torch.set_rng_state(rng["torch"])
        extra = json.loads((checkpoint.path / "rng.json").read_text())
        random.setstate((extra["python"][0], tuple(extra["python"][1]), extra["python"][2]))
        np_state = extra["numpy"]
        np.random.set_state((np_state[0], np.array(np_state[1], dtype=np.uint32), *np_state[2:]))
        self.state = RunState(**ckpt.read_state(checkpoint)["run"])
        if self.dp is not None:
            self.dp.restore(self.state.dp_steps)
        self.resumed_from = checkpoint.checkpoint_id
        log.info("resumed job %s from %s (step %d)", self.spec.job_id, checkpoint.checkpoint_id, checkpoint.step)
        return checkpoint

    def save_checkpoint(self, metrics: dict[str, float]) -> ckpt.Checkpoint | None:
        """Rank 0 writes; the others wait so nobody runs ahead of a checkpoint being written."""
        checkpoint = self._write_checkpoint(metrics) if self.rank == 0 else None
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()
        return checkpoint

    def _write_checkpoint(self, metrics: dict[str, float]) -> ckpt.Checkpoint:
        import numpy as np
        import torch
        from safetensors.torch import save_file

        def write(folder: Path) -> None:
            save_file(trainable_state(self.model), str(folder / "trainable.safetensors"))
            torch.save(self.optimizer.state_dict(), folder / "optimizer.pt")
            torch.save(self.scheduler.state_dict(), folder / "scheduler.pt")
            torch.save({"torch": torch.get_rng_state()}, folder / "rng.pt")
            py = random.getstate()
            np_state = np.random.get_state()
            (folder / "rng.json").write_text(json.dumps({
                "python": [py[0], list(py[1]), py[2]],
                "numpy": [np_state[0], np_state[1].tolist(), *[x for x in np_state[2:]]]}))
            (folder / "state.json").write_text(json.dumps({
                "run": self.state.__dict__, "spec_sha256": self.spec.sha256(),
                "environment": {"torch_threads": self.threads, "precision": self.precision,
                                "cpu_capability": cpu_capability()},
                "data_position": {"step": self.state.step, "epoch": self.state.step // self.steps_per_epoch,
                                  "within_epoch": self.state.step % self.steps_per_epoch}}, sort_keys=True))

        metric = metrics.get("eval_loss", metrics.get("loss"))
        if metric is not None and (self.state.best_metric is None or metric < self.state.best_metric):
            # recorded before writing, so the checkpoint's own state.json knows it is the best
            self.state.best_metric, self.state.best_checkpoint = metric, ckpt.checkpoint_name(self.state.step)
        checkpoint = ckpt.write_checkpoint(self.checkpoints, self.state.step, write, metrics)
        retired = ckpt.apply_retention(self.checkpoints, self.spec.keep_last_checkpoints, self.state.best_checkpoint)
        self.emit("checkpoint", {"checkpoint_id": checkpoint.checkpoint_id, "step": checkpoint.step,
                                 "sha256": checkpoint.sha256, "path": str(checkpoint.path), "metrics": metrics,
                                 "retired": retired})
        return checkpoint

    # ------------------------------------------------------------------ losses

    @property
    def compute_dtype(self) -> Any:
        """The dtype matmuls (and the packed attention mask) compute in: bf16 or fp32."""
        import torch

        return torch.bfloat16 if self.precision == "bf16" else torch.float32

    def _batch(self, rows: Sequence[data.Row], packed: bool) -> dict[str, Any]:
        batch = data.collate(rows, self.tokenizer.pad_token_id, packed, self.compute_dtype,
                             dense_mask=packed_attention(self.spec, self.device) is None)
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}

    def _autocast(self) -> Any:
        import torch

        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=self.compute_dtype)
        return contextlib.nullcontext()

    def token_losses(self, model: Any, rows: Sequence[data.Row], packed: bool) -> tuple[Any, Any]:
        """Cross-entropy at each labelled position of ``rows`` (and its row), via ``model``'s forward."""
        batch = self._batch(rows, packed)
        with self._autocast():
            return losses.labelled_token_losses(model, self.model, batch, self.compute_dtype, fused=not self.unfused)

    # ------------------------------------------------------------------ steps

    def train_step(self, step: int) -> dict[str, float]:
        """One optimizer step (all its micro-batches); returns the step's metrics."""
        import torch

        spec = self.spec
        metrics = self.recipe.accumulate(self.step_units(step))
        metrics["learning_rate"] = float(self.scheduler.get_last_lr()[0])
        if self.dp is not None:
            self.dp.step()  # clip per example, add noise; the norm reported is of the noised gradient
            grad_norm = torch.linalg.vector_norm(torch.stack(
                [torch.linalg.vector_norm(p.grad) for p in self.trainable if p.grad is not None]))
            self.dp.optimizer.zero_grad(set_to_none=True)
        else:
            if spec.max_grad_norm > 0:
                grad_norm = torch.nn.utils.clip_grad_norm_(self.trainable, spec.max_grad_norm)
            else:
                grad_norm = torch.linalg.vector_norm(torch.stack(
                    [torch.linalg.vector_norm(p.grad) for p in self.trainable if p.grad is not None]))
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        metrics["grad_norm"] = float(grad_norm)
        return metrics

    def evaluate(self) -> float | None:
        """The recipe's held-out loss (None without a holdout split), in eval mode without gradients."""
        import torch

        self.model.eval()
        try:
            with torch.no_grad():
                return self.recipe.evaluate()
        finally:
            self.model.train()

    def _check_divergence(self, step: int, loss: float) -> None:
        if not math.isfinite(loss):
            raise TrainingError("loss_diverged", f"loss became {loss} at step {step}; lower learning_rate "
                                f"(now {self.spec.learning_rate}) or raise warmup_steps", step=step)
        history = self.state.losses[-50:]
        if len(history) >= 5:
            median = statistics.median(history)
            # relative and absolute: a converged run's 0.002 -> 0.0097 is noise, not divergence
            if loss > self.spec.divergence_factor * median and loss - median > DIVERGENCE_FLOOR:
                raise TrainingError(
                    "loss_diverged", f"loss {loss:.4g} at step {step} is more than {self.spec.divergence_factor}x "
                    f"the running median {median:.4g}; lower learning_rate (now {self.spec.learning_rate}) "
                    "or raise warmup_steps", step=step)

    # ------------------------------------------------------------------ run

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        log.warning("job %s: SIGTERM received; checkpointing after the current step", self.spec.job_id)
        self.preempt_requested = True

    def train(self) -> dict[str, Any]:
        """Run (or resume) to the last step; returns the final metrics."""
        previous = signal.signal(signal.SIGTERM, self._on_sigterm)
        try:
            return self._train()
        finally:
            signal.signal(signal.SIGTERM, previous)

    def _train(self) -> dict[str, Any]:
        spec = self.spec
        self.restore_latest()
        self.emit("started", {
            "resumed_from_checkpoint_id": self.resumed_from, "dataset_manifest_sha256": self.dataset_sha256,
            "base_model_sha256": self.base.sha256, "code_version": code_version(), "seed": spec.seed,
            "hardware": hardware(), "library_versions": library_versions(), "total_steps": self.total_steps,
            "effective_batch_size": spec.effective_batch_size, "trainable_parameters": self.trainable_count,
            "train_units": self.recipe.units, "skipped_examples": self.recipe.skipped, "config_sha256": spec.sha256(),
            "bitwise_reproducible": self._bitwise_reproducible(), "torch_threads": self.threads,
            "precision": self.precision, "packing_fill_ratio": self.recipe.fill_ratio, "device": str(self.device)})
        if self.state.step == 0:
            initial = self.evaluate()
            if initial is not None:
                self.state.eval_losses["0"] = initial
        last_saved = self.state.step
        while self.state.step < self.total_steps:
            if self.world > 1:  # every rank must stop at the same step
                self.preempt_requested = self.all_sum(float(self.preempt_requested))[0] > 0
            if self.preempt_requested:
                if last_saved != self.state.step:
                    self.save_checkpoint(self._checkpoint_metrics())
                raise Preempted(f"preempted at step {self.state.step}")
            step = self.state.step
            started = time.perf_counter()
            try:
                metrics = self.train_step(step)
            except Exception as exc:
                if is_out_of_memory(exc):
                    raise TrainingError(
                        "out_of_memory", f"out of memory at step {step} (micro_batch_size={spec.micro_batch_size}, "
                        f"max_seq_length={spec.max_seq_length}); lower max_seq_length or micro_batch_size and "
                        "raise gradient_accumulation_steps to keep the effective batch", step=step) from exc
                raise
            elapsed = max(time.perf_counter() - started, 1e-9)
            self._check_divergence(step + 1, metrics["loss"])
            self.state.step = step + 1
            self.state.losses.append(metrics["loss"])
            self.state.tokens_seen += int(metrics["tokens"])
            if self.dp is not None:
                self.state.dp_steps = self.dp.steps
                metrics["epsilon"] = self.dp.epsilon()
            metrics["tokens_per_second"] = metrics["tokens"] / elapsed
            metrics["epoch"] = self.state.step / self.steps_per_epoch
            if spec.eval_every and self.state.step % spec.eval_every == 0:
                eval_loss = self.evaluate()
                if eval_loss is not None:
                    metrics["eval_loss"] = eval_loss
                    self.state.eval_losses[str(self.state.step)] = eval_loss
            self.emit("progress", {"step": self.state.step, "total_steps": self.total_steps, **metrics})
            if self.state.step % spec.checkpoint_every == 0 or self.state.step == self.total_steps:
                self.save_checkpoint(self._checkpoint_metrics(metrics))
                last_saved = self.state.step
        final_eval = self.evaluate()
        return {"steps": self.state.step, "final_loss": self.state.losses[-1] if self.state.losses else 0.0,
                "eval_loss": final_eval, "initial_eval_loss": self.state.eval_losses.get("0"), "epsilon": self.dp.epsilon() if self.dp is not None else 0.0,
                "tokens_seen": self.state.tokens_seen}

    def _checkpoint_metrics(self, metrics: dict[str, float] | None = None) -> dict[str, float]:
        out = {"loss": self.state.losses[-1]} if self.state.losses else {}
        if metrics and "eval_loss" in metrics:
            out["eval_loss"] = metrics["eval_loss"]
        if self.dp is not None:
            out["epsilon"] = self.dp.epsilon()
        return out

    def _fused_loss_agrees(self) -> bool:
        """The fused loss against the model's own head on a few training rows (eval mode, no gradients)."""
        rows = self.recipe.probe_rows()
        if not rows:
            return True
        self.model.eval()
        try:
            with self._autocast():
                return losses.fused_matches(self.model, self.model, self._batch(rows, self.spec.packing),
                                            self.compute_dtype, rtol=2e-2 if self.precision == "bf16" else 1e-3)
        finally:
            self.model.train()

    def _bitwise_reproducible(self) -> str:
        if self.device.type == "cuda":
            return "no: GPU kernels (atomics in reductions, cuBLAS workspaces) are not bitwise deterministic"
        if self.kernel_change:
            return f"no: {self.kernel_change}"
        if self.precision != "fp32":
            return f"no: {self.precision} on CPU is deterministic per machine but outside the tested promise; use fp32"
        return (f"yes: CPU, deterministic algorithms, {self.threads} torch threads (pinned), fp32, "
                f"{cpu_capability()} kernels; a resume matches where the kernel family and library versions match")
