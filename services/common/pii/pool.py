"""The PII stage in worker processes: every core, and no spaCy or torch in the curation process.

PII detection is the slowest curation stage (spaCy NER plus a dozen recognizers per
text) and it is CPU-bound Python, so threads would not help. :class:`PiiPool` sends
batches of texts to a pool of *spawned* processes, each holding one analyzer, and
hands results back in submission order while the caller keeps parsing, filtering and
deduplicating the next records.

Two more reasons for separate processes:

* **Memory.** spaCy's ``thinc`` imports torch when it is installed (about 450 MB
  resident for nothing: the NER model is thinc's own). Workers mark ``torch`` and
  ``transformers`` as absent before anything imports them, so a worker stays at
  ~170 MB and the curation process never loads spaCy at all.
* **Isolation.** A worker that dies (OOM killer, a native crash) fails the job with
  a clear error; it cannot take the curation process with it.

The pool is shared by every job of the process (workers are started once, on first
use, and cache one redactor per configuration), so a job pays no start-up cost after
the first. Salts travel to the workers over the pool's local pipes only.

Repeated field values (the same system prompt in every chat record, a ticket
subject line, an empty ``input``) are looked up in a small per-worker cache instead
of being analysed again: results depend only on the text and the configuration.
"""

from __future__ import annotations

import atexit
import collections
import concurrent.futures
import functools
import logging
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from typing import NamedTuple, TypeVar

from services.common.pii.config import PiiConfig

log = logging.getLogger(__name__)
T = TypeVar("T")

WORKERS_ENV = "PRIVTUNE_PII_WORKERS"
MAX_WORKERS = 64
_BLOCKED_MODULES = ("torch", "transformers")
_ONE_THREAD = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")   # read when numpy loads   # never needed by the analyzer; see the module docstring
_CACHE_ENTRIES = 4096          # per worker and configuration
_CACHE_MAX_CHARS = 2048        # longer texts are rarely repeated verbatim and would make the cache large
_PARENT_POLL_S = 0.5
_IN_FLIGHT_PER_WORKER = 3      # batches queued per worker: enough to keep it busy, bounded memory


class Treated(NamedTuple):
    """One text after the PII stage, as the workers send it back (plain values: unpickling a
    ``PiiResult`` would import spaCy into the curation process)."""

    text: str | None                 # rewritten text; None when the record is dropped
    found: dict[str, int]            # entity type -> spans found
    dropped: bool


class PiiWorkerError(RuntimeError):
    """A PII worker process died or could not start; the job should be retried."""


def usable_cores() -> int:
    """CPUs this process may run on (its affinity mask, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:   # not on Linux
        return max(1, os.cpu_count() or 1)


def default_workers() -> int:
    """``PRIVTUNE_PII_WORKERS`` if set (>= 1), else one worker per usable core."""
    raw = os.environ.get(WORKERS_ENV, "").strip()
    if not raw:
        return usable_cores()
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{WORKERS_ENV}={raw!r} is not a whole number; set it to the number of PII worker "
                         "processes (1 or more) or unset it for one per core") from None
    if not 1 <= value <= MAX_WORKERS:
        raise ValueError(f"{WORKERS_ENV}={value} must be between 1 and {MAX_WORKERS} (each worker holds ~220 MB; "
                         f"this machine has {usable_cores()} usable cores); unset it for one per core")
    return value


# --- worker side -------------------------------------------------------------------------------

def _init_worker(parent: int) -> None:
    """Runs first in every worker: keep torch out, keep record text out of logs, die with the parent."""
    for variable in _ONE_THREAD:   # one worker per core already: BLAS threads would only fight each other
        os.environ[variable] = "1"
    for name in _BLOCKED_MODULES:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]  # None makes `import torch` fail fast
    logging.getLogger("presidio-analyzer").setLevel(logging.WARNING)
    threading.Thread(target=_exit_when_orphaned, args=(parent,), name="pii-parent-watch", daemon=True).start()


def _exit_when_orphaned(parent: int) -> None:
    """A worker whose parent was killed (kill -9 skips every cleanup) must not linger.

    The pool's task pipe stays open in the worker itself, so it would never see EOF;
    watching the parent pid is what stops it.
    """
    while os.getppid() == parent:
        time.sleep(_PARENT_POLL_S)
    os._exit(0)


@functools.lru_cache(maxsize=2)   # a job's caches go once two other jobs have used the worker
def _worker_state(config_json: str, salt: str) -> tuple[object, collections.OrderedDict[str, object]]:
    from services.common.pii.redact import PiiRedactor   # imported here: spaCy loads in workers only

    config = PiiConfig.model_validate_json(config_json).model_copy(update={"salt": salt})
    return PiiRedactor(config), collections.OrderedDict()


def _redact_batch(config_json: str, salt: str, texts: list[str]) -> list[Treated]:
    """Worker entry point: the configured PII treatment of each text, in order."""
    redactor, cache = _worker_state(config_json, salt)
    results: list[Treated] = [None] * len(texts)  # type: ignore[list-item]  # every slot is filled below
    todo: list[int] = []
    for i, text in enumerate(texts):
        hit = cache.get(text) if len(text) <= _CACHE_MAX_CHARS else None
        if hit is None:
            todo.append(i)
        else:
            cache.move_to_end(text)
            results[i] = hit
    for i, r in zip(todo, redactor.redact_many(texts[i] for i in todo)):  # type: ignore[attr-defined]
        result = results[i] = Treated(r.text, r.found, r.dropped)
        if len(texts[i]) <= _CACHE_MAX_CHARS:
            cache[texts[i]] = result
            if len(cache) > _CACHE_ENTRIES:
                cache.popitem(last=False)
    return results


def _warm(config_json: str, salt: str) -> int:
    _worker_state(config_json, salt)
    if PiiConfig.model_validate_json(config_json).mode == "surrogate":
        from services.common.pii.fake_names import name_lists

        name_lists()   # ~1 s once per worker: Faker's name lists of every locale
    return os.getpid()


# --- caller side -------------------------------------------------------------------------------

_pools: dict[int, concurrent.futures.ProcessPoolExecutor] = {}
_pools_lock = threading.Lock()


def _shared_executor(workers: int) -> concurrent.futures.ProcessPoolExecutor:
    with _pools_lock:
        pool = _pools.get(workers)
        if pool is None or getattr(pool, "_broken", False):
            pool = concurrent.futures.ProcessPoolExecutor(
                max_workers=workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker,
                initargs=(os.getpid(),))
            _pools[workers] = pool
        return pool


def _discard_executor(workers: int, pool: concurrent.futures.ProcessPoolExecutor) -> None:
    with _pools_lock:
        if _pools.get(workers) is pool:
            del _pools[workers]
    pool.shutdown(wait=False, cancel_futures=True)


def worker_pids(workers: int) -> list[int]:
    """Process ids of the shared pool of ``workers`` workers (empty if it has not started)."""
    with _pools_lock:
        pool = _pools.get(workers)
    processes = getattr(pool, "_processes", None) or {}
    return sorted(processes)


@atexit.register
def shutdown_all() -> None:
    """Stop every shared pool's workers (also run at interpreter exit)."""
    with _pools_lock:
        pools = list(_pools.values())
        _pools.clear()
    for pool in pools:
        pool.shutdown(wait=True, cancel_futures=True)


class PiiPool:
    """One job's view of the shared PII worker pool: its configuration and salt."""

    def __init__(self, config: PiiConfig, workers: int | None = None) -> None:
        """Attach to the shared pool (started on first use).

        A configuration the redactor refuses (a salt missing where one is needed) raises its
        ``ValueError`` from the first batch, before any output is written.

        Raises:
            ValueError: ``workers`` < 1, or ``PRIVTUNE_PII_WORKERS`` is not a positive number.
        """
        self.workers = default_workers() if workers is None else workers
        if not 1 <= self.workers <= MAX_WORKERS:
            raise ValueError(f"PiiPool needs 1 to {MAX_WORKERS} workers, got {self.workers}")
        self._config_json = config.model_dump_json()   # the salt is excluded from dumps ...
        self._salt = config.salt                         # ... and travels separately

    def warm_up(self) -> None:
        """Start every worker and load its analyzer now (otherwise the first batches wait for it)."""
        pool = _shared_executor(self.workers)
        futures = [pool.submit(_warm, self._config_json, self._salt) for _ in range(self.workers)]
        for future in futures:
            self._result(future, pool)

    def redact_batches(self, batches: Iterable[list[str]]) -> Iterator[list[Treated]]:
        """The treated texts of each batch of texts, in order, with a bounded number of batches in flight.

        Raises:
            PiiWorkerError: a worker died; no later result is returned.
        """
        pool = _shared_executor(self.workers)
        window = self.workers * _IN_FLIGHT_PER_WORKER
        pending: collections.deque[concurrent.futures.Future[list[Treated]]] = collections.deque()
        try:
            for batch in batches:
                pending.append(self._submit(pool, batch))
                if len(pending) >= window:
                    yield self._result(pending.popleft(), pool)
            while pending:
                yield self._result(pending.popleft(), pool)
        finally:
            for future in pending:   # the consumer stopped early (an error downstream): drop queued work
                future.cancel()

    def _submit(self, pool: concurrent.futures.ProcessPoolExecutor, batch: list[str]
                ) -> concurrent.futures.Future[list[Treated]]:
        try:
            return pool.submit(_redact_batch, self._config_json, self._salt, batch)
        except concurrent.futures.process.BrokenProcessPool as exc:
            _discard_executor(self.workers, pool)
            raise PiiWorkerError(_DIED) from exc

    def _result(self, future: concurrent.futures.Future[T], pool: concurrent.futures.ProcessPoolExecutor) -> T:
        try:
            return future.result()
        except concurrent.futures.process.BrokenProcessPool as exc:
            _discard_executor(self.workers, pool)
            raise PiiWorkerError(_DIED) from exc


_DIED = ("a PII worker process died (killed, out of memory, or a native crash) or could not start; the job was "
         f"stopped before writing anything and can be retried. If it repeats, lower {WORKERS_ENV} or give the worker "
         "more memory. Workers are spawned, so a script that runs curation must do so under "
         "`if __name__ == \"__main__\":` (see the worker's error above)")
