"""The whole curation pipeline on a generated corpus: docs/s and peak memory; dedupe vs datasketch.

    .venv/bin/python benchmarks/curation.py [--docs 100000] [--seed 0] [--skip-dedupe]

1. Generates ``--docs`` raw records (instruction pairs and support tickets with planted
   PII, 10% exact and 5% near duplicates, 5% junk) as JSONL files in a temporary
   tenant folder.
2. Runs ``Curator`` (parse, quality, dedupe, PII, recipe, split, shards, manifest) in a
   subprocess, once with PII redaction and once without, reporting documents/s and
   the growth of peak resident memory over the process after start-up (spaCy loaded).
3. Runs ``benchmarks/dedupe.py`` for the dedupe-alone comparison against a plain
   datasketch MinHash + MinHashLSH loop on the same number of documents.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FIRST = ["Maria", "Wei", "Aisha", "John", "Olga", "Kenji", "Fatima", "Lucas", "Priya", "Sven"]
LAST = ["Lopez", "Chen", "Okafor", "Smith", "Ivanova", "Tanaka", "Haddad", "Silva", "Patel", "Berg"]
TOPICS = ["overdraft fees", "card replacement", "wire transfers", "mortgage rates", "savings interest",
          "fraud alerts", "statement copies", "travel notices", "loan payoff", "account closure"]


def _record(r: random.Random, i: int) -> dict[str, object]:
    name = f"{r.choice(FIRST)} {r.choice(LAST)}"
    topic = r.choice(TOPICS)
    email = f"{name.split()[0].lower()}.{i}@example.com"
    body = (f"Customer {name} ({email}) asked about {topic} on account {r.randint(10**7, 10**8 - 1)}. "
            f"They mentioned case {i} and want an answer before Friday; call back on +1 415 555 {r.randint(1000, 9999)}.")
    answer = (f"For {topic}, the policy for case {i} is explained in section {r.randint(1, 40)} of the handbook; "
              f"the customer can complete it in the mobile app within {r.randint(2, 9)} business days.")
    if r.random() < 0.25:
        return {"id": f"T-{i}", "subject": f"Question about {topic}",
                "messages": [{"author_role": "customer", "body": body}, {"author_role": "agent", "body": answer}]}
    return {"instruction": body, "input": "", "output": answer}


def write_corpus(folder: Path, docs: int, seed: int) -> None:
    r = random.Random(seed)
    made: list[dict[str, object]] = []
    per_file = 10_000
    handle = None
    for i in range(docs):
        if i % per_file == 0:
            if handle:
                handle.close()
            handle = open(folder / f"part-{i // per_file:04d}.jsonl", "w")
        roll = r.random()
        if roll < 0.10 and made:
            rec = r.choice(made)                                   # exact duplicate
        elif roll < 0.15 and made:
            rec = dict(r.choice(made))                             # near duplicate
            if "output" in rec:
                rec["output"] = str(rec["output"]) + " Thanks."
        elif roll < 0.20:
            rec = {"text": "$$$ %%% ### " * r.randint(1, 5)}      # junk
        else:
            rec = _record(r, i)
            if len(made) < 5000:
                made.append(rec)
        assert handle is not None
        handle.write(json.dumps(rec) + "\n")
    if handle:
        handle.close()


def worker(folder: Path, pii: bool, workers: int | None) -> dict[str, object]:
    from services.common.storage import FileStorage
    from services.curation.config import CurationConfig
    from services.curation.pipeline import Curator

    from services.common.pii.pool import shutdown_all

    config = CurationConfig(redact_pii=pii)
    curator = Curator(config, salt="bench", pii_workers=workers)
    if curator.pii:
        curator.pii.warm_up()   # start the PII worker processes (spaCy loaded) before the clock starts
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    outcome = curator.run(FileStorage(folder.parent), "raw/", "ds-bench", "0" * 64,
                          work_dir=Path(tempfile.mkdtemp(prefix="work-", dir=folder.parent.parent)))
    elapsed = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    shutdown_all()   # join the PII workers, so their peak RSS shows in RUSAGE_CHILDREN
    worker_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss if curator.pii else 0
    docs = outcome.report["input"]["documents"]  # type: ignore[index]
    return {"documents": docs, "seconds": elapsed, "docs_per_s": docs / elapsed,
            "peak_rss_mib": peak / 1024, "peak_growth_mib": (peak - base_rss) / 1024,
            "workers": curator.pii.workers if curator.pii else 0, "worker_peak_rss_mib": worker_peak / 1024,
            "torch_loaded": "torch" in sys.modules,
            "train": outcome.report["examples"]["train"], "holdout": outcome.report["examples"]["holdout"]}  # type: ignore[index]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-dedupe", action="store_true")
    parser.add_argument("--pii-workers", type=int, help="PII worker processes (default: one per usable core)")
    parser.add_argument("--worker", choices=["pii", "no-pii"], help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.folder, args.worker == "pii", args.pii_workers)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "acme" / "raw"
        folder.mkdir(parents=True)
        write_corpus(folder, args.docs, args.seed)
        size = sum(p.stat().st_size for p in folder.iterdir())
        print(f"{args.docs:,} raw records, {size / 2**20:.0f} MiB of JSONL")
        results = {}
        for variant in ("no-pii", "pii"):
            command = [sys.executable, __file__, "--worker", variant, "--folder", str(folder)]
            if args.pii_workers:
                command += ["--pii-workers", str(args.pii_workers)]
            out = subprocess.run(command, check=True, capture_output=True, text=True)
            results[variant] = json.loads(out.stdout.strip().splitlines()[-1])
    print("\n| pipeline | documents | docs/s | vs PII off | peak RSS (curation process) | PII workers (peak RSS each) "
          "| torch in curation process | train | holdout |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |")
    off = float(results["no-pii"]["docs_per_s"])  # type: ignore[arg-type]
    for variant, r in results.items():
        label = "whole pipeline" if variant == "pii" else "whole pipeline, PII stage off"
        workers = f"{r['workers']} × {r['worker_peak_rss_mib']:,.0f} MiB" if r["workers"] else "none"
        print(f"| {label} | {r['documents']:,.0f} | {r['docs_per_s']:,.0f} | {float(r['docs_per_s']) / off:.2f}× | "
              f"{r['peak_rss_mib']:,.0f} MiB | {workers} | {'yes' if r['torch_loaded'] else 'no'} | "
              f"{r['train']:,.0f} | {r['holdout']:,.0f} |")
    if not args.skip_dedupe:
        print("\nDedupe alone (benchmarks/dedupe.py):", flush=True)
        subprocess.run([sys.executable, str(Path(__file__).with_name("dedupe.py")), "--docs", str(args.docs),
                        "--seed", str(args.seed)], check=True)


if __name__ == "__main__":
    main()
