"""Privacy-utility trade-off of DP-SGD with LoRA on the support-desk task with planted canaries (issue 14).

    .venv/bin/python benchmarks/privacy_utility.py [--epsilons 1,3,8,inf] [--method lora|full] [--steps 120]
        [--batch 256] [--lr 0.005] [--rank 16] [--alpha 32] [--targets q_proj,...,down_proj] [--tickets 4000]
        [--canaries 10] [--repeats 1] [--public-tickets 4000] [--pretrain-steps 150] [--pretrain-batch 64]
        [--pretrain-lr 0.01] [--domain-items 200] [--model tiny|smollm2] [--threads N]

0. Public pretraining (tiny model only; ``--pretrain-steps 0`` skips it): DP fine-tuning keeps
   utility when the base is pretrained on public data, so the randomly initialised tiny Llama
   (``gpu_worker.base_models.build_tiny_model``: 2 layers, 64 wide, byte tokenizer) is first fully
   fine-tuned, without DP, by the training job on ``public_support_tickets(--public-tickets)``:
   the same chat format, other intents, other replies (none of the private ones). The job's
   artifact is imported into the temporary model store as the base ``tiny-llama-public``
   (``gpu_worker.base_models.import_hf_folder``: manifest with every file's sha256, which the eval
   verifies). Its own domain score (the reference side of every eval) shows it does not know the
   private replies.
1. Private data: ``support_tickets(--tickets, seed 1)`` curated by the real curation pipeline (chat
   format, 15% holdout, PII stage off: the tickets hold no PII) with canaries on: ``--canaries``
   secrets, ``--repeats`` copies each in the training split, each ranked against ``--candidates``
   unseen secrets. ε bounds one example's influence, so ``--repeats 1`` is what DP's guarantee
   covers; with r copies only group privacy (about rε) applies.
2. Suite: ``services.eval.suites.build_suite`` on that version: up to ``--domain-items`` holdout
   tickets (domain), a small general slice (``--general-per-category`` per category, for
   forgetting) and the canary probes; no safety slice, no extraction probes.
3. Training: for each ε the training job (``gpu_worker.job.run_job``) fine-tunes the base on the
   canaried version with ``--method`` (LoRA by default, ``full`` also possible), DP-SGD on with that
   target ε (δ 1e-5, per-example clip 1.0), ``inf`` meaning DP off. Every run has the same steps,
   batch, learning rate, LoRA settings and seed: only DP differs.
4. Scoring: each artifact against its base with the eval shard runner
   (``services.eval.shard_run.compute_shard``, greedy, ROUGE-L judge) and
   ``services.eval.results.summarise`` (paired percentile bootstrap, 2,000 resamples).

Prints the pretraining stage's numbers, then a markdown table: the target and spent ε (the
accountant's value in the run's completed event), the held-out loss, the domain score (ROUGE-L
against the holdout answers, the candidate's value and its 95% interval), forgetting (the general
score's delta against the base, with the delta's interval), the mean canary exposure in bits (with
its interval, next to chance and the maximum), the domain score as a share of the non-DP run's in
the same invocation, and the seconds to train and score. Only counts and exposures are printed,
never a secret. Everything is seeded: the same command prints the same numbers (but the seconds).

``--model smollm2``: SmolLM2-135M-Instruct from the model store (``$PRIVTUNE_MODELS`` or
``~/.cache/privtune/models``), no public stage; pass a learning rate for it (e.g. ``--lr 2e-4`` for
LoRA, ``2e-5`` for full). Per-example gradients of 135M parameters are slow on a CPU: run it on a GPU.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
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
PUBLIC_BASE = "tiny-llama-public"
# The job's divergence check fails a run whose loss exceeds 3x its running median. Near a loss of 0
# (the tiny task is learnt to 0.01-0.05) one noisy batch is such a jump: both stages raise the factor.
DIVERGENCE_FACTOR = 100.0


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


@dataclass(frozen=True)
class Pretraining:
    """The public pretraining stage's numbers."""

    examples: int
    initial_loss: float
    eval_loss: float
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


def curate(storage: Any, work: Path, rows: list[dict[str, Any]], name: str, canaries: Any,
           seed: int) -> tuple[str, dict[str, Any]]:
    """A dataset version of ``rows`` (folder key, manifest), curated by the curation pipeline."""
    from services.curation.canaries import CanaryConfig
    from services.curation.config import CurationConfig
    from services.curation.pipeline import Curator

    storage.write(f"raw-{name}/tickets.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())
    config = CurationConfig(redact_pii=False, holdout_fraction=0.15, output_format="chat",
                            canaries=canaries or CanaryConfig(), seed=seed)
    (work / f"curate-{name}").mkdir()
    outcome = Curator(config, salt="privacy-utility").run(storage, f"raw-{name}/", name, "0" * 64,
                                                          work_dir=work / f"curate-{name}")
    manifest = outcome.version.manifest
    assert isinstance(manifest, dict)
    return outcome.version.manifest_key.rsplit("/", 1)[0], manifest


def train(storage: Any, storage_root: str, models: Path, spec_fields: dict[str, Any], work: Path) -> dict[str, Any]:
    """Run the training job for ``spec_fields``; its completed event."""
    from gpu_worker.job import run_job
    from services.common.training_spec import TrainingSpec

    spec = TrainingSpec.model_validate({"tenant_id": TENANT, "checkpoint_every": spec_fields["max_steps"],
                                        "divergence_factor": DIVERGENCE_FACTOR, **spec_fields})
    events: list[dict[str, Any]] = []
    rc = run_job(spec, models, storage_root, work / spec.job_id,
                 lambda kind, body: events.append({"kind": kind, **body}))
    done = [e for e in events if e["kind"] == "completed"]
    if rc != 0 or not done:
        failed = [{k: e.get(k) for k in ("error_code", "reason")} for e in events if e["kind"] == "failed"]
        raise SystemExit(f"training job {spec.job_id} failed: {failed}")
    return done[0]


def pretrain(storage: Any, storage_root: str, models: Path, model_id: str, work: Path,
             args: argparse.Namespace) -> tuple[str, Pretraining]:
    """Fully fine-tune ``model_id`` on public tickets (no DP) and store the result as a new base model."""
    from gpu_worker.base_models import import_hf_folder
    from tests.generators.support_task import public_support_tickets

    started = time.monotonic()
    version, manifest = curate(storage, work, public_support_tickets(args.public_tickets, args.seed), "public",
                               None, args.seed)
    done = train(storage, storage_root, models, {
        "job_id": "public-pretraining", "method": "full", "base_model": model_id,
        "dataset_uri": storage.uri_for(version), "max_steps": args.pretrain_steps,
        "micro_batch_size": args.pretrain_batch, "learning_rate": args.pretrain_lr, "seed": args.seed}, work)
    # The job's artifact is a Hugging Face folder: stage a copy that records its parameter count, import it.
    staged = work / "public-base"
    shutil.copytree(work / "public-pretraining" / "artifact", staged)
    config = json.loads((staged / "config.json").read_text())
    config["num_parameters"] = _parameters(staged)
    (staged / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    import_hf_folder(staged, models, PUBLIC_BASE)
    return PUBLIC_BASE, Pretraining(manifest["counts"]["train"], float(done["initial_eval_loss"]),
                                    float(done["eval_loss"]), time.monotonic() - started)


def _parameters(folder: Path) -> int:
    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), "pt") as weights:
        return sum(math.prod(weights.get_slice(k).get_shape()) for k in weights.keys())


def fine_tune(storage: Any, storage_root: str, models: Path, model_id: str, version: str, epsilon: float,
              work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The private fine-tuning run at ``epsilon`` (``inf``: DP off); its completed event."""
    dp = ({"enabled": False} if math.isinf(epsilon) else
          {"enabled": True, "target_epsilon": epsilon, "target_delta": DELTA, "max_grad_norm": CLIP})
    fields: dict[str, Any] = {
        "job_id": "eps-inf" if math.isinf(epsilon) else f"eps-{epsilon:g}", "method": args.method,
        "base_model": model_id, "dataset_uri": storage.uri_for(version), "max_steps": args.steps,
        "micro_batch_size": args.batch, "learning_rate": args.lr, "seed": args.seed, "dp": dp}
    if args.method == "lora":
        fields["lora"] = {"r": args.rank, "alpha": args.alpha, "target_modules": args.targets}
    return train(storage, storage_root, models, fields, work)


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


def measure(args: argparse.Namespace, work: Path) -> tuple[list[Row], Pretraining | None, dict[str, Any],
                                                           dict[str, Any], Any]:
    """Pretrain on public tickets, curate the private ones, build the suite, then train and evaluate at each epsilon."""
    from services.common.storage import open_tenant_storage
    from services.curation.canaries import CanaryConfig
    from services.eval.models import ModelLoader
    from services.eval.suites import SuiteOptions, build_suite, load_items
    from tests.generators.support_task import support_tickets

    models, model_id = base_model(args.model, work)
    storage_root = f"file://{work}/tenants"
    storage = open_tenant_storage(storage_root, TENANT)
    public = None
    if args.pretrain_steps > 0:
        model_id, public = pretrain(storage, storage_root, models, model_id, work, args)
        print(f"  public pretraining: {public.seconds:.0f}s", file=sys.stderr, flush=True)
    canaries = CanaryConfig(count=args.canaries, repeats=args.repeats, candidates=args.candidates, seed=args.seed)
    version, manifest = curate(storage, work, support_tickets(args.tickets, 1), "support", canaries, args.seed)
    options = SuiteOptions(include_general=args.general_per_category > 0,
                           general_per_category=max(1, args.general_per_category), include_safety=False,
                           max_domain_items=args.domain_items, extraction_items=0, seed=args.seed)
    suite = build_suite(storage, name="privacy-utility", dataset_prefix=version, options=options)
    items = load_items(storage, suite.prefix, suite.manifest_sha256, 0, suite.item_count)
    loader = ModelLoader(models, work / "artifact-cache")
    rows = []
    exposure_meta: dict[str, Any] = {}
    for epsilon in args.epsilons:
        started = time.monotonic()
        done = fine_tune(storage, storage_root, models, model_id, version, epsilon, work, args)
        results = evaluate(storage, loader, model_id, suite, items, done, args)
        estimates = {e["name"]: e for e in results["estimates"]}
        exposure_meta = {k: results["exposure"][k] for k in ("max_bits", "chance_bits", "candidates_per_canary")}
        rows.append(Row(epsilon, float(done["epsilon_spent"]), float(done["initial_eval_loss"]),
                        float(done["eval_loss"]), estimates["domain.score"], estimates.get("general.score"),
                        estimates["canary.exposure"], time.monotonic() - started))
        print(f"  epsilon {epsilon:g}: trained in {done['duration_seconds']:.0f}s, trained and scored in "
              f"{rows[-1].seconds:.0f}s", file=sys.stderr, flush=True)
    return rows, public, manifest, exposure_meta, suite


def _interval(low: float, high: float, digits: int) -> str:
    return f"[{low:.{digits}f}, {high:.{digits}f}]"


def table(rows: list[Row], exposure: dict[str, Any]) -> str:
    """The markdown table (numbers only)."""
    non_dp = next((r for r in rows if math.isinf(r.target)), None)
    lines = ["| ε target | ε spent | held-out loss | domain ROUGE-L [95% CI] | forgetting: Δ general [95% CI] "
             f"| canary exposure, bits [95% CI] (chance {exposure['chance_bits']:.2f}, max "
             f"{exposure['max_bits']:.2f}) | domain / non-DP | seconds |",
             "| ---: | ---: | ---: | --- | --- | --- | ---: | ---: |"]
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
                     f"{x['candidate']:.2f} {_interval(x['candidate_ci_low'], x['candidate_ci_high'], 2)} | {ratio} | "
                     f"{r.seconds:.0f} |")
    return "\n".join(lines)


def _epsilons(text: str) -> list[float]:
    values = [math.inf if v.strip().lower() in ("inf", "∞") else float(v) for v in text.split(",") if v.strip()]
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError("epsilons are positive numbers or inf, comma-separated, e.g. 1,3,8,inf")
    return values


def _modules(text: str) -> list[str]:
    return [m.strip() for m in text.split(",") if m.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=("tiny", "smollm2"), default="tiny")
    parser.add_argument("--epsilons", type=_epsilons, default=_epsilons("1,3,8,inf"),
                        help="target epsilons, inf = DP off (default 1,3,8,inf)")
    parser.add_argument("--method", choices=("lora", "full"), default="lora", help="private fine-tuning method")
    parser.add_argument("--steps", type=int, default=120, help="optimizer steps per private run")
    parser.add_argument("--batch", type=int, default=256, help="micro-batch size (expected Poisson batch under DP)")
    parser.add_argument("--lr", type=float, default=0.005)
    parser.add_argument("--rank", type=int, default=16, help="LoRA rank")
    parser.add_argument("--alpha", type=float, default=32.0, help="LoRA alpha (the update is scaled by alpha / rank)")
    parser.add_argument("--targets", type=_modules, default=_modules("q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,"
                                                                       "down_proj"), help="LoRA target modules")
    parser.add_argument("--tickets", type=int, default=4000, help="raw private support tickets before curation")
    parser.add_argument("--canaries", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=1, help="training copies of each canary")
    parser.add_argument("--candidates", type=int, default=199, help="unseen secrets each canary is ranked against")
    parser.add_argument("--public-tickets", type=int, default=4000, help="public tickets for pretraining the tiny base")
    parser.add_argument("--pretrain-steps", type=int, default=150, help="public pretraining steps (0: none)")
    parser.add_argument("--pretrain-batch", type=int, default=64)
    parser.add_argument("--pretrain-lr", type=float, default=0.01)
    parser.add_argument("--domain-items", type=int, default=200, help="holdout tickets scored (at most)")
    parser.add_argument("--general-per-category", type=int, default=4, help="general slice items per category "
                        "(0: no general slice, no forgetting column)")
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args(argv)
    if args.model != "tiny":
        args.pretrain_steps = 0  # a pretrained base needs no public stage
    if args.threads > 0:
        import torch

        torch.set_num_threads(args.threads)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="privacy-utility-") as tmp:
        rows, public, manifest, exposure, suite = measure(args, Path(tmp))
    counts = manifest["counts"]
    method = (f"lora r{args.rank} alpha {args.alpha:g} on {','.join(args.targets)}" if args.method == "lora"
              else "full")
    if public is not None:
        print(f"base: tiny-llama pretrained on public tickets ({public.examples} examples, {args.pretrain_steps} "
              f"steps of {args.pretrain_batch}, lr {args.pretrain_lr:g}, no DP): public held-out loss "
              f"{public.initial_loss:.2f} -> {public.eval_loss:.2f}, {public.seconds:.0f}s; its own domain ROUGE-L "
              f"{rows[0].domain['reference']:.3f}, canary exposure {rows[0].exposure['reference']:.2f} bits")
    print(f"model {args.model}, method {method}, {args.steps} steps of {args.batch}, lr {args.lr:g}, seed {args.seed}; "
          f"train split {counts['train']} examples ({args.canaries} canaries x {args.repeats} copies among them), "
          f"holdout {counts['holdout']}; suite {suite.counts.get('domain', 0)} domain, "
          f"{sum(n for c, n in suite.counts.items() if c.startswith('general/'))} general, "
          f"{suite.canaries} canaries x {exposure['candidates_per_canary']} candidates; "
          f"DP delta {DELTA:g}, clip {CLIP:g}; {time.monotonic() - started:.0f}s in all\n")
    print(table(rows, exposure))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
