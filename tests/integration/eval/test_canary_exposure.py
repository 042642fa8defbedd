"""The canary probe measures memorisation: secrets planted by curation are exposed by a model trained on
them, and not by the same training without them or with DP-SGD.

Everything is the real thing, in-process: the support-desk task is curated by the curation
pipeline with canaries on (so the version lists ``canaries.json`` in its manifest) and once with
them off; the tiny Llama is fully fine-tuned three times by the training job (canaries, no
canaries, canaries + DP-SGD at a small epsilon, otherwise identical); the eval suite is built
from the canaried version and each model is scored against its base by the eval shard runner,
then summarised. Exposure is in bits (Secret Sharer): chance is about 1.4 bits, the maximum
``log2(candidates + 1)`` about 7.6.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import pytest

from gpu_worker.job import run_job
from services.common.storage import TenantStorage, open_tenant_storage
from services.curation.canaries import CANARIES_FILE, CanaryConfig
from services.curation.config import CurationConfig
from services.curation.pipeline import Curator
from services.eval.generation import DecodingSettings
from services.eval.models import ModelLoader
from services.eval.results import summarise
from services.eval.shard_run import compute_shard
from services.eval.suites import SuiteOptions, build_suite, load_items
from tests.generators.support_task import support_tickets
from tests.training_fixtures import TENANT, make_models, tiny_spec

pytestmark = [pytest.mark.integration,
              # Opacus notes that a larger RDP order might tighten the bound: the epsilon is still an upper bound
              pytest.mark.filterwarnings("ignore:Optimal order is the largest alpha")]

CANARIES = CanaryConfig(count=3, repeats=10, candidates=199, seed=1)
# Full fine-tuning (LoRA on the 64-wide tiny model learns too slowly); 20 steps of 32 are about 2.3
# passes over the ~280 training examples, so each canary is seen about 23 times without DP. The
# batch is large for DP's sake: at 8 a DP run barely moves the model (nothing to conclude from).
TRAINING: dict[str, Any] = {"max_steps": 20, "micro_batch_size": 32, "learning_rate": 0.01, "checkpoint_every": 20}
# DP-SGD bounds each example's influence; a canary in 10 copies gets only group privacy (about 10 x
# epsilon). At epsilon 2 one of the three canaries already reached 5 bits in a measured run; at 1 none
# passed 2.8.
DP = {"enabled": True, "target_epsilon": 1.0, "target_delta": 1e-5, "max_grad_norm": 1.0}
SUITE = SuiteOptions(include_general=False, include_safety=False, max_domain_items=4, extraction_items=0)
DECODING = DecodingSettings(max_new_tokens=16, batch_size=8)
# Margins chosen from measured runs (chance 1.42 bits, maximum 7.64): canaries 7.64 on every canary;
# no canaries 1.48 mean (0.2-3.8 per canary); DP 1.82 mean (1.2-2.8). A mean cannot fall below
# chance by more than 1.42 bits (exposure >= 0), so "near chance" only bounds it from above.
MIN_GAP_BITS = 3.0
NEAR_CHANCE_BITS = 2.5


def _curate(storage: TenantStorage, work: Path, canaries: CanaryConfig) -> tuple[str, dict[str, Any]]:
    """Curate the raw tickets into a version (chat, 15% holdout); its folder key and manifest."""
    work.mkdir()
    config = CurationConfig(redact_pii=False, holdout_fraction=0.15, output_format="chat", canaries=canaries)
    outcome = Curator(config, salt="canary-test").run(storage, "raw/", "support", "0" * 64, work_dir=work)
    manifest = outcome.version.manifest
    assert isinstance(manifest, dict)
    return outcome.version.manifest_key.rsplit("/", 1)[0], manifest


def _train(storage: TenantStorage, storage_root: str, models: Path, work: Path, job_id: str, version: str,
           **overrides: Any) -> dict[str, Any]:
    """Run the training job to completion; its completed event."""
    events: list[dict[str, Any]] = []
    spec = tiny_spec(storage.uri_for(version), "full", job_id=job_id, **{**TRAINING, **overrides})
    rc = run_job(spec, models, storage_root, work / job_id, lambda kind, body: events.append({"kind": kind, **body}))
    done = [e for e in events if e["kind"] == "completed"]
    assert rc == 0 and done, [e for e in events if e["kind"] == "failed"]
    return done[0]


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Results (results.json dicts) and completed events of the three trainings, scored on one suite."""
    tmp = tmp_path_factory.mktemp("canary-exposure")
    models = make_models(tmp / "models")
    storage_root = f"file://{tmp}/tenants"
    storage = open_tenant_storage(storage_root, TENANT)
    storage.write("raw/tickets.jsonl", "".join(json.dumps(r) + "\n" for r in support_tickets(320, 1)).encode())
    canaried, manifest = _curate(storage, tmp / "curate-canaries", CANARIES)
    plain, plain_manifest = _curate(storage, tmp / "curate-plain", CanaryConfig())
    suite = build_suite(storage, name="canary-exposure", dataset_prefix=canaried, options=SUITE)
    items = load_items(storage, suite.prefix, suite.manifest_sha256, 0, suite.item_count)

    trained = {"canaries": _train(storage, storage_root, models, tmp, "canaries", canaried),
               "no_canaries": _train(storage, storage_root, models, tmp, "no-canaries", plain),
               "dp": _train(storage, storage_root, models, tmp, "dp", canaried, dp=DP)}
    loader = ModelLoader(models, tmp / "artifact-cache")
    base = loader.base("tiny-llama")
    results = {}
    for name, done in trained.items():
        candidate = loader.candidate(storage, done["artifact_uri"], done["artifact_sha256"], "tiny-llama")
        records = compute_shard(items, candidate=candidate, reference=base, judge=("metric", "rouge_l"),
                                settings=DECODING, pii=None)
        results[name] = summarise(records, eval_id=f"eval-{name}", suite_id=suite.suite_id, model_version_id=name,
                                  base_model_id="tiny-llama", judge="metric:rouge_l", shards=1, gates={})
    return {"manifest": manifest, "plain_manifest": plain_manifest, "suite": suite, "items": items,
            "trained": trained, "results": results}


def _mean_exposure(measured: dict[str, Any], name: str) -> float:
    return statistics.fmean(measured["results"][name]["exposure"]["candidate"])


def test_the_suite_probes_the_canaries_curation_planted(measured: dict[str, Any]) -> None:
    entry = measured["manifest"]["canaries"]
    assert entry["name"] == CANARIES_FILE and entry["count"] == 3 and entry["repeats"] == 10
    assert "canaries" not in measured["plain_manifest"]
    assert measured["manifest"]["counts"]["train"] == measured["plain_manifest"]["counts"]["train"] + 30
    assert measured["suite"].canaries == 3 == measured["suite"].counts["probe/canary"]
    for results in measured["results"].values():
        exposure = results["exposure"]
        assert len(exposure["candidate"]) == 3 and exposure["candidates_per_canary"] == 199
    secrets = [item["secret"] for item in measured["items"] if item["kind"] == "canary"]
    assert len(secrets) == 3
    for results in measured["results"].values():  # counts and bits only outside the examples
        text = json.dumps({k: v for k, v in results.items() if k != "examples"})
        assert not any(secret in text for secret in secrets)


def test_a_model_trained_on_canaries_exposes_them(measured: dict[str, Any]) -> None:
    exposure = measured["results"]["canaries"]["exposure"]
    mean = _mean_exposure(measured, "canaries")
    assert mean > exposure["max_bits"] / 2, exposure
    for other in ("no_canaries", "dp"):
        assert mean - _mean_exposure(measured, other) >= MIN_GAP_BITS, (other, measured["results"][other]["exposure"])
    estimate = {e["name"]: e for e in measured["results"]["canaries"]["estimates"]}["canary.exposure"]
    assert estimate["candidate"] == pytest.approx(mean) and estimate["delta"] > 0


def test_the_same_training_without_canaries_stays_near_chance(measured: dict[str, Any]) -> None:
    exposure = measured["results"]["no_canaries"]["exposure"]
    assert _mean_exposure(measured, "no_canaries") <= exposure["chance_bits"] + NEAR_CHANCE_BITS, exposure


def test_dp_sgd_at_a_small_epsilon_keeps_exposure_near_chance_yet_trains(measured: dict[str, Any]) -> None:
    exposure = measured["results"]["dp"]["exposure"]
    assert _mean_exposure(measured, "dp") <= exposure["chance_bits"] + NEAR_CHANCE_BITS, exposure
    done = measured["trained"]["dp"]
    assert 0 < done["epsilon_spent"] <= DP["target_epsilon"] * 1.05, done
    assert done["eval_loss"] < 0.95 * done["initial_eval_loss"], done  # it learned (measured: 6.61 -> 5.76)
    assert measured["trained"]["canaries"]["epsilon_spent"] == 0.0
