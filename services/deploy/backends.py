"""Serving backends: processes that serve one base model and runtime LoRA adapters over OpenAI-compatible HTTP.

Both backends are the same to their users (the pool manager, the gateway, the contract tests):
a process on 127.0.0.1 that answers ``/health``, ``/v1/models``, ``/v1/chat/completions`` and
vLLM's runtime adapter endpoints. ``TransformersBackend`` runs privtune's own server
(services/deploy/inference_server.py) in this venv; ``VllmBackend`` runs vLLM's OpenAI server
from its own cached venv (``scripts/vllm_env.sh``). An adapter is verified against the sha256
the registry recorded before either is asked to load it: the folder is first copied into the
backend's own staging folder, the copy is verified, and the copy is what the server loads, so
nobody can change the files between the check and the load. Every process started here dies
with its parent (``PR_SET_PDEATHSIG``), so a crashed test or pool manager leaves no server behind.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Any, Protocol, Sequence

from services.common.hashing import folder_files, manifest_sha256

ROOT = Path(__file__).resolve().parents[2]


class BackendError(Exception):
    """A backend did not start, or refused an adapter; the message says what to do."""


class AdapterMismatch(BackendError):
    """An adapter's files do not hash to the sha256 the registry recorded: it is never loaded."""


class ServingBackend(Protocol):
    """One serving process: a base model and runtime adapters behind OpenAI-compatible HTTP."""

    kind: str                  # "transformers" | "vllm"
    served_name: str           # the base model's name in requests and /v1/models

    @property
    def base_url(self) -> str: ...

    def start(self, timeout: float = 600) -> None: ...

    def stop(self) -> None: ...

    def load_adapter(self, name: str, folder: Path, sha256: str) -> None: ...

    def unload_adapter(self, name: str) -> None: ...


def verify_adapter(folder: Path, sha256: str) -> None:
    """Raises AdapterMismatch unless ``folder``'s files hash (the training run's manifest hash) to ``sha256``."""
    if not folder.is_dir() or not (folder / "adapter_config.json").is_file():
        raise AdapterMismatch("the adapter folder is missing or has no adapter_config.json; fetch the artifact again")
    actual = manifest_sha256(folder_files(folder))
    if actual != sha256:
        raise AdapterMismatch(f"the adapter's files hash to {actual[:16]}..., not the registry's {sha256[:16]}...: "
                              "it was changed or only partly copied; it was not loaded")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Spawner:
    """Starts every server from one thread that lives as long as the process: ``PR_SET_PDEATHSIG`` fires when the
    *thread* that started the child ends, so a server started from a short-lived thread (a rollout) would die
    with that thread. Each server runs under services/common/orphan_guard.py, which arms it and execs."""

    def __init__(self) -> None:
        import queue
        import threading

        self._jobs: queue.Queue[tuple[Any, Any]] = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def popen(self, *args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
        import threading
        from concurrent.futures import Future

        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="server-spawner", daemon=True)
                self._thread.start()
        done: Future[subprocess.Popen[bytes]] = Future()
        self._jobs.put(((args, kwargs), done))
        return done.result()

    def _run(self) -> None:
        while True:
            (args, kwargs), done = self._jobs.get()
            try:
                done.set_result(subprocess.Popen(*args, **kwargs))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                done.set_exception(exc)


_SPAWNER = _Spawner()


class HttpBackendProcess:
    """What both backends share: start a server process, wait until healthy, manage adapters over HTTP."""

    kind = ""

    def __init__(self, served_name: str, log_path: Path, port: int = 0) -> None:
        self.served_name = served_name
        self.log_path = log_path
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._stopped = False
        self._log: IO[bytes] | None = None
        self.staging = log_path.parent / f"{log_path.stem}-adapters"  # the copies this backend's server loads

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> Sequence[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        return dict(os.environ)

    def start(self, timeout: float = 600) -> None:
        """Start the server and wait for ``/health`` and ``/v1/models``. Raises BackendError with the log's tail."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        command = [sys.executable, "-I", str(ROOT / "services" / "common" / "orphan_guard.py"), *self.command()]
        # SIGTERM when this process dies (vLLM then stops its engine core); its own process group, so stop() ends
        # the server and every process it started
        env = {**self.environment(), "PRIVTUNE_PARENT_PID": str(os.getpid()), "PRIVTUNE_PARENT_DEATH_SIGNAL": "SIGTERM"}
        self.proc = _SPAWNER.popen(command, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BackendError(f"the {self.kind} server exited with code {self.proc.returncode} while starting; "
                                   f"its log ends:\n{self.log_tail()}")
            try:
                if self._get("/health", 2.0)[0] == 200 and self._get("/v1/models", 5.0)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.25)
        self.stop()
        raise BackendError(f"the {self.kind} server was not ready after {timeout:.0f}s; its log ends:\n"
                           f"{self.log_tail()}")

    def stop(self) -> None:
        if self.proc is not None and not self._stopped:
            self._stopped = True
            self._signal_group(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
            self._signal_group(signal.SIGKILL)  # whatever of the group is left (children that ignored SIGTERM)
            self.proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def _signal_group(self, sig: int) -> None:
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, sig)  # the group's id is the server's pid (start_new_session)
        except (ProcessLookupError, PermissionError):
            pass

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def load_adapter(self, name: str, folder: Path, sha256: str) -> None:
        """Copy ``folder`` into staging, verify the copy against ``sha256``, load the copy as ``name``.

        Raises AdapterMismatch (nothing was loaded), BackendError.
        """
        staged = self.stage(folder, sha256)
        status, body = self._post("/v1/load_lora_adapter", self.load_body(name, staged, sha256))
        if status != 200:
            raise BackendError(f"the {self.kind} server refused adapter {name!r} ({status}): {body[:300]}")

    def load_body(self, name: str, staged: Path, sha256: str) -> dict[str, object]:
        return {"lora_name": name, "lora_path": str(staged)}

    def stage(self, folder: Path, sha256: str) -> Path:
        """The verified private copy of ``folder``, named by its sha256. ``folder`` itself is always copied and
        checked (a folder whose bytes differ is refused even when a good copy of that sha256 is staged)."""
        import shutil
        import tempfile

        if not all(c in "0123456789abcdef" for c in sha256) or len(sha256) != 64:
            raise AdapterMismatch("the registry's sha256 is not a sha256 hex digest")
        dest = self.staging / sha256
        self.staging.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.staging))
        try:
            if not folder.is_dir():
                raise AdapterMismatch("the adapter folder is missing; fetch the artifact again")
            copy = tmp / "adapter"
            shutil.copytree(folder, copy, symlinks=False)
            verify_adapter(copy, sha256)
            if dest.is_dir():  # staged before (and perhaps loaded from): keep that copy, checked again
                verify_adapter(dest, sha256)
            else:
                copy.rename(dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return dest

    def unload_adapter(self, name: str) -> None:
        status, body = self._post("/v1/unload_lora_adapter", {"lora_name": name})
        if status != 200:
            raise BackendError(f"the {self.kind} server did not unload adapter {name!r} ({status}): {body[:300]}")

    def _get(self, path: str, timeout: float) -> tuple[int, str]:
        return self._call(urllib.request.Request(self.base_url + path), timeout)

    def _post(self, path: str, body: dict[str, object], timeout: float = 300) -> tuple[int, str]:
        request = urllib.request.Request(self.base_url + path, data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        return self._call(request, timeout)

    @staticmethod
    def _call(request: urllib.request.Request, timeout: float) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - loopback only
                return response.status, response.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode("utf-8", "replace")


class TransformersBackend(HttpBackendProcess):
    """privtune's own server (batched transformers decoding, PEFT adapters), in this venv."""

    kind = "transformers"

    def __init__(self, model_dir: Path, served_name: str, log_path: Path, *, port: int = 0, max_batch: int = 16,
                 threads: int = 0, max_model_len: int = 0) -> None:
        super().__init__(served_name, log_path, port)
        self.model_dir = model_dir
        self.max_batch = max_batch
        self.threads = threads
        self.max_model_len = max_model_len

    def command(self) -> Sequence[str]:
        return [sys.executable, "-m", "services.deploy.inference_server", "--model-dir", str(self.model_dir),
                "--served-model-name", self.served_name, "--port", str(self.port), "--max-batch", str(self.max_batch),
                "--threads", str(self.threads), "--max-model-len", str(self.max_model_len),
                "--parent-pid", str(os.getpid()), "--adapters-root", str(self.staging.resolve())]

    def load_body(self, name: str, staged: Path, sha256: str) -> dict[str, object]:
        return {"lora_name": name, "lora_path": str(staged.resolve()), "sha256": sha256}  # the server checks again

    def environment(self) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(ROOT)}


def vllm_python() -> Path:
    """The python of vLLM's cached venv (``scripts/vllm_env.sh`` builds it on first use: minutes, once)."""
    script = ROOT / "scripts" / "vllm_env.sh"
    try:
        out = subprocess.run([str(script)], check=True, capture_output=True, text=True, timeout=3600)
    except subprocess.CalledProcessError as exc:
        raise BackendError(f"could not build vLLM's virtual environment (scripts/vllm_env.sh, exit {exc.returncode}):"
                           f"\n{exc.stderr[-2000:]}") from None
    return Path(out.stdout.strip().splitlines()[-1])


def cpu_dtype(cpuinfo: str | None = None) -> str:
    """bf16 only where the CPU computes it natively (AVX512_BF16 or AMX); float32 elsewhere. On an AVX2-only
    CPU, vLLM's bf16 falls back to slow matrix multiplies: float32 gave 4.5x its output tokens/s at 16 clients
    (SmolLM2, docs/benchmarks.md)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    flags = set(cpuinfo.split())
    return "bfloat16" if flags & {"avx512_bf16", "amx_bf16"} else "float32"


class VllmBackend(HttpBackendProcess):
    """vLLM's OpenAI-compatible server (its CPU build here, CUDA on a GPU machine) from its own venv, with
    runtime LoRA loading on."""

    kind = "vllm"

    def __init__(self, model_dir: Path, served_name: str, log_path: Path, *, port: int = 0, max_model_len: int = 2048,
                 max_lora_rank: int = 16, max_loras: int = 4, dtype: str = "", kv_cache_gib: int = 2,
                 python: Path | None = None) -> None:
        super().__init__(served_name, log_path, port)
        self.model_dir = model_dir
        self.max_model_len = max_model_len
        self.max_lora_rank = max_lora_rank
        self.max_loras = max_loras
        self.dtype = dtype or cpu_dtype()
        self.kv_cache_gib = kv_cache_gib
        self.python = python

    def command(self) -> Sequence[str]:
        python = self.python or vllm_python()
        return [str(python), "-m", "vllm.entrypoints.openai.api_server", "--model", str(self.model_dir),
                "--served-model-name", self.served_name, "--host", "127.0.0.1", "--port", str(self.port),
                "--dtype", self.dtype, "--max-model-len", str(self.max_model_len), "--enable-lora",
                "--max-lora-rank", str(self.max_lora_rank), "--max-loras", str(self.max_loras),
                # without it, stopping the server with a stream open hangs until the client goes (NOTES.md)
                "--shutdown-timeout", "30"]

    def load_adapter(self, name: str, folder: Path, sha256: str) -> None:
        """As for any backend; an adapter of a rank above ``max_lora_rank`` is refused here (vLLM answers 500)."""
        staged = self.stage(folder, sha256)
        try:
            rank = int(json.loads((staged / "adapter_config.json").read_text()).get("r", 0))
        except (OSError, ValueError, TypeError, AttributeError):
            raise AdapterMismatch("the adapter's adapter_config.json is not readable JSON with an integer r") from None
        if rank > self.max_lora_rank:
            raise BackendError(f"adapter {name!r} has LoRA rank {rank}; this pool serves ranks up to "
                               f"{self.max_lora_rank} (max_lora_rank)")
        status, body = self._post("/v1/load_lora_adapter", {"lora_name": name, "lora_path": str(staged.resolve())})
        if status != 200:
            raise BackendError(f"the vllm server refused adapter {name!r} ({status})")  # its words name paths

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
        return {**env, "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True", "VLLM_CPU_KVCACHE_SPACE": str(self.kv_cache_gib),
                "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1",
                "DO_NOT_TRACK": "1"}
