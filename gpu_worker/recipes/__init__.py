"""One recipe per training objective, run by the shared loop in :mod:`gpu_worker.trainer`.

The loop owns what every method shares: processes and devices, the step plan, the
optimizer, clipping or DP-SGD, the schedule, checkpoints, divergence checks and signals.
A recipe owns what differs: how the dataset version becomes training units, how one
optimizer step's units become a loss and gradients, and what held-out loss means.

- :class:`~gpu_worker.recipes.language_model.LanguageModelRecipe`: SFT (``full``,
  ``lora``, ``qlora``, ``prompt_tuning``) and ``continued_pretraining``, token-level
  cross-entropy at labelled positions;
- :class:`~gpu_worker.recipes.preference.PreferenceRecipe`: ``dpo``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, Sequence

if TYPE_CHECKING:
    from gpu_worker.trainer import Trainer


class Recipe(Protocol):
    skipped: int          # records that could not become a training unit
    fill_ratio: float     # packed rows' share of positions holding tokens (0 when not packed)

    def load(self, train: list[dict[str, Any]], holdout: list[dict[str, Any]]) -> None:
        """Tokenise the records into training units (rows or pairs); DatasetError when none is usable."""

    @property
    def units(self) -> int:
        """How many training units an epoch has (what the step plan permutes)."""

    def accumulate(self, units: Sequence[int]) -> dict[str, float]:
        """Forward and backward over one optimizer step's ``units``; metrics incl. ``loss`` and ``tokens``."""

    def evaluate(self) -> float | None:
        """Mean held-out loss (None without a holdout split); called under no_grad in eval mode."""

    def probe_rows(self) -> list[Any]:
        """A few training rows to check the fused loss against the model's own head."""


class RecipeBase:
    """What every recipe starts with: its loop, the spec, and the counters the loop reports."""

    def __init__(self, trainer: "Trainer") -> None:
        self.trainer = trainer
        self.spec = trainer.spec
        self.skipped = 0
        self.fill_ratio = 0.0


def recipe_for(trainer: "Trainer") -> Recipe:
    if trainer.spec.method == "dpo":
        from gpu_worker.recipes.preference import PreferenceRecipe

        return PreferenceRecipe(trainer)
    from gpu_worker.recipes.language_model import LanguageModelRecipe

    return LanguageModelRecipe(trainer)
