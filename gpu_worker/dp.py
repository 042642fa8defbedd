"""DP-SGD with Opacus: Poisson sampling, per-example clipping, calibrated Gaussian noise.

The noise multiplier is solved from the target (epsilon, delta), the sampling rate
``q = effective_batch / n`` and the planned number of steps, with Opacus' RDP
accountant; the epsilon reported is that accountant's value for the steps actually
taken. Batches are Poisson samples drawn from ``(seed, step)``, so a resumed run draws
the same batches without replaying earlier ones.
"""

from __future__ import annotations

from typing import Any

from services.common.training_spec import TrainingSpec


class DPSGD:
    def __init__(self, model: Any, optimizer: Any, spec: TrainingSpec, n_examples: int, total_steps: int) -> None:
        from opacus import GradSampleModule
        from opacus.accountants import RDPAccountant
        from opacus.accountants.utils import get_noise_multiplier
        from opacus.optimizers import DPOptimizer

        if n_examples < 2:
            raise ValueError("DP-SGD needs at least 2 training examples")
        self.spec = spec
        self.n = n_examples
        self.sample_rate = min(1.0, spec.effective_batch_size / n_examples)
        self.total_steps = total_steps
        self.delta = spec.dp.target_delta
        self.noise_multiplier = float(get_noise_multiplier(
            target_epsilon=spec.dp.target_epsilon, target_delta=self.delta, sample_rate=self.sample_rate,
            steps=total_steps, accountant="rdp"))
        self.module = GradSampleModule(model, batch_first=True, loss_reduction="mean")
        self.optimizer = DPOptimizer(optimizer, noise_multiplier=self.noise_multiplier,
                                     max_grad_norm=spec.dp.max_grad_norm,
                                     expected_batch_size=spec.effective_batch_size, loss_reduction="mean")
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.accountant = RDPAccountant()
        self.steps = 0

    def poisson_sample(self, step: int) -> list[int]:
        """Each example joins step ``step``'s batch independently with probability ``q``."""
        import torch

        from gpu_worker.run_environment import seeded_generator

        draw = torch.rand(self.n, generator=seeded_generator(self.spec.seed, 2, step))
        return torch.nonzero(draw < self.sample_rate).flatten().tolist()

    def accumulate(self, last: bool) -> None:
        """Clip this micro-batch's per-example gradients into the running sum."""
        if not last:
            self.optimizer.signal_skip_step(do_skip=True)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)

    def empty_step(self) -> None:
        """An empty Poisson batch still takes a (noise-only) step: privacy accounting demands it."""
        import torch

        for p in self.params:
            p.grad_sample = torch.zeros((0, *p.shape), dtype=p.dtype, device=p.device)

    def step(self) -> None:
        self.optimizer.step()
        self.steps += 1
        self.accountant.step(noise_multiplier=self.noise_multiplier, sample_rate=self.sample_rate)

    def restore(self, steps: int) -> None:
        from opacus.accountants import RDPAccountant

        self.accountant = RDPAccountant()
        self.steps = steps
        if steps:
            self.accountant.history = [(self.noise_multiplier, self.sample_rate, steps)]

    def epsilon(self) -> float:
        return float(self.accountant.get_epsilon(self.delta)) if self.steps else 0.0
