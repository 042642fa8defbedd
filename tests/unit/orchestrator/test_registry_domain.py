"""Registered-model aggregate and run facts: pure decisions and folds."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from privtune.v1 import events_pb2
from services.common.envelope import Causation, new_envelope
from services.common.errors import FailedPrecondition, InvalidArgument, NotFound
from services.orchestrator import job_domain, run_facts
from services.orchestrator import registry_domain as domain
from services.orchestrator.tracker import Run, differing_params

pytestmark = pytest.mark.unit
T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)


def _envelopes(subject: str, payloads: list, actor: str = "alice", tenant: str = "acme") -> list:
    out = []
    for i, payload in enumerate(payloads, start=1):
        out.append(new_envelope(payload, subject=subject, tenant_id=tenant, source="test",
                                causation=Causation(actor, "corr"), aggregate_version=i,
                                time=T0 + timedelta(minutes=i)))
    return out


def succeeded_job(job_id: str = "job-1", name: str = "support-bot", tags: dict | None = None,
                  config: dict | None = None) -> job_domain.TrainingJobState:
    config = config or {"method": "lora", "lora": {"r": 8}, "learning_rate": 0.0002, "job_id": job_id}
    events = _envelopes(job_id, [
        events_pb2.TrainingRequested(job_id=job_id, name=name, base_model_id="smollm2-135m",
                                     dataset_version_id="dv-abc", dataset_id="ds-1", config_sha256="c" * 64,
                                     config_json=json.dumps(config), experiment_tags=tags or {}),
        events_pb2.TrainingQueued(job_id=job_id, gpu_pool="local", attempt=1, reason="admitted"),
        events_pb2.TrainingScheduled(job_id=job_id, gpu_pool="local", gpus=1, attempt=1, executor="local"),
        events_pb2.TrainingStarted(job_id=job_id, worker_id="w1", attempt=1, dataset_manifest_sha256="d" * 64,
                                   base_model_sha256="b" * 64, code_version="git:abc", seed=7, hardware="cpu",
                                   library_versions={"torch": "2.9"}, config_sha256="c" * 64),
        events_pb2.TrainingProgress(job_id=job_id, step=10, loss=2.0),
        events_pb2.TrainingCompleted(job_id=job_id, artifact_uri="file:///a", artifact_sha256="a" * 64, steps=10,
                                     final_loss=1.5, eval_loss=1.6, initial_eval_loss=3.0),
    ])
    return job_domain.fold(events)


def model_with(*jobs: job_domain.TrainingJobState) -> domain.RegisteredModelState:
    state = domain.RegisteredModelState()
    for job in jobs:
        envs = [new_envelope(e, subject="m", tenant_id="acme", source="test", causation=Causation("svc", "c"),
                             aggregate_version=state.version + 1) for e in domain.decide_register(state, job)]
        state = domain.fold(envs, state)
    return state


def move(state: domain.RegisteredModelState, alias: str, version: str, reason: str = "",
         actor: str = "bob") -> domain.RegisteredModelState:
    events = domain.decide_move_alias(state, alias, version, reason)
    envs = [new_envelope(e, subject="m", tenant_id="acme", source="test", causation=Causation(actor, "c"),
                         aggregate_version=state.version + i) for i, e in enumerate(events, start=1)]
    return domain.fold(envs, state)


def test_stream_ids_of_different_tenants_never_collide() -> None:
    assert domain.model_stream_id("a-b", "c") != domain.model_stream_id("a", "b-c")
    assert len(domain.model_stream_id("t" * 63, "m" * 58)) <= 128


def test_model_name_is_the_tag_else_the_job_name_made_valid() -> None:
    assert domain.model_name_for(succeeded_job(tags={"model_name": "faq-bot"})) == "faq-bot"
    assert domain.model_name_for(succeeded_job(name="Support bot (EU)!")) == "Support-bot-EU"
    assert domain.MODEL_NAME_RE.match(domain.model_name_for(succeeded_job(name="x" * 300)))


def test_register_numbers_versions_and_records_provenance() -> None:
    state = model_with(succeeded_job("job-1"), succeeded_job("job-2"))
    assert list(state.versions) == ["support-bot/v1", "support-bot/v2"]
    v2 = state.versions["support-bot/v2"].registered
    assert (v2.version, v2.job_id, v2.kind, v2.dataset_version_id, v2.dataset_id) == (2, "job-2", "adapter",
                                                                                       "dv-abc", "ds-1")
    assert v2.base_model_sha256 == "b" * 64 and v2.dataset_manifest_sha256 == "d" * 64
    assert v2.code_version == "git:abc" and v2.config_sha256 == "c" * 64
    assert dict(v2.metrics) == {"final_loss": 1.5, "eval_loss": pytest.approx(1.6), "initial_eval_loss": 3.0}
    assert state.versions["support-bot/v1"].registered_by == "svc"


def test_registering_a_job_twice_yields_nothing() -> None:
    state = model_with(succeeded_job("job-1"))
    assert domain.decide_register(state, succeeded_job("job-1")) == []


def test_only_succeeded_jobs_are_registered() -> None:
    running = job_domain.fold(_envelopes("job-9", [events_pb2.TrainingRequested(job_id="job-9", name="x")]))
    with pytest.raises(FailedPrecondition, match="job-9 is requested"):
        domain.decide_register(domain.RegisteredModelState(), running)


@pytest.mark.parametrize("config,kind", [({"method": "full"}, "full"), ({"method": "lora", "merge_weights": True},
                                                                          "merged"), ({"method": "qlora"}, "adapter")])
def test_artifact_kind_follows_the_method(config: dict, kind: str) -> None:
    assert domain.artifact_kind(succeeded_job(config=config)) == kind


def test_alias_moves_are_recorded_with_who_why_and_from_where() -> None:
    state = model_with(succeeded_job("job-1"), succeeded_job("job-2"))
    state = move(state, "staging", "support-bot/v1", "first candidate", actor="alice")
    state = move(state, "staging", "v2", "better eval loss", actor="bob")
    assert state.aliases == {"staging": "support-bot/v2"}
    assert [(c.previous_model_version_id, c.model_version_id, c.actor, c.reason) for c in state.alias_history] == [
        ("", "support-bot/v1", "alice", "first candidate"), ("support-bot/v1", "support-bot/v2", "bob",
                                                            "better eval loss")]
    assert state.aliases_of("support-bot/v2") == ("staging",)


def test_moving_an_alias_where_it_points_yields_nothing() -> None:
    state = move(model_with(succeeded_job("job-1")), "production", "support-bot/v1")
    assert domain.decide_move_alias(state, "production", "1", "again") == []
    assert domain.decide_move_alias(state, "canary", "", "not set") == []


def test_an_empty_version_removes_the_alias() -> None:
    state = move(model_with(succeeded_job("job-1")), "production", "support-bot/v1")
    state = move(state, "production", "", "incident 42")
    assert state.aliases == {} and state.alias_history[-1].previous_model_version_id == "support-bot/v1"


def test_bad_alias_or_unknown_version_is_refused_naming_it() -> None:
    state = model_with(succeeded_job("job-1"))
    with pytest.raises(InvalidArgument, match="'Prod'"):
        domain.decide_move_alias(state, "Prod", "support-bot/v1", "")
    with pytest.raises(NotFound, match="'support-bot/v7'"):
        domain.decide_move_alias(state, "production", "support-bot/v7", "")
    with pytest.raises(NotFound, match="no alias 'production'"):
        state.resolve("@production")


def test_version_references() -> None:
    assert domain.split_version_ref("support-bot/v3") == ("support-bot", "support-bot/v3")
    assert domain.split_version_ref("support-bot@production") == ("support-bot", "@production")
    with pytest.raises(InvalidArgument, match="'support-bot'"):
        domain.split_version_ref("support-bot")


def test_run_params_flatten_the_spec_without_identity() -> None:
    request = events_pb2.TrainingRequested(
        job_id="j", dataset_version_id="dv-1", config_json=json.dumps(
            {"job_id": "j", "tenant_id": "acme", "dataset_uri": "file:///x", "method": "lora",
             "lora": {"r": 16, "target_modules": ["q_proj", "v_proj"]}, "learning_rate": 0.0002, "packing": False}))
    assert run_facts.run_params(request) == {
        "method": "lora", "lora.r": "16", "lora.target_modules": '["q_proj", "v_proj"]', "learning_rate": "0.0002",
        "packing": "false", "dataset_version_id": "dv-1"}


@pytest.mark.parametrize("leaf", [0, -7, 2**70, 0.0, -0.0, 0.1, 1e-300, 1e300, 2.5e-05, float("inf"),
                                  float("-inf"), float("nan"), True, False, None, [], [1, "a", None],
                                  {"nested": {}}, "text", ""])
def test_a_flattened_leaf_reads_as_json_writes_it(leaf: object) -> None:
    """The scalar fast paths write what json.dumps writes (a string stays as it is)."""
    expected = leaf if isinstance(leaf, str) else json.dumps(leaf, sort_keys=True)
    if isinstance(leaf, dict):
        assert run_facts.flatten({"k": leaf}) == {}
    else:
        assert run_facts.flatten({"k": leaf}) == {"k": expected}


def test_flatten_keeps_the_order_and_the_later_of_two_equal_keys() -> None:
    flat = run_facts.flatten({"b": {"y": 1, "x": 2}, "a": 3, "a.z": 4, "c": {"d": {"e": 5.5}}})
    assert list(flat.items()) == [("a", "3"), ("a.z", "4"), ("b.x", "2"), ("b.y", "1"), ("c.d.e", "5.5")]
    assert run_facts.flatten({"a.b": 1, "a": {"b": 2}}) == {"a.b": "1"}  # "a.b" sorts after "a"


def test_learning_curves_keep_the_latest_value_of_a_repeated_step() -> None:
    events = _envelopes("j", [events_pb2.TrainingProgress(job_id="j", step=s, loss=loss, learning_rate=0.1,
                                                          eval_loss=ev)
                              for s, loss, ev in [(1, 3.0, 0.0), (2, 2.0, 2.5), (2, 1.9, 2.4)]])
    series = run_facts.series_from_events(events)
    assert [(s, v) for s, v, _ in series["loss"]] == [(1, 3.0), (2, 1.9)]
    assert [(s, v) for s, v, _ in series["eval_loss"]] == [(2, 2.4)]
    assert "epsilon" not in series


def test_differing_params_counts_a_missing_param_as_different() -> None:
    runs = [Run(run_id=i, tenant_id="acme", name=i, model_name="m", state="succeeded", params=p)
            for i, p in [("a", {"lr": "1", "r": "8"}), ("b", {"lr": "2", "r": "8"}), ("c", {"lr": "1", "r": "8",
                                                                                              "packing": "true"})]]
    assert differing_params(runs) == ["lr", "packing"]
