"""The decode engine with a real (tiny) model: batched streaming equals generate(), failures and cancels end
requests instead of hanging them, and the engine goes on."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Iterator

import pytest
import torch

from services.deploy.decoding import DecodeEngine, Event, Request
from tests.training_fixtures import make_models

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DecodeEngine]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    models = tmp_path_factory.mktemp("models")
    make_models(models)
    tokenizer = AutoTokenizer.from_pretrained(models / "tiny-llama")
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(models / "tiny-llama")
    running = DecodeEngine(model, tokenizer, max_batch=8, gather_seconds=0.05).start()
    yield running
    running.stop()


class Collector:
    def __init__(self) -> None:
        self.parts: list[str] = []
        self.final: Event | None = None
        self.done = threading.Event()

    def __call__(self, event: Event) -> None:
        self.parts.append(event.delta)
        if event.done:
            self.final = event
            self.done.set()

    def wait(self) -> Event:
        assert self.done.wait(60), "the request never ended"
        assert self.final is not None
        return self.final


def _submit(engine: DecodeEngine, prompt: list[int], max_tokens: int = 16) -> tuple[Request, Collector]:
    sink = Collector()
    request = Request(prompt_ids=prompt, adapter="", max_tokens=max_tokens, temperature=0.0, sink=sink)
    engine.submit(request)
    return request, sink


def test_a_batch_streams_what_generate_gives_each_prompt_alone(engine: DecodeEngine) -> None:
    prompts = [[5, 6, 7], [9] * 11, [40, 41, 42, 43, 44, 45, 46]]
    runs = [_submit(engine, p) for p in prompts]
    for prompt, (_, sink) in zip(prompts, runs):
        final = sink.wait()
        assert final.finish_reason in ("stop", "length") and final.prompt_tokens == len(prompt)
        expected = engine.model.generate(torch.tensor([prompt]), max_new_tokens=16, do_sample=False)
        new = expected[0, len(prompt):].tolist()
        new = new[:next((i for i, t in enumerate(new) if t in engine.stop_ids), len(new))]
        assert "".join(sink.parts) == engine.tokenizer.decode(new, skip_special_tokens=True)
        assert final.completion_tokens == len(new)


def test_a_failing_batch_ends_its_requests_with_an_error_and_the_engine_goes_on(engine: DecodeEngine) -> None:
    vocabulary = engine.model.config.vocab_size
    _, broken = _submit(engine, [5, vocabulary + 1000])  # a token id the embedding does not have
    final = broken.wait()
    assert final.finish_reason == "error" and final.error
    _, fine = _submit(engine, [5, 6, 7])
    assert fine.wait().finish_reason in ("stop", "length") and engine.alive


def test_a_cancelled_request_ends_early(engine: DecodeEngine) -> None:
    request, sink = _submit(engine, [5, 6, 7], max_tokens=10_000)
    request.cancel()
    final = sink.wait()
    assert final.finish_reason == "cancelled" and final.completion_tokens < 10_000


def test_adapters_that_are_not_folders_of_a_peft_adapter_are_refused(engine: DecodeEngine, tmp_path: Path) -> None:
    from services.deploy.decoding import AdapterError

    with pytest.raises(AdapterError, match="adapter_config.json"):
        engine.load_adapter("nothing", tmp_path)
    with pytest.raises(AdapterError, match="no adapter named"):
        engine.unload_adapter("never-loaded")
    assert engine.adapters == {} and engine.alive


def test_a_tiny_temperature_is_greedy_and_fails_nobody(engine: DecodeEngine) -> None:
    sinks = []
    for temperature in (1e-40, 0.0, 1e-300):
        sink = Collector()
        engine.submit(Request(prompt_ids=[5, 6, 7], adapter="", max_tokens=8, temperature=temperature, sink=sink,
                              seed=1))
        sinks.append(sink)
    finals = [s.wait() for s in sinks]
    assert all(f.finish_reason in ("stop", "length") for f in finals)
    assert len({"".join(s.parts) for s in sinks}) == 1  # all greedy: the same answer


def test_cancelling_inside_a_running_batch_stops_only_that_request(engine: DecodeEngine) -> None:
    long_request, long_sink = None, Collector()

    def cancel_after_first_token(event: Event) -> None:
        long_sink(event)
        if event.delta and long_request is not None:
            long_request.cancel()

    long_request = Request(prompt_ids=[5, 6, 7], adapter="", max_tokens=10_000, temperature=0.0,
                           sink=cancel_after_first_token)
    _, other = _submit(engine, [8, 9, 10], max_tokens=12)
    engine.submit(long_request)
    final = long_sink.wait()
    assert final.finish_reason in ("cancelled", "stop") and final.completion_tokens < 10_000
    assert other.wait().finish_reason in ("stop", "length")


def test_a_failed_adapter_load_leaves_the_base_answering_as_before(engine: DecodeEngine,
                                                                    tmp_path_factory: pytest.TempPathFactory) -> None:
    import json
    import shutil

    from services.deploy.decoding import AdapterError
    from tests.deploy_fixtures import trained_adapter

    _, adapter, _ = trained_adapter(tmp_path_factory.mktemp("adapter"))
    broken = tmp_path_factory.mktemp("broken") / "adapter"
    shutil.copytree(adapter, broken)
    config = json.loads((broken / "adapter_config.json").read_text())
    config["r"] = int(config["r"]) * 2  # the weights no longer fit the layers PEFT inserts...
    config["init_lora_weights"] = False  # ...which start random: left in place, they would change every answer
    (broken / "adapter_config.json").write_text(json.dumps(config))

    def base_answer() -> str:
        _, sink = _submit(engine, [5, 6, 7, 8], max_tokens=12)
        sink.wait()
        return "".join(sink.parts)

    before = base_answer()
    with pytest.raises(AdapterError):
        engine.load_adapter("broken", broken)
    assert base_answer() == before and engine.adapters == {} and engine.alive
    engine.load_adapter("good", adapter)  # a good adapter still loads after a failed one
    try:
        with pytest.raises(AdapterError):
            engine.load_adapter("broken-2", broken)  # a failed second load leaves the first in place
        assert set(engine.adapters) == {"good"} and base_answer() == before
    finally:
        engine.unload_adapter("good")
    assert base_answer() == before


def test_incremental_detokenisation_gives_the_whole_text_once_even_inside_multibyte_characters() -> None:
    from gpu_worker.byte_tokenizer import build_byte_tokenizer
    from services.deploy.decoding import _TextStream

    tokenizer = build_byte_tokenizer()
    text = "Grüße — naïve café 🙂 账户 ok. " * 40  # 2- to 4-byte characters, each several byte tokens
    ids = tokenizer.encode(text, add_special_tokens=False)
    stream = _TextStream(tokenizer)
    pieces = [stream.push(i) for i in ids]
    assert "".join(pieces) + stream.flush() == tokenizer.decode(ids, skip_special_tokens=True) == text
    assert all("\ufffd" not in piece for piece in pieces)  # never half a character on the wire
    cut = _TextStream(tokenizer)  # an answer cut inside a character (max_tokens): held back, then one U+FFFD
    emoji = tokenizer.encode("🙂", add_special_tokens=False)
    assert [cut.push(i) for i in [*tokenizer.encode("ok ", add_special_tokens=False), *emoji[:2]]] == \
        ["o", "k", " ", "", ""]
    assert cut.flush() == "\ufffd"  # as a full decode of the same tokens says, never the raw bytes
