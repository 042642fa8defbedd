"""One contract for every serving backend: real HTTP to a real server process, real models.

The transformers backend runs with the tiny test model and a LoRA adapter trained for real by the
training job (the fast tier). vLLM runs with SmolLM2-135M-Instruct and a LoRA adapter the training
job trains on it (marked e2e; its venv is built on first use and cached). Each backend must:
report health and its models; answer chat completions greedily and deterministically, as JSON and
as server-sent events ending in ``[DONE]`` with a usage chunk; refuse bad requests with
OpenAI-shaped errors; hot-load an adapter produced by the training worker that then answers
differently from the base, and unload it so that it is no longer served; refuse an adapter whose
bytes do not match the registry's sha256, before the server sees it; survive a client that
disconnects mid-stream; and serve concurrent clients. (That engines' error messages never repeat
the prompt is the gateway's guarantee, which rewrites them: tests/integration/deploy.)
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import shutil
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from gpu_worker.base_models import SMOLLM2_ID, import_smollm2
from gpu_worker.job import run_job
from gpu_worker.synthetic import write_dataset_version
from services.common.storage import open_tenant_storage
from services.deploy.backends import AdapterMismatch, HttpBackendProcess, TransformersBackend, VllmBackend
from tests.deploy_fixtures import copy_artifact, trained_adapter
from tests.generators.support_task import support_tickets
from tests.training_fixtures import TENANT, tiny_spec

pytestmark = pytest.mark.contract
PROMPT = [{"role": "user", "content": "hi card declined 42 thanks"}]


MODELS = Path(os.environ.get("PRIVTUNE_MODELS", Path.home() / ".cache" / "privtune" / "models"))


def _smollm2_adapter(root: Path) -> tuple[Path, Path, str]:
    """SmolLM2 from the model store and a LoRA adapter the training job trains on it (a few steps, a high rate:
    enough to change its greedy answers)."""
    import_smollm2(MODELS)
    storage_root = str(root / "tenants")
    storage = open_tenant_storage(storage_root, TENANT)
    write_dataset_version(storage, "datasets/desk/versions/v1", support_tickets(32, 1), support_tickets(4, 2))
    spec = tiny_spec(storage.uri_for("datasets/desk/versions/v1"), "lora", job_id="serve-smol", base_model=SMOLLM2_ID,
                     max_steps=6, micro_batch_size=2, max_seq_length=64, learning_rate=5e-3, checkpoint_every=6)
    done: list[dict] = []
    assert run_job(spec, MODELS, storage_root, root / "work",
                   lambda kind, payload: done.append(payload) if kind == "completed" else None) == 0
    return MODELS / SMOLLM2_ID, copy_artifact(storage, done[0]["artifact_uri"], root / "adapter"), \
        done[0]["artifact_sha256"]


@pytest.fixture(scope="module", params=["transformers", pytest.param("vllm", marks=[
    pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1800)])])
def served(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[HttpBackendProcess, Path, str]]:
    """(a started backend, a LoRA adapter folder for its base, the adapter's sha256 as the training run recorded it)."""
    root = tmp_path_factory.mktemp(f"serving-{request.param}")
    if request.param == "vllm":
        base, adapter, sha256 = _smollm2_adapter(root)
        server: HttpBackendProcess = VllmBackend(base, "smollm2", root / "server.log")
    else:
        base, adapter, sha256 = trained_adapter(root)
        server = TransformersBackend(base, "tiny-base", root / "server.log", max_batch=8, threads=1)
    server.start(timeout=900)
    yield server, adapter, sha256
    server.stop()


@pytest.fixture(scope="module")
def backend(served: tuple[HttpBackendProcess, Path, str]) -> HttpBackendProcess:
    return served[0]


@pytest.fixture(scope="module")
def trained(served: tuple[HttpBackendProcess, Path, str]) -> tuple[Path, Path, str]:
    return Path(), served[1], served[2]


def _chat(backend: HttpBackendProcess, model: str, **extra: object) -> httpx.Response:
    body = {"model": model, "messages": PROMPT, "max_tokens": 12, "temperature": 0, **extra}
    return httpx.post(f"{backend.base_url}/v1/chat/completions", json=body, timeout=120)


def _answer(backend: HttpBackendProcess, model: str) -> str:
    response = _chat(backend, model)
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]["message"]["content"]


def _model_ids(backend: HttpBackendProcess) -> list[str]:
    return [m["id"] for m in httpx.get(f"{backend.base_url}/v1/models", timeout=10).json()["data"]]


def test_health_models_and_a_deterministic_completion(backend: HttpBackendProcess) -> None:
    assert httpx.get(f"{backend.base_url}/health", timeout=10).status_code == 200
    assert backend.served_name in _model_ids(backend)
    response = _chat(backend, backend.served_name)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "chat.completion" and body["model"] == backend.served_name
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant" and choice["finish_reason"] in ("stop", "length")
    usage = body["usage"]
    assert usage["prompt_tokens"] > 0 and 0 < usage["completion_tokens"] <= 12
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert _answer(backend, backend.served_name) == choice["message"]["content"]  # greedy: the same again


def test_streaming_sends_deltas_a_finish_a_usage_chunk_and_done(backend: HttpBackendProcess) -> None:
    whole = _answer(backend, backend.served_name)
    body = {"model": backend.served_name, "messages": PROMPT, "max_tokens": 12, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    events = []
    with httpx.stream("POST", f"{backend.base_url}/v1/chat/completions", json=body, timeout=120) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(line[len("data: "):])
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == whole
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert len(finishes) == 1 and finishes[0] in ("stop", "length")
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0


def test_bad_requests_get_openai_shaped_errors(backend: HttpBackendProcess) -> None:
    url = f"{backend.base_url}/v1/chat/completions"
    secret = "SECRET-PROMPT-7731"
    cases = [  # each would be answered quickly if accepted (max_tokens 4): a refusal is what is checked
        {"model": "no-such-model", "messages": [{"role": "user", "content": secret}], "max_tokens": 4},
        {"model": backend.served_name, "messages": "not a list", "max_tokens": 4},
        {"model": backend.served_name, "messages": [{"role": "user", "content": secret}], "max_tokens": 0},
        {"model": backend.served_name, "messages": [{"role": "user", "content": secret}], "temperature": -1,
         "max_tokens": 4},
    ]
    for body in cases:
        response = httpx.post(url, json=body, timeout=30)
        assert response.status_code in (400, 404, 422), (body, response.status_code)
        error = response.json()["error"]
        assert error["message"] and "type" in error
    garbage = httpx.post(url, content=b"\xff{not json", timeout=30)
    assert garbage.status_code == 400 and "error" in garbage.json()


def test_an_adapter_loads_answers_differently_and_unloads(backend: HttpBackendProcess,
                                                           trained: tuple[Path, Path, str]) -> None:
    _, adapter, sha256 = trained
    base_answer = _answer(backend, backend.served_name)
    backend.load_adapter("desk-v1", adapter, sha256)
    try:
        assert "desk-v1" in _model_ids(backend)
        tuned = _answer(backend, "desk-v1")
        assert tuned != base_answer
        assert _answer(backend, backend.served_name) == base_answer  # the base is untouched by the adapter
    finally:
        backend.unload_adapter("desk-v1")
    assert "desk-v1" not in _model_ids(backend)
    gone = _chat(backend, "desk-v1")
    assert gone.status_code == 404 and "error" in gone.json()
    assert _answer(backend, backend.served_name) == base_answer  # the base still answers, as before


def test_an_adapter_whose_bytes_differ_from_the_registry_is_never_loaded(backend: HttpBackendProcess,
                                                                         trained: tuple[Path, Path, str],
                                                                         tmp_path: Path) -> None:
    _, adapter, sha256 = trained
    tampered = tmp_path / "tampered"
    shutil.copytree(adapter, tampered)
    weights = next(p for p in tampered.iterdir() if p.suffix == ".safetensors")
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(AdapterMismatch):
        backend.load_adapter("tampered", tampered, sha256)
    with pytest.raises(AdapterMismatch):
        backend.load_adapter("truncated", tmp_path / "missing", sha256)
    assert "tampered" not in _model_ids(backend)


def test_a_client_gone_mid_stream_does_not_hurt_the_next(backend: HttpBackendProcess) -> None:
    body = {"model": backend.served_name, "messages": PROMPT, "max_tokens": 200, "temperature": 0, "stream": True}
    with httpx.stream("POST", f"{backend.base_url}/v1/chat/completions", json=body, timeout=120) as response:
        for line in response.iter_lines():
            if '"content"' in line:
                break  # leave after the first chunk
    assert httpx.get(f"{backend.base_url}/health", timeout=10).status_code == 200
    assert _chat(backend, backend.served_name).status_code == 200


def test_concurrent_clients_are_all_answered(backend: HttpBackendProcess) -> None:
    """(That batched answers equal lone ones is the transformers engine's own promise: tests/unit/deploy; vLLM
    makes no such promise.)"""
    prompts = [f"ticket {n}: card declined {n * 7}" for n in range(12)]

    def ask(text: str) -> dict:
        response = httpx.post(f"{backend.base_url}/v1/chat/completions", timeout=300, json={
            "model": backend.served_name, "messages": [{"role": "user", "content": text}], "max_tokens": 10,
            "temperature": 0})
        assert response.status_code == 200, response.text
        return response.json()

    with concurrent.futures.ThreadPoolExecutor(max_workers=12) as pool:
        answers = list(pool.map(ask, prompts))
    assert len(answers) == 12 and all(0 < a["usage"]["completion_tokens"] <= 10 for a in answers)
