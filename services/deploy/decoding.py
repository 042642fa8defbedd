"""Batched, streaming decoding with a causal LM and runtime LoRA adapters (the transformers backend).

One engine thread owns the model. Requests queue up; the engine takes the oldest request and
up to ``max_batch - 1`` more for the same adapter (the base model is adapter ``""``), left-pads
their prompts, and decodes them together with a KV cache, one token per step for every request
in the batch. Each new token goes to its request's sink at once, so streams start after the
prompt's forward pass, not at the end. A request ends at an end-of-turn token, at its
``max_tokens``, or when its client goes away (``cancel``); the batch ends when all have ended.
Requests arriving meanwhile wait for the next batch (static batching: simple, and the peer the
vLLM backend's continuous batching is measured against).

Adapters are loaded and unloaded on the engine thread between batches (PEFT: one model, many
named adapters, ``set_adapter`` per batch, ``disable_adapter`` for base requests), so a batch
never sees a half-loaded adapter. Greedy decoding (temperature 0) is deterministic; sampling
draws from each request's own generator (seeded when the request gives a seed).

Nothing here logs prompts or generations.
"""

from __future__ import annotations

import contextlib
import logging
import math
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch

log = logging.getLogger(__name__)

Sink = Callable[["Event"], None]


@dataclass(frozen=True)
class Event:
    """What a request hears: ``delta`` text as it is generated, then one final event (``done``)."""

    delta: str = ""
    done: bool = False
    finish_reason: str = ""          # "stop" (end of turn) | "length" (max_tokens) | "cancelled" | "error"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str = ""


@dataclass(eq=False)
class Request:
    prompt_ids: list[int]
    adapter: str                      # "" = the base model
    max_tokens: int
    temperature: float
    sink: Sink
    seed: int | None = None
    cancelled: threading.Event = field(default_factory=threading.Event)

    def cancel(self) -> None:
        self.cancelled.set()


class AdapterError(Exception):
    """An adapter cannot be loaded or unloaded (the message is privtune's own, never a path's content)."""


@dataclass
class _Control:
    action: str                       # "load" | "unload"
    name: str
    path: Path | None
    done: threading.Event = field(default_factory=threading.Event)
    error: str = ""


class _TextStream:
    """Incremental detokenisation: emits only text that will not change as more tokens come.

    Each token decodes a short window (from the last emitted boundary), never the whole answer, so a
    long answer costs linear time (the offsets technique of text-generation-inference): the text of
    ``ids[prefix:read]`` and of ``ids[prefix:]`` start at the same token, so whatever a tokenizer does
    at the start of a sequence (a dropped leading space) affects both alike and cancels out.
    """

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.prefix = 0   # where the decoded window starts
        self.read = 0     # tokens whose text was emitted

    def _decode(self, ids: list[int]) -> str:
        return str(self.tokenizer.decode(ids, skip_special_tokens=True))

    def push(self, token_id: int) -> str:
        self.ids.append(token_id)
        before = self._decode(self.ids[self.prefix:self.read])
        text = self._decode(self.ids[self.prefix:])
        if len(text) <= len(before) or text.endswith("\ufffd"):  # nothing new, or an incomplete UTF-8 sequence
            return ""
        self.prefix, self.read = self.read, len(self.ids)
        return text[len(before):]

    def flush(self) -> str:
        """What was held back at the end (an answer may end in bytes that are not valid UTF-8)."""
        before = self._decode(self.ids[self.prefix:self.read])
        text = self._decode(self.ids[self.prefix:])
        self.prefix = self.read = len(self.ids)
        return text[len(before):] if text.startswith(before) else ""


def stop_token_ids(model: Any, tokenizer: Any) -> set[int]:
    """End-of-turn tokens: the tokenizer's EOS and the model's generation config's."""
    ids: set[int] = set()
    for value in (tokenizer.eos_token_id, getattr(getattr(model, "generation_config", None), "eos_token_id", None)):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(int(v) for v in value)
    return ids


class DecodeEngine:
    """Owns ``model`` (a causal LM, on CPU or one GPU) and ``tokenizer``; ``start()``, then ``submit``."""

    def __init__(self, model: Any, tokenizer: Any, *, max_batch: int = 16, gather_seconds: float = 0.005) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_batch = max_batch
        self.gather_seconds = gather_seconds
        self.stop_ids = stop_token_ids(model, tokenizer)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self.stop_ids or {0})
        self.adapters: dict[str, Path] = {}
        self._peft: Any = None
        self._queue: queue.Queue[Request | _Control | None] = queue.Queue()  # None: stop
        self._waiting: list[Request] = []
        self._thread = threading.Thread(target=self._run, name="decode-engine", daemon=True)
        self.alive = False
        self.batches = 0

    # -- API (any thread) ------------------------------------------------------------------------------

    def start(self) -> DecodeEngine:
        self.alive = True
        self._thread.start()
        return self

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)

    def submit(self, request: Request) -> None:
        self._queue.put(request)

    def load_adapter(self, name: str, path: Path, timeout: float = 300) -> None:
        """Load a PEFT adapter folder as ``name`` (between batches). Raises AdapterError."""
        self._control(_Control("load", name, Path(path)), timeout)

    def unload_adapter(self, name: str, timeout: float = 300) -> None:
        """Unload adapter ``name``; requests for it are refused from now on. Raises AdapterError."""
        self._control(_Control("unload", name, None), timeout)

    def _control(self, control: _Control, timeout: float) -> None:
        self._queue.put(control)
        if not control.done.wait(timeout):
            raise AdapterError(f"the engine did not {control.action} adapter {control.name!r} within {timeout:.0f}s")
        if control.error:
            raise AdapterError(control.error)

    # -- the engine thread ----------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while self._drain(block=not self._waiting):
                batch = self._gather()
                if batch:
                    self._decode_or_fail(batch)
        except Exception:  # noqa: BLE001 - the engine must not die quietly: fail what waits, say so, stop
            log.exception("the decode engine stopped")
            for request in self._waiting:
                request.sink(Event(done=True, finish_reason="error", error="the inference engine failed"))
            self._waiting.clear()
        finally:
            self.alive = False

    def _decode_or_fail(self, batch: Sequence[Request]) -> None:
        """Decode ``batch``; if that fails, every request of it still hears its end (an error), and the engine
        goes on with the next batch."""
        answered: set[int] = set()
        sinks = {id(r): r.sink for r in batch}
        for request in batch:
            def sink(event: Event, _id: int = id(request)) -> None:
                if event.done:
                    answered.add(_id)
                sinks[_id](event)
            request.sink = sink
        try:
            self._decode(batch)
        except Exception:  # noqa: BLE001 - one failed batch must not hang its clients or stop the engine
            log.exception("decoding a batch of %d failed", len(batch))
            for request in batch:
                if id(request) not in answered:
                    sinks[id(request)](Event(done=True, finish_reason="error", error="the inference engine failed "
                                                                                      "on this batch"))

    def _drain(self, block: bool) -> bool:
        """Move queued requests into ``_waiting`` and apply controls; False once asked to stop with nothing
        left waiting (a stop with requests waiting is put back until they are done)."""
        stopping = False
        try:
            item = self._queue.get(block=block)
            while True:
                if item is None:
                    stopping = True
                elif isinstance(item, _Control):
                    self._apply(item)
                else:
                    self._waiting.append(item)
                item = self._queue.get_nowait()
        except queue.Empty:
            pass
        if stopping and self._waiting:
            self._queue.put(None)
            return True
        return not stopping

    def _gather(self) -> list[Request]:
        """The oldest waiting request and more for the same adapter, after a short wait for company."""
        if not self._waiting:
            return []
        if len(self._waiting) < self.max_batch and self.gather_seconds > 0:
            time.sleep(self.gather_seconds)
            self._drain(block=False)
        self._waiting = [r for r in self._waiting if not self._refused(r)]
        if not self._waiting:
            return []
        adapter = self._waiting[0].adapter
        batch = [r for r in self._waiting if r.adapter == adapter][:self.max_batch]
        taken = set(map(id, batch))
        self._waiting = [r for r in self._waiting if id(r) not in taken]
        return batch

    def _refused(self, request: Request) -> bool:
        if request.cancelled.is_set():
            request.sink(Event(done=True, finish_reason="cancelled"))
            return True
        if request.adapter and request.adapter not in self.adapters:  # unloaded while it waited
            request.sink(Event(done=True, finish_reason="error", error=f"adapter {request.adapter!r} is not loaded"))
            return True
        return False

    def _apply(self, control: _Control) -> None:
        try:
            if control.action == "load":
                self._load(control.name, control.path)  # type: ignore[arg-type]
            else:
                self._unload(control.name)
        except AdapterError as exc:
            control.error = str(exc)
        except Exception as exc:  # noqa: BLE001 - a broken adapter folder must not stop the engine
            log.warning("adapter %r: %s", control.name, type(exc).__name__, exc_info=True)
            control.error = f"adapter {control.name!r} could not be {control.action}ed: {type(exc).__name__}"
        finally:
            control.done.set()

    def _load(self, name: str, path: Path) -> None:
        """Load an adapter; if that fails, take out whatever the attempt added (PEFT inserts LoRA layers into
        the model before it reads the weights), so the base and the other adapters answer as before."""
        if name in self.adapters:
            raise AdapterError(f"an adapter named {name!r} is already loaded; unload it first")
        if not (path / "adapter_config.json").is_file():
            raise AdapterError(f"adapter {name!r}: the folder has no adapter_config.json (not a PEFT adapter)")
        from peft import PeftConfig, PeftModel

        config = PeftConfig.from_pretrained(str(path))
        first = self._peft is None
        try:
            if first:
                self._peft = PeftModel(self.model, config, adapter_name=name)
            self._peft.load_adapter(str(path), adapter_name=name, is_trainable=False)
        except Exception:
            self._undo_load(name, first)
            raise
        self._peft.eval()
        self.adapters[name] = path

    def _undo_load(self, name: str, first: bool) -> None:
        try:
            if first and self._peft is not None:
                self.model = self._peft.unload()
                self._peft = None
            elif self._peft is not None and name in getattr(self._peft, "peft_config", {}):
                self._peft.delete_adapter(name)
        except Exception:  # noqa: BLE001 - the model may hold a half-added adapter: stop serving from it
            log.exception("could not take a failed adapter load out of the model; the engine stops")
            self.alive = False

    def _unload(self, name: str) -> None:
        if name not in self.adapters:
            raise AdapterError(f"no adapter named {name!r} is loaded")
        del self.adapters[name]
        if not self.adapters:  # the last one: back to the plain base model (PEFT cannot disable no adapter)
            self.model = self._peft.unload()
            self._peft = None
            return
        self._peft.delete_adapter(name)

    @contextlib.contextmanager
    def _adapter(self, name: str) -> Iterator[Any]:
        if self._peft is None:
            yield self.model
        elif not name:
            with self._peft.disable_adapter():
                yield self._peft
        else:
            self._peft.set_adapter(name)
            yield self._peft

    @torch.inference_mode()
    def _decode(self, batch: Sequence[Request]) -> None:
        self.batches += 1
        streams = [_TextStream(self.tokenizer) for _ in batch]
        generators = [_generator(r) for r in batch]
        counts = [0] * len(batch)
        ended = [False] * len(batch)
        width = max(len(r.prompt_ids) for r in batch)
        device = next(self.model.parameters()).device
        ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, request in enumerate(batch):
            ids[row, width - len(request.prompt_ids):] = torch.tensor(request.prompt_ids)
            mask[row, width - len(request.prompt_ids):] = 1
        ids, mask = ids.to(device), mask.to(device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        steps = max(r.max_tokens for r in batch)
        with self._adapter(batch[0].adapter) as model:
            out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                        logits_to_keep=1)  # never [batch, prompt, vocabulary] logits for a long prompt
            for _ in range(steps):
                logits = out.logits[:, -1, :].float()
                chosen = [_choose(logits[row], r.temperature, generators[row]) if not ended[row] else self.pad_id
                          for row, r in enumerate(batch)]
                for row, request in enumerate(batch):
                    if ended[row]:
                        continue
                    if request.cancelled.is_set():
                        ended[row] = True
                        request.sink(Event(done=True, finish_reason="cancelled", prompt_tokens=len(request.prompt_ids),
                                           completion_tokens=counts[row]))
                        continue
                    token = chosen[row]
                    if token in self.stop_ids:
                        ended[row] = True
                        request.sink(Event(delta=streams[row].flush(), done=True, finish_reason="stop", prompt_tokens=len(request.prompt_ids),
                                           completion_tokens=counts[row]))
                        continue
                    counts[row] += 1
                    delta = streams[row].push(token)
                    if delta:
                        request.sink(Event(delta=delta))
                    if counts[row] >= request.max_tokens:
                        ended[row] = True
                        request.sink(Event(delta=streams[row].flush(), done=True, finish_reason="length", prompt_tokens=len(request.prompt_ids),
                                           completion_tokens=counts[row]))
                if all(ended):
                    return
                step = torch.tensor(chosen, dtype=torch.long, device=device)[:, None]
                mask = torch.cat([mask, torch.ones((len(batch), 1), dtype=torch.long, device=device)], dim=1)
                positions = positions[:, -1:] + 1
                out = model(input_ids=step, attention_mask=mask, position_ids=positions, use_cache=True,
                            **_cache_of(out))
        for row, request in enumerate(batch):  # max_tokens of every request reached (defensive)
            if not ended[row]:
                request.sink(Event(done=True, finish_reason="length", prompt_tokens=len(request.prompt_ids),
                                   completion_tokens=counts[row]))



def _cache_of(out: Any) -> dict[str, Any]:
    """The KV cache to pass on: transformers 5 names it ``cache`` (``past_key_values`` before)."""
    if "cache" in out:
        return {"cache": out["cache"]}
    return {"past_key_values": out.past_key_values}


def _generator(request: Request) -> torch.Generator | None:
    if request.temperature < MIN_TEMPERATURE:
        return None
    generator = torch.Generator()
    if request.seed is not None:
        generator.manual_seed(request.seed)
    else:
        generator.seed()
    return generator


MIN_TEMPERATURE = 1e-5  # below: greedy (as vLLM does); dividing by it would overflow the logits


def _choose(logits: torch.Tensor, temperature: float, generator: torch.Generator | None) -> int:
    if temperature < MIN_TEMPERATURE or generator is None:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits.cpu().double() / temperature, dim=-1)
    if not bool(torch.isfinite(probs).all()):  # non-finite logits: greedy rather than failing the whole batch
        return int(torch.argmax(torch.nan_to_num(logits.cpu(), nan=-math.inf)))
    return int(torch.multinomial(probs, 1, generator=generator))
