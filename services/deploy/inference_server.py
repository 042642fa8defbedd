"""The transformers serving backend: an OpenAI-compatible HTTP server over one base model and runtime LoRA adapters.

    python -m services.deploy.inference_server --model-dir DIR --served-model-name NAME --port 8000

It speaks the surface the vLLM backend speaks, so the gateway and the contract tests treat both
alike: ``POST /v1/chat/completions`` (JSON, or server-sent events with ``stream``; a usage chunk
with ``stream_options.include_usage``; ``data: [DONE]`` at the end), ``GET /v1/models`` (the base
and each loaded adapter), ``GET /health`` (200 while the engine runs), and vLLM's runtime adapter
endpoints ``POST /v1/load_lora_adapter`` (``lora_name``, ``lora_path``, and privtune's required
``sha256``: the adapter folder's manifest hash, checked before anything loads; with
``--adapters-root`` the folder must lie inside it) and ``POST /v1/unload_lora_adapter``
(``lora_name``). Those two change what every caller gets: the server binds 127.0.0.1 unless told
otherwise, and in a cluster only the pool manager may reach them (NetworkPolicy). A request names the base by its served name or
an adapter by its name. Generation is batched (services/deploy/decoding.py).

It binds 127.0.0.1 unless told otherwise and, with ``--parent-pid``, exits when that process is
gone. Prompts and generations are never logged.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import threading
import time
from pathlib import Path
from typing import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request as HttpRequest
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from services.deploy import openai_protocol as api
from services.deploy.decoding import AdapterError, DecodeEngine, Event, Request

log = logging.getLogger(__name__)
MAX_PENDING = 1024


class InferenceApp:
    """The HTTP surface over a running :class:`DecodeEngine`."""

    def __init__(self, engine: DecodeEngine, served_name: str, max_model_len: int,
                 adapters_root: Path | None = None) -> None:
        self.engine = engine
        self.adapters_root = adapters_root.resolve() if adapters_root is not None else None
        self.tokenizer = engine.tokenizer
        self.served_name = served_name
        self.max_model_len = max_model_len
        self.created = int(time.time())
        self.pending = 0
        self.app = Starlette(routes=[
            Route("/health", self.health, methods=["GET"]),
            Route("/v1/models", self.models, methods=["GET"]),
            Route("/v1/chat/completions", self.chat_completions, methods=["POST"]),
            Route("/v1/load_lora_adapter", self.load_adapter, methods=["POST"]),
            Route("/v1/unload_lora_adapter", self.unload_adapter, methods=["POST"]),
        ], exception_handlers={api.ApiError: self._api_error})

    async def _api_error(self, _request: HttpRequest, exc: Exception) -> Response:
        assert isinstance(exc, api.ApiError)
        return JSONResponse(exc.body(), status_code=exc.status)

    async def health(self, _request: HttpRequest) -> Response:
        if not self.engine.alive:  # stopped, or a failed adapter load could not be taken out of the model
            return JSONResponse({"status": "engine stopped"}, status_code=503)
        return PlainTextResponse("")

    async def models(self, _request: HttpRequest) -> Response:
        data = [{"id": self.served_name, "object": "model", "created": self.created, "owned_by": "privtune",
                 "root": self.served_name, "parent": None, "max_model_len": self.max_model_len}]
        data += [{"id": name, "object": "model", "created": self.created, "owned_by": "privtune",
                  "root": name, "parent": self.served_name} for name in sorted(self.engine.adapters)]
        return JSONResponse({"object": "list", "data": data})

    async def load_adapter(self, request: HttpRequest) -> Response:
        body = api.json_object(await request.body())
        name, path, sha256 = body.get("lora_name"), body.get("lora_path"), body.get("sha256")
        if not isinstance(name, str) or not name or len(name) > 256 or name == self.served_name:
            raise api.ApiError(400, "lora_name must be a non-empty name (at most 256 characters) other than the "
                                    "base model's", param="lora_name")
        if not isinstance(path, str) or not path or not Path(path).is_absolute():
            raise api.ApiError(400, "lora_path must be the absolute path of the adapter's folder", param="lora_path")
        if not isinstance(sha256, str) or len(sha256) != 64:
            raise api.ApiError(400, "sha256 (the adapter's manifest sha256 from the registry) is required",
                               param="sha256")
        folder = Path(path).resolve()
        if self.adapters_root is not None and not folder.is_relative_to(self.adapters_root):
            raise api.ApiError(400, "lora_path must lie inside this server's adapters folder", param="lora_path")
        await asyncio.to_thread(_verify_folder, folder, sha256)
        try:
            await asyncio.to_thread(self.engine.load_adapter, name, folder)
        except AdapterError as exc:
            raise api.ApiError(400, str(exc), param="lora_path", code="adapter_not_loaded") from None
        return PlainTextResponse(f"Success: LoRA adapter '{name}' added successfully.")

    async def unload_adapter(self, request: HttpRequest) -> Response:
        body = api.json_object(await request.body())
        name = body.get("lora_name")
        if not isinstance(name, str) or not name:
            raise api.ApiError(400, "lora_name is required", param="lora_name")
        try:
            await asyncio.to_thread(self.engine.unload_adapter, name)
        except AdapterError as exc:
            raise api.ApiError(404, str(exc), type_="NotFoundError", param="lora_name", code="adapter_not_found") \
                from None
        return PlainTextResponse(f"Success: LoRA adapter '{name}' removed successfully.")

    async def chat_completions(self, request: HttpRequest) -> Response:
        chat = api.parse_chat_request(await request.body())
        if not self.engine.alive:
            raise api.ApiError(503, "the inference engine is not running", type_="server_error",
                               code="engine_stopped")
        adapter = "" if chat.model == self.served_name else chat.model
        if adapter and adapter not in self.engine.adapters:
            raise api.ApiError(404, f"The model `{chat.model[:256]}` does not exist.", type_="NotFoundError",
                               param="model", code="model_not_found")
        prompt = await asyncio.to_thread(self._prompt_ids, chat)  # long prompts: off the event loop
        if len(prompt) >= self.max_model_len:
            raise api.ApiError(400, f"the prompt is {len(prompt):,} tokens; this model's context is "
                                    f"{self.max_model_len:,}", param="messages", code="context_length_exceeded")
        if self.pending >= MAX_PENDING:
            raise api.ApiError(503, f"more than {MAX_PENDING} requests are waiting; retry later", type_="server_error",
                               code="overloaded")
        events: asyncio.Queue[Event] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        job = Request(prompt_ids=prompt, adapter=adapter, temperature=chat.temperature, seed=chat.seed,
                      max_tokens=min(chat.token_limit, self.max_model_len - len(prompt)),
                      sink=lambda event: loop.call_soon_threadsafe(events.put_nowait, event))
        self.pending += 1
        self.engine.submit(job)
        if chat.stream:
            return StreamingResponse(self._stream(chat, job, events), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})
        try:
            parts: list[str] = []
            while True:
                try:
                    event = await asyncio.wait_for(events.get(), timeout=1.0)
                except asyncio.TimeoutError:
                    if await request.is_disconnected():  # nobody waits for the answer: stop generating it
                        job.cancel()
                        return Response(status_code=499)
                    continue
                parts.append(event.delta)
                if event.done:
                    break
        finally:
            job.cancel()  # a client gone while waiting frees its place in the batch
            self.pending -= 1
        if event.finish_reason == "error":
            raise api.ApiError(500, event.error or "generation failed", type_="server_error", code="engine_error")
        return JSONResponse(api.completion_body(api.completion_id(), chat.model, "".join(parts),
                                                event.finish_reason, event.prompt_tokens, event.completion_tokens))

    async def _stream(self, chat: api.ChatCompletionRequest, job: Request,
                      events: asyncio.Queue[Event]) -> AsyncIterator[bytes]:
        cid, created = api.completion_id(), int(time.time())
        try:
            yield api.sse(api.chunk_body(cid, chat.model, created, {"role": "assistant", "content": ""}))
            while True:
                event = await events.get()
                if event.delta:
                    yield api.sse(api.chunk_body(cid, chat.model, created, {"content": event.delta}))
                if event.done:
                    break
            if event.finish_reason == "error":
                yield api.sse({"error": {"message": event.error or "generation failed", "type": "server_error",
                                         "param": None, "code": "engine_error"}})
            else:
                yield api.sse(api.chunk_body(cid, chat.model, created, {}, finish_reason=event.finish_reason))
                if chat.stream_options is not None and chat.stream_options.include_usage:
                    yield api.sse(api.chunk_body(cid, chat.model, created, {}, choices=False,
                                                 usage_=api.usage(event.prompt_tokens, event.completion_tokens)))
            yield api.sse("[DONE]")
        finally:
            job.cancel()  # the client went away mid-stream: stop generating for it
            self.pending -= 1

    def _prompt_ids(self, chat: api.ChatCompletionRequest) -> list[int]:
        from jinja2.exceptions import TemplateError

        try:
            text = self.tokenizer.apply_chat_template(chat.chat(), tokenize=False, add_generation_prompt=True)
        except TemplateError:
            raise api.ApiError(400, "the model's chat template refused these messages (for example a system turn "
                                    "it does not accept)", param="messages", code="invalid_messages") from None
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])


def _verify_folder(folder: Path, sha256: str) -> None:
    from services.deploy.backends import AdapterMismatch, verify_adapter

    try:
        verify_adapter(folder, sha256)
    except AdapterMismatch:  # its message names the actual hash: never tell a caller what a folder hashes to
        raise api.ApiError(400, "lora_path does not hold an adapter whose files hash to sha256; it was changed, "
                                "only partly copied, or is not the registry's: refusing to load it", param="sha256",
                           code="adapter_sha256_mismatch") from None


def load_engine(model_dir: Path, *, max_batch: int, threads: int | None = None) -> tuple[DecodeEngine, int]:
    """The started engine over ``model_dir`` (a Hugging Face folder) and the model's context length."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if threads:
        torch.set_num_threads(threads)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    context = int(getattr(model.config, "max_position_embeddings", 2048) or 2048)
    return DecodeEngine(model, tokenizer, max_batch=max_batch).start(), context


def _exit_with_parent(parent: int) -> None:
    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--served-model-name", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--max-model-len", type=int, default=0, help="default: the model's context length")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's own)")
    parser.add_argument("--parent-pid", type=int, default=0, help="exit when this process is gone")
    parser.add_argument("--adapters-root", type=Path, default=None, help="adapters may only be loaded from here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.parent_pid:
        _exit_with_parent(args.parent_pid)
    import uvicorn

    engine, context = load_engine(args.model_dir, max_batch=args.max_batch, threads=args.threads or None)
    server = InferenceApp(engine, args.served_model_name, min(args.max_model_len or context, context),
                          adapters_root=args.adapters_root)
    uvicorn.run(server.app, host=args.host, port=args.port, log_level="warning", timeout_graceful_shutdown=30)
    engine.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
