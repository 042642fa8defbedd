"""What an eval worker computes for a shard: load the models its command names (verified against
their hashes, cached between shards), then generate, score, judge and probe (shard_run.py).

Torch and the PII detector load on the first shard, not when the worker starts. The worker's
torch threads come from ``PRIVTUNE_EVAL_THREADS`` (default: torch's own, i.e. every core); two
workers on one machine should split the cores between them.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable

from privtune.v1 import events_pb2
from services.common.storage import open_tenant_storage
from services.eval.judging import parse_judge_spec
from services.eval.worker import ClaimLost, ShardRefused

log = logging.getLogger(__name__)
THREADS_ENV = "PRIVTUNE_EVAL_THREADS"


def _import_transformers(tries: int = 5) -> None:
    """Import transformers' model classes, retrying: its lazy module can raise ImportError while another
    thread of this process (the platform runs services as threads) is importing it at the same moment."""
    for attempt in range(tries):
        try:
            import transformers

            assert transformers.AutoModelForCausalLM is not None and transformers.AutoTokenizer is not None
            return
        except (ImportError, AttributeError):  # the lazy module half-initialised by another thread
            if attempt == tries - 1:
                raise
            time.sleep(1.0)


class ModelShardComputer:
    """``models_dir``: the base-model store; ``cache_dir``: where fetched candidate artifacts are kept."""

    def __init__(self, models_dir: Path, storage_root: str, cache_dir: Path, *, pii: bool = True) -> None:
        self.models_dir = Path(models_dir)
        self.storage_root = storage_root
        self.cache_dir = Path(cache_dir)
        self.pii = pii
        self._loader: Any = None
        self._lock = threading.Lock()  # one shard at a time per computer (the models are shared)

    def _setup(self) -> Any:
        if self._loader is None:
            import torch

            from services.eval.models import ModelLoader

            _import_transformers()

            threads = os.environ.get(THREADS_ENV, "")
            if threads.isdigit() and int(threads) > 0:
                torch.set_num_threads(int(threads))
            self._loader = ModelLoader(self.models_dir, self.cache_dir, capacity=3)  # candidate, base, judge
        return self._loader

    def compute(self, tenant_id: str, command: events_pb2.EvalShardScheduled, items: list[dict[str, Any]],
                should_stop: Callable[[], bool] | None = None) -> list[dict[str, Any]]:
        from services.eval.generation import DecodingSettings
        from services.eval.models import ModelMismatch
        from services.eval.probes import shared_pii_counter
        from services.eval.shard_run import compute_shard

        with self._lock:
            loader = self._setup()
            storage = open_tenant_storage(self.storage_root, tenant_id)
            try:
                kind, name = parse_judge_spec(command.judge)
            except ValueError as exc:
                raise ShardRefused("invalid_judge", str(exc)) from None
            try:
                reference = loader.base(command.base_model_id, command.base_model_sha256 or None)
                candidate = loader.candidate(storage, command.artifact_uri, command.artifact_sha256,
                                             command.base_model_id, command.base_model_sha256 or None,
                                             kind=command.artifact_kind or None)
                judge: Any = (kind, name) if kind == "metric" else loader.base(name, command.judge_model_sha256 or None)
            except ModelMismatch as exc:
                raise ShardRefused(exc.reason.lower(), str(exc)) from None
            g = command.generation
            settings = DecodingSettings(max_new_tokens=g.max_new_tokens or 64, batch_size=g.batch_size or 16,
                                        temperature=g.temperature, seed=g.seed)
            from jinja2.exceptions import TemplateError

            def progress(_done: int) -> None:
                if should_stop is not None and should_stop():
                    raise ClaimLost()

            try:
                return compute_shard(items, candidate=candidate, reference=reference, judge=judge, settings=settings,
                                     pii=shared_pii_counter() if self.pii else None, progress=progress)
            except TemplateError:
                raise ShardRefused("invalid_input", "the model's chat template refused a suite item (for example a "
                                                    "system turn it does not accept); build the suite without such "
                                                    "turns or use a model whose template takes them") from None
            except ValueError as exc:  # a malformed item, or a judge whose tokenizer cannot answer A or B
                raise ShardRefused("invalid_input", f"the shard cannot be computed as asked: {exc}") from None
