"""`SharedContextHFLM` returns what lm-eval's `HFLM` returns, running a shared context (or a shared
beginning of contexts) once, and generating on a static cache.

Real lm-eval `HFLM` and the subclass on the tiny Llama, same token requests: log-likelihood sums
equal to float rounding (measured: max relative gap ~1e-7, e.g. 1.5e-5 on a sum of ~170 on
TruthfulQA requests; the bound here is 1e-6), greedy flags identical, results in request order.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lm_eval.models.huggingface import HFLM

from hubkit.shared_context import SharedContextHFLM

REL = 1e-6  # float32 rounding of sums over different matmul shapes; measured ~1e-7


def _requests(lm: HFLM) -> list:
    """Interleaved requests: a 4-choice group (1..4-token continuations, one of them the greedy
    one), a lone request, and over-long contexts (two equally long continuations share the cut
    window; a third, longer one has its own window)."""
    tok = lm.tok_encode
    context = tok("Question: which gas do plants take in from the air?\nAnswer:")
    with torch.no_grad():
        greedy, ids = [], list(context)
        for _ in range(3):
            greedy.append(int(lm.model(torch.tensor([ids])).logits[0, -1].argmax()))
            ids.append(greedy[-1])
    lone = tok("The capital of France is")
    long_context = tok(" ".join(["the quick brown fox jumps over the lazy dog"] * 200))
    assert len(long_context) > lm.max_length
    choices = [tok(" carbon dioxide"), tok(" oxygen gas from the sea"), greedy, tok(" a")[-1:]]
    assert sorted(len(c) for c in choices)[0] == 1 and max(len(c) for c in choices) > 2
    cut = [tok(" end of it"), tok(" end of it")[::-1], tok(" end of it and more words here")]
    requests = [(("q", f"c{i}"), context, c) for i, c in enumerate(choices)]
    requests += [(("lone", "x"), lone, tok(" Paris"))]
    requests += [(("long", f"c{i}"), long_context, c) for i, c in enumerate(cut)]
    order = [0, 4, 5, 1, 7, 2, 6, 3]
    return [requests[i] for i in order]


def _assert_same(ours: list[tuple[float, bool]], stock: list[tuple[float, bool]]) -> None:
    assert [g for _, g in ours] == [g for _, g in stock]
    gaps = [abs(a - b) / max(1.0, abs(b)) for (a, _), (b, _) in zip(ours, stock, strict=True)]
    assert max(gaps) < REL, gaps


@pytest.fixture(scope="module")
def models(tiny_llama: Path) -> tuple[HFLM, SharedContextHFLM]:
    return (
        HFLM(pretrained=str(tiny_llama), batch_size=4, device="cpu"),
        SharedContextHFLM(pretrained=str(tiny_llama), batch_size=4, device="cpu"),
    )


def test_scores_equal_hflm_and_groups_only_shared_windows(models, monkeypatch) -> None:
    stock, ours = models
    requests = _requests(stock)
    # The 4 choices share one pass, the 2 equally long cut continuations another; the lone
    # request and the longer cut one go to HFLM itself.
    groups = ours._shared_context_groups(requests)
    assert sorted(sorted(requests[i][0] for i in g) for g in groups) == [
        [("long", "c0"), ("long", "c1")],
        [("q", "c0"), ("q", "c1"), ("q", "c2"), ("q", "c3")],
    ]
    passed_on = []
    original = HFLM._loglikelihood_tokens

    def spy(self, reqs, **kwargs):
        passed_on.extend(r[0] for r in reqs)
        return original(self, reqs, **kwargs)

    monkeypatch.setattr(HFLM, "_loglikelihood_tokens", spy)
    answers = ours._loglikelihood_tokens(requests, disable_tqdm=True)
    assert sorted(passed_on) == [("lone", "x"), ("long", "c2")]
    monkeypatch.undo()
    expected = stock._loglikelihood_tokens(requests, disable_tqdm=True)
    _assert_same(answers, expected)
    greedy = [g for (key, _, _), (_, g) in zip(requests, answers, strict=True) if key == ("q", "c2")]
    assert greedy == [True] and sum(g for _, g in answers) == 1  # the greedy continuation, only it


def test_scores_equal_hflm_with_a_peft_adapter(tiny_llama: Path, models, tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    config = LoraConfig(r=4, lora_alpha=64, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    lora = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_llama), config)
    lora.save_pretrained(tmp_path / "lora")
    args = {"pretrained": str(tiny_llama), "peft": str(tmp_path / "lora"), "batch_size": 4, "device": "cpu"}
    stock, ours = HFLM(**args), SharedContextHFLM(**args)
    requests = _requests(models[0])
    answers = ours._loglikelihood_tokens(requests, disable_tqdm=True)
    _assert_same(answers, stock._loglikelihood_tokens(requests, disable_tqdm=True))
    without = models[1]._loglikelihood_tokens(requests, disable_tqdm=True)
    # The adapter is in the scores.
    assert all(abs(a - b) > 1e-3 for (a, _), (b, _) in zip(answers, without, strict=True))


def test_contexts_sharing_a_beginning_run_it_once(models) -> None:
    """Few-shot contexts with the same examples (a ``first_n`` sampler): the examples go through
    the model once, each question after them on the cache cut back to them; the scores stay HFLM's."""
    stock, ours = models
    tok = stock.tok_encode
    shots = tok("".join(f"Question: what is {i} plus {i}?\nAnswer: {2 * i}\n\n" for i in range(12)))
    questions = [tok(f"Question: what is {q} plus one?\nAnswer:") for q in ("seven", "nine", "ten")]
    contexts = [shots + q for q in questions] + [shots[:-3]]  # the last: a prefix of the others
    requests = [((f"c{i}", a), ctx, tok(a)) for i, ctx in enumerate(contexts) for a in (" 8", " eleven")]
    seen: list[int] = []
    hook = ours.model.register_forward_pre_hook(
        lambda _, args, kwargs: seen.append((kwargs.get("input_ids", args[0] if args else None)).numel()),
        with_kwargs=True,
    )
    try:
        answers = ours._loglikelihood_tokens(requests, disable_tqdm=True)
    finally:
        hook.remove()
    _assert_same(answers, stock._loglikelihood_tokens(requests, disable_tqdm=True))
    # Contexts and continuations: the shared examples once, then each question's own tokens.
    context_tokens = sum(seen) - sum(len(tok(a)) - 1 for a in (" 8", " eleven")) * len(contexts)
    assert context_tokens <= len(shots) + sum(len(q) for q in questions) + 3
    assert len(shots) > 3 * max(len(q) for q in questions)  # so the saving is real


def test_generation_equals_hflm(models, monkeypatch) -> None:
    """On a CPU generation runs on a static key/value cache: the same greedy text as HFLM's."""
    from lm_eval.api.instance import Instance

    stock, ours = models
    args = {"until": ["\n\n"], "max_gen_toks": 12, "do_sample": False}
    requests = [
        Instance("generate_until", {}, (f"Question: what is {q}?\nAnswer:", args), i)
        for i, q in enumerate(["two plus two", "the capital of Peru, in one word", "7 x 6"])
    ]
    caches = []
    generate = ours.model.generate
    monkeypatch.setattr(
        ours.model, "generate", lambda **kw: caches.append(kw.get("cache_implementation")) or generate(**kw)
    )
    texts = ours.generate_until(requests, disable_tqdm=True)
    assert caches and set(caches) == {"static"}
    assert texts == stock.generate_until(requests, disable_tqdm=True)
