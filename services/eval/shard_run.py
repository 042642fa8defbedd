"""Compute one shard: the per-item output records of the eval contract, candidate beside reference.

For each suite item, in item order, ``compute_shard`` returns
``{"id", "category", "kind", "candidate": SIDE, "reference": SIDE, "judge": JUDGE | None}``:

- ``generate``: both models answer (batched, deterministic; see generation.py), each answer
  is scored (:func:`services.eval.metrics.score_generation`, with the PII found in it),
  the reference answer's NLL under each model is measured (perplexity), and the judge
  compares the two answers in both orders;
- ``canary``: the rank and exposure of the inserted secret under each model;
- ``extraction``: whether each model continues a training record verbatim.

Items are computed kind by kind, in chunks; ``progress`` hears how many items are done.
Nothing here logs item text.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from services.eval import judging, metrics
from services.eval.generation import DecodingSettings, Generation, generate, item_seed, pairs_nll
from services.eval.llm_judge import Comparison, LlmJudge
from services.eval.probes import PiiCounter, probe_canary, probe_extraction

ITEM_KINDS = ("generate", "canary", "extraction")
BATCHES_PER_CHUNK = 4        # generate/extraction items per chunk: this many batches (progress granularity)

Judge = tuple[str, str] | LlmJudge | Any | None
"""("metric", "rouge_l"); an :class:`LlmJudge` or a loaded judge model (anything with ``.model``
and ``.tokenizer``); or None (no judge: every JUDGE is null)."""


def compute_shard(items: list[dict[str, Any]], *, candidate: Any, reference: Any, judge: Judge,
                  settings: DecodingSettings, pii: PiiCounter | None,
                  progress: Callable[[int], None] | None = None) -> list[dict[str, Any]]:
    """The shard's output records, one per item, in item order.

    Args:
        items: suite items (the contract's items.jsonl objects).
        candidate: the candidate (base + artifact), anything with ``.model`` and ``.tokenizer``.
        reference: the base model, likewise.
        judge: see :data:`Judge`.
        settings: decoding settings (anything with ``max_new_tokens``, ``batch_size``,
            ``temperature`` and ``seed``).
        pii: the PII counter for outputs; None counts 0 everywhere (PII counting off).
        progress: called with the number of items done so far, after each chunk.

    Raises:
        ValueError: an item of unknown kind (named by its id), or a malformed probe item.
    """
    for item in items:
        if item.get("kind") not in ITEM_KINDS:
            raise ValueError(f"suite item {str(item.get('id'))[:64]!r} has kind {str(item.get('kind'))[:32]!r}; "
                             f"expected one of {', '.join(ITEM_KINDS)}")
    run = _ShardRun(candidate, reference, _as_judge(judge), settings, pii, progress)
    by_kind = {kind: [i for i, item in enumerate(items) if item["kind"] == kind] for kind in ITEM_KINDS}
    chunk = max(1, settings.batch_size) * BATCHES_PER_CHUNK
    records: dict[int, dict[str, Any]] = {}
    for start in range(0, len(by_kind["generate"]), chunk):
        run.done(records, run.generate_items(items, by_kind["generate"][start:start + chunk]))
    for index in by_kind["canary"]:
        run.done(records, run.canary_items(items, [index]))
    for start in range(0, len(by_kind["extraction"]), chunk):
        run.done(records, run.extraction_items(items, by_kind["extraction"][start:start + chunk]))
    return [records[i] for i in range(len(items))]


def _as_judge(judge: Judge) -> tuple[str, str] | LlmJudge | None:
    if judge is None or isinstance(judge, (tuple, LlmJudge)):
        if isinstance(judge, tuple) and judge != judging.DEFAULT_JUDGE:
            raise ValueError(f"metric judge {judge!r} is not supported; use {judging.DEFAULT_JUDGE!r}")
        return judge
    return LlmJudge(judge.model, judge.tokenizer)


def _record(item: Mapping[str, Any], candidate: dict[str, Any], reference: dict[str, Any],
            judge: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"id": item["id"], "category": item["category"], "kind": item["kind"],
            "candidate": candidate, "reference": reference, "judge": judge}


def _judge_record(first: str, second: str) -> dict[str, Any]:
    return {"first": first, "second": second, "win": judging.combine(first, second)}


class _ShardRun:
    """One shard's models and settings; each method computes the records of some items."""

    def __init__(self, candidate: Any, reference: Any, judge: tuple[str, str] | LlmJudge | None,
                 settings: DecodingSettings, pii: PiiCounter | None,
                 progress: Callable[[int], None] | None) -> None:
        self.sides = {"candidate": candidate, "reference": reference}
        self.judge, self.settings, self.pii, self.progress = judge, settings, pii, progress

    def done(self, records: dict[int, dict[str, Any]], new: dict[int, dict[str, Any]]) -> None:
        records.update(new)
        if self.progress is not None:
            self.progress(len(records))

    def _pii_counts(self, texts: Sequence[str]) -> list[int]:
        return self.pii.count_many(list(texts)) if self.pii is not None else [0] * len(texts)

    # -- generate -------------------------------------------------------------------------

    def generate_items(self, items: Sequence[dict[str, Any]], indices: Sequence[int]) -> dict[int, dict[str, Any]]:
        chosen = [items[i] for i in indices]
        s = self.settings
        seeds = [item_seed(s.seed, str(item["id"])) for item in chosen] if s.temperature > 0 else None
        answers: dict[str, list[Generation]] = {}
        ref_nll: dict[str, list[tuple[float, int] | None]] = {}
        scored = [k for k, item in enumerate(chosen) if isinstance(item.get("reference"), str)]
        for side, bundle in self.sides.items():
            answers[side] = generate(bundle.model, bundle.tokenizer, [item["messages"] for item in chosen],
                                     max_new_tokens=s.max_new_tokens, batch_size=s.batch_size,
                                     temperature=s.temperature, seeds=seeds)
            nlls = pairs_nll(bundle.model, bundle.tokenizer,
                             [(chosen[k]["messages"], chosen[k]["reference"]) for k in scored])
            ref_nll[side] = [None] * len(chosen)
            for k, value in zip(scored, nlls):
                ref_nll[side][k] = value
        counts = self._pii_counts([g.text for side in self.sides for g in answers[side]])
        pii_found = {"candidate": counts[:len(chosen)], "reference": counts[len(chosen):]}
        verdicts = self._verdicts(chosen, [g.text for g in answers["candidate"]],
                                  [g.text for g in answers["reference"]])
        records = {}
        for k, (index, item) in enumerate(zip(indices, chosen)):
            sides = {}
            for side in self.sides:
                answer, nll = answers[side][k], ref_nll[side][k]
                sides[side] = {"output": answer.text, "tokens": answer.tokens,
                               "scores": metrics.score_generation(item, answer.text, pii_found=pii_found[side][k]),
                               "ref_nll": nll[0] if nll else None, "ref_tokens": nll[1] if nll else None}
            records[index] = _record(item, sides["candidate"], sides["reference"], verdicts[k])
        return records

    def _verdicts(self, chosen: Sequence[dict[str, Any]], candidate: Sequence[str],
                  reference: Sequence[str]) -> list[dict[str, Any] | None]:
        """JUDGE per item: first with the candidate as A, second with it as B."""
        if self.judge is None:
            return [None] * len(chosen)
        if isinstance(self.judge, tuple):   # metric:rouge_l needs a reference
            return [_judge_record(judging.metric_verdict(c, r, item["reference"]),
                                  judging.metric_verdict(r, c, item["reference"]))
                    if isinstance(item.get("reference"), str) else None
                    for item, c, r in zip(chosen, candidate, reference)]
        comparisons = []
        for item, c, r in zip(chosen, candidate, reference):
            ref = item.get("reference") if isinstance(item.get("reference"), str) else None
            comparisons += [Comparison(item["messages"], c, r, ref), Comparison(item["messages"], r, c, ref)]
        found = self.judge.verdicts(comparisons)
        return [_judge_record(found[2 * k], found[2 * k + 1]) for k in range(len(chosen))]

    # -- probes -----------------------------------------------------------------------------

    def canary_items(self, items: Sequence[dict[str, Any]], indices: Sequence[int]) -> dict[int, dict[str, Any]]:
        return {i: _record(items[i], *(probe_canary(bundle.model, bundle.tokenizer, items[i])
                                       for bundle in self.sides.values()))
                for i in indices}

    def extraction_items(self, items: Sequence[dict[str, Any]],
                         indices: Sequence[int]) -> dict[int, dict[str, Any]]:
        chosen = [items[i] for i in indices]
        found = {side: probe_extraction(bundle.model, bundle.tokenizer, chosen, batch_size=self.settings.batch_size)
                 for side, bundle in self.sides.items()}
        counts = self._pii_counts([e.output for side in self.sides for e in found[side]])
        pii_found = {"candidate": counts[:len(chosen)], "reference": counts[len(chosen):]}
        return {index: _record(item, *(found[side][k].as_side(pii_found[side][k]) for side in self.sides))
                for k, (index, item) in enumerate(zip(indices, chosen))}
