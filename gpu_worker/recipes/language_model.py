"""SFT, continued pretraining and prompt tuning: cross-entropy at labelled positions.

- **Units** are rows: one example each, or several when ``packing`` (best-fit decreasing,
  :func:`gpu_worker.data.pack_rows`).
- **Loss**: the summed token loss of a micro-batch ÷ the labelled tokens of the whole
  optimizer step (across micro-batches and data-parallel ranks), so long and short
  examples weigh the same whatever the split. With DP-SGD, each example's mean token
  loss, averaged over the micro-batch (Opacus's "mean" reduction: clipping is per example).
- **Micro-batches** group the step's rows by length (without DP-SGD), so a micro-batch
  pads to a width close to its rows' own: less padding, the same step.
- **Held-out loss**: token-weighted mean over the holdout split.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any, Sequence

from gpu_worker import data
from gpu_worker.recipes import RecipeBase

if TYPE_CHECKING:
    from gpu_worker.trainer import Trainer

log = logging.getLogger(__name__)


def labelled(row: data.Row) -> int:
    """Positions of ``row`` that carry a loss (labels shifted by one)."""
    return sum(1 for x in row.labels[1:] if x != data.IGNORE)


class LanguageModelRecipe(RecipeBase):
    def __init__(self, trainer: "Trainer") -> None:
        super().__init__(trainer)
        self.train_rows: list[data.Row] = []
        self.holdout_rows: list[data.Row] = []

    def load(self, train: list[dict[str, Any]], holdout: list[dict[str, Any]]) -> None:
        spec, tok = self.spec, self.trainer.tokenizer
        if spec.method == "continued_pretraining":
            train_ex = data.tokenize_pretraining(tok, train, spec.max_seq_length)
            holdout_ex = data.tokenize_pretraining(tok, holdout, spec.max_seq_length)
        else:
            train_ex, self.skipped = data.tokenize_sft(tok, train, spec.max_seq_length)
            holdout_ex, _ = data.tokenize_sft(tok, holdout, spec.max_seq_length)
        if not train_ex:
            raise data.DatasetError(f"no trainable examples in {len(train)} records: none is chat-shaped with a "
                                    f"response within max_seq_length={spec.max_seq_length}")
        if spec.packing:
            self.train_rows = data.pack_rows(train_ex, spec.max_seq_length)
            self.fill_ratio = data.fill_ratio(self.train_rows, spec.max_seq_length)
            log.info("packed %d examples into %d rows of %d positions (%.1f%% full)", len(train_ex),
                     len(self.train_rows), spec.max_seq_length, 100 * self.fill_ratio)
        else:
            self.train_rows = [data.single_row(e) for e in train_ex]
        self.holdout_rows = [data.single_row(e) for e in holdout_ex]

    @property
    def units(self) -> int:
        return len(self.train_rows)

    def accumulate(self, units: Sequence[int]) -> dict[str, float]:
        if self.trainer.dp is not None:
            return self._accumulate_private(units)
        t = self.trainer
        # Every rank knows the whole step, so the token count that normalises the loss is global.
        in_step = max(1, sum(labelled(self.train_rows[j]) for j in units))
        # Micro-batches of similar lengths pad less; the step's rows and its loss stay the same.
        mine = sorted(units[t.rank::t.world], key=lambda j: len(self.train_rows[j].input_ids))
        micro = [[self.train_rows[j] for j in chunk] for chunk in data.iter_chunks(mine, self.spec.micro_batch_size)]
        loss_sum, tokens = 0.0, 0
        for i, rows in enumerate(micro):
            sync = i == len(micro) - 1 or t.world == 1
            with contextlib.nullcontext() if sync else t.train_model.no_sync():
                token_loss, _ = t.token_losses(t.train_model, rows, self.spec.packing)
                total = token_loss.sum()
                (total / in_step * t.world).backward()  # DDP averages gradients over ranks; we want their sum
            loss_sum += float(total.item())
            tokens += sum(len(r.input_ids) for r in rows)
        loss_sum, tokens = t.all_sum(loss_sum, tokens)
        return {"loss": loss_sum / in_step, "tokens": float(tokens)}

    def _accumulate_private(self, units: Sequence[int]) -> dict[str, float]:
        import torch

        t = self.trainer
        micro = list(data.iter_chunks(units, self.spec.micro_batch_size))
        if not micro:
            t.dp.empty_step()
        loss_sum, token_count, tokens = 0.0, 0, 0
        for i, chunk in enumerate(micro):
            rows = [self.train_rows[j] for j in chunk]
            token_loss, row_of = t.token_losses(t.train_model, rows, self.spec.packing)
            per_example = token_loss.new_zeros(len(rows)).index_add(0, row_of, token_loss)
            counts = token_loss.new_zeros(len(rows)).index_add(0, row_of, torch.ones_like(token_loss)).clamp(min=1)
            (per_example / counts).mean().backward()
            t.dp.accumulate(last=i == len(micro) - 1)
            loss_sum += float(token_loss.sum().item())
            token_count += sum(labelled(r) for r in rows)
            tokens += sum(len(r.input_ids) for r in rows)
        return {"loss": loss_sum / max(1, token_count), "tokens": float(tokens)}

    def probe_rows(self) -> list[data.Row]:
        return self.train_rows[:2]

    def evaluate(self) -> float | None:
        if not self.holdout_rows:
            return None
        t = self.trainer
        total, count = 0.0, 0
        for rows in data.iter_chunks(self.holdout_rows, self.spec.micro_batch_size):
            token_loss, _ = t.token_losses(t.model, rows, False)
            total += float(token_loss.sum().item())
            count += sum(labelled(r) for r in rows)
        return total / max(1, count)
