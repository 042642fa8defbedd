"""Pool and gateway manifests validate as strictly as an API server would, and say what is wrong when not."""

from __future__ import annotations

import dataclasses

import pytest

from services.common.kubernetes_objects import ManifestError, dump_manifests, validate_builtin_manifests
from services.deploy.kubernetes_manifests import GatewaySpec, PoolSpec, render_gateway, render_pool

pytestmark = pytest.mark.unit
POOL = PoolSpec(name="support-bot-green", deployment_id="dep-1", model_version_id="support-bot/v3", backend="vllm",
                image="registry.example/privtune-vllm:1", base_model_id="smollm2-135m-instruct",
                served_name="smollm2", gpus=1)


@pytest.mark.parametrize("backend", ["vllm", "transformers"])
def test_a_pool_is_a_probed_deployment_and_a_service(backend: str) -> None:
    deployment, service, policy = render_pool(dataclasses.replace(POOL, backend=backend))
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert container["startupProbe"]["failureThreshold"] * container["startupProbe"]["periodSeconds"] >= 600
    assert container["securityContext"]["readOnlyRootFilesystem"] and deployment["spec"]["template"]["spec"][
        "securityContext"]["runAsNonRoot"]
    assert {"name": "models", "mountPath": "/models", "readOnly": True} in container["volumeMounts"]
    assert deployment["metadata"]["annotations"]["privtune.dev/model-version"] == "support-bot/v3"
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert service["spec"]["selector"] == {"privtune.dev/pool": "support-bot-green"}
    assert ("vllm.entrypoints.openai.api_server" in container["command"]) == (backend == "vllm")
    assert container["resources"]["limits"].get("nvidia.com/gpu") == "1"
    assert "kind: Deployment" in dump_manifests([deployment, service])
    admitted = policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchExpressions"][0]["values"]
    assert set(admitted) == {"privtune-gateway", "privtune-deploy"}
    assert {"name": "HF_HOME", "value": "/tmp/hf"} in container["env"]


def test_the_gateway_validates() -> None:
    deployment, service = render_gateway(GatewaySpec(image="registry.example/privtune:1"))
    assert deployment["spec"]["replicas"] == 2 and service["spec"]["ports"][0]["port"] == 80


def test_bad_pools_are_refused_naming_the_field() -> None:
    with pytest.raises(ManifestError, match="metadata.name"):
        render_pool(dataclasses.replace(POOL, name="Support_Bot"))
    with pytest.raises(ManifestError, match="spec.replicas"):
        render_pool(dataclasses.replace(POOL, replicas=0))
    with pytest.raises(ManifestError, match="metadata.labels"):
        render_pool(dataclasses.replace(POOL, deployment_id="not a label!"))
    with pytest.raises(ManifestError, match="memory|quantity|resources"):
        render_pool(dataclasses.replace(POOL, memory="lots"))
    with pytest.raises(ManifestError, match="replace privtune's own"):
        render_pool(dataclasses.replace(POOL, extra_labels={"privtune.dev/pool": "other"}))


def test_unknown_fields_are_errors_as_with_strict_field_validation() -> None:
    deployment, _, _ = render_pool(POOL)
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    with pytest.raises(ManifestError, match="readinessProbes"):
        validate_builtin_manifests([deployment])
