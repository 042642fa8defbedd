"""Privacy-utility trade-off of DP-SGD on the support-desk task with planted canaries (issue 14).

    .venv/bin/python benchmarks/privacy_utility.py [--steps 60] [--batch 32] [--lr 0.01] [--epsilons 1,3,8,inf]
                                                   [--model tiny|smollm2] [--tickets 640] [--canaries 5]
                                                   [--repeats 10] [--threads N]

1. Data: ``tests.generators.support_task.support_tickets(--tickets, seed 1)`` written as a raw
   JSONL object and curated by the real curation pipeline (chat format, 15% holdout, PII stage
   off: the tickets hold no PII) with canaries on: ``--canaries`` secrets, ``--repeats`` copies
   each in the training split, ranked against ``--candidates`` unseen secrets.
2. Suite: ``services.eval.suites.build_suite`` on that version: every holdout ticket (domain),
   a small general slice (``--general-per-category`` per category, for forgetting) and the
   canary probes from the version's ``canaries.json``; no safety slice, no extraction probes.
3. Training: for each epsilon, the training job (``gpu_worker.job.run_job``) fully fine-tunes
   the base on the canaried version, DP-SGD on with that target epsilon (delta 1e-5, per-example
   clip 1.0), ``inf`` meaning DP off. Every run has the same steps, batch, learning rate and seed:
   only DP differs. The default batch (32) and learning rate (0.01) are on DP's side: at a batch of
   8, DP-SGD's noise swamps the clipped gradients and the DP runs barely leave the base.
4. Scoring: each artifact against its base with the eval shard runner
   (``services.eval.shard_run.compute_shard``, greedy, ROUGE-L judge) and
   ``services.eval.results.summarise`` (paired percentile bootstrap, 2,000 resamples).

Prints a markdown table: the target and spent epsilon (the accountant's value in the run's
completed event), the held-out loss, the domain score (ROUGE-L against the holdout answers,
the candidate's value and its 95% interval), forgetting (the general score's delta against
the base, with the delta's interval), the mean canary exposure in bits (with its interval, next
to chance and the maximum), and the domain score as a share of the non-DP run's in the same
invocation. Only counts and exposures are printed, never a secret.

``--model tiny`` (default): ``gpu_worker.base_models.build_tiny_model`` (a randomly initialised
2-layer, 64-wide Llama with a byte-level tokenizer) in a temporary folder. ``--model smollm2``:
SmolLM2-135M-Instruct from the model store (``$PRIVTUNE_MODELS`` or ``~/.cache/privtune/models``).
The default learning rate is the tiny model's: full fine-tuning of SmolLM2 diverges at 0.01 (held-out
loss 8.5 -> 26.9 in 2 steps), so pass one like ``--lr 2e-5``. Per-example gradients of 135M parameters
are slow on a CPU (2 DP steps of 4 took about 2 minutes on 2 cores): run it on a GPU.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TENANT = "bench"
DELTA = 1e-5
CLIP = 1.0


@dataclass(frozen=True)
class Row:
    """One epsilon's measurements (numbers only)."""

    target: float                 # math.inf: DP off
    spent: float
    initial_loss: float
    eval_loss: float
    domain: dict[str, Any]        # the domain.score ESTIMATE
    general: dict[str, Any] | None
    exposure: dict[str, Any]      # the canary.exposure ESTIMATE
    seconds: float


def base_model(name: str, work: Path) -> tuple[Path, str]:
    """(model store root, model id) of the chosen base."""
    if name == "tiny":
        from gpu_worker.base_models import build_tiny_model

        build_tiny_model(work / "models")
        return work / "models", "tiny-llama"
    from gpu_worker.base_models import SMOLLM2_ID
    from services.common.model_store import is_stored

    root = Path(os.environ.get("PRIVTUNE_MODELS", Path.home() / ".cache" / "privtune" / "models"))
    if not is_stored(root, SMOLLM2_ID):
        raise SystemExit(f"{SMOLLM2_ID} is not in the model store {root}; import it first "
                         "(gpu_worker.base_models.import_smollm2, or run the demo)")
    return root, SMOLLM2_ID


def curate(storage: Any, work: Path, args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """The canaried dataset version (folder key, manifest), curated by the curation pipeline."""
    from services.curation.canaries import CanaryConfig
    from services.curation.config import CurationConfig
    from services.curation.pipeline import Curator
    from tests.generators.support_task import support_tickets

    rows = support_tickets(args.tickets, 1)
    storage.write("raw/tickets.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())
    canaries = CanaryConfig(count=args.canaries, repeats=args.repeats, candidates=args.candidates, seed=args.seed)
    config = CurationConfig(redact_pii=False, holdout_fraction=0.15, output_format="chat", canaries=canaries,
                            seed=args.seed)
    (work / "curate").mkdir()
    outcome = Curator(config, salt="privacy-utility").run(storage, "raw/", "support", "0" * 64,
                                                          work_dir=work / "curate")
    manifest = outcome.version.manifest
    assert isinstance(manifest, dict)
    return outcome.version.manifest_key.rsplit("/", 1)[0], manifest


def train(storage: Any, storage_root: str, models: Path, model_id: str, version: str, epsilon: float,
          work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Run the training job for one epsilon; its completed event."""
    from gpu_worker.job import run_job
    from services.common.training_spec import TrainingSpec

    job_id = "eps-inf" if math.isinf(epsilon) else f"eps-{epsilon:g}"
    dp = ({"enabled": False} if math.isinf(epsilon) else
          {"enabled": True, "target_epsilon": epsilon, "target_delta": DELTA, "max_grad_norm": CLIP})
    spec = TrainingSpec.model_validate({
        "job_id": job_id, "tenant_id": TENANT, "method": "full", "base_model": model_id,
        "dataset_uri": storage.uri_for(version), "max_steps": args.steps, "micro_batch_size": args.batch,
        "learning_rate": args.lr, "checkpoint_every": args.steps, "seed": args.seed, "dp": dp})
    events: list[dict[str, Any]] = []
    rc = run_job(spec, models, storage_root, work / job_id, lambda kind, body: events.append({"kind": kind, **body}))
    done = [e for e in events if e["kind"] == "completed"]
    if rc != 0 or not done:
        failed = [{k: e.get(k) for k in ("error_code", "reason")} for e in events if e["kind"] == "failed"]
        raise SystemExit(f"training at epsilon {epsilon:g} failed: {failed}")
    return done[0]


def evaluate(storage: Any, loader: Any, model_id: str, suite: Any, items: list[dict[str, Any]],
             done: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """results.json of the trained artifact against its base."""
    from services.eval.generation import DecodingSettings
    from services.eval.results import summarise
    from services.eval.shard_run import compute_shard

    candidate = loader.candidate(storage, done["artifact_uri"], done["artifact_sha256"], model_id)
    records = compute_shard(items, candidate=candidate, reference=loader.base(model_id), judge=("metric", "rouge_l"),
                            settings=DecodingSettings(max_new_tokens=args.max_new_tokens, batch_size=16), pii=None)
    return summarise(records, eval_id="privacy-utility", suite_id=suite.suite_id, model_version_id="bench",
                     base_model_id=model_id, judge="metric:rouge_l", shards=1, gates={}, seed=args.seed)


def measure(args: argparse.Namespace, work: Path) -> tuple[list[Row], dict[str, Any], dict[str, Any], Any]:
    """Curate, build the suite, then train and evaluate at each epsilon."""
    from services.common.storage import open_tenant_storage
    from services.eval.models import ModelLoader
    from services.eval.suites import SuiteOptions, build_suite, load_items

    models, model_id = base_model(args.model, work)
    storage_root = f"file://{work}/tenants"
    storage = open_tenant_storage(storage_root, TENANT)
    version, manifest = curate(storage, work, args)
    options = SuiteOptions(include_general=args.general_per_category > 0,
                           general_per_category=max(1, args.general_per_category), include_safety=False,
                           max_domain_items=10_000, extraction_items=0, seed=args.seed)
    suite = build_suite(storage, name="privacy-utility", dataset_prefix=version, options=options)
    items = load_items(storage, suite.prefix, suite.manifest_sha256, 0, suite.item_count)
    loader = ModelLoader(models, work / "artifact-cache")
    rows = []
    exposure_meta: dict[str, Any] = {}
    for epsilon in args.epsilons:
        started = time.monotonic()
        done = train(storage, storage_root, models, model_id, version, epsilon, work, args)
        results = evaluate(storage, loader, model_id, suite, items, done, args)
        estimates = {e["name"]: e for e in results["estimates"]}
        exposure_meta = {k: results["exposure"][k] for k in ("max_bits", "chance_bits", "candidates_per_canary")}
        rows.append(Row(epsilon, float(done["epsilon_spent"]), float(done["initial_eval_loss"]),
                        float(done["eval_loss"]), estimates["domain.score"], estimates.get("general.score"),
                        estimates["canary.exposure"], time.monotonic() - started))
        print(f"  epsilon {epsilon:g}: trained and scored in {rows[-1].seconds:.0f}s", file=sys.stderr, flush=True)
    return rows, manifest, exposure_meta, suite


def _interval(low: float, high: float, digits: int) -> str:
    return f"[{low:.{digits}f}, {high:.{digits}f}]"


def table(rows: list[Row], exposure: dict[str, Any]) -> str:
    """The markdown table (numbers only)."""
    non_dp = next((r for r in rows if math.isinf(r.target)), None)
    lines = ["| ε target | ε spent | held-out loss | domain ROUGE-L [95% CI] | forgetting: Δ general [95% CI] "
             f"| canary exposure, bits [95% CI] (chance {exposure['chance_bits']:.2f}, max "
             f"{exposure['max_bits']:.2f}) | domain / non-DP |",
             "| ---: | ---: | ---: | --- | --- | --- | ---: |"]
    for r in rows:
        d, x = r.domain, r.exposure
        general = ("n/a" if r.general is None else
                   f"{r.general['delta']:+.3f} {_interval(r.general['ci_low'], r.general['ci_high'], 3)}")
        ratio = (f"{d['candidate'] / non_dp.domain['candidate']:.2f}"
                 if non_dp is not None and non_dp.domain["candidate"] > 0 else "n/a")
        lines.append(f"| {'∞ (no DP)' if math.isinf(r.target) else f'{r.target:g}'} | "
                     f"{'—' if math.isinf(r.target) else f'{r.spent:.2f}'} | "
                     f"{r.initial_loss:.2f} → {r.eval_loss:.2f} | "
                     f"{d['candidate']:.3f} {_interval(d['candidate_ci_low'], d['candidate_ci_high'], 3)} | "
                     f"{general} | "
                     f"{x['candidate']:.2f} {_interval(x['candidate_ci_low'], x['candidate_ci_high'], 2)} | {ratio} |")
    return "\n".join(lines)


def _epsilons(text: str) -> list[float]:
    values = [math.inf if v.strip().lower() in ("inf", "∞") else float(v) for v in text.split(",") if v.strip()]
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError("epsilons are positive numbers or inf, comma-separated, e.g. 1,3,8,inf")
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=("tiny", "smollm2"), default="tiny")
    parser.add_argument("--epsilons", type=_epsilons, default=_epsilons("1,3,8,inf"),
                        help="target epsilons, inf = DP off (default 1,3,8,inf)")
    parser.add_argument("--steps", type=int, default=60, help="optimizer steps per run")
    parser.add_argument("--batch", type=int, default=32, help="micro-batch size (expected Poisson batch under DP)")
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--tickets", type=int, default=640, help="raw support tickets before curation")
    parser.add_argument("--canaries", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=10, help="training copies of each canary")
    parser.add_argument("--candidates", type=int, default=199, help="unseen secrets each canary is ranked against")
    parser.add_argument("--general-per-category", type=int, default=4, help="general slice items per category "
                        "(0: no general slice, no forgetting column)")
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args(argv)
    if args.threads > 0:
        import torch

        torch.set_num_threads(args.threads)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="privacy-utility-") as tmp:
        rows, manifest, exposure, suite = measure(args, Path(tmp))
    counts = manifest["counts"]
    print(f"model {args.model}, method full, {args.steps} steps of {args.batch}, lr {args.lr:g}, seed {args.seed}; "
          f"train split {counts['train']} examples ({args.canaries} canaries x {args.repeats} copies among them), "
          f"holdout {counts['holdout']}; suite {suite.counts.get('domain', 0)} domain, "
          f"{sum(n for c, n in suite.counts.items() if c.startswith('general/'))} general, "
          f"{suite.canaries} canaries x {exposure['candidates_per_canary']} candidates; "
          f"DP delta {DELTA:g}, clip {CLIP:g}; {time.monotonic() - started:.0f}s in all\n")
    print(table(rows, exposure))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
