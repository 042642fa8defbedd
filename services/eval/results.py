"""results.json of an evaluation run, built from the per-item shard outputs.

:func:`summarise` is the finaliser's pure core: it reads the shard records (one per suite
item, the shard output contract), computes every ESTIMATE with a paired bootstrap over
items, the win rate, the per-category table, the canary exposures, the gate verdicts and
a few examples for the report. :func:`flat_metrics` turns the result into the numbers an
event may carry: scores and intervals only, never text.

Records are sorted by item id first, so a result depends on the items and the seed, not
on the order in which shards finished. Metrics over the same items share one set of
resamples (one pass of :func:`services.eval.bootstrap.resample_means`), which keeps a
10,000-item suite to about a second of numpy.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from services.eval.bootstrap import perplexity, percentile_interval, resample_means
from services.eval.gates import check_thresholds, decide
from services.eval.judging import combine, parse_judge_spec

SCHEMA_VERSION = 1
KINDS = ("generate", "canary", "extraction")
WIN_RATE_REFERENCE = 0.5


# --- reading the records ---------------------------------------------------------------------

def _index(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records, checked for the fields every metric relies on, sorted by item id."""
    by_id: dict[str, dict[str, Any]] = {}
    for position, record in enumerate(records):
        if not isinstance(record, dict):
            raise ValueError(f"shard record {position} is not a JSON object")
        item_id = record.get("id")
        if not isinstance(item_id, str) or not item_id:
            raise ValueError(f"shard record {position} has no item id")
        if item_id in by_id:
            raise ValueError(f"item {item_id!r} appears in more than one shard record; two shards overlap or one "
                             f"shard's outputs were read twice")
        if record.get("kind") not in KINDS:
            raise ValueError(f"item {item_id!r} has kind {record.get('kind')!r}; expected one of {', '.join(KINDS)}")
        if not isinstance(record.get("category"), str) or not record["category"]:
            raise ValueError(f"item {item_id!r} has no category")
        for side in ("candidate", "reference"):
            if not isinstance(record.get(side), dict):
                raise ValueError(f"item {item_id!r} has no {side} output")
            if record["kind"] == "generate" and not isinstance(record[side].get("scores"), dict):
                raise ValueError(f"item {item_id!r}: the {side} output has no scores")
        by_id[item_id] = record
    if not by_id:
        raise ValueError("no item records to summarise: the shard outputs are empty; check that every shard "
                         "finished and wrote its outputs.jsonl")
    return [by_id[item_id] for item_id in sorted(by_id)]


_UNSCORED = ("ref_nll", "ref_tokens")   # generate SIDE fields that sit beside ``scores``, not in it


def _field(record: dict[str, Any], side: str, key: str) -> float | None:
    """A numeric field of one side (inside ``scores`` for generate items); None when null."""
    scored = record["kind"] == "generate" and key not in _UNSCORED
    holder = record[side]["scores"] if scored else record[side]
    value = holder.get(key)
    if value is None:
        return None
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"item {record['id']!r}: the {side}'s {key} is {value!r}; expected a finite number")
    return float(value)


def _is_generate(record: dict[str, Any]) -> bool:
    return bool(record["kind"] == "generate")


def _in_category(prefix: str) -> Callable[[dict[str, Any]], bool]:
    return lambda record: _is_generate(record) and (record["category"] == prefix or
                                                    record["category"].startswith(prefix + "/"))


# --- paired series and their intervals -----------------------------------------------------

@dataclass(frozen=True)
class _Series:
    """One metric's per-item values on both sides, over the items ``ids``."""

    name: str
    higher_is_better: bool
    ids: tuple[str, ...]
    candidate: NDArray[np.float64]
    reference: NDArray[np.float64]


def _series(rows: list[dict[str, Any]], name: str, key: str, *, higher_is_better: bool,
            where: Callable[[dict[str, Any]], bool], positive: bool = False) -> _Series | None:
    """Both sides' ``key`` over the items ``where`` selects that have it (``positive``: value > 0 as 0/1).

    An item with the value on one side only is a runner bug, refused rather than dropped.
    """
    ids: list[str] = []
    candidate: list[float] = []
    reference: list[float] = []
    for record in rows:
        if not where(record):
            continue
        cand, ref = _field(record, "candidate", key), _field(record, "reference", key)
        if cand is None and ref is None:
            continue
        if cand is None or ref is None:
            raise ValueError(f"item {record['id']!r} has {key} on one side only; both models must be scored alike")
        ids.append(record["id"])
        candidate.append(float(cand > 0) if positive else cand)
        reference.append(float(ref > 0) if positive else ref)
    if not ids:
        return None
    return _Series(name, higher_is_better, tuple(ids), np.array(candidate), np.array(reference))


def _win_series(rows: list[dict[str, Any]]) -> tuple[_Series | None, list[float]]:
    """The candidate's win per judged item, recomputed from the two orders' verdicts."""
    ids: list[str] = []
    wins: list[float] = []
    for record in rows:
        judge = record.get("judge")
        if not _is_generate(record) or judge is None:
            continue
        if not isinstance(judge, dict):
            raise ValueError(f"item {record['id']!r}: judge must be an object or null")
        try:
            wins.append(combine(judge.get("first"), judge.get("second")))
        except ValueError as exc:
            raise ValueError(f"item {record['id']!r}: {exc}") from None
        ids.append(record["id"])
    if not ids:
        return None, []
    values = np.array(wins)
    return _Series("win_rate", True, tuple(ids), values, np.full(values.size, WIN_RATE_REFERENCE)), wins


def _intervals(series: list[_Series], *, samples: int, confidence: float, seed: int) -> dict[str, dict[str, Any]]:
    """Point estimates and intervals of every series; series over the same items share resamples."""
    groups: dict[tuple[str, ...], list[_Series]] = {}
    for one in series:
        groups.setdefault(one.ids, []).append(one)
    out: dict[str, dict[str, Any]] = {}
    for ids, members in groups.items():
        means = None
        if len(ids) >= 2:
            columns = [column for s in members for column in (s.candidate, s.candidate - s.reference)]
            means = resample_means(np.column_stack(columns), samples=samples, seed=seed)
        for position, s in enumerate(members):
            cand, ref = float(s.candidate.mean()), float(s.reference.mean())
            delta = cand - ref
            if means is None:   # one item: nothing to resample, the interval is the point
                cand_ci, delta_ci = (cand, cand), (delta, delta)
            else:
                cand_ci = percentile_interval(means[:, 2 * position], confidence)
                delta_ci = percentile_interval(means[:, 2 * position + 1], confidence)
            out[s.name] = {"candidate": cand, "reference": ref, "delta": delta, "ci_low": delta_ci[0],
                           "ci_high": delta_ci[1], "n": len(ids), "candidate_ci_low": cand_ci[0],
                           "candidate_ci_high": cand_ci[1]}
    return out


def _perplexity_estimate(rows: list[dict[str, Any]], *, samples: int, confidence: float,
                         seed: int) -> dict[str, Any] | None:
    """domain.perplexity: exp(sum nll / sum tokens) per side, its paired delta and interval."""
    table = []
    for record in rows:
        if not _is_generate(record) or record["category"] != "domain":
            continue
        values = [_field(record, side, key) for side in ("candidate", "reference") for key in ("ref_nll", "ref_tokens")]
        if all(v is None for v in values):
            continue
        if any(v is None for v in values):
            raise ValueError(f"item {record['id']!r} has ref_nll/ref_tokens on one side only")
        numbers = [float(v) for v in values if v is not None]
        if numbers[1] < 1 or numbers[3] < 1:
            continue   # an empty reference answer has no perplexity
        table.append(numbers)
    if not table:
        return None
    columns = np.array(table, dtype=np.float64)
    totals = columns.sum(axis=0)
    cand, ref = float(perplexity(totals[0], totals[1])), float(perplexity(totals[2], totals[3]))
    delta = cand - ref
    if len(table) < 2:
        cand_ci, delta_ci = (cand, cand), (delta, delta)
    else:
        means = resample_means(columns, samples=samples, seed=seed)
        cand_side = perplexity(means[:, 0], means[:, 1])
        cand_ci = percentile_interval(cand_side, confidence)
        delta_ci = percentile_interval(cand_side - perplexity(means[:, 2], means[:, 3]), confidence)
    return {"name": "domain.perplexity", "candidate": cand, "reference": ref, "delta": delta,
            "ci_low": delta_ci[0], "ci_high": delta_ci[1], "n": len(table), "higher_is_better": False,
            "candidate_ci_low": cand_ci[0], "candidate_ci_high": cand_ci[1]}


def _metric_series(rows: list[dict[str, Any]]) -> list[_Series]:
    """Every paired ESTIMATE's series except perplexity and the win rate, in results order."""
    domain = _in_category("domain")
    general = _in_category("general")
    out = [_series(rows, f"domain.{key}", key, higher_is_better=True, where=domain)
           for key in ("exact_match", "rouge_l", "token_f1")]
    out.append(_series(rows, "domain.score", "rouge_l", higher_is_better=True, where=domain))
    out.append(_series(rows, "general.score", "check_passed", higher_is_better=True, where=general))
    subcategories = sorted({r["category"] for r in rows if general(r) and r["category"] != "general"})
    out += [_series(rows, f"{sub}.score", "check_passed", higher_is_better=True, where=_in_category(sub))
            for sub in subcategories]
    out.append(_series(rows, "json.valid", "json_valid", higher_is_better=True, where=_is_generate))
    out.append(_series(rows, "instruction.ok", "check_passed", higher_is_better=True,
                       where=_in_category("general/instruction")))
    out.append(_series(rows, "safety.refusal_rate", "refused", higher_is_better=True,
                       where=_in_category("safety/harmful")))
    out.append(_series(rows, "safety.over_refusal_rate", "refused", higher_is_better=False,
                       where=_in_category("safety/benign")))
    out.append(_series(rows, "toxicity", "toxicity", higher_is_better=False, where=_is_generate))
    out.append(_series(rows, "pii_leakage_rate", "pii_found", higher_is_better=False, positive=True,
                       where=lambda r: r["kind"] in ("generate", "extraction")))
    return [s for s in out if s is not None]


def _of_kind(kind: str) -> Callable[[dict[str, Any]], bool]:
    return lambda record: bool(record["kind"] == kind)


def _probe_series(rows: list[dict[str, Any]]) -> list[_Series]:
    canary, extraction = _of_kind("canary"), _of_kind("extraction")
    out = [_series(rows, "canary.exposure", "exposure", higher_is_better=False, where=canary),
           _series(rows, "extraction.exact_rate", "exact", higher_is_better=False, where=extraction),
           _series(rows, "extraction.near_rate", "near", higher_is_better=False, where=extraction)]
    return [s for s in out if s is not None]


# --- the other sections of results.json ----------------------------------------------------

def _category_series(rows: list[dict[str, Any]]) -> list[_Series]:
    """Each category's primary score: ROUGE-L for domain, the check for everything else."""
    out = []
    for category in sorted({r["category"] for r in rows if _is_generate(r)}):
        key = "rouge_l" if category == "domain" else "check_passed"
        series = _series(rows, f"category:{category}", key, higher_is_better=True,
                         where=lambda r, c=category: _is_generate(r) and r["category"] == c)
        if series is not None:
            out.append(series)
    return out


def _chance_bits(ranked: int) -> float:
    """Expected exposure of a uniformly random rank among ``ranked``: log2 N - log2(N!)/N."""
    return math.log2(ranked) - math.lgamma(ranked + 1) / (ranked * math.log(2))


def _exposure(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Per-canary exposures of both models, in item-id order.

    ``of`` in a canary SIDE counts the candidates the secret was ranked against (the
    secret is ranked among ``of + 1`` sequences), as services/eval/probes.py writes it.
    Canaries with different candidate counts report the largest count and its maximum.
    """
    canaries = [r for r in rows if r["kind"] == "canary"]
    if not canaries:
        return None
    ranked = []
    exposures: dict[str, list[float]] = {"candidate": [], "reference": []}
    for record in canaries:
        for side, values in exposures.items():
            rank, of, bits = (_field(record, side, key) for key in ("rank", "of", "exposure"))
            if rank is None or of is None or bits is None or not (of >= 1 and 1 <= rank <= of + 1):
                raise ValueError(f"item {record['id']!r}: the {side}'s canary needs a rank between 1 and of + 1 "
                                 f"and an exposure, got rank {rank!r} of {of!r}, exposure {bits!r}")
            values.append(bits)
            ranked.append(int(of) + 1)
    return {"candidate": exposures["candidate"], "reference": exposures["reference"],
            "max_bits": math.log2(max(ranked)), "chance_bits": float(np.mean([_chance_bits(n) for n in ranked])),
            "candidates_per_canary": max(ranked) - 1}


def _prompt_text(item: Mapping[str, Any] | None) -> str | None:
    """The last user turn of a suite item (what the answers answer)."""
    if not item:
        return None
    turns = [m.get("content") for m in item.get("messages") or [] if isinstance(m, dict) and m.get("role") == "user"]
    return turns[-1] if turns else None


def _examples(rows: list[dict[str, Any]], limit: int, items: Mapping[str, Mapping[str, Any]] | None
              ) -> list[dict[str, Any]]:
    """The first ``limit`` generate items with a reference, by id (private text: report only)."""
    chosen = [r for r in rows if _is_generate(r) and r["candidate"]["scores"].get("rouge_l") is not None][:limit]
    out = []
    for record in chosen:
        item = items.get(record["id"]) if items is not None else None
        judge = record.get("judge")
        out.append({"id": record["id"], "category": record["category"], "prompt": _prompt_text(item),
                    "reference": item.get("reference") if item else None,
                    "candidate_output": record["candidate"].get("output"),
                    "reference_output": record["reference"].get("output"),
                    "win": combine(judge["first"], judge["second"]) if judge else None})
    return out


# --- results.json and its flat metrics --------------------------------------------------------

def summarise(records: Iterable[dict[str, Any]], *, eval_id: str, suite_id: str, model_version_id: str,
              base_model_id: str, judge: str, shards: int, gates: dict[str, float], samples: int = 2000,
              confidence: float = 0.95, seed: int = 0, examples: int = 12,
              items: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """The results.json dict of an evaluation run (see the results contract).

    Args:
        records: the shard outputs, one record per suite item, in any order.
        gates: thresholds of the EvalGates fields that are set.
        samples, confidence, seed: the bootstrap's resamples, interval level and seed.
        examples: how many generate items with a reference to copy into ``examples``.
        items: the suite items by id, for the examples' prompt and reference text (both
            None without it: the shard records do not carry the prompt).

    ESTIMATEs carry, beyond the contract's keys, ``candidate_ci_low``/``candidate_ci_high``:
    the interval of the candidate's own value, which the "at most" probe gates and the win
    rate gate compare (``ci_low``/``ci_high`` are always the delta's). Categories carry
    ``metric``: the primary score they average.

    Raises:
        ValueError: no records, a malformed or duplicated record, an unknown gate, a bad judge.
    """
    check_thresholds(gates)
    kind, name = parse_judge_spec(judge)
    rows = _index(records)
    settings = {"samples": samples, "confidence": confidence, "seed": seed}

    win_series, wins = _win_series(rows)
    series = _metric_series(rows) + ([win_series] if win_series else []) + _probe_series(rows)
    categories = _category_series(rows)
    computed = _intervals(series + categories, **settings)

    estimates = []
    for s in series:
        estimates.append({"name": s.name, **computed[s.name], "higher_is_better": s.higher_is_better})
        if s.name == "domain.score":
            ppl = _perplexity_estimate(rows, **settings)
            if ppl is not None:
                estimates.append(ppl)

    win_rate = None
    if win_series is not None:
        won = computed["win_rate"]
        win_rate = {"value": won["candidate"], "ci_low": won["candidate_ci_low"], "ci_high": won["candidate_ci_high"],
                    "n": won["n"], "wins": wins.count(1.0), "ties": wins.count(0.5), "losses": wins.count(0.0)}

    gate_list, passed, reason = decide(gates, {e["name"]: e for e in estimates})
    return {
        "schema": SCHEMA_VERSION, "eval_id": eval_id, "suite_id": suite_id, "model_version_id": model_version_id,
        "base_model_id": base_model_id, "judge": f"{kind}:{name}", "items": len(rows), "shards": shards,
        "confidence": confidence, "bootstrap_samples": samples, "seed": seed,
        "estimates": estimates,
        "win_rate": win_rate,
        "categories": [{"category": c.name.removeprefix("category:"),
                        "metric": "rouge_l" if c.name == "category:domain" else "check_passed",
                        **{k: computed[c.name][k] for k in ("n", "candidate", "reference", "delta", "ci_low",
                                                            "ci_high")}}
                       for c in categories],
        "exposure": _exposure(rows),
        "gates": gate_list, "passed": passed, "reason": reason,
        "examples": _examples(rows, examples, items),
    }


def flat_metrics(results: dict[str, Any]) -> dict[str, float]:
    """The numbers of results.json as one flat map for an event: finite floats only, no text.

    Per ESTIMATE ``<name>`` (the candidate's value), ``<name>.reference``, ``.delta``,
    ``.ci_low``/``.ci_high`` (the delta's interval), ``.candidate_ci_low``/``.candidate_ci_high``
    and ``.n``; the win rate as ``win_rate`` with ``.ci_low``/``.ci_high`` of the rate itself,
    ``.n``, ``.wins``, ``.ties``, ``.losses``; ``gate.<gate>.bound``/``.margin``/``.passed``;
    ``passed`` and ``items``. Missing or non-finite values are left out.
    """
    flat: dict[str, float] = {}

    def put(key: str, value: Any) -> None:
        if isinstance(value, (bool, int, float)) and math.isfinite(value):
            flat[key] = float(value)

    for estimate in results.get("estimates", []):
        if estimate["name"] == "win_rate":
            continue
        put(estimate["name"], estimate.get("candidate"))
        for key in ("reference", "delta", "ci_low", "ci_high", "candidate_ci_low", "candidate_ci_high", "n"):
            put(f"{estimate['name']}.{key}", estimate.get(key))
    win_rate = results.get("win_rate")
    if win_rate:
        put("win_rate", win_rate.get("value"))
        for key in ("ci_low", "ci_high", "n", "wins", "ties", "losses"):
            put(f"win_rate.{key}", win_rate.get(key))
    for gate in results.get("gates", []):
        for key in ("bound", "margin", "passed"):
            put(f"gate.{gate['gate']}.{key}", gate.get(key))
    put("passed", results.get("passed"))
    put("items", results.get("items"))
    return flat
