"""An exported adapter never sends PEFT to the network for its base model.

A local HTTP listener stands in for the Hugging Face Hub (``HF_ENDPOINT``) and counts
requests while a separate process does what a user does with an artifact: load the
base from the model store, apply the adapter, and save the result. The bare model id
older artifacts carried is the counter-check: PEFT asks the "hub" about it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from gpu_worker.base_models import build_tiny_model
from services.common.base_model_ref import parse_base_model_ref

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[3]

USE_ADAPTER = """
import sys
from peft import PeftModel
from transformers import AutoModelForCausalLM
base = AutoModelForCausalLM.from_pretrained(sys.argv[1])
PeftModel.from_pretrained(base, sys.argv[2]).save_pretrained(sys.argv[3])
"""


class _Hub(BaseHTTPRequestHandler):
    seen: list[str] = []

    def _answer(self) -> None:
        _Hub.seen.append(self.path)
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_HEAD = _answer

    def log_message(self, *args: object) -> None:
        """Requests are counted in ``seen``, not logged."""


@pytest.fixture()
def hub():  # type: ignore[no-untyped-def]
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Hub.seen = []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _use(base_path: Path, adapter: Path, out: Path, endpoint: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_") and k != "TRANSFORMERS_OFFLINE"}
    subprocess.run([sys.executable, "-c", USE_ADAPTER, str(base_path), str(adapter), str(out)], check=True,
                   timeout=120, cwd=REPO, env={**env, "HF_ENDPOINT": endpoint, "PYTHONPATH": str(REPO)},
                   capture_output=True)


def test_using_an_exported_adapter_asks_no_hub_about_its_base(tmp_path: Path, hub: str) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from gpu_worker.export import export_artifact
    from services.common.training_spec import TrainingSpec

    base = build_tiny_model(tmp_path / "models")
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base.path, dtype=torch.float32),
                           LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj"]))
    spec = TrainingSpec(job_id="j", tenant_id="t", base_model=base.model_id, dataset_uri="file:///unused")
    export_artifact(model, AutoTokenizer.from_pretrained(base.path), spec, base, tmp_path / "artifact", {})
    config_path = tmp_path / "artifact" / "adapter_config.json"
    config = json.loads(config_path.read_text())
    assert parse_base_model_ref(config["base_model_name_or_path"]) == (base.model_id, base.sha256)

    _use(base.path, tmp_path / "artifact", tmp_path / "saved", hub)
    assert _Hub.seen == [] and (tmp_path / "saved" / "adapter_model.safetensors").exists()

    # the counter-check: the bare id older artifacts recorded sends PEFT to the hub
    config_path.write_text(json.dumps({**config, "base_model_name_or_path": base.model_id}))
    _use(base.path, tmp_path / "artifact", tmp_path / "saved-legacy", hub)
    assert any(base.model_id in path for path in _Hub.seen), _Hub.seen
