"""Policy evaluation: one test per rule (each rejection carries its rule and a remedy), method defaults."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from typing import Any, Callable

import pytest

from services.common.training_spec import TrainingSpec
from privtune.v1 import events_pb2
from services.orchestrator.policy import (RULES, AdmissionRequest, Policy, Violation, default_policy, evaluate,
                                          resolve_method)
from services.orchestrator.resources import GIB, DatasetInfo, ModelInfo, Pool

pytestmark = pytest.mark.unit

LLAMA_7B = ModelInfo("llama-2-7b", parameters=6_700_000_000, hidden_size=4096, num_layers=32, num_attention_heads=32,
                     num_key_value_heads=32, intermediate_size=11008, vocab_size=32000)
LLAMA_13B = ModelInfo("llama-2-13b", parameters=13_000_000_000, hidden_size=5120, num_layers=40,
                      num_attention_heads=40, num_key_value_heads=40, intermediate_size=13824, vocab_size=32000)
SMOL_135M = ModelInfo("smollm2-135m-instruct", parameters=134_515_008, hidden_size=576, num_layers=30,
                      num_attention_heads=9, num_key_value_heads=3, intermediate_size=1536, vocab_size=49152,
                      tie_word_embeddings=True)
SHARED = Pool("shared-a100", gpu_type="a100-80gb", gpus=8, shared=True)
DEDICATED = Pool("acme-h100", gpu_type="h100-80gb", gpus=4, shared=False, tenants=("acme",))
OTHERS = Pool("globex-h100", gpu_type="h100-80gb", gpus=4, shared=False, tenants=("globex",))
POOLS = (SHARED, DEDICATED, OTHERS)
NOW_MS = int(datetime(2026, 11, 15, tzinfo=timezone.utc).timestamp() * 1000)
RESTRICTED = events_pb2.DATA_CLASSIFICATION_RESTRICTED
INTERNAL = events_pb2.DATA_CLASSIFICATION_INTERNAL


def spec(**kw: Any) -> TrainingSpec:
    return TrainingSpec(job_id="j", tenant_id="t", base_model="m", dataset_uri="file:///x", **kw)


def dataset(classification: int = INTERNAL, **labels: str) -> DatasetInfo:
    return DatasetInfo("dsv-1", "ds-1", classification=classification, labels=labels, train_records=1000)


def request(**kw: Any) -> AdmissionRequest:
    base = AdmissionRequest(
        tenant_id="acme", spec=spec(), model=SMOL_135M, dataset=dataset(), pool_name=SHARED.name, pool=SHARED,
        available_pools=POOLS, gpus=1, priority=10, peak_memory_bytes=4 * GIB, gpu_memory_bytes=80 * GIB,
        fitting_methods=("full", "lora", "qlora"), estimated_gpu_hours=2.0, gpu_hours_used_this_month=10.0,
        now_ms=NOW_MS)
    return replace(base, **kw)


def only(violations: list[Violation], rule: str) -> Violation:
    assert [v.rule for v in violations] == [rule], violations
    assert violations[0].reason and violations[0].remedy
    return violations[0]


def test_compliant_request_has_no_violations() -> None:
    assert evaluate(default_policy(), request()) == []


def test_restricted_data_on_a_dedicated_pool_with_dp_is_admitted() -> None:
    ok = request(dataset=dataset(RESTRICTED), pool=DEDICATED, pool_name=DEDICATED.name,
                 spec=spec(dp={"enabled": True, "target_epsilon": 4.0}))
    assert evaluate(default_policy(), ok) == []


# ---------------------------------------------------------------- one test per rule

def test_pools_unknown_pool() -> None:
    v = only(evaluate(default_policy(), request(pool=None, pool_name="nope")), "pools.unknown_pool")
    assert "'nope'" in v.reason
    assert "shared-a100" in v.remedy and "acme-h100" in v.remedy and "globex-h100" not in v.remedy


def test_pools_not_allowed_by_the_pools_tenants() -> None:
    v = only(evaluate(default_policy(), request(pool=OTHERS, pool_name=OTHERS.name)), "pools.not_allowed")
    assert "globex" in v.reason and "acme-h100" in v.remedy


def test_pools_not_allowed_by_the_policy() -> None:
    policy = Policy(version="v", pools={"allowed": ["acme-*"]})
    v = only(evaluate(policy, request()), "pools.not_allowed")
    assert "['acme-*']" in v.reason and "'acme-h100'" in v.remedy and "shared-a100" not in v.remedy


def test_pools_gpus_exceed_capacity() -> None:
    v = only(evaluate(default_policy(), request(pool=DEDICATED, pool_name=DEDICATED.name, gpus=6)),
             "pools.gpus_exceed_capacity")
    assert "6 GPUs" in v.reason and "only 4" in v.reason and "at most 4" in v.remedy


def test_data_restricted_not_on_shared_pool_names_the_dedicated_pool() -> None:
    req = request(dataset=dataset(RESTRICTED), spec=spec(dp={"enabled": True, "target_epsilon": 4.0}))
    v = only(evaluate(default_policy(), req), "data.restricted_not_on_shared_pool")
    assert "RESTRICTED" in v.reason and "shared-a100" in v.reason
    assert "'acme-h100'" in v.remedy


def test_hr_labelled_data_is_kept_off_shared_pools() -> None:
    dp_spec = spec(dp={"enabled": True, "target_epsilon": 4.0})
    for labels in ({"domain": "HR"}, {"hr": "true"}):
        req = request(dataset=dataset(INTERNAL, **labels), spec=dp_spec, available_pools=(SHARED,))
        v = only(evaluate(default_policy(), req), "data.restricted_not_on_shared_pool")
        assert "HR" in v.reason and "no dedicated" in v.remedy


def test_data_restricted_requires_dp() -> None:
    req = request(dataset=dataset(RESTRICTED), pool=DEDICATED, pool_name=DEDICATED.name, spec=spec(method="qlora"))
    v = only(evaluate(default_policy(), req), "data.restricted_requires_dp")
    assert "DP-SGD is off" in v.reason
    assert "dp.enabled=true" in v.remedy and "<= 8" in v.remedy and "method lora" in v.remedy


def test_models_base_model_not_allowed() -> None:
    policy = Policy(version="v", models={"allowed_base_models": ["smollm2-*", "mistral-7b*"]})
    v = only(evaluate(policy, request(model=LLAMA_7B)), "models.base_model_not_allowed")
    assert "llama-2-7b" in v.reason and "smollm2-*" in v.remedy
    assert evaluate(policy, request(model=SMOL_135M)) == []


def test_methods_full_finetune_too_large() -> None:
    v = only(evaluate(default_policy(), request(model=LLAMA_13B, spec=spec(method="full"))),
             "methods.full_finetune_too_large")
    assert "13.0B" in v.reason and "7.0B" in v.reason
    assert "lora" in v.remedy and "privtune.expert_override=full_finetune" in v.remedy


def test_expert_override_allows_full_finetune_of_a_large_model() -> None:
    req = request(model=LLAMA_13B, spec=spec(method="full"), tags={"privtune.expert_override": "full_finetune"})
    assert evaluate(default_policy(), req) == []
    assert evaluate(default_policy(), request(model=LLAMA_7B, spec=spec(method="full"))) == []  # 6.7B <= 7B


def test_limits_max_seq_length() -> None:
    v = only(evaluate(default_policy(), request(spec=spec(max_seq_length=16384))), "limits.max_seq_length")
    assert "16384" in v.reason and "<= 8192" in v.remedy


def test_limits_max_epochs() -> None:
    v = only(evaluate(default_policy(), request(spec=spec(epochs=11))), "limits.max_epochs")
    assert "11" in v.reason and "<= 10" in v.remedy


def test_limits_max_gpus() -> None:
    big = Pool("big", gpu_type="h100-80gb", gpus=16)
    v = only(evaluate(default_policy(), request(pool=big, pool_name="big", gpus=12)), "limits.max_gpus")
    assert "12" in v.reason and "at most 8" in v.remedy


@pytest.mark.parametrize("priority", [-1, 101])
def test_limits_priority(priority: int) -> None:
    v = only(evaluate(default_policy(), request(priority=priority)), "limits.priority")
    assert str(priority) in v.reason and "between 0 and 100" in v.remedy


def test_privacy_max_epsilon_per_job() -> None:
    v = only(evaluate(default_policy(), request(spec=spec(dp={"enabled": True, "target_epsilon": 9.5}))),
             "privacy.max_epsilon_per_job")
    assert "9.5" in v.reason and "<= 8" in v.remedy


def test_resources_does_not_fit_names_the_method_that_fits() -> None:
    req = request(model=LLAMA_7B, spec=spec(method="full"), peak_memory_bytes=110 * GIB,
                  fitting_methods=("lora", "qlora"))
    v = only(evaluate(default_policy(), req), "resources.does_not_fit")
    assert "110.0 GiB" in v.reason and "80.0 GiB" in v.reason and "lora or qlora" in v.remedy


def test_resources_does_not_fit_without_a_fitting_method() -> None:
    req = request(peak_memory_bytes=90 * GIB, fitting_methods=())
    v = only(evaluate(default_policy(), req), "resources.does_not_fit")
    assert "more GPUs" in v.remedy and "max_seq_length (now 512)" in v.remedy and "micro_batch_size" in v.remedy


def test_quotas_monthly_gpu_hours() -> None:
    req = request(estimated_gpu_hours=30.0, gpu_hours_used_this_month=480.0)
    v = only(evaluate(default_policy(), req), "quotas.monthly_gpu_hours")
    assert "30.0" in v.reason and "480.0" in v.reason and "510.0" in v.reason
    assert "20.0 GPU-hours are left" in v.remedy and "2026-12-01" in v.remedy


RULE_CASES: dict[str, Callable[[], AdmissionRequest]] = {
    "pools.unknown_pool": lambda: request(pool=None, pool_name="nope"),
    "pools.not_allowed": lambda: request(pool=OTHERS, pool_name=OTHERS.name),
    "pools.gpus_exceed_capacity": lambda: request(pool=DEDICATED, pool_name=DEDICATED.name, gpus=6),
    "data.restricted_not_on_shared_pool": lambda: request(dataset=dataset(RESTRICTED),
                                                          spec=spec(dp={"enabled": True})),
    "data.restricted_requires_dp": lambda: request(dataset=dataset(RESTRICTED), pool=DEDICATED,
                                                   pool_name=DEDICATED.name),
    "models.base_model_not_allowed": lambda: request(model=LLAMA_7B),
    "methods.full_finetune_too_large": lambda: request(model=LLAMA_13B, spec=spec(method="full")),
    "limits.max_seq_length": lambda: request(spec=spec(max_seq_length=9000)),
    "limits.max_epochs": lambda: request(spec=spec(epochs=20)),
    "limits.max_gpus": lambda: request(pool=replace(SHARED, gpus=9), gpus=9),
    "limits.priority": lambda: request(priority=1000),
    "privacy.max_epsilon_per_job": lambda: request(spec=spec(dp={"enabled": True, "target_epsilon": 50})),
    "resources.does_not_fit": lambda: request(peak_memory_bytes=81 * GIB),
    "quotas.monthly_gpu_hours": lambda: request(estimated_gpu_hours=600.0),
}


@pytest.mark.parametrize("rule", list(RULES))
def test_every_rule_rejects_with_its_name_and_a_remedy(rule: str) -> None:
    policy = Policy(version="v", models={"allowed_base_models": ["smollm2-*", "llama-2-13b"]})
    only(evaluate(policy, RULE_CASES[rule]()), rule)


def test_every_rule_has_a_case() -> None:
    assert set(RULE_CASES) == set(RULES)


def test_all_violations_are_returned_in_a_stable_order() -> None:
    req = request(pool=None, pool_name="nope", spec=spec(epochs=50, max_seq_length=10000), priority=500)
    rules = [v.rule for v in evaluate(default_policy(), req)]
    assert rules == ["pools.unknown_pool", "limits.max_seq_length", "limits.max_epochs", "limits.priority"]
    assert rules == [r for r in RULES if r in rules]


def test_violation_to_proto() -> None:
    v = Violation("limits.max_epochs", "epochs 11 is above 10", "set epochs <= 10")
    assert v.to_proto() == events_pb2.PolicyViolation(rule="limits.max_epochs", reason="epochs 11 is above 10",
                                                      remedy="set epochs <= 10")


# ---------------------------------------------------------------- method defaults

def test_small_model_defaults_to_lora() -> None:
    method, why = resolve_method(default_policy(), "", SMOL_135M, {})
    assert method == "lora" and "135M" in why and "default_method_small" in why


def test_7b_model_defaults_to_qlora() -> None:
    seven_b = replace(LLAMA_7B, parameters=7_000_000_000)
    method, why = resolve_method(default_policy(), "", seven_b, {})
    assert method == "qlora" and "7.0B" in why and "default_method_large" in why


def test_explicit_method_is_kept() -> None:
    assert resolve_method(default_policy(), "full", SMOL_135M, {})[0] == "full"
    method, why = resolve_method(default_policy(), "full", LLAMA_13B,
                                 {"privtune.expert_override": "full_finetune"})
    assert method == "full" and "expert override" in why


def test_policy_refuses_unknown_keys_and_values() -> None:
    with pytest.raises(ValueError, match="max_gpu"):
        Policy.model_validate({"version": "v", "limits": {"max_gpu": 2}})
    with pytest.raises(ValueError, match="SECRET"):
        Policy(version="v", data={"restricted_classes": ["SECRET"]})
    with pytest.raises(ValueError, match="lorax"):
        Policy(version="v", models={"default_method_small": "lorax"})
