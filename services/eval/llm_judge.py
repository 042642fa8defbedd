"""An LLM judge ("model:<model id>"): which of two answers a stored model prefers, deterministically.

For one comparison the judge prompt (:func:`services.eval.judging.judge_messages`, with
the reference when there is one) is rendered with the judge's chat template and a
generation prompt, and the judge's next-token log-probabilities of "A" and "B" decide:
no sampling, one forward pass per comparison, batched. A shard asks for both orders of
every pair (candidate as A, then as B) so position bias cancels out in the win.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from services.eval.generation import Messages, context_limit, forward_logits, score_batches
from services.eval.judging import judge_messages

TIE_TOLERANCE = 1e-6         # log-probability gap under which a verdict is a tie
JUDGE_BATCH = 8              # judge prompts per forward pass (also capped by the logits budget)


@dataclass(frozen=True)
class Comparison:
    """One order of one pair: the prompt, the answer shown as A, the one shown as B, the reference."""

    prompt_messages: Messages
    answer_a: str
    answer_b: str
    reference: str | None


def choice_token_ids(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The token ids that spell "A" and "B" as a first answer token: each of "A"/" A" (and "B"/" B")
    that encodes to a single token.

    Raises:
        ValueError: the tokenizer spells neither form of a letter as one token.
    """
    found: list[list[int]] = []
    for letter in ("A", "B"):
        ids = sorted({ids[0] for ids in (tokenizer(form, add_special_tokens=False)["input_ids"]
                                         for form in (letter, f" {letter}")) if len(ids) == 1})
        if not ids:
            raise ValueError(f"the judge's tokenizer has no single token for {letter!r} or {' ' + letter!r}; "
                             "choose another judge model")
        found.append(ids)
    if set(found[0]) & set(found[1]):
        raise ValueError("the judge's tokenizer maps 'A' and 'B' to the same token; choose another judge model")
    return found[0], found[1]


def verdict(logprob_a: float, logprob_b: float, tolerance: float = TIE_TOLERANCE) -> str:
    """"A", "B", or "tie" when the two log-probabilities are within ``tolerance``."""
    if abs(logprob_a - logprob_b) <= tolerance:
        return "tie"
    return "A" if logprob_a > logprob_b else "B"


def judge_prompt_ids(tokenizer: Any, comparison: Comparison) -> list[int]:
    """Token ids of the judge prompt for one comparison, ending with the generation prompt."""
    messages = judge_messages([dict(m) for m in comparison.prompt_messages], comparison.answer_a,
                              comparison.answer_b, comparison.reference)
    text = tokenizer.apply_chat_template([dict(m) for m in messages], tokenize=False, add_generation_prompt=True)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


class LlmJudge:
    """A loaded judge model and its tokenizer; :meth:`verdicts` is all a shard needs."""

    def __init__(self, model: Any, tokenizer: Any, *, batch_size: int = JUDGE_BATCH) -> None:
        self.model, self.tokenizer, self.batch_size = model, tokenizer, batch_size
        self.a_ids, self.b_ids = choice_token_ids(tokenizer)

    @torch.inference_mode()
    def verdicts(self, comparisons: Sequence[Comparison]) -> list[str]:
        """The judge's verdict ("A", "B" or "tie") for each comparison, in order.

        A prompt longer than the judge's context keeps its end (the answers and the
        question to decide), so it is judged rather than failing the shard.
        """
        limit = context_limit(self.model)
        rows = [judge_prompt_ids(self.tokenizer, c) for c in comparisons]
        rows = [r[-limit:] if limit and len(r) > limit else r for r in rows]
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        results = ["tie"] * len(rows)
        for batch in score_batches(self.model, [len(r) for r in rows], self.batch_size):
            logits = forward_logits(self.model, [rows[i] for i in batch], pad_id)
            for row, i in enumerate(batch):
                log_probs = torch.log_softmax(logits[row, len(rows[i]) - 1], dim=-1)
                results[i] = verdict(float(torch.logsumexp(log_probs[self.a_ids], dim=0)),
                                     float(torch.logsumexp(log_probs[self.b_ids], dim=0)))
        return results
