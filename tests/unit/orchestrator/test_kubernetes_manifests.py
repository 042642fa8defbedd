"""Rendered Kubernetes objects: they validate against the schemas and keep the isolation promises."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from services.common.training_spec import TrainingSpec
from services.common.errors import InvalidArgument
from services.orchestrator.executors.kubernetes import (ControlPlanePeer, GangLayout, KubernetesSettings,
                                                        ManifestError, dump_manifests, plan_gang,
                                                        render_baseline_policy, render_job, validate_manifests)
from services.orchestrator.executors.kubernetes_names import is_dns1123_label, job_base_name, label_value
from services.orchestrator.resources import GpuType, Pool

pytestmark = pytest.mark.unit

TENANT = "acme"
DATASET = "file:///data/tenants/acme/datasets/claims/v3/"
SETTINGS = KubernetesSettings(
    image="registry.example/privtune:1.0", models_pvc="privtune-models", storage_pvc="privtune-tenants",
    storage_root_uri="file:///data/tenants", priority_classes={0: "privtune-normal", 10: "privtune-high"},
    bus_uri="kafka://kafka.privtune:9092", orchestrator_address="privtune-orchestrator.privtune:50052",
    control_plane=(ControlPlanePeer(name="event-relay", pod_labels={"app.kubernetes.io/name": "privtune-relay"},
                                    namespace_labels={"kubernetes.io/metadata.name": "privtune"}, ports=(8080,)),))
A100 = GpuType(name="a100-80gb", memory_bytes=80 << 30, peak_tflops=312.0, price_per_hour_usd=3.0)
GPU_POOL = Pool(name="a100-dedicated", gpu_type="a100-80gb", gpus=32, shared=False, executor="kubernetes",
                node_selector={"privtune.io/pool": "a100-dedicated"}, max_gpus_per_node=8)
CPU_POOL = Pool(name="cpu-batch", gpu_type="cpu", gpus=8, executor="kubernetes",
                node_selector={"node.kubernetes.io/instance-type": "c6i.8xlarge"}, max_gpus_per_node=4)


def spec(processes: int, job_id: str = "job-1") -> TrainingSpec:
    return TrainingSpec(job_id=job_id, tenant_id=TENANT, base_model="smollm2-135m-instruct", dataset_uri=DATASET,
                        num_processes=processes)


def render(processes: int, pool: Pool = GPU_POOL, job_id: str = "job-1", attempt: int = 1,
           priority: int = 0) -> list[dict[str, Any]]:
    gpu: GpuType | str = A100 if pool is GPU_POOL else pool.gpu_type
    return render_job(job_id, TENANT, spec(processes, job_id), pool, gpu, SETTINGS, DATASET, attempt,
                      priority=priority)


def by_kind(manifests: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (obj,) = [m for m in manifests if m["kind"] == kind]
    return obj


def pod_specs(manifests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    workload = manifests[-1]
    if workload["kind"] == "Job":
        return [workload["spec"]["template"]["spec"]]
    return [r["template"]["spec"] for r in workload["spec"]["pytorchReplicaSpecs"].values()]


# -- shapes that validate -----------------------------------------------------------------------


@pytest.mark.parametrize("processes", [1, 4])
def test_single_node_gang_is_a_batch_job_running_the_attempt_like_a_pool_worker(processes: int) -> None:
    manifests = render(processes)
    validate_manifests(manifests)
    assert [m["kind"] for m in manifests] == ["NetworkPolicy", "ConfigMap", "Job"]  # policy before any pod
    job = manifests[-1]
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["ttlSecondsAfterFinished"] == SETTINGS.ttl_seconds_after_finished
    container = job["spec"]["template"]["spec"]["containers"][0]
    command = container["command"]
    assert command[:3] == ["python", "-m", "gpu_worker.run_attempt"]  # torchrun --standalone inside for N > 1
    assert command[command.index("--attempt") + 1] == "1" and "--job-id" in command
    assert container["resources"]["requests"]["nvidia.com/gpu"] == str(processes)
    assert container["resources"]["limits"]["nvidia.com/gpu"] == str(processes)
    assert container["resources"]["requests"]["cpu"] == str(8 * processes)


def test_gang_wider_than_a_node_is_a_pytorchjob_declared_all_at_once() -> None:
    manifests = render(16)
    validate_manifests(manifests)
    job = manifests[-1]
    assert (job["apiVersion"], job["kind"]) == ("kubeflow.org/v1", "PyTorchJob")
    assert "elasticPolicy" not in job["spec"]
    assert job["spec"]["nprocPerNode"] == "8"
    replicas = job["spec"]["pytorchReplicaSpecs"]
    assert (replicas["Master"]["replicas"], replicas["Worker"]["replicas"]) == (1, 1)
    assert job["spec"]["runPolicy"]["backoffLimit"] == 0
    assert job["spec"]["runPolicy"]["schedulingPolicy"]["minAvailable"] == 2
    for pod in pod_specs(manifests):
        container = pod["containers"][0]
        assert container["name"] == "pytorch"
        assert container["command"][:3] == ["torchrun", "--nnodes=2", "--nproc_per_node=8"]
        assert container["resources"]["limits"]["nvidia.com/gpu"] == "8"
        assert container["ports"][0]["name"] == "pytorchjob-port"


def test_gang_layout_splits_processes_evenly_over_the_fewest_nodes() -> None:
    assert plan_gang(16, 8) == GangLayout(nodes=2, processes_per_node=8)
    assert plan_gang(12, 8) == GangLayout(nodes=2, processes_per_node=6)
    assert plan_gang(8, 8) == GangLayout(nodes=1, processes_per_node=8)
    assert plan_gang(3, 8) == GangLayout(nodes=1, processes_per_node=3)


def test_spec_configmap_holds_the_spec_and_no_data() -> None:
    config_map = by_kind(render(1), "ConfigMap")
    assert config_map["immutable"] is True
    assert list(config_map["data"]) == ["spec.json"]
    assert TrainingSpec.model_validate_json(config_map["data"]["spec.json"]) == spec(1)


# -- isolation ----------------------------------------------------------------------------------


def test_network_policy_denies_all_egress_but_dns_and_the_control_plane() -> None:
    policy = by_kind(render(4), "NetworkPolicy")
    assert policy["spec"]["podSelector"]["matchLabels"] == {"privtune.io/tenant": TENANT,
                                                            "privtune.io/job-id": "job-1"}
    assert sorted(policy["spec"]["policyTypes"]) == ["Egress", "Ingress"]
    assert policy["spec"]["ingress"] == []  # a single-node job accepts no connection at all
    dns, relay = policy["spec"]["egress"]
    assert dns["to"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                          "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}]
    assert sorted((p["protocol"], p["port"]) for p in dns["ports"]) == [("TCP", 53), ("UDP", 53)]
    assert relay == {"to": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "privtune-relay"}},
                             "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "privtune"}}}],
                     "ports": [{"protocol": "TCP", "port": 8080}]}
    for rule in policy["spec"]["egress"]:
        for peer in rule["to"]:
            assert "ipBlock" not in peer  # nothing outside the cluster
            assert peer.get("podSelector", {}).get("matchLabels")  # never "all pods"


def test_gang_pods_may_reach_only_each_other_besides_dns_and_control_plane() -> None:
    policy = by_kind(render(16), "NetworkPolicy")
    same_job = {"podSelector": {"matchLabels": {"privtune.io/tenant": TENANT, "privtune.io/job-id": "job-1"}}}
    assert policy["spec"]["ingress"] == [{"from": [same_job]}]
    assert policy["spec"]["egress"][-1] == {"to": [same_job]}
    assert len(policy["spec"]["egress"]) == 3


def test_dataset_and_model_are_mounted_read_only_and_only_the_job_folder_is_writable() -> None:
    for pod in pod_specs(render(1)) + pod_specs(render(16)):
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
        assert volumes["dataset"]["persistentVolumeClaim"] == {"claimName": "privtune-tenants", "readOnly": True}
        assert mounts["dataset"]["readOnly"] is True
        assert mounts["dataset"]["subPath"] == "acme/datasets/claims/v3"
        assert mounts["dataset"]["mountPath"] == "/data/tenants/acme/datasets/claims/v3"  # same path as the URI
        assert volumes["base-model"]["persistentVolumeClaim"]["readOnly"] is True
        assert mounts["base-model"]["readOnly"] is True
        assert mounts["spec"]["readOnly"] is True
        assert mounts["job-output"]["subPath"] == "acme/training/job-1"
        assert "emptyDir" in volumes["scratch"]
        writable = {m["mountPath"] for m in mounts.values() if not m.get("readOnly")}
        assert writable == {"/data/tenants/acme/training/job-1", "/var/privtune/scratch", "/tmp", "/dev/shm"}


def test_pods_run_non_root_without_privileges_token_or_host_access() -> None:
    for pod in pod_specs(render(4)) + pod_specs(render(16)):
        assert pod["automountServiceAccountToken"] is False
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert not (pod["hostNetwork"] or pod["hostPID"] or pod["hostIPC"])
        assert pod["restartPolicy"] == "Never"
        context = pod["containers"][0]["securityContext"]
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["privileged"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}


def test_pool_node_selector_gpu_tolerations_and_priority_class() -> None:
    for pod in pod_specs(render(4, priority=12)):
        assert pod["nodeSelector"] == {"privtune.io/pool": "a100-dedicated"}
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
        assert pod["priorityClassName"] == "privtune-high"
    assert pod_specs(render(4, priority=3))[0]["priorityClassName"] == "privtune-normal"


def test_cpu_pool_requests_no_gpus_and_tolerates_no_gpu_taint() -> None:
    manifests = render(2, pool=CPU_POOL)
    validate_manifests(manifests)
    (pod,) = pod_specs(manifests)
    resources = pod["containers"][0]["resources"]
    assert not any("gpu" in key for part in resources.values() for key in part)
    assert "tolerations" not in pod
    assert pod["nodeSelector"] == {"node.kubernetes.io/instance-type": "c6i.8xlarge"}


def test_labels_identify_tenant_job_pool_and_attempt() -> None:
    workload = render(4, attempt=3)[-1]
    labels = workload["metadata"]["labels"]
    assert labels["privtune.io/tenant"] == TENANT
    assert labels["privtune.io/job-id"] == "job-1"
    assert labels["privtune.io/pool"] == "a100-dedicated"
    assert labels["privtune.io/attempt"] == "3"
    assert workload["spec"]["template"]["metadata"]["labels"] == labels
    assert workload["metadata"]["name"].endswith("-a3")


# -- names --------------------------------------------------------------------------------------


@pytest.mark.parametrize("job_id", ["Job_42", "UPPER.case.Dots", "123-starts-with-digit", "x" * 200,
                                    "trailing___", "a" + "_-" * 40 + "b"])
def test_names_are_dns1123_labels_for_odd_job_ids(job_id: str) -> None:
    manifests = render(16, job_id=job_id, attempt=12)
    validate_manifests(manifests)
    for obj in manifests:
        assert is_dns1123_label(obj["metadata"]["name"]), obj["metadata"]["name"]
    workload = manifests[-1]["metadata"]["name"]
    assert workload[0].isalpha()  # replica services need DNS-1035 names
    assert len(f"{workload}-worker-999") <= 63
    assert manifests[-1]["metadata"]["annotations"]["privtune.io/job-id"] == job_id


def test_ids_that_sanitize_alike_or_repeat_across_tenants_never_share_names() -> None:
    assert job_base_name("Job_A", TENANT) != job_base_name("job-a", TENANT)
    assert job_base_name("c", "a-b") != job_base_name("b-c", "a")
    assert job_base_name("job-1", "acme") != job_base_name("job-1", "globex")
    assert label_value("job-1") == "job-1"
    assert len(label_value("y" * 100)) <= 63


# -- the validator ------------------------------------------------------------------------------


def _mutated(manifests: list[dict[str, Any]], index: int, path: list[Any], value: Any) -> list[dict[str, Any]]:
    broken = copy.deepcopy(manifests)
    target: Any = broken[index]
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return broken


def test_validator_names_the_object_and_field_of_a_wrong_type_in_a_job() -> None:
    manifests = render(4)
    broken = _mutated(manifests, -1, ["spec", "backoffLimit"], "zero")
    with pytest.raises(ManifestError) as info:
        validate_manifests(broken)
    assert info.value.kind == "Job"
    assert info.value.name == manifests[-1]["metadata"]["name"]
    assert info.value.field == "spec.backoffLimit"
    assert "spec.backoffLimit" in str(info.value) and manifests[-1]["metadata"]["name"] in str(info.value)


def test_validator_rejects_unknown_fields_in_strict_mode() -> None:
    broken = _mutated(render(1), 0, ["spec", "egressRules"], [])
    with pytest.raises(ManifestError) as info:
        validate_manifests(broken)
    assert info.value.kind == "NetworkPolicy"
    assert "egressRules" in str(info.value)


def test_validator_checks_pytorchjob_against_the_crd_schema() -> None:
    manifests = render(16)
    with pytest.raises(ManifestError) as info:
        validate_manifests(_mutated(manifests, -1, ["spec", "runPolicy", "backoffLimit"], "never"))
    assert (info.value.kind, info.value.field) == ("PyTorchJob", "spec.runPolicy.backoffLimit")
    with pytest.raises(ManifestError) as info:
        validate_manifests(_mutated(manifests, -1, ["spec", "runPolicy", "retries"], 3))
    assert "retries" in str(info.value)


def test_validator_checks_the_pytorchjob_pod_template_against_the_pod_schema() -> None:
    manifests = render(16)
    container = ["spec", "pytorchReplicaSpecs", "Worker", "template", "spec", "containers", 0]
    with pytest.raises(ManifestError) as info:
        validate_manifests(_mutated(manifests, -1, container + ["securityContext", "privileged"], "no"))
    assert info.value.kind == "PyTorchJob"
    assert info.value.field == ("spec.pytorchReplicaSpecs.Worker.template.spec.containers.0."
                                "securityContext.privileged")


def test_validator_rejects_names_and_labels_kubernetes_would_refuse() -> None:
    manifests = render(1)
    with pytest.raises(ManifestError, match="metadata.name"):
        validate_manifests(_mutated(manifests, 1, ["metadata", "name"], "Bad_Name"))
    with pytest.raises(ManifestError, match="metadata.labels.privtune.io/job-id"):
        validate_manifests(_mutated(manifests, 1, ["metadata", "labels", "privtune.io/job-id"], "a b"))


def test_baseline_policy_validates_and_allows_nothing() -> None:
    policy = render_baseline_policy(SETTINGS)
    validate_manifests([policy])
    assert policy["spec"]["egress"] == [] and policy["spec"]["ingress"] == []


# -- refusals and output -----------------------------------------------------------------------


def test_dataset_outside_the_tenant_storage_is_refused() -> None:
    other = "file:///data/tenants/globex/datasets/x/v1/"
    job = spec(1).model_copy(update={"dataset_uri": other})
    with pytest.raises(InvalidArgument, match="not inside tenant 'acme'"):
        render_job("job-1", TENANT, job, GPU_POOL, A100, SETTINGS, other, 1)


def test_inputs_that_disagree_are_refused() -> None:
    with pytest.raises(InvalidArgument, match="tenant_id"):
        render_job("job-1", "globex", spec(1), GPU_POOL, A100, SETTINGS, DATASET, 1)
    with pytest.raises(InvalidArgument, match="gpu type"):
        render_job("job-1", TENANT, spec(1), GPU_POOL, "h100-80gb", SETTINGS, DATASET, 1)


def test_dump_is_a_multi_document_yaml_stream_without_anchors() -> None:
    manifests = render(16)
    text = dump_manifests(manifests)
    assert "&id" not in text
    assert list(yaml.safe_load_all(text)) == manifests
