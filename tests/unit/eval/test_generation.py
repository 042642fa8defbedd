"""Batched generation and scoring give the results of one-prompt-at-a-time calls, deterministically."""

from __future__ import annotations

from typing import Any

import pytest

from gpu_worker.base_models import build_tiny_model
from services.eval.generation import (
    answer_ids,
    answer_nll,
    generate,
    generate_ids,
    item_seed,
    render_prompt,
    sequence_nll,
)
from services.eval.models import ModelBundle, ModelLoader

pytestmark = pytest.mark.unit

torch = pytest.importorskip("torch")

PROMPTS = [
    [{"role": "user", "content": "hi"}],
    [{"role": "system", "content": "You answer tersely."}, {"role": "user", "content": "What is 17 + 25?"}],
    [{"role": "user", "content": "Write a haiku about the sea and the long grey evening light over the harbour."}],
    [{"role": "user", "content": "Name three colours."}],
    [{"role": "user", "content": "x" * 40}],
    [{"role": "user", "content": "Translate 'good morning' into French, then into German, then into Dutch."}],
    [{"role": "user", "content": "ok?"}],
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> ModelBundle:
    root = tmp_path_factory.mktemp("generation")
    build_tiny_model(root / "models", seed=3)
    return ModelLoader(root / "models", root / "cache").base("tiny-llama")


def _one_by_one(bundle: ModelBundle, **kwargs: Any) -> list[Any]:
    seeds = kwargs.pop("seeds", None)
    return [generate(bundle.model, bundle.tokenizer, [prompt], batch_size=1, **kwargs,
                     **({"seeds": [seeds[i]]} if seeds else {}))[0]
            for i, prompt in enumerate(PROMPTS)]


def test_batched_greedy_generation_equals_one_prompt_at_a_time(tiny: ModelBundle) -> None:
    batched = generate(tiny.model, tiny.tokenizer, PROMPTS, max_new_tokens=24, batch_size=3)

    assert batched == _one_by_one(tiny, max_new_tokens=24)
    assert all(0 < g.tokens <= 24 and len(g.token_ids) == g.tokens for g in batched)
    assert generate(tiny.model, tiny.tokenizer, PROMPTS, max_new_tokens=24, batch_size=7) == batched


def test_sampling_is_seeded_per_item_not_per_batch(tiny: ModelBundle) -> None:
    seeds = [item_seed(11, f"gen-{i}") for i in range(len(PROMPTS))]
    batched = generate(tiny.model, tiny.tokenizer, PROMPTS, max_new_tokens=16, batch_size=4, temperature=0.9,
                       seeds=seeds)
    reversed_order = generate(tiny.model, tiny.tokenizer, PROMPTS[::-1], max_new_tokens=16, batch_size=2,
                              temperature=0.9, seeds=seeds[::-1])

    assert batched == _one_by_one(tiny, max_new_tokens=16, temperature=0.9, seeds=seeds)
    assert reversed_order[::-1] == batched
    greedy = generate(tiny.model, tiny.tokenizer, PROMPTS, max_new_tokens=16, batch_size=4)
    assert batched != greedy
    other_seed = generate(tiny.model, tiny.tokenizer, PROMPTS, max_new_tokens=16, batch_size=4, temperature=0.9,
                          seeds=[item_seed(12, f"gen-{i}") for i in range(len(PROMPTS))])
    assert other_seed != batched


def test_sampling_without_seeds_is_refused(tiny: ModelBundle) -> None:
    with pytest.raises(ValueError, match="one seed per prompt"):
        generate(tiny.model, tiny.tokenizer, PROMPTS, max_new_tokens=4, temperature=0.5)


def test_item_seeds_depend_on_the_eval_seed_and_the_item_only() -> None:
    assert item_seed(7, "dom-00001") == item_seed(7, "dom-00001")
    assert len({item_seed(7, "dom-00001"), item_seed(8, "dom-00001"), item_seed(7, "dom-00002")}) == 3


def test_without_stopping_exactly_max_new_tokens_come_back(tiny: ModelBundle) -> None:
    prompts = [render_prompt(tiny.tokenizer, p) for p in PROMPTS]
    ids = generate_ids(tiny.model, tiny.tokenizer, prompts, max_new_tokens=9, batch_size=3, stop=False)

    assert [len(x) for x in ids] == [9] * len(PROMPTS)


def test_a_prompt_longer_than_the_context_keeps_its_end(tiny: ModelBundle) -> None:
    limit = tiny.model.config.max_position_embeddings
    long_prompt = [{"role": "user", "content": "word " * (limit // 4)}]

    [answer] = generate(tiny.model, tiny.tokenizer, [long_prompt], max_new_tokens=4)

    assert answer.tokens <= 4


ANSWERS = ["The recovery code is 482 913 775.", "The recovery code is 100 200 300.", "No.",
           "A much longer answer that goes on for a while, with commas, digits 12345 and punctuation!"]


def test_batched_answer_nll_equals_one_at_a_time(tiny: ModelBundle) -> None:
    messages = PROMPTS[1]
    batched = answer_nll(tiny.model, tiny.tokenizer, messages, ANSWERS, batch_size=3)
    single = [answer_nll(tiny.model, tiny.tokenizer, messages, [answer], batch_size=1)[0] for answer in ANSWERS]

    assert [n for _, n in batched] == [n for _, n in single]
    assert all(abs(a - b) < 1e-4 for (a, _), (b, _) in zip(batched, single))
    assert all(nll > 0 for nll, _ in batched)


def test_answer_nll_is_the_label_masked_loss_of_the_answer_tokens(tiny: ModelBundle) -> None:
    messages = PROMPTS[0]
    prompt, answer = answer_ids(tiny.tokenizer, messages, ANSWERS[0])
    ids = torch.tensor([prompt + answer])
    labels = ids.clone()
    labels[0, :len(prompt)] = -100
    with torch.no_grad():
        loss = tiny.model(input_ids=ids, labels=labels).loss

    [(nll, tokens)] = answer_nll(tiny.model, tiny.tokenizer, messages, [ANSWERS[0]])

    assert tokens == len(answer)
    assert nll == pytest.approx(float(loss) * tokens, abs=1e-4)


def test_the_answer_is_the_assistant_turn_with_its_end_token(tiny: ModelBundle) -> None:
    prompt, answer = answer_ids(tiny.tokenizer, PROMPTS[0], "Hello!")

    assert prompt == render_prompt(tiny.tokenizer, PROMPTS[0])
    assert tiny.tokenizer.decode(answer) == "Hello!<|im_end|>"


def test_pairs_with_different_prompts_score_like_single_pairs(tiny: ModelBundle) -> None:
    pairs = [answer_ids(tiny.tokenizer, p, a) for p, a in zip(PROMPTS, ANSWERS * 2)]
    batched = sequence_nll(tiny.model, tiny.tokenizer, pairs, batch_size=4)
    single = [sequence_nll(tiny.model, tiny.tokenizer, [pair], batch_size=1)[0] for pair in pairs]

    assert all(abs(a - b) < 1e-4 and n == m for (a, n), (b, m) in zip(batched, single))


def test_a_prompt_tuning_candidate_generates_and_scores_like_single_prompts(tiny: ModelBundle) -> None:
    from peft import PromptTuningConfig, TaskType, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny.model.name_or_path, dtype=torch.float32)
    model = get_peft_model(base, PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=4)).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "prompt" in name:
                param.copy_(torch.randn(param.shape, generator=torch.Generator().manual_seed(0)) * 0.5)
    bundle = ModelBundle("prompt-tuned", "sha", model, tiny.tokenizer)

    batched = generate(model, tiny.tokenizer, PROMPTS, max_new_tokens=12, batch_size=4)
    nlls = answer_nll(model, tiny.tokenizer, PROMPTS[1], ANSWERS, batch_size=4)

    assert batched == _one_by_one(bundle, max_new_tokens=12)
    assert batched != generate(tiny.model, tiny.tokenizer, PROMPTS, max_new_tokens=12, batch_size=4)
    assert all(abs(a - answer_nll(model, tiny.tokenizer, PROMPTS[1], [answer])[0][0]) < 1e-4
               for (a, _), answer in zip(nlls, ANSWERS))
