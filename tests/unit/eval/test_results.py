"""results.json from shard records: estimates, win rate, categories, exposure, gates, flat metrics."""

from __future__ import annotations

import json
import math
import random
from typing import Any

import pytest

from services.eval.judging import combine, metric_verdict
from services.eval.metrics import rouge_l
from services.eval.results import flat_metrics, summarise

pytestmark = pytest.mark.unit

ESTIMATE_KEYS = {"name", "candidate", "reference", "delta", "ci_low", "ci_high", "n", "higher_is_better",
                 "candidate_ci_low", "candidate_ci_high"}
RUN = {"eval_id": "eval-0001", "suite_id": "suite-0123456789abcdef0123", "model_version_id": "mv-7",
       "base_model_id": "tiny-base", "judge": "metric:rouge_l", "shards": 3}
GENERAL = ("general/arithmetic", "general/factual", "general/reasoning", "general/instruction", "general/json")


def _scores(**values: Any) -> dict[str, Any]:
    base = {"exact_match": None, "rouge_l": None, "token_f1": None, "check_passed": None, "json_valid": None,
            "refused": 0, "toxicity": 0.0, "pii_found": 0}
    return {**base, **values}


def _side(output: str, scores: dict[str, Any], nll: float | None = None, tokens: int | None = None) -> dict:
    return {"output": output, "tokens": len(output.split()), "scores": scores, "ref_nll": nll, "ref_tokens": tokens}


def _generate(item_id: str, category: str, candidate: dict, reference: dict, judge: dict | None = None) -> dict:
    return {"id": item_id, "category": category, "kind": "generate", "candidate": candidate,
            "reference": reference, "judge": judge}


def _domain_record(item_id: str, reference_text: str, candidate_out: str, base_out: str,
                   nll: tuple[float, float] = (20.0, 25.0)) -> dict:
    sides = {}
    for side, out, side_nll in (("candidate", candidate_out, nll[0]), ("reference", base_out, nll[1])):
        sides[side] = _side(out, _scores(exact_match=int(out == reference_text), rouge_l=rouge_l(out, reference_text),
                                         token_f1=rouge_l(out, reference_text)), side_nll, 10)
    first = metric_verdict(candidate_out, base_out, reference_text)
    second = metric_verdict(base_out, candidate_out, reference_text)
    return _generate(item_id, "domain", sides["candidate"], sides["reference"],
                     {"first": first, "second": second, "win": combine(first, second)})


def _suite(*, seed: int = 0, domain: int = 40, general_pass: tuple[float, float] = (0.8, 0.8),
           canaries: int = 5, extractions: int = 6) -> tuple[list[dict], dict[str, dict]]:
    """Shard records of a realistic suite and its items; the candidate answers domain questions better."""
    rng = random.Random(seed)
    records, items = [], {}
    for i in range(domain):
        reference_text = f"Claims for policy {i} are settled within {rng.randint(2, 30)} business days by the team."
        good = reference_text.replace("by the team", "by our claims team")
        bad = f"Please contact support about policy {i}."
        item_id = f"dom-{i:05d}"
        items[item_id] = {"id": item_id, "category": "domain", "kind": "generate", "reference": reference_text,
                          "messages": [{"role": "system", "content": "Be brief."},
                                       {"role": "user", "content": f"How fast are claims on policy {i} settled?"}]}
        records.append(_domain_record(item_id, reference_text, good, bad))
    for sub in GENERAL:
        for i in range(12):
            passed = [int(rng.random() < p) for p in general_pass]
            extra = {"json_valid": passed[0]} if sub == "general/json" else {}
            records.append(_generate(f"gen-{sub.split('/')[1]}-{i:04d}", sub,
                                     _side("answer", _scores(check_passed=passed[0], **extra)),
                                     _side("answer", _scores(check_passed=passed[1],
                                                             **({"json_valid": passed[1]} if extra else {})))))
    for kind, expected in (("harmful", True), ("benign", False)):
        for i in range(10):
            refused = [int(expected) if rng.random() < 0.9 else int(not expected) for _ in range(2)]
            records.append(_generate(f"safe-{kind[0]}-{i:04d}", f"safety/{kind}",
                                     *(_side("...", _scores(check_passed=int(r == expected), refused=r,
                                                            toxicity=rng.random() * 0.05)) for r in refused)))
    for i in range(canaries):
        records.append({"id": f"can-{i:04d}", "category": "probe/canary", "kind": "canary",
                        "candidate": {"rank": 400 + i, "of": 999, "exposure": math.log2(1000 / (400 + i))},
                        "reference": {"rank": 500 + i, "of": 999, "exposure": math.log2(1000 / (500 + i))},
                        "judge": None})
    for i in range(extractions):
        side = {"output": "some continuation", "exact": 0, "near": 0, "similarity": 0.3, "pii_found": 0}
        records.append({"id": f"ext-{i:04d}", "category": "probe/extraction", "kind": "extraction",
                        "candidate": dict(side), "reference": dict(side), "judge": None})
    return records, items


def _by_name(results: dict) -> dict[str, dict]:
    return {e["name"]: e for e in results["estimates"]}


# --- a whole run ---------------------------------------------------------------------------------

def test_a_better_candidate_gets_a_complete_results_document() -> None:
    records, items = _suite()
    results = summarise(records, **RUN, gates={"win_rate_vs_base_min": 0.55, "domain_delta_min": 0.1,
                                                "forgetting_max": 0.5, "canary_exposure_max": 3.0}, items=items)
    assert {k: results[k] for k in ("schema", "eval_id", "items", "shards", "confidence", "bootstrap_samples",
                                    "seed", "judge")} == {
        "schema": 1, "eval_id": "eval-0001", "items": len(records), "shards": 3, "confidence": 0.95,
        "bootstrap_samples": 2000, "seed": 0, "judge": "metric:rouge_l"}
    names = [e["name"] for e in results["estimates"]]
    assert names == ["domain.exact_match", "domain.rouge_l", "domain.token_f1", "domain.score", "domain.perplexity",
                     "general.score", *(f"{sub}.score" for sub in sorted(GENERAL)), "json.valid", "instruction.ok",
                     "safety.refusal_rate", "safety.over_refusal_rate", "toxicity", "pii_leakage_rate", "win_rate",
                     "canary.exposure", "extraction.exact_rate", "extraction.near_rate"]
    for estimate in results["estimates"]:
        assert set(estimate) == ESTIMATE_KEYS
        assert estimate["ci_low"] <= estimate["ci_high"]
        assert estimate["delta"] == pytest.approx(estimate["candidate"] - estimate["reference"])
    by_name = _by_name(results)
    assert by_name["domain.score"]["ci_low"] > 0 and by_name["domain.score"]["n"] == 40
    assert by_name["domain.score"]["candidate"] == by_name["domain.rouge_l"]["candidate"]
    assert by_name["domain.perplexity"]["delta"] < 0 and not by_name["domain.perplexity"]["higher_is_better"]
    assert by_name["general.score"]["n"] == 60 and by_name["json.valid"]["n"] == 12
    assert by_name["pii_leakage_rate"]["n"] == 40 + 60 + 20 + 6     # generate and extraction items
    assert by_name["toxicity"]["n"] == 40 + 60 + 20
    assert results["passed"] and results["reason"] == "all gates passed"


def test_a_candidate_better_on_every_domain_item_has_a_win_rate_interval_above_half() -> None:
    records, _ = _suite()
    results = summarise(records, **RUN, gates={})
    win = results["win_rate"]
    assert win == {"value": 1.0, "ci_low": 1.0, "ci_high": 1.0, "n": 40, "wins": 40, "ties": 0, "losses": 0}
    estimate = _by_name(results)["win_rate"]
    assert (estimate["candidate"], estimate["reference"], estimate["delta"]) == (1.0, 0.5, 0.5)
    # a mixed record: 30 wins, 10 losses -> the interval sits above 0.5 but is not a point
    mixed, _ = _suite()
    for record in mixed[:10]:
        record["judge"] = {"first": "B", "second": "A", "win": 0.0}
    win = summarise(mixed, **RUN, gates={})["win_rate"]
    assert (win["wins"], win["losses"]) == (30, 10) and win["value"] == 0.75
    assert 0.5 < win["ci_low"] < 0.75 < win["ci_high"] <= 1.0


def test_an_always_first_llm_judge_yields_only_ties() -> None:
    records, _ = _suite()
    for record in records:
        if record["kind"] == "generate":
            record["judge"] = {"first": "A", "second": "A", "win": 1.0}   # a stale "win" is recomputed, not trusted
    results = summarise(records, **{**RUN, "judge": "model:tiny-judge"}, gates={"win_rate_vs_base_min": 0.55})
    win = results["win_rate"]
    generate = sum(r["kind"] == "generate" for r in records)
    assert (win["value"], win["ci_low"], win["ci_high"], win["ties"], win["wins"]) == (0.5, 0.5, 0.5, generate, 0)
    assert not results["passed"]
    gate = results["gates"][0]
    assert gate["bound"] <= 0.5 and gate["margin"] <= -0.05    # ties only: never better than the base
    assert results["reason"].startswith("failed: win_rate_vs_base_min lower bound ")
    assert results["judge"] == "model:tiny-judge"


def test_a_regressed_candidate_fails_domain_and_forgetting_gates_with_numbers() -> None:
    records, _ = _suite(general_pass=(0.3, 0.9))
    for record in records:     # the candidate now gives the base's bad answers and the base the good ones
        if record["category"] == "domain":
            record["candidate"], record["reference"] = record["reference"], record["candidate"]
            record["judge"] = {"first": "B", "second": "A", "win": 0.0}
    results = summarise(records, **RUN, gates={"domain_delta_min": 0.0, "forgetting_max": 0.05,
                                                "toxicity_max_delta": 0.5})
    assert not results["passed"]
    failed = {g["gate"]: g for g in results["gates"] if not g["passed"]}
    assert set(failed) == {"domain_delta_min", "forgetting_max"}
    reason = results["reason"]
    assert reason.startswith("failed: forgetting_max lower bound ")
    for gate in failed.values():
        assert f"{gate['bound']:.4g} vs {gate['threshold']:.4g} (short by {-gate['margin']:.4g})" in reason
    assert failed["forgetting_max"]["threshold"] == -0.05
    assert results["win_rate"]["losses"] == 40


def test_a_gate_without_items_fails_with_no_items_for_its_metric() -> None:
    records, _ = _suite(canaries=0)
    results = summarise(records, **RUN, gates={"canary_exposure_max": 3.0, "extraction_max": 0.05})
    assert results["exposure"] is None and "canary.exposure" not in _by_name(results)
    canary = next(g for g in results["gates"] if g["gate"] == "canary_exposure_max")
    assert canary["reason"] == "no items for canary.exposure" and canary["bound"] is None
    assert results["reason"].startswith("failed: canary_exposure_max no items for canary.exposure")


def test_exposure_lists_follow_item_ids_with_the_suite_constants() -> None:
    records, _ = _suite(canaries=3)
    random.Random(1).shuffle(records)
    exposure = summarise(records, **RUN, gates={})["exposure"]
    assert exposure["candidate"] == pytest.approx([math.log2(1000 / r) for r in (400, 401, 402)])
    assert exposure["reference"] == pytest.approx([math.log2(1000 / r) for r in (500, 501, 502)])
    assert exposure["candidates_per_canary"] == 999 and exposure["max_bits"] == pytest.approx(math.log2(1000))
    assert 1.3 < exposure["chance_bits"] < 1.5      # log2(e) for a large candidate set


def test_categories_use_each_category_primary_score() -> None:
    records, _ = _suite()
    results = summarise(records, **RUN, gates={})
    categories = {c["category"]: c for c in results["categories"]}
    assert list(categories) == sorted(categories)
    assert set(categories) == {"domain", *GENERAL, "safety/benign", "safety/harmful"}
    assert categories["domain"]["metric"] == "rouge_l"
    assert categories["domain"]["candidate"] == _by_name(results)["domain.rouge_l"]["candidate"]
    assert categories["safety/harmful"]["metric"] == "check_passed" and categories["safety/harmful"]["n"] == 10
    assert categories["general/json"]["delta"] == pytest.approx(_by_name(results)["general/json.score"]["delta"])


def test_examples_are_the_first_referenced_generate_items_by_id() -> None:
    records, items = _suite()
    random.Random(2).shuffle(records)
    results = summarise(records, **RUN, gates={}, examples=3, items=items)
    examples = results["examples"]
    assert [e["id"] for e in examples] == ["dom-00000", "dom-00001", "dom-00002"]
    assert examples[0]["prompt"] == "How fast are claims on policy 0 settled?"
    assert examples[0]["reference"] == items["dom-00000"]["reference"]
    assert examples[0]["win"] == 1.0 and "claims team" in examples[0]["candidate_output"]
    without_items = summarise(records, **RUN, gates={}, examples=1)["examples"][0]
    assert without_items["prompt"] is None and without_items["reference"] is None


def test_results_do_not_depend_on_record_order_and_are_json() -> None:
    records, _ = _suite()
    first = summarise(records, **RUN, gates={"domain_delta_min": 0.1}, seed=7)
    shuffled = list(records)
    random.Random(3).shuffle(shuffled)
    assert summarise(shuffled, **RUN, gates={"domain_delta_min": 0.1}, seed=7) == first
    assert json.loads(json.dumps(first, allow_nan=False)) == first


def test_small_groups_collapse_instead_of_producing_nan() -> None:
    records, _ = _suite(domain=1, canaries=1, extractions=1)
    results = summarise(records, **RUN, gates={"domain_delta_min": 0.0})
    one = _by_name(results)["domain.score"]
    assert one["n"] == 1 and one["ci_low"] == one["ci_high"] == pytest.approx(one["delta"])
    json.dumps(results, allow_nan=False)


# --- flat metrics --------------------------------------------------------------------------------

def test_flat_metrics_are_finite_numbers_only() -> None:
    records, _ = _suite(canaries=0)
    results = summarise(records, **RUN, gates={"canary_exposure_max": 3.0, "domain_delta_min": 0.1})
    flat = flat_metrics(results)
    assert all(isinstance(v, float) and math.isfinite(v) for v in flat.values())
    by_name = _by_name(results)
    assert flat["domain.rouge_l"] == by_name["domain.rouge_l"]["candidate"]
    assert flat["domain.rouge_l.delta"] == by_name["domain.rouge_l"]["delta"]
    assert flat["domain.rouge_l.ci_low"] == by_name["domain.rouge_l"]["ci_low"]
    assert flat["domain.rouge_l.ci_high"] == by_name["domain.rouge_l"]["ci_high"]
    assert flat["win_rate"] == 1.0 and flat["win_rate.ci_low"] == 1.0 and flat["win_rate.wins"] == 40.0
    assert flat["passed"] == 0.0 and flat["gate.domain_delta_min.passed"] == 1.0
    assert "gate.canary_exposure_max.bound" not in flat and flat["gate.canary_exposure_max.passed"] == 0.0
    assert not any("canary.exposure" in key for key in flat)


def test_flat_metrics_drop_non_finite_values_from_a_hand_edited_document() -> None:
    flat = flat_metrics({"estimates": [{"name": "toxicity", "candidate": float("nan"), "reference": 0.1,
                                        "delta": float("inf"), "ci_low": None, "ci_high": 0.2, "n": 3}],
                         "win_rate": None, "gates": [], "passed": True, "items": 3})
    assert flat == {"toxicity.reference": 0.1, "toxicity.ci_high": 0.2, "toxicity.n": 3.0, "passed": 1.0,
                    "items": 3.0}


# --- refusing bad input ---------------------------------------------------------------------------

def test_no_records_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="no item records to summarise"):
        summarise([], **RUN, gates={})
    with pytest.raises(ValueError, match="no item records to summarise"):
        summarise(iter(()), **RUN, gates={})


def test_bad_records_name_the_item() -> None:
    records, _ = _suite(domain=3)
    with pytest.raises(ValueError, match="'dom-00001' appears in more than one"):
        summarise(records + [records[1]], **RUN, gates={})
    broken = json.loads(json.dumps(records))
    broken[0]["candidate"]["scores"]["rouge_l"] = None     # scored on one side only
    with pytest.raises(ValueError, match="'dom-00000' has rouge_l on one side only"):
        summarise(broken, **RUN, gates={})
    broken = json.loads(json.dumps(records))
    broken[2]["reference"]["scores"]["toxicity"] = "high"
    with pytest.raises(ValueError, match="'dom-00002'.*toxicity is 'high'"):
        summarise(broken, **RUN, gates={})
    broken = json.loads(json.dumps(records))
    broken[0]["kind"] = "chat"
    with pytest.raises(ValueError, match="kind 'chat'"):
        summarise(broken, **RUN, gates={})
    broken = json.loads(json.dumps(records))
    broken[0]["judge"] = {"first": "C", "second": "A"}
    with pytest.raises(ValueError, match="'dom-00000'.*judge verdict"):
        summarise(broken, **RUN, gates={})


def test_unknown_gates_and_judges_are_refused_before_any_work() -> None:
    with pytest.raises(ValueError, match="unknown gate 'domain_min'"):
        summarise([], **RUN, gates={"domain_min": 0.1})
    with pytest.raises(ValueError, match="judge 'bleu' is not understood"):
        summarise([], **{**RUN, "judge": "bleu"}, gates={})
