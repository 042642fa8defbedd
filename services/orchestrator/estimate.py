"""Before a job runs: its peak accelerator memory, steps, tokens, GPU-hours and cost.

Pure functions of the base model's architecture (:class:`ModelInfo`), the job
(:class:`TrainingSpec`), the dataset version's size (:class:`DatasetInfo`) and one
accelerator (:class:`GpuType`). The memory model follows what ``gpu_worker`` keeps
alive while it trains (Hugging Face Llama blocks with SDPA attention, PEFT adapters,
AdamW), term by term::

    peak per device = weights + adapter weights + gradients + optimizer states
                      + activations saved for backward (incl. the loss head) + runtime overhead

Gradients and activations overlap in time in two ways. With gradient accumulation (and
for adapters, whose gradients are small) all gradients are counted next to all
activations: they survive from one micro-batch to the next. Full fine-tuning with one
micro-batch per step frees its gradients after every step, and backward creates them
block by block while freeing that block's activations, so the peak is the larger of
"all activations + LM-head gradient" (start of backward) and "all gradients + one
block's activations" (end of backward). Data-parallel training keeps a full replica and its
own micro-batch on every device, so memory is per device whatever ``num_processes``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from pydantic import ValidationError

from services.common.training_spec import ADAPTER_METHODS, ALL_LINEAR, LAYER_LINEARS, TrainingSpec
from privtune.v1 import events_pb2
from services.orchestrator.gpu_types import runtime_overhead_bytes
from services.orchestrator.resources import DatasetInfo, GpuType, ModelInfo

FP32 = 4
# NF4 with double quantisation (bitsandbytes, as gpu_worker.methods loads QLoRA): 4 bits a
# weight, one 8-bit absmax per block of 64, one fp32 absmax per 256 of those; plus two
# small code tables per tensor (16 + 256 fp32 values).
NF4_BYTES_PER_PARAM = 0.5 + 1 / 64 + 4 / (64 * 256)
NF4_TABLE_BYTES = (16 + 256) * FP32
BF16 = 2
# The loss head (gpu_worker.losses): hidden states are gathered at labelled positions and
# the LM head and cross-entropy run over them in chunks of this many logits, so what it
# keeps is two hidden vectors per position (the gathered input and the gradient the fused
# forward computes) plus one chunk's fp32 logits and their compute-dtype copy. Mirrors
# gpu_worker.losses.CHUNK_ELEMENTS (services share contracts, not code).
LOSS_CHUNK_ELEMENTS = 1 << 23
FITTING_ORDER = ("full", "lora", "qlora")


@dataclass(frozen=True)
class Estimate:
    """What a job will need, mirroring ``events_pb2.ResourceEstimate`` (plus three details)."""

    peak_memory_bytes: int          # per device
    weights_bytes: int              # base weights at their precision (all of them for full fine-tuning)
    trainable_bytes: int            # trainable parameters; for full fine-tuning these are the weights
    gradient_bytes: int             # incl. DP-SGD's per-example gradients
    optimizer_bytes: int            # AdamW moments (+ fp32 master copy for 16-bit full fine-tuning)
    activation_bytes: int           # saved for backward, for one micro-batch, incl. the loss head
    tokens: int                     # over the whole run (DPO: chosen + rejected)
    gpu_hours: float                # summed over the job's devices
    cost_usd: float
    gpu_type: str
    gpu_memory_bytes: int           # of one device
    fits: bool
    total_steps: int
    planned_epsilon: float = 0.0    # filled in by the privacy ledger for DP jobs
    noise_multiplier: float = 0.0
    overhead_bytes: int = 0         # runtime: CUDA context and workspaces, allocator slack
    trainable_parameters: int = 0
    flops: float = 0.0              # model FLOPs over the run

    def to_proto(self) -> events_pb2.ResourceEstimate:
        return events_pb2.ResourceEstimate(
            peak_memory_bytes=self.peak_memory_bytes, weights_bytes=self.weights_bytes,
            trainable_bytes=self.trainable_bytes, gradient_bytes=self.gradient_bytes,
            optimizer_bytes=self.optimizer_bytes, activation_bytes=self.activation_bytes, tokens=self.tokens,
            gpu_hours=self.gpu_hours, cost_usd=self.cost_usd, gpu_type=self.gpu_type,
            gpu_memory_bytes=self.gpu_memory_bytes, fits=self.fits, total_steps=self.total_steps,
            planned_epsilon=self.planned_epsilon, noise_multiplier=self.noise_multiplier)

    @classmethod
    def from_proto(cls, p: events_pb2.ResourceEstimate) -> Estimate:
        return cls(peak_memory_bytes=p.peak_memory_bytes, weights_bytes=p.weights_bytes,
                   trainable_bytes=p.trainable_bytes, gradient_bytes=p.gradient_bytes,
                   optimizer_bytes=p.optimizer_bytes, activation_bytes=p.activation_bytes, tokens=p.tokens,
                   gpu_hours=p.gpu_hours, cost_usd=p.cost_usd, gpu_type=p.gpu_type,
                   gpu_memory_bytes=p.gpu_memory_bytes, fits=p.fits, total_steps=p.total_steps,
                   planned_epsilon=p.planned_epsilon, noise_multiplier=p.noise_multiplier)


# ------------------------------------------------------------------ architecture

def _required(model_id: str, config: Mapping[str, Any], key: str) -> int:
    if key not in config:
        raise ValueError(f"config.json of base model {model_id!r} has no {key!r}: only Llama-style decoder configs "
                         "(hidden_size, num_hidden_layers, num_attention_heads, intermediate_size, vocab_size) "
                         "can be sized")
    return int(config[key])


def model_info_from_config(model_id: str, config: Mapping[str, Any], sha256: str = "") -> ModelInfo:
    """Architecture and parameter count of a Hugging Face Llama-style ``config.json``.

    Parameters per block: q and o projections ``h·H·d`` each, k and v ``h·K·d`` each
    (``d`` = ``head_dim`` or ``h / H``; K = key-value heads, grouped-query attention),
    the SwiGLU MLP ``3·h·I``, two RMSNorm weights ``2·h``, biases where
    ``attention_bias`` / ``mlp_bias`` say so. Plus the embedding ``V·h``, the final norm
    ``h`` and an LM head ``V·h`` unless tied to the embedding.
    """
    h = _required(model_id, config, "hidden_size")
    layers = _required(model_id, config, "num_hidden_layers")
    heads = _required(model_id, config, "num_attention_heads")
    inter = _required(model_id, config, "intermediate_size")
    vocab = _required(model_id, config, "vocab_size")
    kv_heads = int(config.get("num_key_value_heads") or heads)
    d = int(config.get("head_dim") or h // heads)
    tied = bool(config.get("tie_word_embeddings", False))
    attention = 2 * h * heads * d + 2 * h * kv_heads * d
    if config.get("attention_bias"):
        attention += heads * d + 2 * kv_heads * d + h
    mlp = 3 * h * inter + (2 * inter + h if config.get("mlp_bias") else 0)
    parameters = vocab * h + layers * (attention + mlp + 2 * h) + h + (0 if tied else vocab * h)
    return ModelInfo(model_id=model_id, parameters=parameters, hidden_size=h, num_layers=layers,
                     num_attention_heads=heads, num_key_value_heads=kv_heads, intermediate_size=inter,
                     vocab_size=vocab, sha256=sha256, tie_word_embeddings=tied)


def _linear_shapes(model: ModelInfo) -> dict[str, tuple[int, int]]:
    """(in, out) features of each Linear of one block (head dim ``h / H``)."""
    h, inter = model.hidden_size, model.intermediate_size
    d = h // model.num_attention_heads
    q, kv = model.num_attention_heads * d, model.num_key_value_heads * d
    return {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
            "gate_proj": (h, inter), "up_proj": (h, inter), "down_proj": (inter, h)}


def lora_targets(spec: TrainingSpec) -> tuple[str, ...]:
    """Module names the adapter wraps (PEFT matches a target on the last name component).

    Raises:
        ValueError: a target is not a Linear of a Llama block, ``lm_head`` or ``embed_tokens``.
    """
    names: list[str] = []
    for target in spec.lora.target_modules:
        name = target.rsplit(".", 1)[-1]
        chosen = LAYER_LINEARS if name == ALL_LINEAR else (name,)
        if not set(chosen) <= set(LAYER_LINEARS) | {"lm_head", "embed_tokens"}:
            raise ValueError(f"lora.target_modules has {target!r}, which is not a module of a Llama model; use "
                             f"{', '.join(LAYER_LINEARS)}, lm_head, embed_tokens or all-linear")
        names += [n for n in chosen if n not in names]
    return tuple(names)


def trainable_parameters(model: ModelInfo, spec: TrainingSpec) -> int:
    """Parameters the method trains: all (full), the soft prompt, or the LoRA matrices.

    LoRA adds ``r·(in + out)`` per wrapped Linear (A: ``r × in``, B: ``out × r``), and
    ``r·(V + h)`` for a wrapped embedding; prompt tuning trains ``num_virtual_tokens × h``.
    """
    if spec.method == "full":
        return model.parameters
    if spec.method == "prompt_tuning":
        return spec.num_virtual_tokens * model.hidden_size
    shapes = _linear_shapes(model)
    r, total = spec.lora.r, 0
    for name in lora_targets(spec):
        if name in shapes:
            total += model.num_layers * r * sum(shapes[name])
        else:  # lm_head or embed_tokens
            total += r * (model.hidden_size + model.vocab_size)
    return total


# ------------------------------------------------------------------ memory

def compute_bytes(spec: TrainingSpec, gpu: GpuType) -> int:
    """Bytes per element of the precision the worker will really use for ``spec`` on ``gpu``.

    ``fp32`` and ``bf16`` are what they say; ``auto`` is the accelerator's compute dtype
    (bf16 on GPUs that compute it natively, fp32 on the ``cpu`` type and on T4), and fp32
    with DP-SGD, as ``gpu_worker.run_environment.resolve_precision`` decides.
    """
    if spec.precision == "fp32":
        return FP32
    if spec.precision == "bf16":
        return BF16
    return FP32 if spec.dp.enabled else gpu.compute_dtype_bytes


def peak_tflops(spec: TrainingSpec, gpu: GpuType) -> float:
    """The device's peak in the precision ``spec`` trains in: its fp32 figure when the job runs
    in fp32 on a type whose compute dtype is 16-bit (DP-SGD, ``precision="fp32"``)."""
    if compute_bytes(spec, gpu) == FP32 and gpu.compute_dtype_bytes < FP32 and gpu.fp32_tflops:
        return gpu.fp32_tflops
    return gpu.peak_tflops


def weights_bytes(model: ModelInfo, gpu: GpuType, method: str, fp: int | None = None) -> int:
    """Base weights at their precision (``fp`` bytes; default the accelerator's compute dtype).

    LoRA holds the frozen base in the compute dtype; full fine-tuning trains fp32 weights
    (in bf16 they are the master copy, and autocast keeps a bf16 copy of each from the
    forward to the backward: 6 bytes a parameter). QLoRA stores the Linear
    weights of every block as NF4 (:data:`NF4_BYTES_PER_PARAM`); embeddings, norms and
    the LM head stay unquantised, in fp32, because PEFT's
    ``prepare_model_for_kbit_training`` upcasts every non-quantised parameter.
    """
    fp = gpu.compute_dtype_bytes if fp is None else fp
    if method == "full":
        return model.parameters * (FP32 + (fp if fp < FP32 else 0))
    if method != "qlora":
        return model.parameters * fp
    quantized = model.num_layers * sum(i * o for i, o in _linear_shapes(model).values())
    tables = model.num_layers * len(LAYER_LINEARS) * NF4_TABLE_BYTES
    return math.ceil(quantized * NF4_BYTES_PER_PARAM) + tables + (model.parameters - quantized) * FP32


def _trained_linears(spec: TrainingSpec) -> tuple[str, ...]:
    if spec.method == "full":
        return LAYER_LINEARS
    if spec.method in ADAPTER_METHODS:
        return tuple(n for n in lora_targets(spec) if n in LAYER_LINEARS)
    return ()


def _block_bytes_per_token(model: ModelInfo, spec: TrainingSpec, fp: int, seq: int, flash: bool) -> int:
    """Bytes one Llama block saves for backward per token (Korthikanti et al. 2022's method).

    "Reducing Activation Recomputation in Large Transformer Models" (arXiv:2205.05198)
    counts, tensor by tensor, what autograd keeps from a block's forward pass (``34·s·b·h``
    bytes + ``5·a·s²·b`` for attention scores, for GPT with 16-bit activations). The same
    count for a Hugging Face Llama block, checked tensor by tensor with
    ``torch.autograd.graph.saved_tensors_hooks``:

    - each of the two RMSNorms: its input in fp32 and ``1/rms`` (``4h + 4``), and the
      normalised input when the norm weight trains (full fine-tuning, ``fp·h``);
    - attention, SDPA flash/memory-efficient kernel: rotated q, k, v and the output
      (``fp·(2·H·d + 2·K·d)``), fp32 log-sum-exp per head (``4·H``); the eager kernel keeps
      instead q, k and v repeated to all heads, and the softmax probabilities
      ``H·s`` per token in fp32 (plus a compute-dtype copy in 16-bit);
    - the SwiGLU MLP: gate (SiLU input), SiLU output and up (``3·fp·I``);
    - a Linear's input only when its weight trains: once per input for full
      fine-tuning (the SDPA output doubles as o_proj's input); for LoRA each wrapped
      Linear keeps its own fp32 copy when the base is 16-bit (PEFT casts the input to
      the adapter's fp32), or its dropout output and mask (``5·in``) with LoRA dropout,
      plus the rank-``r`` output of A (``4·r``).
    """
    h, inter, heads = model.hidden_size, model.intermediate_size, model.num_attention_heads
    d = h // heads
    q_dim, kv_dim = heads * d, model.num_key_value_heads * d
    full = spec.method == "full"
    total = 2 * (FP32 * h + FP32 + (fp * h if full else 0))
    if flash:
        total += fp * (2 * q_dim + 2 * kv_dim) + FP32 * heads
    else:
        total += fp * 3 * q_dim + heads * seq * (FP32 + (fp if fp != FP32 else 0))
    total += 3 * fp * inter
    trained = set(_trained_linears(spec))
    groups = ((("q_proj", "k_proj", "v_proj"), h, False), (("o_proj",), q_dim, flash),
              (("gate_proj", "up_proj"), h, False), (("down_proj",), inter, False))
    for members, width, already_saved in groups:
        wrapped = [m for m in members if m in trained]
        if not wrapped:
            continue
        if full or (spec.lora.dropout == 0 and fp == FP32):
            total += 0 if already_saved else fp * width
        else:
            total += len(wrapped) * (5 if spec.lora.dropout > 0 else FP32) * width
        if not full:
            total += len(wrapped) * FP32 * spec.lora.r
    return total


def activation_bytes(model: ModelInfo, spec: TrainingSpec, gpu: GpuType, *, flash_attention: bool = True) -> int:
    """Activations one micro-batch keeps for backward, with the loss head and attention masks.

    Rows are ``micro_batch_size`` (DPO: twice that, chosen and rejected) of
    ``max_seq_length`` tokens (the longest row sets the padded width; prompt tuning adds
    its virtual tokens). Per token: the blocks (:func:`_block_bytes_per_token`), the final
    norm, the LM head's input when it trains, and the fused loss head (two hidden vectors
    per position, every position counted as labelled, plus one chunk of
    :data:`LOSS_CHUNK_ELEMENTS` logits in fp32 and the compute dtype). Masks: a padded batch makes SDPA
    keep an additive ``rows × s × s`` mask per block; packing's 4-D block-diagonal fp32
    mask is built once and shared.
    """
    fp = compute_bytes(spec, gpu)
    rows = spec.micro_batch_size * (2 if spec.method == "dpo" else 1)
    seq = spec.max_seq_length + (spec.num_virtual_tokens if spec.method == "prompt_tuning" else 0)
    h = model.hidden_size
    full = spec.method == "full"
    per_token = model.num_layers * _block_bytes_per_token(model, spec, fp, seq, flash_attention)
    per_token += FP32 * h + FP32 + (fp * h if full else 0)
    lm_head_trains = full or (spec.method in ADAPTER_METHODS and "lm_head" in lora_targets(spec))
    per_token += fp * h if lm_head_trains else 0
    per_token += 2 * fp * h
    chunk = min(rows * seq, max(1, LOSS_CHUNK_ELEMENTS // model.vocab_size)) * model.vocab_size
    masks = rows * seq * seq * (fp if spec.packing else fp * model.num_layers)
    # the fused loss casts an fp32 LM head (full fine-tuning, QLoRA) to a 16-bit compute dtype once
    head_copy = model.vocab_size * h * fp if fp < FP32 and spec.method in ("full", "qlora") else 0
    return rows * seq * per_token + masks + chunk * (FP32 + fp) + head_copy


# ------------------------------------------------------------------ data, steps and compute

def _epoch_plan(spec: TrainingSpec, dataset: DatasetInfo) -> tuple[int, float]:
    """Rows (DPO: pairs) and tokens of one epoch, as the trainer builds them.

    SFT and DPO truncate each record to ``max_seq_length`` (DPO has two sequences per
    record); continued pretraining cuts each record into ``max_seq_length`` chunks and keeps
    every token. Packing fills rows to ``max_seq_length`` (counted as ideally full).
    """
    records, seq = dataset.train_records, spec.max_seq_length
    mean = max(1.0, dataset.mean_tokens_per_record)
    if spec.method == "continued_pretraining":
        tokens, rows = records * mean, records * math.ceil(mean / seq)
    else:
        tokens, rows = records * min(mean, seq) * (2 if spec.method == "dpo" else 1), records
    if spec.packing:
        rows = math.ceil(tokens / seq)
    return rows, tokens


def total_steps(spec: TrainingSpec, dataset: DatasetInfo) -> int:
    """Optimizer steps: ``max_steps``, or epochs × ⌈rows / effective batch⌉ (⌊⌋ for data-parallel
    runs, whose ranks drop a last partial batch), as ``gpu_worker.trainer`` plans them."""
    rows, _ = _epoch_plan(spec, dataset)
    per_epoch = rows / spec.effective_batch_size
    steps_per_epoch = max(1, math.floor(per_epoch) if spec.num_processes > 1 else math.ceil(per_epoch))
    return spec.max_steps or spec.epochs * steps_per_epoch


def training_tokens(spec: TrainingSpec, dataset: DatasetInfo) -> int:
    """Tokens the run feeds the model: epochs × the epoch's tokens, or, with ``max_steps``,
    steps × effective batch × tokens per row."""
    rows, tokens = _epoch_plan(spec, dataset)
    if not spec.max_steps:
        return round(spec.epochs * tokens)
    per_row = tokens / rows if rows else min(dataset.mean_tokens_per_record, spec.max_seq_length)
    return round(spec.max_steps * spec.effective_batch_size * per_row)


def training_flops(model: ModelInfo, spec: TrainingSpec, dataset: DatasetInfo, tokens: int) -> float:
    """Model FLOPs of the run (Kaplan et al. 2020, arXiv:2001.08361, section 2.1).

    Per token with ``N`` matmul parameters (the input embedding is a lookup and does not
    count unless tied to the LM head): forward ``2N``, backward through the activations
    ``2N``, weight gradients ``2N`` only for weights that train, so ``6N`` for full
    fine-tuning and ``4N + 2·N_trainable`` for adapters and prompt tuning; DPO adds the
    reference model's forward pass, ``2N``. Attention adds ``6·L·s·h`` (forward
    ``2·L·s·h``, backward twice that) for rows of ``s`` tokens. Prompt tuning's virtual
    tokens are processed like data tokens. QLoRA's dequantisation is not counted.
    """
    h = model.hidden_size
    n = model.parameters - (0 if model.tie_word_embeddings else model.vocab_size * h)
    trainable = trainable_parameters(model, spec)
    per_token = 6.0 * n if spec.method == "full" else 4.0 * n + 2.0 * trainable
    if spec.method == "dpo":
        per_token += 2.0 * n
    rows, epoch_tokens = _epoch_plan(spec, dataset)
    row_tokens = epoch_tokens / rows / (2 if spec.method == "dpo" else 1) if rows else spec.max_seq_length
    per_token += 6.0 * model.num_layers * row_tokens * h
    virtual = spec.num_virtual_tokens / row_tokens if spec.method == "prompt_tuning" and row_tokens else 0.0
    return per_token * tokens * (1.0 + virtual)


# ------------------------------------------------------------------ the estimate

def estimate(model: ModelInfo, spec: TrainingSpec, dataset: DatasetInfo, gpu: GpuType, *,
             flash_attention: bool = True) -> Estimate:
    """Peak memory per device, steps, tokens, GPU-hours and cost of ``spec`` on ``gpu``.

    Trainable copies: adapters, soft prompts and full fine-tuning's weights are fp32 in
    every precision (in bf16 the trained weights are the master copy and autocast computes
    in bf16), with fp32 gradients; AdamW keeps two fp32 moments per trainable parameter
    (16 bytes a parameter in all for full fine-tuning, as ZeRO counts it). DP-SGD (Opacus) adds a per-example gradient for every example of
    the micro-batch and a running sum of the clipped ones. GPU-hours are model FLOPs
    (:func:`training_flops`) ÷ (peak × MFU), summed over devices (ideal data-parallel
    scaling: more devices shorten the run, not the device-hours).

    ``flash_attention=False`` sizes the eager attention kernel, which keeps the
    ``s × s`` attention probabilities of every head.
    """
    fp = compute_bytes(spec, gpu)
    full = spec.method == "full"
    trainable = trainable_parameters(model, spec)
    weights = weights_bytes(model, gpu, spec.method, fp)
    trainable_bytes = trainable * FP32
    grad_dtype = FP32
    gradients = trainable * grad_dtype
    if spec.dp.enabled:
        gradients += (spec.micro_batch_size + 1) * trainable * grad_dtype
    optimizer = 2 * FP32 * trainable
    activations = activation_bytes(model, spec, gpu, flash_attention=flash_attention)
    overhead = runtime_overhead_bytes(gpu)
    peak = (weights + (0 if full else trainable_bytes) + optimizer
            + _gradients_with_activations(model, spec, gradients, activations, grad_dtype) + overhead)
    tokens = training_tokens(spec, dataset)
    flops = training_flops(model, spec, dataset, tokens)
    gpu_hours = flops / (peak_tflops(spec, gpu) * 1e12 * gpu.mfu) / 3600.0
    return Estimate(
        peak_memory_bytes=peak, weights_bytes=weights, trainable_bytes=trainable_bytes, gradient_bytes=gradients,
        optimizer_bytes=optimizer, activation_bytes=activations, tokens=tokens, gpu_hours=gpu_hours,
        cost_usd=gpu_hours * gpu.price_per_hour_usd, gpu_type=gpu.name, gpu_memory_bytes=gpu.memory_bytes,
        fits=peak <= gpu.memory_bytes, total_steps=total_steps(spec, dataset), overhead_bytes=overhead,
        trainable_parameters=trainable, flops=flops)


def _gradients_with_activations(model: ModelInfo, spec: TrainingSpec, gradients: int, activations: int,
                                grad_dtype: int) -> int:
    """The most gradient and activation memory alive at once (see the module docstring)."""
    if spec.method != "full" or spec.gradient_accumulation_steps > 1 or spec.dp.enabled:
        return gradients + activations
    head = model.vocab_size * model.hidden_size * grad_dtype
    return max(activations + head, gradients + activations // model.num_layers)


def fitting_methods(model: ModelInfo, spec: TrainingSpec, dataset: DatasetInfo, gpu: GpuType) -> tuple[str, ...]:
    """Which of full, LoRA and QLoRA fit one device of ``gpu`` with the job's other settings.

    In :data:`FITTING_ORDER`: most weights trained first, least memory last. A method the
    spec cannot run with (QLoRA with DP-SGD) is left out.
    """
    out: list[str] = []
    for method in FITTING_ORDER:
        try:
            variant = TrainingSpec.model_validate({**spec.model_dump(), "method": method})
        except ValidationError:
            continue
        if estimate(model, variant, dataset, gpu).fits:
            out.append(method)
    return tuple(out)
