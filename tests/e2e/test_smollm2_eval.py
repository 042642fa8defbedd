"""The real base model evaluated: SmolLM2-135M-Instruct + a LoRA adapter tuned on it, against the base,
on a suite with every kind of item, judged by SmolLM2 itself in both orders."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from gpu_worker.base_models import SMOLLM2_ID, import_smollm2
from gpu_worker.job import run_job
from services.common.storage import open_tenant_storage
from services.eval.generation import DecodingSettings
from services.eval.models import ModelLoader
from services.eval.probes import shared_pii_counter
from services.eval.results import summarise
from services.eval.shard_run import compute_shard
from services.eval.suites import SuiteOptions, build_suite, load_items
from tests.training_fixtures import TENANT, make_dataset, tiny_spec

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
MODELS = Path(os.environ.get("PRIVTUNE_MODELS", Path.home() / ".cache" / "privtune" / "models"))


@pytest.mark.timeout(900)
def test_smollm2_with_its_adapter_is_evaluated_against_itself_with_an_llm_judge(tmp_path: Path) -> None:
    base = import_smollm2(MODELS)
    storage_root = f"file://{tmp_path}/tenants"
    dataset = make_dataset(storage_root, n=16, holdout=4, name="smol")
    spec = tiny_spec(dataset, "lora", base_model=SMOLLM2_ID, max_steps=3, micro_batch_size=4, max_seq_length=64,
                     learning_rate=1e-3, checkpoint_every=3)
    done: list[dict] = []
    assert run_job(spec, MODELS, storage_root, tmp_path / "work",
                   lambda kind, payload: done.append(payload) if kind == "completed" else None) == 0
    storage = open_tenant_storage(storage_root, TENANT)
    suite = build_suite(storage, name="smol", dataset_prefix=storage.key_for(dataset).rstrip("/"),
                        options=SuiteOptions(general_per_category=1, safety_per_category=1, extraction_items=1))
    items = load_items(storage, suite.prefix, suite.manifest_sha256, 0, suite.item_count)
    assert {i["kind"] for i in items} == {"generate", "extraction"} and suite.counts["domain"] == 4

    loader = ModelLoader(MODELS, tmp_path / "cache", capacity=3)
    reference = loader.base(SMOLLM2_ID, base.sha256)
    candidate = loader.candidate(storage, done[0]["artifact_uri"], done[0]["artifact_sha256"], SMOLLM2_ID,
                                 base.sha256)
    records = compute_shard(items, candidate=candidate, reference=reference, judge=reference,
                            settings=DecodingSettings(max_new_tokens=24, batch_size=8), pii=shared_pii_counter())
    assert [r["id"] for r in records] == [i["id"] for i in items]
    judged = [r["judge"] for r in records if r["judge"] is not None]
    assert len(judged) == sum(1 for i in items if i["kind"] == "generate")
    for verdict in judged:  # the order-swap rule: a win needs both orders to agree
        expected = 1.0 if (verdict["first"], verdict["second"]) == ("A", "B") else \
            0.0 if (verdict["first"], verdict["second"]) == ("B", "A") else 0.5
        assert verdict["win"] == expected

    results = summarise(records, eval_id="ev-smol", suite_id=suite.suite_id, model_version_id="smol/v1",
                        base_model_id=SMOLLM2_ID, judge=f"model:{SMOLLM2_ID}", shards=1,
                        gates={"win_rate_vs_base_min": 0.5, "forgetting_max": 0.5},
                        items={i["id"]: i for i in items})
    names = {e["name"] for e in results["estimates"]}
    assert {"domain.rouge_l", "domain.perplexity", "general.score", "safety.refusal_rate", "win_rate",
            "extraction.exact_rate", "pii_leakage_rate"} <= names
    for e in results["estimates"]:
        assert all(math.isfinite(e[k]) for k in ("candidate", "reference", "delta", "ci_low", "ci_high"))
        assert e["ci_low"] <= e["delta"] <= e["ci_high"]
    assert {g["gate"] for g in results["gates"]} == {"win_rate_vs_base_min", "forgetting_max"}
    win = results["win_rate"]
    assert win["wins"] + win["ties"] + win["losses"] == win["n"] == len(judged)
