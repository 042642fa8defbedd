"""One contract for every serving backend: real HTTP to a real server process, real models.

The transformers backend runs here with the tiny test model and a LoRA adapter trained for real
by the training job (the fast tier). Each backend must: report health and its models; answer
chat completions greedily and deterministically, as JSON and as server-sent events ending in
``[DONE]`` with a usage chunk; refuse bad requests with OpenAI-shaped errors (never echoing the
prompt); hot-load an adapter that then answers differently from the base, and unload it so that
it is no longer served; refuse an adapter whose bytes do not match the registry's sha256, before
the server sees it; survive a client that disconnects mid-stream; and serve concurrent clients
whose answers equal the ones each gets alone.
"""

from __future__ import annotations

import concurrent.futures
import json
import shutil
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from services.deploy.backends import AdapterMismatch, HttpBackendProcess, TransformersBackend
from tests.deploy_fixtures import trained_adapter

pytestmark = pytest.mark.contract
PROMPT = [{"role": "user", "content": "hi card declined 42 thanks"}]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """(base model folder, a LoRA adapter folder trained on it, the adapter's sha256 as the run recorded it)."""
    return trained_adapter(tmp_path_factory.mktemp("serving"))


@pytest.fixture(scope="module", params=["transformers"])
def backend(request: pytest.FixtureRequest, trained: tuple[Path, Path, str],
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpBackendProcess]:
    base, _, _ = trained
    logs = tmp_path_factory.mktemp("serving-logs")
    server = TransformersBackend(base, "tiny-base", logs / "server.log", max_batch=8, threads=1)
    server.start(timeout=300)
    yield server
    server.stop()


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


def test_bad_requests_get_openai_shaped_errors_without_the_prompt(backend: HttpBackendProcess) -> None:
    url = f"{backend.base_url}/v1/chat/completions"
    secret = "SECRET-PROMPT-7731"
    cases = [
        {"model": "no-such-model", "messages": [{"role": "user", "content": secret}]},
        {"model": backend.served_name, "messages": []},
        {"model": backend.served_name, "messages": [{"role": "wizard", "content": secret}]},
        {"model": backend.served_name, "messages": [{"role": "user", "content": secret}], "max_tokens": 0},
        {"model": backend.served_name, "messages": [{"role": "user", "content": secret}], "temperature": -1},
    ]
    for body in cases:
        response = httpx.post(url, json=body, timeout=30)
        assert response.status_code in (400, 404), (body, response.status_code)
        error = response.json()["error"]
        assert error["message"] and secret not in response.text
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


def test_concurrent_clients_get_the_answers_they_get_alone(backend: HttpBackendProcess) -> None:
    prompts = [f"ticket {n}: card declined {n * 7}" for n in range(12)]

    def ask(text: str) -> str:
        response = httpx.post(f"{backend.base_url}/v1/chat/completions", timeout=120, json={
            "model": backend.served_name, "messages": [{"role": "user", "content": text}], "max_tokens": 10,
            "temperature": 0})
        assert response.status_code == 200, response.text
        return response.json()["choices"][0]["message"]["content"]

    alone = [ask(p) for p in prompts]
    with concurrent.futures.ThreadPoolExecutor(max_workers=12) as pool:
        together = list(pool.map(ask, prompts))
    assert together == alone
