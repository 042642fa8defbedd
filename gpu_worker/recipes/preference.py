"""DPO: preference pairs, the policy against the base model as reference.

- **Units** are (chosen, rejected) pairs, each side one unpacked row.
- **Loss**: ``-log σ(β · ((π_c − ref_c) − (π_r − ref_r)))`` with sequence log-probabilities
  summed over the response tokens; the reference is the same model with its adapter
  disabled (no second copy of the weights). Averaged over the step's pairs.
- **Held-out loss**: the same loss over the holdout pairs; ``reward_accuracy`` is the share
  of a step's pairs whose margin is positive.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from gpu_worker import data
from gpu_worker.recipes import RecipeBase

if TYPE_CHECKING:
    from gpu_worker.trainer import Trainer


class PreferenceRecipe(RecipeBase):
    def __init__(self, trainer: "Trainer") -> None:
        super().__init__(trainer)
        self.train_pairs: list[data.PreferenceExample] = []
        self.holdout_pairs: list[data.PreferenceExample] = []

    def load(self, train: list[dict[str, Any]], holdout: list[dict[str, Any]]) -> None:
        tok, seq = self.trainer.tokenizer, self.spec.max_seq_length
        self.train_pairs, self.skipped = data.tokenize_preferences(tok, train, seq)
        self.holdout_pairs, _ = data.tokenize_preferences(tok, holdout, seq)
        if not self.train_pairs:
            raise data.DatasetError("DPO needs prompt/chosen/rejected pairs; this dataset version has none "
                                    "(curate preference data with recipe=passthrough)")

    @property
    def units(self) -> int:
        return len(self.train_pairs)

    def _sequence_logps(self, rows: Sequence[data.Row]) -> Any:
        token_loss, row_of = self.trainer.token_losses(self.trainer.model, rows, False)
        return token_loss.new_zeros(len(rows)).index_add(0, row_of, -token_loss)

    def loss(self, pairs: Sequence[data.PreferenceExample]) -> tuple[Any, Any]:
        """Mean DPO loss over ``pairs`` and the reward margins (reference = base, adapter off)."""
        import torch
        import torch.nn.functional as F

        rows = [data.single_row(p.chosen) for p in pairs] + [data.single_row(p.rejected) for p in pairs]
        policy = self._sequence_logps(rows)
        with torch.no_grad(), self.trainer.model.disable_adapter():
            reference = self._sequence_logps(rows)
        n = len(pairs)
        margin = (policy[:n] - reference[:n]) - (policy[n:] - reference[n:])
        return -F.logsigmoid(self.spec.dpo_beta * margin).mean(), margin.detach()

    def accumulate(self, units: Sequence[int]) -> dict[str, float]:
        loss_sum, correct, tokens = 0.0, 0.0, 0
        for chunk in data.iter_chunks(units, self.spec.micro_batch_size):
            pairs = [self.train_pairs[i] for i in chunk]
            loss, margin = self.loss(pairs)
            (loss * len(pairs) / len(units)).backward()
            loss_sum += float(loss.item()) * len(pairs)
            correct += float((margin > 0).float().sum().item())
            tokens += sum(len(p.chosen.input_ids) + len(p.rejected.input_ids) for p in pairs)
        return {"loss": loss_sum / len(units), "reward_accuracy": correct / len(units), "tokens": float(tokens)}

    def probe_rows(self) -> list[data.Row]:
        return [data.single_row(p.chosen) for p in self.train_pairs[:2]]

    def evaluate(self) -> float | None:
        if not self.holdout_pairs:
            return None
        total = sum(float(self.loss(chunk)[0].item()) * len(chunk)
                    for chunk in data.iter_chunks(self.holdout_pairs, self.spec.micro_batch_size))
        return total / len(self.holdout_pairs)
