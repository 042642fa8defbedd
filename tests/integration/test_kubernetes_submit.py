"""Submission through the real ``kubernetes`` client to a stand-in API server on loopback.

No cluster is reachable from development or CI machines, so a small HTTP server in this
test stands in for the Kubernetes API server: it answers the REST paths the client calls
(create returns 201 with the object, a second create of the same name 409 AlreadyExists,
deletes by name or label selector) and records every request. What is proven is the
client side: the executor posts exactly the validated objects, in a safe order, to the
right API paths with strict field validation, is idempotent on 409, and deletes on stop; a
single-node attempt's pod certificate goes in a Secret created before the Job, which then
becomes the Secret's owner. The server is shut down at the end of each test.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography import x509
from kubernetes import client

from services.common.auth.pki import LocalPki, ensure_local_pki
from services.common.errors import FailedPrecondition
from services.common.training_spec import TrainingSpec
from services.orchestrator.executors.kubernetes import (KubernetesExecutor, KubernetesSettings, SubmitError,
                                                        validate_manifests)
from services.orchestrator.resources import Pool

pytestmark = pytest.mark.integration

NS = "privtune-training"
TENANT = "acme"
POOL = Pool(name="a100", gpu_type="a100-80gb", gpus=32, executor="kubernetes",
            node_selector={"privtune.io/pool": "a100"}, max_gpus_per_node=8)
COLLECTIONS = {
    "networkpolicies": f"/apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies",
    "configmaps": f"/api/v1/namespaces/{NS}/configmaps",
    "secrets": f"/api/v1/namespaces/{NS}/secrets",
    "jobs": f"/apis/batch/v1/namespaces/{NS}/jobs",
    "pytorchjobs": f"/apis/kubeflow.org/v1/namespaces/{NS}/pytorchjobs",
}


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    content_type: str = ""


def merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """RFC 7386: what the API server does with application/merge-patch+json."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            merge_patch(target[key], value)
        else:
            target[key] = value


class FakeApiServer:
    """Objects by collection path and name; every request recorded; a status can be forced per collection
    (``refuse[path]``) or per method and collection (``refuse[(method, path)]``)."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, dict[str, Any]]] = {path: {} for path in COLLECTIONS.values()}
        self.requests: list[Request] = []
        self.refuse: dict[str | tuple[str, str], int] = {}
        self.lock = threading.Lock()

    def handle(self, method: str, url: str, body: Any, content_type: str = "") -> tuple[int, dict[str, Any]]:
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        with self.lock:
            self.requests.append(Request(method, parts.path, query, body, content_type))
            collection, _, name = parts.path.rpartition("/")
            if parts.path in self.objects:
                collection, name = parts.path, ""
            if collection not in self.objects:
                return 404, _status(404, "NotFound", f"no such path {parts.path}")
            code = self.refuse.get((method, collection)) or self.refuse.get(collection)
            if code:
                return code, _status(code, "Forbidden", "refused by the test")
            store = self.objects[collection]
            if method == "POST":
                name = body["metadata"]["name"]
                if name in store:
                    return 409, _status(409, "AlreadyExists", f"{name} already exists")
                created = json.loads(json.dumps(body))
                created["metadata"].update(uid=str(uuid.uuid4()), resourceVersion="1")
                store[name] = created
                return 201, created
            if method in ("GET", "PATCH") and name not in store:
                return 404, _status(404, "NotFound", f"{name} not found")
            if method == "GET" and name:
                return 200, store[name]
            if method == "PATCH" and name:
                merge_patch(store[name], body)
                return 200, store[name]
            if method == "DELETE" and name:
                if store.pop(name, None) is None:
                    return 404, _status(404, "NotFound", f"{name} not found")
                return 200, _status(200, "Success", "deleted")
            if method == "DELETE":
                wanted = dict(item.split("=", 1) for item in query.get("labelSelector", [""])[0].split(",") if item)
                for key in [k for k, obj in store.items() if wanted.items() <= obj["metadata"]["labels"].items()]:
                    del store[key]
                return 200, _status(200, "Success", "deleted")
            return 405, _status(405, "MethodNotAllowed", method)

    def of(self, method: str) -> list[Request]:
        return [r for r in self.requests if r.method == method]


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success" if code < 300 else "Failure",
            "reason": reason, "message": message, "code": code}


def _handler(api: FakeApiServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            code, payload = api.handle(self.command, self.path, json.loads(raw) if raw else None,
                                       self.headers.get("Content-Type", ""))
            data = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_POST = do_DELETE = do_GET = do_PATCH = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def api_server() -> Iterator[tuple[FakeApiServer, str]]:
    api = FakeApiServer()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(api))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield api, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def storage_root(tmp_path: Path) -> Path:
    dataset = tmp_path / "tenants" / TENANT / "datasets" / "claims" / "v3"
    dataset.mkdir(parents=True)
    (dataset / "manifest.json").write_text("{}")
    return tmp_path / "tenants"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> LocalPki:
    """The platform CA the executor issues pod certificates from."""
    return ensure_local_pki(tmp_path_factory.mktemp("pki"))


def executor_for(url: str, storage_root: Path, pki: LocalPki | None) -> KubernetesExecutor:
    settings = KubernetesSettings(namespace=NS, image="registry.example/privtune:1.0", models_pvc="privtune-models",
                                  storage_pvc="privtune-tenants", storage_root_uri=storage_root.as_uri(),
                                  bus_uri="kafka://kafka.privtune:9092", orchestrator_address="orchestrator:50052")
    return KubernetesExecutor(settings, lambda: client.ApiClient(client.Configuration(host=url)), pki)


def without_secret_data(manifests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The objects with each Secret's data and dated annotation left out (every launch issues a new key)."""
    plain = json.loads(json.dumps(manifests))
    for obj in plain:
        if obj["kind"] == "Secret":
            obj.pop("data")
            obj["metadata"]["annotations"].pop("privtune.io/not-after")
    return plain


def secret_certificate(secret: dict[str, Any]) -> x509.Certificate:
    return x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))


def job_spec(storage_root: Path, processes: int, job_id: str = "Job_7") -> TrainingSpec:
    return TrainingSpec(job_id=job_id, tenant_id=TENANT, base_model="smollm2-135m-instruct", num_processes=processes,
                        dataset_uri=(storage_root / TENANT / "datasets" / "claims" / "v3").as_uri() + "/")


def spec_names(executor: KubernetesExecutor, spec: TrainingSpec) -> dict[str, str]:
    manifests = executor.prepare(spec.job_id, TENANT, spec, POOL, "a100-80gb", spec.dataset_uri, 1)
    return {m["kind"]: m["metadata"]["name"] for m in manifests}


def launch(executor: KubernetesExecutor, spec: TrainingSpec, attempt: int = 1) -> Any:
    return executor.launch(spec.job_id, TENANT, spec, POOL, "a100-80gb", spec.dataset_uri, attempt)


def test_launch_posts_the_validated_objects_policy_first(api_server: tuple[FakeApiServer, str],
                                                         storage_root: Path, pki: LocalPki) -> None:
    api, url = api_server
    executor = executor_for(url, storage_root, pki)
    spec = job_spec(storage_root, 4)
    receipt = launch(executor, spec)
    expected = executor.prepare(spec.job_id, TENANT, spec, POOL, "a100-80gb", spec.dataset_uri, 1)
    validate_manifests(expected)
    posts = api.of("POST")
    assert [p.path for p in posts] == [COLLECTIONS["networkpolicies"], COLLECTIONS["configmaps"],
                                       COLLECTIONS["secrets"], COLLECTIONS["jobs"]]  # the pod's Secret before it
    # exactly what was rendered and validated, nothing dropped (but the key, new on every launch)
    assert without_secret_data([p.body for p in posts]) == without_secret_data(expected)
    assert all(p.query.get("fieldValidation") == ["Strict"] for p in posts)
    assert receipt.workload_kind == "Job" and receipt.already_existed == ()
    assert receipt.created == tuple(f"{m['kind']}/{m['metadata']['name']}" for m in expected)
    output = storage_root / TENANT / "training" / "Job_7"
    assert output.is_dir()  # created for the pod's read-write subPath
    assert receipt.events_file == str(output / "events-1.jsonl")

    (secret,) = api.objects[COLLECTIONS["secrets"]].values()
    certificate = secret_certificate(secret)
    certificate.verify_directly_issued_by(x509.load_pem_x509_certificate(pki.ca_bytes()))
    (uri,) = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.UniformResourceIdentifier)
    assert uri == f"spiffe://privtune/worker/k8s-{receipt.workload_name}"
    # then the Job owns the Secret, so the garbage collector removes it with the Job
    job = api.objects[COLLECTIONS["jobs"]][receipt.workload_name]
    (patch,) = api.of("PATCH")
    assert patch.path == f"{COLLECTIONS['secrets']}/{secret['metadata']['name']}"
    assert patch.content_type == "application/merge-patch+json"
    assert secret["metadata"]["ownerReferences"] == [
        {"apiVersion": "batch/v1", "kind": "Job", "name": receipt.workload_name, "uid": job["metadata"]["uid"]}]
    executor.close()


def test_launch_is_idempotent_on_already_exists(api_server: tuple[FakeApiServer, str], storage_root: Path,
                                                pki: LocalPki) -> None:
    api, url = api_server
    executor = executor_for(url, storage_root, pki)
    spec = job_spec(storage_root, 4)
    first = launch(executor, spec)
    (secret,) = api.objects[COLLECTIONS["secrets"]].values()
    issued = secret["data"]["tls.crt"]
    again = launch(executor, spec)
    assert again.created == () and again.already_existed == first.created
    assert len(api.objects[COLLECTIONS["jobs"]]) == 1
    assert secret["data"]["tls.crt"] == issued  # the pod keeps the certificate it may already use
    retry = launch(executor, spec, attempt=2)  # a retry is a new workload and certificate; policy and spec reused
    assert retry.created == (f"Secret/{retry.workload_name}-tls", f"Job/{retry.workload_name}")
    assert len(api.objects[COLLECTIONS["jobs"]]) == 2 and len(api.objects[COLLECTIONS["secrets"]]) == 2
    executor.close()


def test_without_the_platform_ca_nothing_is_created(api_server: tuple[FakeApiServer, str],
                                                    storage_root: Path) -> None:
    api, url = api_server
    executor = executor_for(url, storage_root, None)
    with pytest.raises(FailedPrecondition, match="client certificate from the platform CA"):
        launch(executor, job_spec(storage_root, 4))
    assert api.requests == []
    executor.close()


def test_a_secret_the_job_cannot_own_is_logged_and_the_attempt_still_runs(
        api_server: tuple[FakeApiServer, str], storage_root: Path, pki: LocalPki,
        caplog: pytest.LogCaptureFixture) -> None:
    api, url = api_server
    api.refuse[("PATCH", COLLECTIONS["secrets"])] = 403
    executor = executor_for(url, storage_root, pki)
    with caplog.at_level(logging.WARNING):
        receipt = launch(executor, job_spec(storage_root, 1))
    assert receipt.created[-1] == f"Job/{receipt.workload_name}"
    assert "stays until stop(): it could not be made the Job's dependent (HTTP 403)" in caplog.text
    assert "patch on secrets" in caplog.text
    executor.close()


def test_a_wide_gang_is_posted_as_a_pytorchjob(api_server: tuple[FakeApiServer, str], storage_root: Path,
                                               pki: LocalPki) -> None:
    api, url = api_server
    executor = executor_for(url, storage_root, pki)
    receipt = launch(executor, job_spec(storage_root, 16))
    assert receipt.workload_kind == "PyTorchJob"
    assert COLLECTIONS["secrets"] not in [p.path for p in api.of("POST")]  # gang pods make no gRPC call
    (posted,) = [p for p in api.of("POST") if p.path == COLLECTIONS["pytorchjobs"]]
    assert posted.body["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] == 1
    assert posted.query.get("fieldValidation") == ["Strict"]
    executor.close()


def test_stop_deletes_every_attempt_the_spec_and_the_policy(api_server: tuple[FakeApiServer, str],
                                                            storage_root: Path, pki: LocalPki) -> None:
    api, url = api_server
    executor = executor_for(url, storage_root, pki)
    spec = job_spec(storage_root, 4)
    launch(executor, spec)
    launch(executor, spec, attempt=2)
    other = job_spec(storage_root, 4, job_id="job-8")
    launch(executor, other)
    executor.stop(spec.job_id, TENANT)
    deletes = api.of("DELETE")
    base = spec_names(executor, spec)
    assert [d.path for d in deletes] == [COLLECTIONS["jobs"], COLLECTIONS["pytorchjobs"], COLLECTIONS["secrets"],
                                         f"{COLLECTIONS['configmaps']}/{base['ConfigMap']}",
                                         f"{COLLECTIONS['networkpolicies']}/{base['NetworkPolicy']}"]
    for delete in deletes:
        if delete.path == COLLECTIONS["secrets"]:
            continue  # no pods hang off a Secret
        propagation = delete.query.get("propagationPolicy", [None])[0] or (delete.body or {}).get("propagationPolicy")
        assert propagation == "Foreground"
    selector = ["privtune.io/tenant=acme,privtune.io/job-id=Job_7"]
    assert deletes[0].query["labelSelector"] == deletes[2].query["labelSelector"] == selector
    remaining = {name for store in api.objects.values() for name in store}
    assert all("job-8" in name for name in remaining) and len(remaining) == 4  # the other job is untouched
    executor.stop(spec.job_id, TENANT)  # again: everything is already gone, and that is fine
    executor.close()


def test_refusals_and_an_unreachable_server_are_reported(api_server: tuple[FakeApiServer, str],
                                                         storage_root: Path, pki: LocalPki) -> None:
    api, url = api_server
    api.refuse[COLLECTIONS["jobs"]] = 403
    executor = executor_for(url, storage_root, pki)
    with pytest.raises(SubmitError, match="HTTP 403") as info:
        launch(executor, job_spec(storage_root, 1))
    assert info.value.kind == "Job" and not info.value.retryable
    executor.close()
    unreachable = executor_for("http://127.0.0.1:9", storage_root, pki)
    with pytest.raises(SubmitError) as info:
        unreachable.stop("Job_7", TENANT)
    assert info.value.retryable
    unreachable.close()
